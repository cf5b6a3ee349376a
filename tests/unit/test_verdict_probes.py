"""The verdict probes, which set `chaos run`'s exit code, and the split-brain count of a
failback, on stored runs with known answers.

The probes read the run in progress: a fixed stored run (tests/fixtures/report) stands in
for it. Its canary rows as the new primary holds them are already stored, so the one step
that reads PostgreSQL (`summary.snapshot_rows`) is replaced by a no-op, and so is the
probes' wait for the recorder's flush (no recorder runs). `count_split_brain` reads the
canary rows of both databases through `postgres.canary_rows`, replaced here by known rows;
the real databases run the same code in tests/integration/test_known_answers.py."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from gameday import postgres
from gameday.actions import database
from gameday.drill import context as drills
from gameday.foundation import drill_state as drill
from gameday.measure import run as runs
from gameday.measure import summary as summaries
from gameday.measure.store import timeline
from gameday.probes import verdict
from tests.fixtures.report import fixture_run
from tests.unit import fakes


@pytest.fixture
def lab_file(tmp_path: Path) -> Path:
    return fakes.write_lab(tmp_path)


@pytest.fixture
def cfg(lab_file: Path) -> dict[str, Any]:
    return {"lab_file": str(lab_file)}


@pytest.fixture
def current(monkeypatch: pytest.MonkeyPatch, lab_file: Path) -> Iterator[Any]:
    """Make a stored run directory the run in progress: `current(run_dir)`."""
    monkeypatch.setattr(summaries, "snapshot_rows", lambda *args, **kwargs: 0)
    monkeypatch.setattr(timeline, "wait_flushed", lambda run_dir, timeout_s=1.0: True)

    def make(run_dir: Path) -> Path:
        drills.publish(fakes.drill(lab_file, run=runs.Run(run_dir, timeline.Clock(1))))
        return run_dir

    yield make


def _sql(run_dir: Path, *statements: tuple[str, tuple[Any, ...]]) -> Path:
    conn = sqlite3.connect(run_dir / timeline.FILE)
    with conn:
        for sql, args in statements:
            conn.execute(sql, args)
    conn.close()
    return run_dir


def _targets(run_dir: Path, **targets: float) -> Path:
    return _sql(run_dir, ("INSERT OR REPLACE INTO meta VALUES ('targets', ?)", (json.dumps(
        {"rto_s": 30.0, "rpo_s": 0.0, "max_lost_writes": 0, **targets}),)))


def test_the_numbers_are_the_summarys(tmp_path: Path, cfg: dict[str, Any], current: Any) -> None:
    current(fixture_run.build(tmp_path / "run"))
    assert verdict.rto_seconds(configuration=cfg) == 1.5
    assert verdict.rpo_seconds(configuration=cfg) == 0.0
    assert verdict.lost_writes(configuration=cfg) == 0
    assert verdict.integrity_violations(configuration=cfg) == 0
    assert verdict.rto_within_target(configuration=cfg) is True
    assert verdict.rpo_within_target(configuration=cfg) is True
    assert verdict.lost_writes_within_target(configuration=cfg) is True


def test_a_run_that_lost_writes(tmp_path: Path, cfg: dict[str, Any], current: Any) -> None:
    current(fixture_run.build(tmp_path / "run", lost=True))
    assert verdict.lost_writes(configuration=cfg) == 4
    assert verdict.rpo_seconds(configuration=cfg) == 0.09
    assert verdict.rpo_within_target(configuration=cfg) is False
    assert verdict.lost_writes_within_target(configuration=cfg) is False


def test_within_target_holds_exactly_at_the_target(tmp_path: Path, cfg: dict[str, Any],
                                                    current: Any) -> None:
    run_dir = current(fixture_run.build(tmp_path / "run", lost=True))
    _targets(run_dir, rto_s=1.5, rpo_s=0.09, max_lost_writes=4)
    assert verdict.rto_within_target(configuration=cfg) is True
    assert verdict.rpo_within_target(configuration=cfg) is True
    assert verdict.lost_writes_within_target(configuration=cfg) is True
    _targets(run_dir, rto_s=1.4999, rpo_s=0.0899, max_lost_writes=3)
    assert verdict.rto_within_target(configuration=cfg) is False
    assert verdict.rpo_within_target(configuration=cfg) is False
    assert verdict.lost_writes_within_target(configuration=cfg) is False


def test_duplicates_and_unexpected_rows_are_integrity_violations(
        tmp_path: Path, cfg: dict[str, Any], current: Any) -> None:
    run_dir = current(fixture_run.build(tmp_path / "run"))
    _sql(run_dir, ("UPDATE final_rows SET n = 3 WHERE seq = 10", ()),
         ("INSERT INTO final_rows VALUES (9999, 1)", ()))  # never attempted
    assert verdict.integrity_violations(configuration=cfg) == 3
    # the RPO is met, but a broken canary table is not within target
    assert verdict.rpo_seconds(configuration=cfg) == 0.0
    assert verdict.rpo_within_target(configuration=cfg) is False


def test_an_rto_not_observed_fails_the_probe_with_the_reason(
        tmp_path: Path, cfg: dict[str, Any], current: Any) -> None:
    run_dir = current(fixture_run.build(tmp_path / "run"))
    _sql(run_dir, ("DELETE FROM http WHERE target = 'global' AND t >= 2.5", ()))
    with pytest.raises(ActivityFailed, match=r"^RTO was not observed, so no target can be met "
                                             r"\(RTO not observed: no 5 consecutive global "
                                             r"requests served by region-2\)$"):
        verdict.rto_seconds(configuration=cfg)
    assert verdict.rto_within_target(configuration=cfg) is False


def test_unread_canary_rows_fail_the_write_probes(tmp_path: Path, cfg: dict[str, Any],
                                                  current: Any) -> None:
    run_dir = current(fixture_run.build(tmp_path / "run"))
    _sql(run_dir, ("DROP TABLE final_rows", ()))
    for probe, what in ((verdict.lost_writes, "the lost-write count"),
                        (verdict.integrity_violations, "the canary table on the primary"),
                        (verdict.rpo_seconds, "RPO")):
        with pytest.raises(ActivityFailed, match=f"^{what} was not observed.*the canary table "
                                                 "was not read"):
            probe(configuration=cfg)
    assert verdict.lost_writes_within_target(configuration=cfg) is False
    assert verdict.rpo_within_target(configuration=cfg) is False


def test_before_the_fault_rto_holds_and_the_writes_are_checked(
        tmp_path: Path, cfg: dict[str, Any], current: Any) -> None:
    run_dir = current(fixture_run.build(tmp_path / "run", events=False))
    assert verdict.rto_seconds(configuration=cfg) == 0.0
    assert verdict.rto_within_target(configuration=cfg) is True
    _sql(run_dir, ("DELETE FROM final_rows WHERE seq = 3", ()))  # acknowledged, now missing
    assert verdict.lost_writes(configuration=cfg) == 1


def test_a_dry_run_judges_nothing(monkeypatch: pytest.MonkeyPatch, cfg: dict[str, Any]) -> None:
    drills.stand_down(plan={"faults": []})
    assert verdict.rto_seconds(configuration=cfg) == 0.0
    assert verdict.rpo_seconds(configuration=cfg) == 0.0
    assert verdict.lost_writes(configuration=cfg) == 0
    assert verdict.integrity_violations(configuration=cfg) == 0


def test_without_the_control_the_probes_say_so(monkeypatch: pytest.MonkeyPatch,
                                               cfg: dict[str, Any]) -> None:
    for probe in (verdict.rto_seconds, verdict.rpo_seconds, verdict.lost_writes,
                  verdict.rpo_within_target, verdict.rto_within_target):
        with pytest.raises(ActivityFailed, match="declare the `gameday.control` control"):
            probe(configuration=cfg)


# --- the split-brain count ------------------------------------------------------------------

PROMOTED = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _rows(monkeypatch: pytest.MonkeyPatch, rows: dict[str, list[tuple[int, datetime]]]) -> None:
    monkeypatch.setattr(postgres, "canary_rows", lambda lab, region, what: rows[region.name])


def test_split_brain_writes_are_the_old_primarys_own_rows_after_the_promotion(
        lab_file: Path, cfg: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    drill.write(lab_file, drill.DrillState(promoted="region-2", promoted_at_utc=PROMOTED.isoformat()))
    s = timedelta(seconds=1)
    _rows(monkeypatch, {
        "region-1": [(1, PROMOTED - 3 * s), (2, PROMOTED - s),  # replicated: on both
                     (3, PROMOTED - s / 2), (4, PROMOTED),  # never replicated
                     (5, PROMOTED + s), (6, PROMOTED + 3 * s),  # split brain
                     (7, PROMOTED + 2 * s)],
        "region-2": [(1, PROMOTED - 3 * s), (2, PROMOTED - s), (8, PROMOTED + s)]})
    out = database.count_split_brain("region-1", "region-2", configuration=cfg)
    assert out == {
        "old_primary": "region-1", "split_brain_writes": 3, "unreplicated_writes": 2,
        "window_utc": [(PROMOTED + s).isoformat(), (PROMOTED + 3 * s).isoformat()],
        "promoted_at_utc": PROMOTED.isoformat()}


def test_no_split_brain_has_no_window(lab_file: Path, cfg: dict[str, Any],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    drill.write(lab_file, drill.DrillState(promoted="region-2", promoted_at_utc=PROMOTED.isoformat()))
    same = [(1, PROMOTED - timedelta(seconds=1))]
    _rows(monkeypatch, {"region-1": same, "region-2": same})
    out = database.count_split_brain("region-1", "region-2", configuration=cfg)
    assert (out["split_brain_writes"], out["unreplicated_writes"], out["window_utc"]) == (
        0, 0, None)


def test_split_brain_needs_the_game_days_promotion(lab_file: Path, cfg: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _rows(monkeypatch, {"region-1": [], "region-2": []})
    with pytest.raises(ActivityFailed, match="no game day promoted region-2: run "
                                             "experiments/game-day.json first"):
        database.count_split_brain("region-1", "region-2", configuration=cfg)
    drill.write(lab_file, drill.DrillState(promoted="region-1", promoted_at_utc=PROMOTED.isoformat()))
    with pytest.raises(ActivityFailed, match="no game day promoted region-2"):
        database.count_split_brain("region-1", "region-2", configuration=cfg)


def test_one_evaluation_of_the_steady_state_reads_the_run_once(
        tmp_path: Path, cfg: dict[str, Any], current: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the control's hypothesis hooks the verdict probes judge one snapshot (one
    flush wait and one read for all of them); outside an evaluation each reads afresh,
    and a new evaluation reads again."""
    from gameday import control

    current(fixture_run.build(tmp_path / "run"))
    reads: list[Path] = []
    build = summaries.build
    monkeypatch.setattr(summaries, "build", lambda run_dir: reads.append(run_dir) or build(run_dir))

    control.before_hypothesis_control({})
    assert verdict.rto_seconds(configuration=cfg) == 1.5
    assert verdict.rpo_seconds(configuration=cfg) == 0.0
    assert verdict.lost_writes(configuration=cfg) == 0
    control.after_hypothesis_control({})
    assert len(reads) == 1

    control.before_hypothesis_control({})
    verdict.lost_writes(configuration=cfg)
    verdict.integrity_violations(configuration=cfg)
    control.after_hypothesis_control({})
    assert len(reads) == 2

    verdict.lost_writes(configuration=cfg)
    verdict.lost_writes(configuration=cfg)
    assert len(reads) == 4
