"""The fault ledger: what a fault will change is on disk before it changes anything.

Append-only JSON lines next to the lab descriptor. A fault is `planned` (undo record
written), then `applied`, then `reverted`. Rollbacks and `gameday recover` revert every
fault whose last state is not `reverted`, newest first, so a runner killed at any point
leaves enough behind to undo exactly what it did.

It must survive the crash it exists for. A write cut short (power loss, a full disk) leaves
a torn last line: the next record starts on a line of its own, so it stays readable. A
line that cannot be read is never skipped in silence: it may be the only record of a fault
still in place, so it is reported (`problems()`), and `gameday recover` does not call the
lab recovered while one exists.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gameday.foundation.errors import LabError

FILE = "faults.jsonl"
STATES = ("planned", "applied", "reverted")


class Ledger:
    def __init__(self, lab_path: str | os.PathLike[str]) -> None:
        self.path = Path(lab_path).absolute().parent / FILE

    def _append(self, record: dict[str, Any]) -> None:
        record = {**record, "at": datetime.now(UTC).isoformat()}
        line = json.dumps(record, sort_keys=True).encode() + b"\n"
        created = not self.path.exists()
        with open(self.path, "a+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line  # after a torn write: a line of its own
            f.write(line)  # O_APPEND: at the end, whatever was read
            f.flush()
            os.fsync(f.fileno())
        if created:
            _fsync_dir(self.path.parent)

    def plan(self, region: str, fault: str, undo: dict[str, Any]) -> str:
        fault_id = uuid.uuid4().hex[:12]
        self._append({"id": fault_id, "state": "planned", "region": region, "fault": fault,
                      "undo": undo})
        return fault_id

    def mark(self, fault_id: str, state: str) -> None:
        self._append({"id": fault_id, "state": state})

    def read(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Each fault once, with its latest state, in the order they were planned; and a
        line for each record that could not be read (a torn or hand-edited line, a state
        recorded for a fault whose planned record is unreadable)."""
        if not self.path.exists():
            return [], []
        faults: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        lines = self.path.read_bytes().split(b"\n")
        for n, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            why = None
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                why = "not JSON (a write cut short?)"
            else:
                why = _shape_problem(rec)
            if why is not None:
                problems.append(f"{self.path} line {n}: {why}: {_excerpt(raw)}")
                continue
            if rec["state"] == "planned":
                faults[rec["id"]] = dict(rec)
            elif rec["id"] in faults:
                faults[rec["id"]]["state"] = rec["state"]
            elif rec["state"] != "reverted":
                problems.append(f"{self.path} line {n}: fault {rec['id']} was {rec['state']}, "
                                "but its planned record (its undo) cannot be read")
        return list(faults.values()), problems

    def entries(self) -> list[dict[str, Any]]:
        return self.read()[0]

    def problems(self) -> list[str]:
        return self.read()[1]

    def open_faults(self, region: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.entries()
                if e["state"] != "reverted" and (region is None or e["region"] == region)]

    def refuse_unrecovered(self, region: str) -> None:
        """A region whose earlier faults were never rolled back cannot take new ones: their
        undo records would be mixed with the new ones'. LabError naming the fix."""
        if self.open_faults(region):
            raise LabError(f"region {region} already has faults that were never rolled back: "
                           "run `gameday recover` first")
        problems = self.problems()
        if problems:
            # an unreadable record may be a fault still in place: its undo would be lost
            raise LabError(f"the fault ledger has a record it cannot read ({problems[0]}): run "
                           "`gameday recover` first")

    def unsettled(self, region: str | None = None) -> list[str]:
        """What keeps the lab from being known clean: each open fault (`block-egress on
        region-1 (applied)`), then each unreadable line. Empty when every fault was
        reverted."""
        faults, problems = self.read()
        return [f"{e['fault']} on {e['region']} ({e['state']})" for e in faults
                if e["state"] != "reverted" and (region is None or e["region"] == region)
                ] + problems


def _shape_problem(rec: Any) -> str | None:
    """Why a JSON line is not a ledger record, or None when it is one."""
    if not isinstance(rec, dict):
        return "not a ledger record (not an object)"
    if not isinstance(rec.get("id"), str) or rec.get("state") not in STATES:
        return f"not a ledger record (needs 'id' and 'state', one of {', '.join(STATES)})"
    if rec["state"] == "planned" and not (isinstance(rec.get("region"), str)
                                          and isinstance(rec.get("fault"), str)
                                          and isinstance(rec.get("undo"), dict)):
        return "a planned fault needs 'region', 'fault' and its 'undo' record"
    return None


def _excerpt(raw: bytes, limit: int = 60) -> str:
    text = raw.decode(errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _fsync_dir(directory: Path) -> None:
    """A new file's name is durable only once its directory is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
