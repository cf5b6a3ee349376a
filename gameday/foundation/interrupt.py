"""Ctrl-C and SIGTERM during a drill: stop injecting, then always roll back.

Chaos Toolkit turns SIGTERM into an interruption that runs the rollbacks, but a second
signal, or Ctrl-C at the wrong moment, kills the rollbacks themselves (chaostoolkit#195,
#258); and the action that was running keeps running in its worker thread while the
rollbacks start. So, for the run's lifetime:

- the first SIGINT or SIGTERM sets a flag and interrupts the run (InterruptExecution in
  the main thread: Chaos Toolkit then runs the rollbacks);
- later signals are logged and ignored until the rollbacks are done;
- every drill step checks the flag in its waits and stops early, and runs under a lock
  that the rollbacks take first, so a rollback never races a step still injecting.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

from gameday.foundation.errors import GamedayError

logger = logging.getLogger(f"chaostoolkit.{__name__}")

_requested = threading.Event()
_step_lock = threading.RLock()
_previous: dict[int, Any] = {}
_abort_reason: list[str] = []  # set by `abort`, read by the handler it signals


class Interrupted(GamedayError):
    """The run was interrupted: the step stopped where it was."""


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    if _requested.is_set():
        raise Interrupted("interrupted by a signal: rolling back")


def pause(seconds: float) -> None:
    """time.sleep that ends early, with Interrupted, when the run is interrupted."""
    if _requested.wait(seconds):
        check()


@contextlib.contextmanager
def step_running() -> Iterator[None]:
    check()
    with _step_lock:
        yield


@contextlib.contextmanager
def steps_stopped(timeout: float = 120.0) -> Iterator[None]:
    """Held by rollbacks: wait (bounded) for a step still running to notice the flag."""
    acquired = _step_lock.acquire(timeout=timeout)
    if not acquired:
        logger.warning("gameday: a step is still running after %.0f s; rolling back anyway",
                       timeout)
    try:
        yield
    finally:
        if acquired:
            _step_lock.release()


def _handler(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    if _requested.is_set():
        logger.warning("gameday: %s ignored: rolling back, please wait", name)
        return
    _requested.set()
    from chaoslib.exceptions import InterruptExecution

    if _abort_reason:
        logger.error("gameday: aborted (%s): stopping the drill and rolling back",
                     _abort_reason[0])
        raise InterruptExecution(f"gameday: aborted: {_abort_reason[0]}")
    logger.warning("gameday: %s received: stopping the drill and rolling back", name)
    raise InterruptExecution(f"gameday: interrupted by {name}")


def abort(reason: str) -> None:
    """A stop condition fired (gameday.drill.watcher, in its own thread): interrupt the run
    exactly as SIGTERM does, so the running step stops and the rollbacks run at once, with
    `reason` in the message. Without our handler (not installed: no main-thread run) the
    flag alone stops every step at its next wait."""
    if _requested.is_set():
        return
    _abort_reason[:] = [reason]
    if signal.SIGTERM in _previous:
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
    else:
        _requested.set()


def install() -> None:
    """Called by the control at the start of a run, in the main thread."""
    _requested.clear()
    _abort_reason.clear()
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        _previous[sig] = signal.signal(sig, _handler)


def rollbacks_done() -> None:
    """From here on (the report is written), a signal no longer needs to wait."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, handler in _previous.items():
        signal.signal(sig, handler)
    _previous.clear()
