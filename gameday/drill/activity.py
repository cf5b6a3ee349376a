"""What every activity of a drill shares, the actions' and the probes': our errors turned
into chaoslib's ActivityFailed at the edge, a step's interruption lock and the record of its
failure, a rollback's wait for the step still running, and nothing changed in plan mode or
in a refused run (`context.standdown()`). Each activity takes its settings, lab and run from
`gameday.drill.context.current`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from chaoslib.exceptions import ActivityFailed

from gameday.drill import context
from gameday.foundation import interrupt
from gameday.foundation.errors import GamedayError
from gameday.foundation.events import StepFailed

F = TypeVar("F", bound=Callable[..., Any])


def activity(func: F) -> F:
    """Turn a GamedayError into ActivityFailed with the same one-line message."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GamedayError as exc:
            raise ActivityFailed(str(exc)) from exc

    return wrapper  # type: ignore[return-value]  # the same signature, wrapped


def step(func: F) -> F:
    """A step of the drill's method: runs under the interruption lock, and records its
    failure, which the control turns into an interruption of the run (rollbacks run,
    `chaos run` exits 1) instead of Chaos Toolkit's going on with the next action."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        dry = _dry_result(func)
        if dry is not None:
            return dry
        try:
            with interrupt.step_running():
                return func(*args, **kwargs)
        except GamedayError as exc:
            drill = context.published()
            if drill is not None:
                drill.event(StepFailed(step=func.__name__, error=str(exc)))
            # the control's after_activity_control turns this failure into an interruption
            raise ActivityFailed(f"{func.__name__} failed: {exc}") from exc

    return wrapper  # type: ignore[return-value]  # the same signature, wrapped


def rollback(func: F) -> F:
    """A rollback: waits for a drill step still running to stop, then translates errors
    like any activity."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        dry = _dry_result(func)
        if dry is not None:
            return dry
        with interrupt.steps_stopped():
            return activity(func)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]  # the same signature, wrapped


def _dry_result(func: Callable[..., Any]) -> dict[str, Any] | None:
    """In `chaos run --dry` (plan mode, set by the control) a step or rollback changes
    nothing and returns the plan it belongs to; in a run the control refused before it
    started, it changes nothing either (the lab may be another drill's)."""
    standdown = context.standdown()
    if standdown is None:
        return None
    if standdown.refused is not None:
        return {"skipped": func.__name__, "reason": f"the run was refused: {standdown.refused}"}
    plan = standdown.plan or {}
    return {"dry": True, "would_run": func.__name__, "faults": plan.get("faults", []),
            "refused": plan.get("refused", False)}
