"""The region actions, their rollback and the recovery state machine against the fake lab
driver and fake databases (tests/unit/fakes.py): no root, no lab. The real lab runs the
same paths in tests/integration."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from gameday.actions import region as region_actions
from gameday.drill import recovery
from gameday.foundation import descriptor
from gameday.foundation import drill_state as drill
from gameday.foundation.errors import TargetError
from gameday.foundation.ledger import Ledger
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
    done = recovery.recover(fakes.drill(lab_file), databases=fakes.FakeDatabases(
        {"region-1": "primary", "region-2": "standby"}))
    assert done == recovery.Recovery(done=["reverted blackhole on region-1"], left=[])
    assert Ledger(lab_file).open_faults() == []


# --- recovery's state machine -------------------------------------------------------------


def lab(lab_file: Path) -> descriptor.Lab:
    return descriptor.load(lab_file)


def test_nothing_to_do_when_one_region_is_writable(lab_file: Path) -> None:
    db = fakes.FakeDatabases({"region-1": "primary", "region-2": "standby"})
    assert recovery.restore_writable_primary(fakes.drill(lab_file), db=db)["changed"] is None
    assert db.calls == []


def test_a_requested_promotion_is_finished_not_undone(lab_file: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted right after pg_promote(): the old primary is fenced (read-only standby),
    the target still in recovery: promote it, never make the old one writable."""
    drill.write(lab_file, drill.DrillState.from_json({"promoted": "region-2", "old_primary": "region-1"}))
    monkeypatch.setattr(recovery, "SETTLE_S", 0.05)
    db = fakes.FakeDatabases({"region-1": "standby", "region-2": "standby"})
    out = recovery.restore_writable_primary(fakes.drill(lab_file), db=db)
    assert out["changed"] == ["promoted region-2 (its promotion was requested)"]
    assert db.snapshot() == {"region-1": "standby", "region-2": "primary"}


def test_a_promotion_recorded_but_never_requested_is_not_waited_on_for_the_whole_settle(
        lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between drill.json's record of the promotion and pg_promote(): nobody is
    promoting the standby, so recovery promotes it after REQUESTED_PROMOTION_S, not after
    SETTLE_S (15 s, which test_interruptions' SIGKILL half a second after the fault hit
    about every other run)."""
    drill.write(lab_file, drill.DrillState.from_json({"promoted": "region-2", "old_primary": "region-1"}))
    # raising=False: on code without the shorter wait, this test waits out SETTLE_S and fails
    monkeypatch.setattr(recovery, "REQUESTED_PROMOTION_S", 0.05, raising=False)
    db = fakes.FakeDatabases({"region-1": "standby", "region-2": "standby"})
    started = time.monotonic()
    out = recovery.restore_writable_primary(fakes.drill(lab_file), db=db)
    assert time.monotonic() - started < recovery.SETTLE_S / 3
    assert out["changed"] == ["promoted region-2 (its promotion was requested)"]
    assert db.snapshot() == {"region-1": "standby", "region-2": "primary"}


def test_a_requested_promotion_that_ends_while_recovery_finishes_it_is_done(
        lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow promotion outlasts the wait for it and ends as recovery asks again: `promote`
    finds a primary ("already a primary"), which is what recovery wanted, not an error."""

    class EndsFirst(fakes.FakeDatabases):
        def promote(self, lab: descriptor.Lab, target: descriptor.Region, timeout_s: float, *,
                    clock: Any, on_requested: Any = None) -> Any:
            self.roles[target.name] = "primary"  # the promotion requested before ended
            raise TargetError(f"the database of {target.name} is already a primary")

    drill.write(lab_file, drill.DrillState.from_json({"promoted": "region-2", "old_primary": "region-1"}))
    monkeypatch.setattr(recovery, "REQUESTED_PROMOTION_S", 0.05)
    db = EndsFirst({"region-1": "standby", "region-2": "standby"})
    out = recovery.restore_writable_primary(fakes.drill(lab_file), db=db)
    assert out["changed"] is None
    assert db.snapshot() == {"region-1": "standby", "region-2": "primary"}


def test_databases_that_are_down_are_started_as_they_were_left(lab_file: Path) -> None:
    world = fakes.world(lab_file)
    world.databases_down = {"region-1"}
    db = fakes.FakeDatabases({"region-1": None, "region-2": "read-only"}, driver_world=world)
    out = recovery.restore_writable_primary(fakes.drill(lab_file), db=db)
    # region-1 comes back a standby (fenced): the primary a switchover left read-only is
    # made writable again, exactly one of them
    assert out["changed"] == ["started the database of region-1", "made region-2 writable again"]
    assert db.snapshot() == {"region-1": "standby", "region-2": "primary"}


def test_an_interrupted_switchover_after_its_promotion_is_completed(lab_file: Path) -> None:
    world = fakes.world(lab_file)
    world.databases_down = {"region-2"}
    drill.write(lab_file, drill.DrillState.from_json({"switchover": {"to": "region-1", "from": "region-2",
                                          "stage": "promoted"}}))
    db = fakes.FakeDatabases({"region-1": "primary", "region-2": None})
    out = recovery.restore_writable_primary(fakes.drill(lab_file), db=db)
    assert out["changed"] == ["region-2 follows region-1 (switchover completed)"]
    assert ("start_standby", "region-2", "region-1") in world.calls
    assert db.calls == [("wait_replayed", "region-2", "region-1"),
                        ("restore_replication_mode", "region-1")]
    assert drill.read(lab_file) is None


def test_a_switchover_stopped_before_its_promotion_keeps_the_old_primary(lab_file: Path) -> None:
    drill.write(lab_file, drill.DrillState.from_json({"switchover": {"to": "region-1", "from": "region-2",
                                          "stage": "read-only"}}))
    db = fakes.FakeDatabases({"region-1": "standby", "region-2": "read-only"})
    out = recovery.restore_writable_primary(fakes.drill(lab_file), db=db)
    assert out["changed"] == ["made region-2 writable again"]
    assert db.snapshot() == {"region-1": "standby", "region-2": "primary"}


def test_recover_twice_changes_nothing_the_second_time(lab_file: Path) -> None:
    region_actions.take_region_down("region-1", "scale-to-zero", configuration=config(lab_file))
    db = fakes.FakeDatabases({"region-1": "standby", "region-2": "primary"})
    assert recovery.recover(fakes.drill(lab_file), databases=db).done == [
        "reverted scale-to-zero on region-1"]
    assert recovery.recover(fakes.drill(lab_file), databases=db) == recovery.Recovery(done=[], left=[])
    assert json.loads(json.dumps(Ledger(lab_file).entries()))[0]["state"] == "reverted"


# --- no fault outlives a run ---------------------------------------------------------------


def test_a_failed_revert_does_not_stop_the_rollback(lab_file: Path) -> None:
    """Every open fault is attempted, newest first; the one that failed stays in the
    ledger and the rollback fails naming it."""
    cfg = config(lab_file)
    region_actions.take_region_down("region-1", "block-egress,scale-to-zero", configuration=cfg)
    region_actions.take_region_down("region-2", "blackhole", configuration=cfg)
    world = fakes.world(lab_file)
    world.fail_revert = {"scale-to-zero"}
    world.calls.clear()
    with pytest.raises(ActivityFailed, match=r"could not revert scale-to-zero on region-1 "
                                             r"\(scale-to-zero on region-1 cannot be undone by "
                                             r"the fake lab\) \(reverted: block-egress on "
                                             r"region-1\): fix the cause, then run `gameday "
                                             r"recover`"):
        region_actions.restore_region("region-1", configuration=cfg)
    assert world.calls == [("revert", "scale-to-zero", "region-1"),
                           ("revert", "block-egress", "region-1")]
    assert [e["fault"] for e in Ledger(lab_file).open_faults()] == ["scale-to-zero", "blackhole"]
    # recovery attempts all of them too, and says what stays
    world.calls.clear()
    result = recovery.recover(fakes.drill(lab_file), databases=fakes.FakeDatabases(
        {"region-1": "primary", "region-2": "standby"}))
    assert world.calls == [("revert", "blackhole", "region-2"),
                           ("revert", "scale-to-zero", "region-1")]
    assert result.done == ["reverted blackhole on region-2"]
    assert result.left == ["fault left behind: scale-to-zero on region-1 (applied)"]


@pytest.mark.parametrize(("roles", "code", "says"), [
    ({"region-1": "primary", "region-2": "standby"}, 0, "recover: nothing to undo"),
    ({"region-1": "primary", "region-2": "primary"}, 1,
     "2 regions accept writes (region-1: writable, region-2: writable): gameday never demotes"),
    ({"region-1": "standby", "region-2": None}, 1,
     "no region accepts writes (region-1: read-only, region-2: unreachable)"),
])
def test_recover_exits_non_zero_until_exactly_one_region_is_writable(
        lab_file: Path, monkeypatch: pytest.MonkeyPatch, roles: dict, code: int,
        says: str) -> None:
    from click.testing import CliRunner

    from gameday import cli

    monkeypatch.setattr(recovery, "SETTLE_S", 0.05)
    monkeypatch.setattr(recovery, "_databases", lambda lab: fakes.FakeDatabases(roles))
    result = CliRunner().invoke(cli.main, ["recover", "--lab-file", str(lab_file)])
    assert result.exit_code == code, result.output
    assert says in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_recover_exits_non_zero_while_a_fault_stays(lab_file: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from gameday import cli

    region_actions.take_region_down("region-1", "block-egress,scale-to-zero",
                                    configuration=config(lab_file))
    fakes.world(lab_file).fail_revert = {"scale-to-zero"}
    monkeypatch.setattr(recovery, "_databases", lambda lab: fakes.FakeDatabases(
        {"region-1": "primary", "region-2": "standby"}))
    result = CliRunner().invoke(cli.main, ["recover", "--lab-file", str(lab_file)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["recover: reverted block-egress on region-1"]
    assert result.stderr.splitlines()[-1] == (
        "Error: recover: the lab is not recovered: fault left behind: scale-to-zero on "
        "region-1 (applied)")
    fakes.world(lab_file).fail_revert = set()
    again = CliRunner().invoke(cli.main, ["recover", "--lab-file", str(lab_file)])
    assert again.exit_code == 0 and again.stdout == "recover: reverted scale-to-zero on region-1\n"


# --- under an HA manager ------------------------------------------------------------------


def _ha_lab(tmp_path: Path) -> Path:
    path = fakes.write_lab(tmp_path)
    data = json.loads(path.read_text())
    data["ha"] = {"manager": "patroni", "scope": "s", "ttl_s": 1, "loop_wait_s": 1,
                  "retry_timeout_s": 1}
    path.write_text(json.dumps(data))
    return path


def test_under_ha_the_one_primary_gets_its_standby_back(tmp_path: Path) -> None:
    """Seen after a runner killed mid-outage and `gameday recover`: Patroni reported the
    replica following the leader while its PostgreSQL never streamed again. Recovery asks
    the lab to see the standby stream from the one primary, and says what it did."""
    lab_file = _ha_lab(tmp_path)
    world = fakes.world(lab_file)
    world.rejoined = "restarted region-2 through Patroni"
    db = fakes.FakeDatabases({"region-1": "primary", "region-2": "standby"})
    out = recovery.restore_writable_primary(fakes.drill(lab_file), db=db)
    assert ("rejoin_standby", "region-1") in world.calls
    assert out["changed"] == ["restarted region-2 through Patroni"]
    assert db.snapshot() == {"region-1": "primary", "region-2": "standby"}  # no promotion


def test_under_ha_a_standby_that_cannot_rejoin_does_not_stop_recovery(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from gameday.foundation.errors import LabError

    def fails(self: fakes.FakeDriver, primary: descriptor.Region) -> str | None:
        raise LabError("region-2 re-cloned by Patroni does not stream from region-1 within 60 s")

    monkeypatch.setattr(fakes.FakeDriver, "rejoin_standby", fails)
    lab_file = _ha_lab(tmp_path)
    db = fakes.FakeDatabases({"region-1": "primary", "region-2": "standby"})
    out = recovery.restore_writable_primary(fakes.drill(lab_file), db=db)
    assert out["changed"] is None
    assert "does not stream from region-1" in caplog.text
