"""The fault ledger through its public API: what it writes, and what it reads back after a
crash (a torn line, marks appended by a later recovery)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from gameday.labs.ledger import FILE, Ledger


def test_the_ledger_lies_next_to_the_lab_descriptor(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "lab.json")
    assert ledger.entries() == [] and ledger.open_faults() == []
    ledger.plan("region-1", "blackhole", {"n": 1})
    assert (tmp_path / FILE).is_file()


def test_each_record_is_one_sorted_json_line_with_its_utc_time(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "lab.json")
    ids = [ledger.plan("region-1", "blackhole", {"z": 1, "a": 2}) for _ in range(3)]
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids) and len(set(ids)) == 3
    ledger.mark(ids[0], "applied")
    lines = (tmp_path / FILE).read_text().splitlines()
    assert len(lines) == 4
    for text in lines:
        record = json.loads(text)
        assert text == json.dumps(record, sort_keys=True)
        at = datetime.fromisoformat(record["at"])
        assert at.utcoffset() is not None and at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert abs((datetime.now(UTC) - at).total_seconds()) < 60
    entry = ledger.entries()[0]
    assert (entry["id"], entry["state"], entry["region"], entry["fault"], entry["undo"]) == (
        ids[0], "applied", "region-1", "blackhole", {"z": 1, "a": 2})


def test_marks_after_a_torn_line_are_still_read(tmp_path: Path) -> None:
    """A runner killed mid-write leaves a torn line; the recovery that follows appends its
    marks after it, and they count."""
    ledger = Ledger(tmp_path / "lab.json")
    first = ledger.plan("region-1", "blackhole", {})
    ledger.mark(first, "applied")
    with open(tmp_path / FILE, "a") as f:
        f.write('{"id": "torn", "sta')
        f.write("\n")
    ledger.mark(first, "reverted")
    second = ledger.plan("region-1", "block-egress", {})
    assert [(e["id"], e["state"]) for e in ledger.entries()] == [
        (first, "reverted"), (second, "planned")]
    assert [e["id"] for e in ledger.open_faults("region-1")] == [second]


def test_a_mark_for_a_fault_never_planned_is_ignored(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "lab.json")
    ledger.mark("0123456789ab", "applied")
    assert ledger.entries() == []
