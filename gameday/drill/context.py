"""The drill's context, built once per `chaos run` and handed to every activity: the parsed
settings, the loaded lab, the run in progress (its clock and events), and whether this run
may change anything at all.

Chaos Toolkit hands each activity only the raw `configuration` and `secrets`. The control
builds the context from them once, in its lifecycle (`configure_control` resets it,
`before_experiment_control` builds and publishes it, `cleanup_control` drops it), as
chaoslib's own controls keep their state, and every activity of the run asks `current()`
for it: the configuration is parsed and the descriptor read and validated once, not at
every step. An activity run without the control (a `chaos run` of an experiment that does
not declare it, or a test) builds it itself, once for the same configuration and
descriptor.

Two states make our activities change nothing, whatever they are asked: plan mode (`chaos
run --dry`: the plan stands in for the drill) and a run the control refused before it
started (its lab may be another drill's). Those are `standdown()`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from gameday.foundation import descriptor, lock
from gameday.foundation.descriptor import Lab
from gameday.foundation.events import Payload
from gameday.foundation.settings import GamedaySettings
from gameday.measure.run import Run


@dataclasses.dataclass(frozen=True, kw_only=True)
class Drill:
    """One drill's context. `run` is None when no recorder runs (an activity without the
    control): steps still work, with no events recorded and times on the monotonic clock."""

    settings: GamedaySettings
    lab: Lab
    run: Run | None = None

    def now(self) -> float:
        """Now on the run's clock (seconds since its anchor), or on the monotonic clock."""
        return self.run.now() if self.run is not None else time.monotonic()

    def event(self, payload: Payload, *, t: float | None = None) -> float:
        """Record `payload` in the run's timeline when a run records; the instant either way."""
        if self.run is not None:
            return self.run.event(payload, t=t)
        return self.now() if t is None else t


@dataclasses.dataclass(frozen=True, kw_only=True)
class Standdown:
    """Why this `chaos run`'s activities change nothing: plan mode (the plan they return
    instead) or a refusal before the run started."""

    plan: Mapping[str, Any] | None = None
    refused: str | None = None


@dataclasses.dataclass(frozen=True)
class _State:
    drill: Drill | None = None
    standdown: Standdown | None = None


_state = _State()
_lock = threading.Lock()
# an activity without the control: the context it built, by what it was built from
_built: tuple[tuple[str, tuple[int, int, int] | None], Drill] | None = None


def publish(drill: Drill) -> None:
    """The control's: this is the run's context, for every activity from now on."""
    global _state
    with _lock:
        _state = dataclasses.replace(_state, drill=drill)


def stand_down(*, plan: Mapping[str, Any] | None = None, refused: str | None = None) -> None:
    """The control's: from now on our activities change nothing (plan mode, or refused)."""
    global _state
    with _lock:
        _state = dataclasses.replace(_state, standdown=Standdown(plan=plan, refused=refused))


def reset() -> None:
    """The end of a `chaos run` (and its start): no context, nothing stood down."""
    global _state, _built
    with _lock:
        _state = _State()
        _built = None
    evaluation.end()


T = TypeVar("T")


class _Evaluation:
    """One steady-state evaluation of the hypothesis (the control opens and closes it):
    its verdict probes judge one snapshot of the run, read once. Outside one, every call
    computes afresh."""

    def __init__(self) -> None:
        self.open = False
        self.value: Any = None

    def start(self) -> None:
        self.open, self.value = True, None

    def end(self) -> None:
        self.open, self.value = False, None

    def once(self, compute: Callable[[], T]) -> T:
        if not self.open:
            return compute()
        if self.value is None:
            self.value = compute()
        return cast(T, self.value)


evaluation = _Evaluation()


def published() -> Drill | None:
    """The control's context of this run, if it built one."""
    return _state.drill


def standdown() -> Standdown | None:
    return _state.standdown


def current(configuration: Mapping[str, Any] | None,
            secrets: Mapping[str, Any] | None) -> Drill:
    """The context of the drill an activity belongs to: the control's, else one built
    from the activity's own configuration and secrets (kept while they and the descriptor
    file stay the same)."""
    global _built
    drill = _state.drill
    if drill is not None:
        return drill
    given = json.dumps([configuration, secrets], sort_keys=True, default=str).encode()
    key = (hashlib.sha256(given).hexdigest(),
           _file_signature(descriptor.lab_file(dict(configuration or {}))))
    with _lock:
        if _built is not None and _built[0] == key:
            return _built[1]
    settings = GamedaySettings.from_chaos(dict(configuration or {}), dict(secrets or {}))
    drill = Drill(settings=settings, lab=settings.load_lab())
    with _lock:
        _built = (key, drill)
    return drill


def changing(configuration: Mapping[str, Any] | None,
             secrets: Mapping[str, Any] | None) -> Drill:
    """`current` for a step or rollback that changes the lab: this process must hold the
    lab's drill lock (the control takes it for the whole run; without the control, the
    first such step takes it until the process ends). Another drill's lab is refused."""
    drill = current(configuration, secrets)
    lock.acquire(drill.lab.path, what="this run's steps")
    return drill


def _file_signature(path: os.PathLike[str] | str) -> tuple[int, int, int] | None:
    """What tells a descriptor file rewritten in place (a `lab up` after a `lab down`)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns
