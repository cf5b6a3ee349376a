"""Ctrl-C and SIGTERM reach a drill through one handler: the real lab's interruption tests
send SIGTERM only where the drill differs (mid-failback), because of what this pins."""

from __future__ import annotations

import signal

from gameday.foundation import interrupt


def test_sigint_and_sigterm_are_one_handler_for_the_run_then_given_back() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupt.install()
    try:
        assert signal.getsignal(signal.SIGINT) is interrupt._handler
        assert signal.getsignal(signal.SIGTERM) is interrupt._handler
    finally:
        interrupt.rollbacks_done()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
