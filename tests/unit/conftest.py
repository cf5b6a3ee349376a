"""The control keeps one `chaos run`'s state (its phase, the drill's context, the lab's
lock), which chaoslib's `after_experiment_control` and `cleanup_control` clear at the end
of a run. A unit test that calls one hook alone leaves it behind: cleared here after each
test, so no test sees another's run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_run_state_between_tests() -> Iterator[None]:
    yield
    from gameday import control

    control.cleanup_control()
