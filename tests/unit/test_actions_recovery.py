"""The region actions, their rollback and the recovery state machine against the fake lab
driver and fake databases (tests/unit/fakes.py): no root, no lab. The real lab runs the
same paths in tests/integration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chaoslib.exceptions import ActivityFailed

from gameday import recovery
from gameday.actions import region as region_actions
from gameday.labs import descriptor, drill
from gameday.labs.ledger import Ledger
from tests.unit import fakes


@pytest.fixture
def lab_file(tmp_path: Path) -> Path:
    return fakes.write_lab(tmp_path)


def config(lab_file: Path) -> dict[str, object]:
    return {"lab_file": str(lab_file)}


def test_take_region_down_ledgers_each_fault_before_it_applies(lab_file: Path) -> None:
    out = region_actions.take_region_down("region-1", "scale-to-zero,cordon,block-egress",
                                          configuration=config(lab_file))
    assert [(f["fault"], f["applicable"]) for f in out["faults"]] == [
        ("scale-to-zero", True), ("cordon", False), ("block-egress", True)]
    assert all("effective" in f for f in out["faults"] if f["applicable"])
    entries = Ledger(lab_file).entries()
    assert [(e["fault"], e["state"]) for e in entries] == [
        ("scale-to-zero", "applied"), ("block-egress", "applied")]
    assert fakes.world(lab_file).active == {("region-1", "scale-to-zero"),
                                            ("region-1", "block-egress")}


def test_a_second_outage_on_the_same_region_is_refused_until_recovered(lab_file: Path) -> None:
    region_actions.take_region_down("region-1", "block-egress", configuration=config(lab_file))
    with pytest.raises(ActivityFailed, match="gameday recover"):
        region_actions.take_region_down("region-1", "block-egress",
                                        configuration=config(lab_file))


def test_unknown_fault_is_one_line_and_injects_nothing(lab_file: Path) -> None:
    with pytest.raises(ActivityFailed, match="unknown fault meteor: choose from"):
        region_actions.take_region_down("region-1", "meteor", configuration=config(lab_file))
    assert fakes.world(lab_file).calls == []
    assert Ledger(lab_file).entries() == []


def test_a_fault_never_seen_in_effect_fails_within_its_timeout(lab_file: Path) -> None:
    fakes.world(lab_file).never_effective = True
    with pytest.raises(ActivityFailed, match="block-egress on region-1 was not seen in effect "
                                             "within 0.2 s"):
        region_actions.take_region_down("region-1", "block-egress", effective_timeout_s=0.2,
                                        configuration=config(lab_file))
    # it was applied, so it is in the ledger for the rollback to undo
    assert [e["state"] for e in Ledger(lab_file).entries()] == ["applied"]


def test_a_fault_that_takes_a_while_is_waited_for(lab_file: Path) -> None:
    """The lab says "not yet" five times: the action asks again (every 5 ms) until it says
    yes, and the fault's effective time is when it did, not when it was applied."""
    world = fakes.world(lab_file)
    world.effective_after = 5
    out = region_actions.take_region_down("region-1", "block-egress",
                                          configuration=config(lab_file))
    assert world.effective_after == 0  # all five "not yet" answers were heard
    fault = out["faults"][0]
    assert fault["effective"] - fault["applied"] >= 5 * 0.005


def test_restore_region_reverts_newest_first_and_twice_is_harmless(lab_file: Path) -> None:
    region_actions.take_region_down("region-1", "scale-to-zero,block-egress",
                                    configuration=config(lab_file))
    out = region_actions.restore_region("region-1", configuration=config(lab_file))
    assert out["reverted"] == ["block-egress on region-1", "scale-to-zero on region-1"]
    assert fakes.world(lab_file).active == set()
    assert region_actions.restore_region("region-1", configuration=config(lab_file))[
        "reverted"] == []


def test_a_fault_whose_inject_crashed_is_still_reverted(lab_file: Path) -> None:
    """planned (undo on disk) but the runner died in inject: recovery undoes it."""
    fakes.world(lab_file).fail_inject = "blackhole"
    with pytest.raises(ActivityFailed, match="blackhole refused"):
        region_actions.take_region_down("region-1", "blackhole", configuration=config(lab_file))
    assert [e["state"] for e in Ledger(lab_file).open_faults()] == ["planned"]
    done = recovery.recover(str(lab_file), databases=fakes.FakeDatabases(
        {"region-1": "primary", "region-2": "standby"}))
    assert done == ["reverted blackhole on region-1"]
    assert Ledger(lab_file).open_faults() == []


# --- recovery's state machine -------------------------------------------------------------


def lab(lab_file: Path) -> descriptor.Lab:
    return descriptor.load(lab_file)


def test_nothing_to_do_when_one_region_is_writable(lab_file: Path) -> None:
    db = fakes.FakeDatabases({"region-1": "primary", "region-2": "standby"})
    assert recovery.restore_writable_primary(lab(lab_file), db=db)["changed"] is None
    assert db.calls == []


def test_a_requested_promotion_is_finished_not_undone(lab_file: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted right after pg_promote(): the old primary is fenced (read-only standby),
    the target still in recovery: promote it, never make the old one writable."""
    drill.write(lab_file, {"promoted": "region-2", "old_primary": "region-1"})
    monkeypatch.setattr(recovery, "SETTLE_S", 0.05)
    db = fakes.FakeDatabases({"region-1": "standby", "region-2": "standby"})
    out = recovery.restore_writable_primary(lab(lab_file), db=db)
    assert out["changed"] == ["promoted region-2 (its promotion was requested)"]
    assert db.snapshot() == {"region-1": "standby", "region-2": "primary"}


def test_databases_that_are_down_are_started_as_they_were_left(lab_file: Path) -> None:
    world = fakes.world(lab_file)
    world.databases_down = {"region-1"}
    db = fakes.FakeDatabases({"region-1": None, "region-2": "read-only"}, driver_world=world)
    out = recovery.restore_writable_primary(lab(lab_file), db=db)
    # region-1 comes back a standby (fenced): the primary a switchover left read-only is
    # made writable again, exactly one of them
    assert out["changed"] == ["started the database of region-1", "made region-2 writable again"]
    assert db.snapshot() == {"region-1": "standby", "region-2": "primary"}


def test_an_interrupted_switchover_after_its_promotion_is_completed(lab_file: Path) -> None:
    world = fakes.world(lab_file)
    world.databases_down = {"region-2"}
    drill.write(lab_file, {"switchover": {"to": "region-1", "from": "region-2",
                                          "stage": "promoted"}})
    db = fakes.FakeDatabases({"region-1": "primary", "region-2": None})
    out = recovery.restore_writable_primary(lab(lab_file), db=db)
    assert out["changed"] == ["region-2 follows region-1 (switchover completed)"]
    assert ("start_standby", "region-2", "region-1") in world.calls
    assert db.calls == [("wait_replayed", "region-2", "region-1"),
                        ("restore_replication_mode", "region-1")]
    assert drill.read(lab_file) is None


def test_a_switchover_stopped_before_its_promotion_keeps_the_old_primary(lab_file: Path) -> None:
    drill.write(lab_file, {"switchover": {"to": "region-1", "from": "region-2",
                                          "stage": "read-only"}})
    db = fakes.FakeDatabases({"region-1": "standby", "region-2": "read-only"})
    out = recovery.restore_writable_primary(lab(lab_file), db=db)
    assert out["changed"] == ["made region-2 writable again"]
    assert db.snapshot() == {"region-1": "standby", "region-2": "primary"}


def test_recover_twice_changes_nothing_the_second_time(lab_file: Path) -> None:
    region_actions.take_region_down("region-1", "scale-to-zero", configuration=config(lab_file))
    db = fakes.FakeDatabases({"region-1": "standby", "region-2": "primary"})
    assert recovery.recover(str(lab_file), databases=db) == ["reverted scale-to-zero on region-1"]
    assert recovery.recover(str(lab_file), databases=db) == []
    assert json.loads(json.dumps(Ledger(lab_file).entries()))[0]["state"] == "reverted"
