"""summary.json beyond the golden run: the verdict of a failback, of a game day whose
failback failed, of a run with no fault or killed before its end, and the defaults a run
recorded before a field existed gets. Each on the fixed stored run, edited to the case."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gameday.measure import summary as summaries
from tests.fixtures.report import fixture_run


def _edit(run_dir: Path, *, meta: dict[str, Any] | None = None, drop_meta: tuple[str, ...] = (),
          events: list[tuple[float, str, str | None, dict[str, Any]]] = (),  # type: ignore[assignment]
          drop_events: tuple[str, ...] = ()) -> Path:
    conn = sqlite3.connect(run_dir / "timeline.sqlite")
    with conn:
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                         [(k, json.dumps(v)) for k, v in (meta or {}).items()])
        conn.executemany("DELETE FROM meta WHERE key = ?", [(k,) for k in drop_meta])
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                         [(t, k, r, json.dumps(d)) for t, k, r, d in events])
        conn.executemany("DELETE FROM events WHERE kind = ?", [(k,) for k in drop_events])
    conn.close()
    return run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return fixture_run.build(tmp_path / "run")


SPLIT = {"split_brain_writes": 3, "unreplicated_writes": 1,
         "window_utc": ["2026-01-01T00:00:01+00:00", "2026-01-01T00:00:02+00:00"]}


def test_a_failback_carries_its_block_and_its_split_brain_judged(run_dir: Path) -> None:
    _edit(run_dir, meta={"drill": "failback"}, events=[
        (3.0, "split-brain-counted", "region-1", {"split_brain_writes": 9}),
        (3.1, "split-brain-counted", "region-1", SPLIT),  # the last count is the one
        (3.5, "resynced", "region-1", {"method": "rewind", "resync_s": 2.0,
                                       "catch_up_s": 0.5})])
    s = summaries.build(run_dir)
    assert s["drill"] == "failback" and s["verdict"] == "fail"
    assert s["reasons"] == [
        "3 split-brain writes acknowledged by the old primary after the promotion are lost"]
    assert s["failback"] == summaries.failback_block(s, SPLIT, {
        "method": "rewind", "resync_s": 2.0, "catch_up_s": 0.5})
    fb = s["failback"]
    assert fb is not None
    assert (fb["split_brain_writes"], fb["unreplicated_writes"], fb["resync_method"],
            fb["resync_s"], fb["catch_up_s"], fb["verdict"]) == (3, 1, "rewind", 2.0, 0.5, "fail")
    assert fb["split_brain_window_utc"] == SPLIT["window_utc"]
    assert (fb["rto_s"], fb["lost"], fb["run_id"]) == (1.5, 0, s["run_id"])


@pytest.mark.parametrize(("allowed", "verdict"), [(3, "pass"), (2, "fail")])
def test_split_brain_writes_up_to_the_allowed_loss_pass(run_dir: Path, allowed: int,
                                                        verdict: str) -> None:
    _edit(run_dir, meta={"drill": "failback", "targets": {
        "rto_s": 30.0, "rpo_s": 0.0, "max_lost_writes": allowed}},
        events=[(3.1, "split-brain-counted", "region-1", SPLIT)])
    assert summaries.build(run_dir)["verdict"] == verdict


def test_a_failback_without_split_brain_passes(run_dir: Path) -> None:
    _edit(run_dir, meta={"drill": "failback"},
          events=[(3.1, "split-brain-counted", "region-1", {"split_brain_writes": 0})])
    s = summaries.build(run_dir)
    assert (s["verdict"], s["failback"]["split_brain_writes"]) == ("pass", 0)  # type: ignore[index]


def test_a_game_day_whose_failback_failed_fails_with_its_reasons(run_dir: Path) -> None:
    block = {"verdict": "fail", "reasons": ["RTO 40.000 s exceeds the target 30 s"],
             "rto_s": 40.0}
    s = summaries.build(_edit(run_dir, meta={"failback": block}))
    assert s["failback"] == block and s["drill"] == "failover"
    assert s["verdict"] == "fail"
    assert s["reasons"] == ["failback: RTO 40.000 s exceeds the target 30 s"]
    passed = {"verdict": "pass", "reasons": [], "rto_s": 2.0}
    s = summaries.build(_edit(run_dir, meta={"failback": passed}))
    assert (s["verdict"], s["reasons"], s["failback"]) == ("pass", [], passed)


def test_a_run_killed_before_its_end_is_incomplete(run_dir: Path) -> None:
    s = summaries.build(_edit(run_dir, drop_events=("experiment-ended",)))
    assert s["incomplete"] is True and s["verdict"] == "fail"
    assert s["reasons"] == [
        "incomplete run: the runner stopped before the end (killed or crashed); the numbers "
        "come from the samples stored until then"]
    assert s["rto_s"] == 1.5  # measured from what was stored


def test_a_run_without_a_fault_has_no_numbers_and_says_why(run_dir: Path) -> None:
    s = summaries.build(_edit(run_dir, drop_events=("fault-applied",), meta={
        "replication": "async"}))
    assert s["verdict"] == "fail"
    assert s["reasons"][0] == ("no fault was injected (the steady state before the fault was "
                               "not met or the run stopped early)")
    assert (s["rto_s"], s["rto_error_s"], s["write_rto_s"], s["write_rto_error_s"],
            s["downtime_s"], s["t_fault_effective_s"]) == (None,) * 6
    assert s["phases"] == dict.fromkeys(s["phases"]) and len(s["phases"]) == 6
    # replication as last sampled: the primary's last view of its standby, and the
    # standby's last lag while it was one
    assert s["replication"] == {"mode": "sync", "configured": "async", "sync_state": "sync",
                                "lag_at_fault_s": 0.04}


def test_the_mode_observed_at_the_fault_wins_over_the_configured_one(run_dir: Path) -> None:
    s = summaries.build(_edit(run_dir, meta={"replication": "async"}))
    assert s["replication"] == {"mode": "sync", "configured": "async", "sync_state": "sync",
                                "lag_at_fault_s": 0.04}
    # no view of the standby observed: the configured mode stands
    conn = sqlite3.connect(run_dir / "timeline.sqlite")
    with conn:
        conn.execute("UPDATE replication SET detail = NULL WHERE server = 'region-1'")
    conn.close()
    s = summaries.build(run_dir)
    assert s["replication"] == {"mode": "async", "configured": "async", "sync_state": None,
                                "lag_at_fault_s": 0.04}


def test_a_run_recorded_before_targets_and_configuration_existed(run_dir: Path) -> None:
    s = summaries.build(_edit(run_dir, drop_meta=("targets", "configuration", "drill")))
    assert s["targets"] == {"rto_s": 30.0, "rpo_s": 0.0, "max_lost_writes": 0}
    assert s["configuration"] == {} and s["drill"] == "failover"
    assert s["verdict"] == "pass"


def test_what_went_wrong_around_the_method_is_each_a_reason_in_order(run_dir: Path) -> None:
    s = summaries.build(_edit(run_dir, events=[
        (0.5, "gate-failed", None, {"reasons": ["standby not streaming", "TTL too long"]}),
        (0.6, "steady-state-before-not-met", None, {"probes": ["global-ok", "writable"]}),
        (3.0, "step-failed", "region-2", {"step": "promote", "error": "timed out"}),
        (3.2, "interrupted", None, {"signal": "SIGTERM"}),
        (3.9, "steady-state-after-not-met", None, {})]))
    assert s["verdict"] == "fail"
    assert s["reasons"] == [
        "steady state before the method not met (probes: global-ok, writable)",
        "steady state after the method not met (probes: unknown)",
        "interrupted by a signal (Ctrl-C or SIGTERM): the rollbacks ran",
        "step promote failed: timed out",
        "not ready for a fault: standby not streaming; TTL too long"]


def test_event_details_may_be_empty(run_dir: Path) -> None:
    conn = sqlite3.connect(run_dir / "timeline.sqlite")
    with conn:
        conn.executemany("INSERT INTO events VALUES (?, ?, NULL, NULL)", [
            (0.5, "gate-failed"), (0.6, "steady-state-before-not-met"), (3.0, "step-failed")])
    conn.close()
    assert summaries.build(run_dir)["reasons"] == [
        "steady state before the method not met (probes: unknown)",
        "step None failed: None", "not ready for a fault: "]


def test_a_run_whose_canary_table_was_not_read(run_dir: Path) -> None:
    conn = sqlite3.connect(run_dir / "timeline.sqlite")
    with conn:
        conn.execute("DROP TABLE final_rows")
    conn.close()
    s = summaries.build(run_dir)
    assert s["reasons"] == ["the canary table was not read, so lost writes are unknown"]
    assert (s["rpo_s"], s["rpo_error_s"], s["writes_detail"]) == (None, None, None)
    assert set(s["writes"].values()) == {None}


def test_a_fault_never_seen_in_effect_has_no_effective_time(run_dir: Path) -> None:
    s = summaries.build(_edit(run_dir, drop_events=("fault-effective",)))
    assert s["t_fault_effective_s"] is None and s["rto_s"] == 1.5


def test_a_failed_failback_without_reasons_still_fails_the_game_day(run_dir: Path) -> None:
    s = summaries.build(_edit(run_dir, meta={"failback": {"verdict": "fail"}}))
    assert (s["verdict"], s["reasons"]) == ("fail", [])


def test_replication_is_read_at_the_fault_from_each_roles_own_samples(run_dir: Path) -> None:
    """Samples that would mislead a reader of the wrong server or the wrong instant: the
    secondary claiming a standby of its own, the primary reporting a lag, and after the
    fault the primary reporting async."""
    async_view = json.dumps({"senders": [{"name": "x", "sync": "async"}]})
    conn = sqlite3.connect(run_dir / "timeline.sqlite")
    with conn:
        # the standby's sample at the fault's instant goes: the walk back reaches 0.99
        conn.execute("DELETE FROM replication WHERE t = 1.0 AND server = 'region-2'")
        conn.executemany("INSERT INTO replication VALUES (?, ?, ?, ?, ?, ?, ?)", [
            (0.99, "region-2", 1, 0, None, async_view, None),
            (0.99, "region-1", 1, 1, 9.0, None, None),
            (3.0, "region-1", 1, 0, None, async_view, None),
            (3.0, "region-2", 1, 1, 7.0, None, None)])
    conn.close()
    s = summaries.build(run_dir)
    assert s["replication"] == {"mode": "sync", "configured": "sync", "sync_state": "sync",
                                "lag_at_fault_s": 0.04}
