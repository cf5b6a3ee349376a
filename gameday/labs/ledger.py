"""The fault ledger: what a fault will change is on disk before it changes anything.

Append-only JSON lines next to the lab descriptor. A fault is `planned` (undo record
written), then `applied`, then `reverted`. Rollbacks and `gameday recover` revert every
fault whose last state is not `reverted`, newest first, so a runner killed at any point
leaves enough behind to undo exactly what it did.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE = "faults.jsonl"


class Ledger:
    def __init__(self, lab_path: str | os.PathLike[str]) -> None:
        self.path = Path(lab_path).absolute().parent / FILE

    def _append(self, record: dict[str, Any]) -> None:
        record = {**record, "at": datetime.now(UTC).isoformat()}
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def plan(self, region: str, fault: str, undo: dict[str, Any]) -> str:
        fault_id = uuid.uuid4().hex[:12]
        self._append({"id": fault_id, "state": "planned", "region": region, "fault": fault,
                      "undo": undo})
        return fault_id

    def mark(self, fault_id: str, state: str) -> None:
        self._append({"id": fault_id, "state": state})

    def entries(self) -> list[dict[str, Any]]:
        """Each fault once, with its latest state, in the order they were planned."""
        if not self.path.exists():
            return []
        faults: dict[str, dict[str, Any]] = {}
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a crash: the fault it began was never applied
            if rec["state"] == "planned":
                faults[rec["id"]] = rec
            elif rec["id"] in faults:
                faults[rec["id"]]["state"] = rec["state"]
        return list(faults.values())

    def open_faults(self, region: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.entries()
                if e["state"] != "reverted" and (region is None or e["region"] == region)]
