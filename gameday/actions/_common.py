"""What every activity does first: parse settings, load the descriptor, and translate our
errors into chaoslib's ActivityFailed at the edge."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from chaoslib.exceptions import ActivityFailed

from gameday import interrupt
from gameday.errors import GamedayError
from gameday.labs.descriptor import Lab
from gameday.settings import GamedaySettings

F = TypeVar("F", bound=Callable[..., Any])


def activity(func: F) -> F:
    """Turn a GamedayError into ActivityFailed with the same one-line message."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GamedayError as exc:
            raise ActivityFailed(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


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
            from gameday.measure import run as runs

            run = runs.current()
            if run is not None:
                run.event("step-failed", step=func.__name__, error=str(exc))
            # the control's after_activity_control turns this failure into an interruption
            raise ActivityFailed(f"{func.__name__} failed: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def context(configuration: dict[str, Any] | None,
            secrets: dict[str, Any] | None) -> tuple[GamedaySettings, Lab]:
    settings = GamedaySettings.from_chaos(configuration, secrets)
    return settings, settings.load_lab()


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

    return wrapper  # type: ignore[return-value]


def _dry_result(func: Callable[..., Any]) -> dict[str, Any] | None:
    """In `chaos run --dry` (plan mode, set by the control) a step or rollback changes
    nothing and returns the plan it belongs to; in a run the control refused before it
    started, it changes nothing either (the lab may be another drill's)."""
    from gameday.measure import run as runs

    refused = runs.refused()
    if refused is not None:
        return {"skipped": func.__name__, "reason": f"the run was refused: {refused}"}
    plan = runs.dry_plan()
    if plan is None:
        return None
    return {"dry": True, "would_run": func.__name__, "faults": plan.get("faults", []),
            "refused": plan.get("refused", False)}


def changing(configuration: dict[str, Any] | None,
             secrets: dict[str, Any] | None) -> tuple[GamedaySettings, Lab]:
    """`context` for a step or rollback that changes the lab: this process must hold the
    lab's drill lock (the control takes it for the whole run; without the control, the
    first such step takes it until the process ends). Another drill's lab is refused."""
    from gameday.labs import lock

    settings, lab = context(configuration, secrets)
    lock.acquire(lab.path, what="this run's steps")
    return settings, lab
