"""One bounded wait for every "until X or give up" in the drill, the labs and the CLI.

Why one helper: a drill step that waits must stop at once when the run is interrupted
(Ctrl-C, SIGTERM: see `gameday.foundation.interrupt`), must give up at a deadline so a stuck drill
ends instead of hanging, and must say in its error what it saw last, so the one-line
message names the cause. Nineteen hand-written loops each did some of that.

`poll_within` is the same wait for the waits that act either way when time runs out (a
process given time to exit before it is killed, a last flush): there, running out of time
is an answer, not an error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

from gameday.foundation import interrupt
from gameday.foundation.errors import ConfigError, GamedayError, TargetError

T = TypeVar("T")


class _Nothing:
    def __repr__(self) -> str:
        return "nothing"


NOTHING = _Nothing()


def poll_until(
    condition: Callable[[], T],
    *,
    timeout_s: float,
    interval_s: float = 0.05,
    what: str = "the condition",
    retry_on: tuple[type[BaseException], ...] = (),
    error: Callable[[object], GamedayError] | None = None,
    clock: Callable[[], float] = time.monotonic,
    interruptible: bool = True,
    pause: Callable[[float], None] | None = None,
) -> T:
    """Call `condition` until it returns a truthy value and return that value.

    Mind the truth: a condition that reports "not yet" with a non-empty string (a status)
    ends the wait at once. Return False and keep the detail in the caller's scope.

    An exception in `retry_on` counts as "not yet" (a server still starting refuses
    connections). At `timeout_s` the wait fails with `error(last)`, where `last` is the
    last value returned or exception caught, or with a TargetError naming `what`. Between
    calls it sleeps `interval_s` with `interrupt.pause`, so an interrupted run stops here
    with `interrupt.Interrupted`, unless `interruptible` is False (the rollbacks and the
    recovery after an interruption must run to their end: plain sleep) or `pause` is given
    (a test's own clock). `condition` is always called at least once.
    """
    if not math.isfinite(timeout_s):
        # a NaN deadline is never reached (every comparison with it is false): a wait
        # given one would never end
        raise ConfigError(f"the wait for {what} was given a timeout of {timeout_s!r} s: "
                          "give a finite number of seconds")
    deadline = clock() + timeout_s
    last: object = NOTHING
    while True:
        try:
            value = condition()
        except retry_on as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if clock() >= deadline:
            if error is not None:
                raise error(last)
            seen = type(last).__name__ if isinstance(last, BaseException) else repr(last)
            raise TargetError(f"{what} not within {timeout_s:g} s (last seen: {seen})")
        if pause is not None:
            pause(interval_s)
        elif interruptible:
            interrupt.pause(interval_s)
        else:
            time.sleep(interval_s)


class _OutOfTime(GamedayError):
    """`poll_within`'s own: the time ran out (never seen outside this module)."""


def poll_within(
    condition: Callable[[], object],
    *,
    timeout_s: float,
    interval_s: float = 0.05,
    interruptible: bool = True,
) -> bool:
    """True once `condition` returns something truthy, False when `timeout_s` passes
    first: `poll_until` for a wait whose caller acts either way."""
    try:
        poll_until(condition, timeout_s=timeout_s, interval_s=interval_s,
                   error=lambda _last: _OutOfTime(), interruptible=interruptible)
    except _OutOfTime:
        return False
    return True
