"""The database actions (promote, split-brain count, resync, switchover, the replication
cut) against the fake lab driver and fake databases (tests/unit/fakes.py): the order of
their steps, the record each leaves on disk before it acts, the events of the run, and
every refusal, with no root and no PostgreSQL. The real lab runs the same paths in
tests/integration (test_game_day, test_known_answers, test_autonomous)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from gameday.actions import database
from gameday.drill import context as drills
from gameday.drill import recovery
from gameday.foundation import drill_state
from gameday.foundation.drill_state import DrillState
from gameday.foundation.events import Kind
from gameday.foundation.faults import Fault
from gameday.foundation.ledger import Ledger
from gameday.measure import run as runs
from gameday.measure.store import timeline
from tests.unit import fakes


@pytest.fixture
def lab_file(tmp_path: Path) -> Path:
    return fakes.write_lab(tmp_path)


def recording(tmp_path: Path, lab_file: Path, **configuration: Any) -> runs.Run:
    """The control's context of a run that records events (no recorder: no samples)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    timeline.create(run_dir, {"run_id": "r", "anchor_ns": 1})
    run = runs.Run(run_dir, timeline.Clock(1))
    drills.publish(fakes.drill(lab_file, run=run, configuration=configuration))
    return run


def config(lab_file: Path, **more: Any) -> dict[str, Any]:
    return {"lab_file": str(lab_file), **more}


# --- promote ----------------------------------------------------------------------------


def test_promote_records_the_promotion_before_it_asks_and_its_events(
        tmp_path: Path, lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dbs = fakes.FakeDatabases({"region-1": None, "region-2": "standby"}).install(monkeypatch)
    written: list[DrillState] = []
    real_write = drill_state.write

    def write(path: Any, state: DrillState) -> None:
        written.append(state)
        if len(written) == 1:  # the first record is on disk before the promotion is asked
            assert dbs.calls == []
        real_write(path, state)

    monkeypatch.setattr(drill_state, "write", write)
    run = recording(tmp_path, lab_file)
    out = database.promote("region-2", timeout_s=5, configuration=config(lab_file))
    assert (out["strategy"], out["region"], out["timeline"]) == ("runner", "region-2", 2)
    assert dbs.calls == [("promote", "region-2")]
    assert [(s.promoted, s.old_primary, s.strategy, s.timeline) for s in written] == [
        ("region-2", "region-1", "runner", None), ("region-2", "region-1", "runner", 2)]
    assert written[0].game_day_run == str(run.dir)
    assert drill_state.read(lab_file) == written[-1]
    assert [e.kind for e in run.events(Kind.PROMOTE_REQUESTED)] == ["promote-requested"]
    (promoted,) = run.events(Kind.PROMOTED)
    assert (promoted.region, promoted.t) == ("region-2", 0.03)


def test_promote_refuses_a_second_writable_primary_and_changes_nothing(
        lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dbs = fakes.FakeDatabases({"region-1": "primary", "region-2": "standby"}).install(monkeypatch)
    with pytest.raises(ActivityFailed, match="region-1 still accepts writes: promoting region-2 "
                                             "now would make two writable primaries"):
        database.promote("region-2", configuration=config(lab_file))
    assert dbs.calls == [] and drill_state.read(lab_file) is None


def test_promote_by_the_system_waits_until_it_answers_writable(
        lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`none`: gameday promotes nothing and waits for the first writable answer; the old
    primary's answer is not asked (the outage may leave it answering)."""
    dbs = fakes.FakeDatabases({"region-1": "primary", "region-2": "standby"}).install(monkeypatch)
    asked = []

    def is_writable(lab: Any, region: Any) -> bool:
        asked.append(region.name)
        if len(asked) == 3:
            dbs.roles["region-2"] = "primary"
        return dbs.roles[region.name] == "primary"

    monkeypatch.setattr(database.postgres, "is_writable", is_writable)
    while_waiting: list[DrillState | None] = []
    real_write = drill_state.write

    def write(path: Any, state: DrillState) -> None:
        real_write(path, state)
        if not while_waiting:
            while_waiting.append(drill_state.read(lab_file))

    monkeypatch.setattr(drill_state, "write", write)
    out = database.promote("region-2", timeout_s=5,
                           configuration=config(lab_file, promotion="none"))
    assert out["strategy"] == "none" and out["command"] is None
    assert set(asked) == {"region-2"} and len(asked) == 3
    # no manager would promote it: awaited, and promoted only once it answered writable
    (waiting,) = while_waiting
    assert (waiting.awaiting, waiting.promoted) == ("region-2", None)
    done = drill_state.read(lab_file)
    assert (done.strategy, done.promoted, done.awaiting) == ("none", "region-2", None)
    assert ("promote", "region-2") not in dbs.calls


def test_promote_by_the_system_that_never_promotes_fails_within_its_bound(
        lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes.FakeDatabases({"region-1": None, "region-2": "standby"}).install(monkeypatch)
    with pytest.raises(ActivityFailed, match="region-2 did not become a writable primary "
                                             "within 0.2 s \\(promotion none\\)"):
        database.promote("region-2", timeout_s=0.2,
                         configuration=config(lab_file, promotion="none",
                                              promotion_timeout_s=0.1))
    # nobody was asked to promote and nothing did: the record says only what was awaited,
    # so the rollback brings region-1 back instead of finishing a promotion (main 8c0e62a)
    state = drill_state.read(lab_file)
    assert (state.promoted, state.awaiting) == (None, "region-2")
    assert state.promoted_other_than("region-1") is None


def test_the_end_of_a_run_forgets_a_promotion_only_awaited(lab_file: Path) -> None:
    from gameday import control
    from gameday.foundation import descriptor

    lab = descriptor.load(lab_file)
    drill_state.write(lab_file, DrillState(awaiting="region-2", old_primary="region-1"))
    control._forget_a_promotion_never_seen(lab)
    assert drill_state.read(lab_file) is None
    seen = DrillState(promoted="region-2", old_primary="region-1", strategy="none")
    drill_state.write(lab_file, seen)
    control._forget_a_promotion_never_seen(lab)
    assert drill_state.read(lab_file) == seen


def test_promote_by_command_runs_it_and_keeps_its_output(
        tmp_path: Path, lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dbs = fakes.FakeDatabases({"region-1": None, "region-2": "primary"}).install(monkeypatch)
    command = [sys.executable, "-c", "print('starting'); print('promoted region-2')"]
    run = recording(tmp_path, lab_file, promotion="command", promotion_command=command)
    out = database.promote("region-2", timeout_s=5, configuration=config(lab_file))
    assert out["command"]["returncode"] == 0
    assert out["command"]["last_line"] == "promoted region-2"
    (ran,) = run.events(Kind.PROMOTION_COMMAND)
    assert '"returncode": 0' in ran.detail and "promoted region-2" in ran.detail
    assert dbs.calls == []


def test_a_failing_promotion_command_fails_the_step_with_its_output_recorded(
        tmp_path: Path, lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes.FakeDatabases({"region-1": None, "region-2": "standby"}).install(monkeypatch)
    command = [sys.executable, "-c", "import sys; print('no quorum'); sys.exit(3)"]
    run = recording(tmp_path, lab_file, promotion="command", promotion_command=command)
    with pytest.raises(ActivityFailed, match="exited 3"):
        database.promote("region-2", timeout_s=5, configuration=config(lab_file))
    (ran,) = run.events(Kind.PROMOTION_COMMAND)
    assert '"returncode": 3' in ran.detail and "no quorum" in ran.detail


# --- split brain ------------------------------------------------------------------------


def test_split_brain_writes_are_those_only_the_old_primary_has_after_the_promotion(
        lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    dbs = fakes.FakeDatabases({"region-1": "standby", "region-2": "primary"}).install(monkeypatch)
    dbs.rows = {
        "region-1": [(1, at - timedelta(seconds=2)), (2, at - timedelta(seconds=1)),
                     (3, at + timedelta(seconds=1)), (4, at + timedelta(seconds=3))],
        "region-2": [(1, at - timedelta(seconds=2)), (5, at + timedelta(seconds=2))],
    }
    drill_state.write(lab_file, DrillState(promoted="region-2", old_primary="region-1",
                                           promoted_at_utc=at.isoformat()))
    out = database.count_split_brain("region-1", "region-2", configuration=config(lab_file))
    assert (out["split_brain_writes"], out["unreplicated_writes"]) == (2, 1)
    assert out["window_utc"] == [(at + timedelta(seconds=1)).isoformat(),
                                 (at + timedelta(seconds=3)).isoformat()]


def test_split_brain_count_needs_a_game_day_that_promoted(lab_file: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fakes.FakeDatabases({"region-1": "standby", "region-2": "primary"}).install(monkeypatch)
    with pytest.raises(ActivityFailed, match="no game day promoted region-2: run "
                                             "experiments/game-day.json first"):
        database.count_split_brain(configuration=config(lab_file))


# --- resync -----------------------------------------------------------------------------


def test_resync_checkpoints_the_source_then_stops_rewinds_and_starts_the_standby(
        tmp_path: Path, lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dbs = fakes.FakeDatabases({"region-1": "standby", "region-2": "primary"}).install(monkeypatch)
    run = recording(tmp_path, lab_file)
    out = database.resync("region-1", "region-2", configuration=config(lab_file))
    assert dbs.calls == [("checkpoint", "region-2"), ("wait_replayed", "region-1", "region-2")]
    assert fakes.world(lab_file).calls == [("stop_database", "region-1"),
                                           ("resync_database", "region-1", "region-2"),
                                           ("start_standby", "region-1", "region-2")]
    assert (out["standby"], out["source"], out["method"]) == ("region-1", "region-2", "rewind")
    assert [e.region for e in run.events(Kind.RESYNCED)] == ["region-1"]


def test_resync_refuses_a_source_that_is_not_the_primary(lab_file: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fakes.FakeDatabases({"region-1": "read-only", "region-2": "standby"}).install(monkeypatch)
    with pytest.raises(ActivityFailed, match="region-2 is not the writable primary: nothing to "
                                             "resync from"):
        database.resync("region-1", "region-2", configuration=config(lab_file))
    assert fakes.world(lab_file).calls == []


# --- switchover -------------------------------------------------------------------------


def test_switchover_writes_each_stage_before_it_and_ends_with_no_record(
        tmp_path: Path, lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dbs = fakes.FakeDatabases({"region-1": "standby", "region-2": "primary"}).install(monkeypatch)
    stages: list[tuple[str, list[tuple[str, ...]]]] = []
    real_write = drill_state.write

    def write(path: Any, state: DrillState) -> None:
        assert state.switchover is not None
        # what had happened when the stage reached the disk
        stages.append((state.switchover.stage, list(dbs.calls) + fakes.world(lab_file).calls))
        real_write(path, state)

    monkeypatch.setattr(drill_state, "write", write)
    run = recording(tmp_path, lab_file)
    out = database.switchover("region-1", configuration=config(lab_file))
    assert [s for s, _ in stages] == ["read-only", "stopping", "promoting", "promoted"]
    assert stages[0][1] == []  # read-only is on disk before the primary is made read-only
    assert ("stop_database", "region-2") not in stages[1][1]
    assert ("promote", "region-1") not in stages[2][1]
    assert ("promote", "region-1") in stages[3][1]
    assert dbs.calls == [("make_read_only", "region-2"), ("wait_replayed", "region-1", "region-2"),
                         ("promote", "region-1"), ("wait_replayed", "region-2", "region-1"),
                         ("restore_replication_mode", "region-1")]
    assert fakes.world(lab_file).calls == [("stop_database", "region-2"),
                                           ("start_standby", "region-2", "region-1")]
    assert drill_state.read(lab_file) is None
    assert (out["to"], out["from_region"]) == ("region-1", "region-2")
    (start,) = run.events(Kind.FAULT_APPLIED)
    assert start.t == out["t_start"] and '"fault": "switchover"' in start.detail
    assert [e.region for e in run.events(Kind.SWITCHED_OVER)] == ["region-1"]


@pytest.mark.parametrize(("roles", "message"), [
    ({"region-1": "standby", "region-2": "read-only"},
     "region-2 is not the writable primary: no switchover to do"),
    ({"region-1": "primary", "region-2": "primary"}, "region-1 is not a standby: resync it first"),
])
def test_switchover_refuses_unless_it_has_a_primary_and_a_standby(
        lab_file: Path, monkeypatch: pytest.MonkeyPatch, roles: dict[str, Any],
        message: str) -> None:
    dbs = fakes.FakeDatabases(roles).install(monkeypatch)
    with pytest.raises(ActivityFailed, match=message):
        database.switchover("region-1", configuration=config(lab_file))
    assert dbs.calls == [] and drill_state.read(lab_file) is None


def test_a_switchover_by_the_system_waits_until_the_old_primary_follows(
        tmp_path: Path, lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dbs = fakes.FakeDatabases({"region-1": "standby", "region-2": "primary"}).install(monkeypatch)
    command = [sys.executable, "-c", "print('switched')"]

    def ran_and_switched(*args: Any, **kwargs: Any) -> Any:
        out = real_run(*args, **kwargs)
        dbs.roles.update({"region-1": "primary", "region-2": "standby"})
        dbs.streams.add(("region-2", "region-1"))
        return out

    real_run = database._runbook.run
    monkeypatch.setattr(database._runbook, "run", ran_and_switched)
    run = recording(tmp_path, lab_file, promotion="command", promotion_command=command)
    drill_state.write(lab_file, DrillState(promoted="region-2", old_primary="region-1"))
    out = database.switchover("region-1", timeout_s=5, configuration=config(lab_file))
    assert (out["strategy"], out["command"]["last_line"]) == ("command", "switched")
    assert dbs.calls == [] and fakes.world(lab_file).calls == []  # nothing by gameday's hand
    assert drill_state.read(lab_file) is None
    assert '"strategy": "command"' in run.events(Kind.SWITCHED_OVER)[0].detail


def test_a_switchover_whose_old_primary_never_follows_fails_naming_it(
        lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dbs = fakes.FakeDatabases({"region-1": "standby", "region-2": "primary"}).install(monkeypatch)
    calls = []

    def is_writable(lab: Any, region: Any) -> bool:
        calls.append(region.name)
        if len(calls) > 2:  # both checks up front saw the old roles; then region-1 promoted
            dbs.roles.update({"region-1": "primary", "region-2": "standby"})
        return dbs.roles[region.name] == "primary"

    monkeypatch.setattr(database.postgres, "is_writable", is_writable)
    with pytest.raises(ActivityFailed, match="region-2 does not stream from region-1 0.2 s "
                                             "after the switchover"):
        database.switchover("region-1", timeout_s=0.2,
                            configuration=config(lab_file, promotion="none",
                                                 promotion_timeout_s=0.1))


# --- the replication cut, and the rollback ------------------------------------------------


def test_cut_replication_is_ledgered_applied_and_seen_before_the_hold(
        tmp_path: Path, lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = recording(tmp_path, lab_file)
    out = database.cut_replication("region-2", hold_s=0.05, configuration=config(lab_file))
    assert [(e["region"], e["fault"], e["state"]) for e in Ledger(lab_file).entries()] == [
        ("region-2", Fault.REPLICATION_CUT, "applied")]
    assert fakes.world(lab_file).active == {("region-2", Fault.REPLICATION_CUT)}
    (cut,) = run.events(Kind.REPLICATION_CUT)
    assert (cut.region, out["cut_at"], out["hold_s"]) == ("region-2", cut.t, 0.05)


def test_ensure_writable_primary_is_the_recovery_of_a_switchover(
        lab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted switchover stopped before its promotion: the old primary is made
    writable again, the record cleared."""
    dbs = fakes.FakeDatabases({"region-1": "standby", "region-2": "read-only"},
                              driver_world=fakes.world(lab_file))
    monkeypatch.setattr(recovery, "_databases", lambda: dbs)
    monkeypatch.setattr(recovery, "SETTLE_S", 0.05)
    drill_state.write(lab_file, DrillState(promoted="region-2", old_primary="region-1"))
    database.ensure_writable_primary(configuration=config(lab_file))
    assert dbs.roles["region-2"] == "primary"
    assert ("make_writable_again", "region-2") in dbs.calls
