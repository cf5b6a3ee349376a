"""The control keeps one `chaos run`'s state in module globals (the run, plan mode, a
refusal, the phase, the lab's lock), which chaoslib's `after_experiment_control` clears at
the end of a run. A unit test that calls one hook alone leaves it behind: cleared here
after each test, so no test sees another's run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_run_state_between_tests() -> Iterator[None]:
    yield
    from gameday import control
    from gameday.labs import lock
    from gameday.measure import run as runs

    runs.set_dry(None)
    runs.set_refused(None)
    runs.clear()
    control._phase["name"] = "before"
    control._dry["mode"] = None
    lock.release_all()
