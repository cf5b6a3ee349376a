"""The fault ledger survives the crash it exists for: a torn last line does not swallow the
next record, an unreadable line is reported rather than skipped, and a line of the wrong
shape is one line of report, not a crash. `gameday recover` does not call the lab
recovered while the ledger holds such a line."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from chaoslib.exceptions import ActivityFailed
from click.testing import CliRunner

from gameday import cli
from gameday.actions import region as region_actions
from gameday.drill import recovery
from gameday.foundation.ledger import FILE, Ledger
from tests.unit import fakes


@pytest.fixture
def lab_file(tmp_path: Path) -> Path:
    return fakes.write_lab(tmp_path)


def test_a_record_after_a_torn_line_starts_on_a_line_of_its_own(lab_file: Path) -> None:
    ledger = Ledger(lab_file)
    ledger.plan("region-1", "block-egress", {"applicable": True})
    with ledger.path.open("ab") as f:  # the write a power loss cut short
        f.write(b'{"id": "0123456789ab", "state": "pla')
    fault_id = ledger.plan("region-1", "scale-to-zero", {"applicable": True})
    ledger.mark(fault_id, "applied")
    faults, problems = ledger.read()
    assert [(f["fault"], f["state"]) for f in faults] == [("block-egress", "planned"),
                                                          ("scale-to-zero", "applied")]
    assert len(problems) == 1 and "line 2: not JSON" in problems[0], problems
    assert len(ledger.path.read_text().splitlines()) == 4


def test_a_fault_applied_after_a_torn_line_is_reverted(lab_file: Path) -> None:
    Ledger(lab_file).path.write_bytes(b'{"id": "0123456789ab", "sta')
    with pytest.raises(ActivityFailed, match="the fault ledger has a record it cannot read"):
        # the ledger holds a record it cannot read: no new fault until that is settled
        region_actions.take_region_down("region-1", "block-egress",
                                        configuration={"lab_file": str(lab_file)})
    assert fakes.world(lab_file).calls == []
    # a fault recorded after the torn line (as a runner would have) is seen and undone
    ledger = Ledger(lab_file)
    fault_id = ledger.plan("region-1", "block-egress", {"applicable": True})
    ledger.mark(fault_id, "applied")
    assert [e["fault"] for e in ledger.open_faults()] == ["block-egress"]
    result = recovery.recover(fakes.drill(lab_file), databases=fakes.FakeDatabases(
        {"region-1": "primary", "region-2": "standby"}))
    assert result.done == ["reverted block-egress on region-1"]
    assert fakes.world(lab_file).calls == [("revert", "block-egress", "region-1")]
    # ... and the unreadable line keeps the lab from being called recovered
    assert len(result.left) == 1 and "line 1: not JSON" in result.left[0], result.left


@pytest.mark.parametrize(("line", "why"), [
    ('["a", "list"]', "not a ledger record (not an object)"),
    ('{"id": "x1", "state": "exploded"}', "needs 'id' and 'state', one of planned, applied"),
    ('{"state": "applied"}', "needs 'id' and 'state'"),
    ('{"id": "x1", "state": "planned", "region": "region-1"}',
     "a planned fault needs 'region', 'fault' and its 'undo' record"),
    ('{"id": "x1", "state": "applied"}', "fault x1 was applied, but its planned record"),
])
def test_a_line_of_the_wrong_shape_is_one_line_not_a_crash(lab_file: Path, line: str,
                                                           why: str) -> None:
    ledger = Ledger(lab_file)
    ledger.path.write_text(line + "\n")
    assert ledger.entries() == [] and ledger.open_faults() == []
    (problem,) = ledger.problems()
    assert why in problem and "\n" not in problem and str(ledger.path) in problem


def test_recover_refuses_nothing_to_undo_while_a_line_is_unreadable(
        lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = fakes.FakeDatabases({"region-1": "primary", "region-2": "standby"})
    monkeypatch.setattr(recovery, "_databases", lambda: db)
    runner = CliRunner()
    ok = runner.invoke(cli.main, ["recover", "--lab-file", str(lab_file)])
    assert ok.exit_code == 0 and ok.output == "recover: nothing to undo\n", ok.output
    Ledger(lab_file).path.write_text('{"id": "x1", "state": "applied"}\n')
    refused = runner.invoke(cli.main, ["recover", "--lab-file", str(lab_file)])
    assert refused.exit_code == 1, refused.output
    assert "nothing to undo" not in refused.output
    assert "the lab is not recovered: fault left behind:" in refused.output
    assert "line 1: fault x1 was applied" in refused.output
    assert len(refused.output.strip().splitlines()) == 1


def test_records_stay_one_per_line(lab_file: Path) -> None:
    ledger = Ledger(lab_file)
    ids = [ledger.plan("region-1", f, {"applicable": True}) for f in ("a", "b")]
    for fault_id in ids:
        ledger.mark(fault_id, "reverted")
    lines = ledger.path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["id"] in ids for line in lines)
    assert ledger.problems() == [] and ledger.unsettled() == []


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
    assert len(ledger.problems()) == 1 and "not JSON" in ledger.problems()[0]


def test_a_mark_for_a_fault_never_planned_is_no_entry_but_a_problem(tmp_path: Path) -> None:
    """An applied fault whose planned record is gone has no undo: it is not an entry to
    revert, and it is reported so that nobody calls the lab clean."""
    ledger = Ledger(tmp_path / "lab.json")
    ledger.mark("0123456789ab", "applied")
    assert ledger.entries() == []
    assert "0123456789ab" in ledger.problems()[0]


def test_an_unreadable_line_is_quoted_up_to_60_characters(tmp_path: Path) -> None:
    """The report quotes what it could not read, shortened, and never fails on bytes that
    are not UTF-8 (a line torn inside a character)."""
    ledger = Ledger(tmp_path / "lab.json")
    exact, longer = "x" * 60, "y" * 61
    ledger.path.write_bytes(f"{exact}\n{longer}\n".encode() + b"z\xe2\x82\n")
    first, second, third = ledger.problems()
    assert first.endswith(f": {exact!r}")
    assert second.endswith(f": {'y' * 60 + '…'!r}")
    assert third.endswith(": " + repr("z\ufffd")), third


def test_a_planned_record_needs_each_of_region_fault_and_undo(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "lab.json")
    complete = {"id": "a1", "state": "planned", "region": "region-1", "fault": "cordon",
                "undo": {}}
    for missing in ("region", "fault", "undo"):
        ledger.path.write_text(json.dumps({k: v for k, v in complete.items() if k != missing})
                               + "\n")
        (problem,) = ledger.problems()
        assert ": a planned fault needs 'region', 'fault' and its 'undo' record: '{" in problem, \
            missing
    ledger.path.write_text("7\n")
    (problem,) = ledger.problems()
    assert problem == f"{ledger.path} line 1: not a ledger record (not an object): '7'"


def test_a_blank_line_in_the_middle_hides_nothing_after_it(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "lab.json")
    first = ledger.plan("region-1", "cordon", {})
    with ledger.path.open("a") as f:
        f.write("\n\n")
    second = ledger.plan("region-1", "block-egress", {})
    assert [e["id"] for e in ledger.entries()] == [first, second]
    assert ledger.problems() == []


def test_a_revert_recorded_for_a_fault_never_planned_is_no_problem(tmp_path: Path) -> None:
    """Reverted is the state that needs no undo: nothing is left to do, nothing to report."""
    ledger = Ledger(tmp_path / "lab.json")
    ledger.mark("0123456789ab", "reverted")
    assert ledger.entries() == [] and ledger.problems() == [] and ledger.unsettled() == []


def test_unsettled_names_only_the_regions_own_open_faults(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "lab.json")
    ledger.mark(ledger.plan("region-1", "cordon", {}), "applied")
    ledger.mark(ledger.plan("region-2", "block-egress", {}), "applied")
    assert ledger.unsettled("region-1") == ["cordon on region-1 (applied)"]
    assert ledger.unsettled("region-2") == ["block-egress on region-2 (applied)"]
    assert ledger.unsettled() == ["cordon on region-1 (applied)",
                                  "block-egress on region-2 (applied)"]
