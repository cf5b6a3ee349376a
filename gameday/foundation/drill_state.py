"""What one drill leaves for the next, in `drill.json` beside the descriptor: which region
was promoted, when, and by which game day run, and how far a switchover got. Failback reads
it to know there is something to fail back from, and to tell split-brain writes
(acknowledged by the old primary after the promotion) from writes that were merely not
replicated before the fault; the drivers read it to fence a region that must not serve
again; `gameday recover` reads the switchover's stage to complete or undo it.

Written before the change it records (the promotion is recorded before it is requested),
so a run interrupted half-way still leaves the record that it may have happened.
"""

from __future__ import annotations

import dataclasses
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

FILE = "drill.json"


class Stage(StrEnum):
    """How far a planned switchover got, each stage on disk before it starts: a rollback
    or `gameday recover` after an interruption undoes it before `promoting`, waits for the
    promotion to settle at `promoting`, and completes it once the target is writable."""

    READ_ONLY = "read-only"
    STOPPING = "stopping"
    PROMOTING = "promoting"
    PROMOTED = "promoted"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Switchover:
    """A planned switchover in progress: to and from which region, and its last stage on
    disk."""

    to: str
    from_region: str  # "from" in the file
    stage: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"to": self.to, "from": self.from_region}
        if self.stage is not None:
            out["stage"] = self.stage
        return out

    @classmethod
    def from_json(cls, data: Any) -> Switchover | None:
        if not isinstance(data, dict) or not data.get("to") or not data.get("from"):
            return None
        stage = data.get("stage")
        return cls(to=str(data["to"]), from_region=str(data["from"]),
                   stage=str(stage) if stage is not None else None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DrillState:
    promoted: str | None = None  # the region a game day promoted
    old_primary: str | None = None
    promoted_at_utc: str | None = None  # its first accepted write, on the wall clock
    timeline: int | None = None  # the promoted server's timeline, when gameday promoted
    strategy: str | None = None  # who promoted: runner, command or none
    observed: bool | None = None  # the HA manager promoted; the recorder saw it
    game_day_run: str | None = None  # the run directory of that game day
    # the region a promotion nobody was asked to make (promotion none, no HA manager) is
    # awaited in: `promoted` is recorded only once it answers writable
    awaiting: str | None = None
    switchover: Switchover | None = None

    def to_json(self) -> dict[str, Any]:
        """The file's object: every field that is set, the switchover's as its own."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value.to_json() if isinstance(value, Switchover) else value
        return out

    @classmethod
    def from_json(cls, data: Any) -> DrillState | None:
        """The state a file holds; None for anything that is not one (a torn or foreign
        file reads as no drill, as it always did). Keys it does not know are left out."""
        if not isinstance(data, dict):
            return None
        found: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                nested = f.type == "Switchover | None"  # a field holding the switchover
                found[f.name] = Switchover.from_json(data[f.name]) if nested else data[f.name]
        return cls(**found)

    def promoted_other_than(self, region: str) -> str | None:
        """The region this drill promoted, when it is not `region`: a promotion may have
        happened there, so `region` must not come back as a primary."""
        return self.promoted if self.promoted and self.promoted != region else None


def path(lab_path: str | os.PathLike[str]) -> Path:
    return Path(lab_path).absolute().parent / FILE


def read(lab_path: str | os.PathLike[str]) -> DrillState | None:
    try:
        data = json.loads(path(lab_path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return DrillState.from_json(data)


def write(lab_path: str | os.PathLike[str], state: DrillState) -> None:
    p = path(lab_path)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2, sort_keys=True))
    tmp.replace(p)


def clear(lab_path: str | os.PathLike[str]) -> None:
    p = path(lab_path)
    if p.exists():
        p.unlink()
