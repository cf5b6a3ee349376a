"""poll_until: the one bounded wait. Real clock where the bound matters, an injected one
where only the arithmetic does."""

from __future__ import annotations

import threading

import pytest

from gameday.foundation import interrupt
from gameday.foundation.errors import LabError, TargetError
from gameday.foundation.poll import poll_until, poll_within


def test_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", "ready"])
    assert poll_until(lambda: next(answers), timeout_s=5, interval_s=0) == "ready"


def test_a_falsy_condition_times_out_with_what_it_saw_last() -> None:
    now = iter(range(100))
    with pytest.raises(TargetError, match=r"the standby not within 3 s \(last seen: 0\)"):
        poll_until(lambda: 0, timeout_s=3, interval_s=0, what="the standby",
                   clock=lambda: float(next(now)))


def test_exceptions_in_retry_on_count_as_not_yet_and_reach_the_error() -> None:
    calls = []

    def flaky() -> bool:
        calls.append(1)
        raise ConnectionRefusedError("not yet")

    with pytest.raises(LabError, match="gave up after ConnectionRefusedError"):
        poll_until(flaky, timeout_s=0.05, interval_s=0.01, retry_on=(OSError,),
                   error=lambda last: LabError(f"gave up after {type(last).__name__}"))
    assert len(calls) >= 2


def test_other_exceptions_propagate_at_once() -> None:
    with pytest.raises(KeyError):
        poll_until(lambda: {}["x"], timeout_s=5, retry_on=(OSError,))


def test_an_interrupted_run_stops_the_wait_unless_it_must_not() -> None:
    interrupt._requested.set()
    try:
        with pytest.raises(interrupt.Interrupted):
            poll_until(lambda: False, timeout_s=30, interval_s=0.01)
        # rollbacks and recovery run after the interruption: they wait to their bound
        with pytest.raises(TargetError):
            poll_until(lambda: False, timeout_s=0.05, interval_s=0.01, interruptible=False)
    finally:
        interrupt._requested.clear()


def test_interruption_arriving_mid_wait_ends_it_promptly() -> None:
    timer = threading.Timer(0.1, interrupt._requested.set)
    timer.start()
    try:
        with pytest.raises(interrupt.Interrupted):
            poll_until(lambda: False, timeout_s=30, interval_s=5)
    finally:
        timer.cancel()
        interrupt._requested.clear()


def test_poll_within_answers_whether_the_condition_held_in_time() -> None:
    """The waits that act either way (kill what did not exit, stop flushing) get a yes or
    a no, never an error; a condition's own error still propagates, and an interruption
    ends the wait unless it must run to its bound."""
    answers = iter([False, False, True])
    assert poll_within(lambda: next(answers), timeout_s=5, interval_s=0) is True
    calls = []
    assert poll_within(lambda: calls.append(1), timeout_s=0.05, interval_s=0.01) is False
    assert len(calls) >= 2
    with pytest.raises(KeyError):
        poll_within(lambda: {}["x"], timeout_s=5)
    interrupt._requested.set()
    try:
        with pytest.raises(interrupt.Interrupted):
            poll_within(lambda: False, timeout_s=30, interval_s=0.01)
        assert poll_within(lambda: False, timeout_s=0.05, interval_s=0.01,
                           interruptible=False) is False
    finally:
        interrupt._requested.clear()
