"""The core rules pinned at their boundaries: each test here failed with one plausible
one-line bug put back by hand (issue 26's table), where the rest of the suite passed.

- the K rule on the path that reports RTO (`>= k` read as `>= k - 1`, or `> k`);
- duplicate rows counted per extra copy (a seq found 3 times is 2 duplicates);
- the DNS flip read from the fault on, never before it;
- the trend's regression rule against the median, not the mean;
- the ledger's open faults of one region only;
- the verdict at RTO equal to its target (within it: pass).

Only public functions, so the tests outlive the modules' moves."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gameday.actions import region as region_actions
from gameday.foundation.ledger import Ledger
from gameday.measure import instants
from gameday.measure import rto as rtos
from gameday.measure import summary as summaries
from gameday.measure.rto import Streak
from gameday.measure.store import timeline, writes
from gameday.measure.store.reader import Timeline
from gameday.measure.store.timeline import DnsSample, Event, HttpSample
from gameday.report import trend as trends
from tests.fixtures.report import fixture_run
from tests.unit import fakes
from tests.unit.test_endpoints import TWO_REGIONS

T_FAULT = 10.0


def _global(spec: list[tuple[float, bool, str | None]]) -> list[HttpSample]:
    return [HttpSample(t, "global", int(ok), 200 if ok else None, region, None, 0.001, 0.0,
                       None) for t, ok, region in spec]


def _timeline(**kw: object) -> Timeline:
    base: dict[str, object] = {
        "events": [Event(T_FAULT, "fault-applied", "region-1", json.dumps({"fault": "x"}))],
        "dns": [], "http": [], "canary": [], "replication": []}
    base.update(kw)
    return Timeline(**base)  # type: ignore[arg-type]


# --- the K rule ---------------------------------------------------------------------------


def _k_minus_1_then_k(k: int) -> list[tuple[float, bool, str | None]]:
    """Every 0.2 s from the fault: k-1 successes from region-2, one failure, k successes."""
    oks = [True] * (k - 1) + [False] + [True] * k
    return [(round(T_FAULT + 0.2 * (i + 1), 3), ok, "region-2" if ok else None)
            for i, ok in enumerate(oks)]


@pytest.mark.parametrize("k", [1, 2, 5])
def test_rto_starts_at_the_first_run_of_k_not_of_k_minus_1(k: int) -> None:
    spec = _k_minus_1_then_k(k)
    rto = rtos.rto(_timeline(http=_global(spec)), T_FAULT, "region-2", k=k)
    start = spec[k][0]  # the first sample after the failure
    assert rto.at_s == pytest.approx(start - T_FAULT)
    assert rto.error_s == pytest.approx(0.2)
    assert rto.evidence == f"first of {k} consecutive global successes from region-2"


@pytest.mark.parametrize("k", [1, 2, 5])
def test_k_minus_1_successes_are_no_rto_and_exactly_k_are(k: int) -> None:
    short = [(T_FAULT + 0.2 * (i + 1), True, "region-2") for i in range(k - 1)]
    assert rtos.rto(_timeline(http=_global(short)), T_FAULT, "region-2", k=k).at_s is None
    exact = [*short, (T_FAULT + 0.2 * k, True, "region-2")]
    assert rtos.rto(_timeline(http=_global(exact)), T_FAULT, "region-2",
                       k=k).at_s == pytest.approx(0.2)


def test_the_streak_reaches_k_on_the_kth_success_and_breaks_on_a_failure() -> None:
    streak = Streak("region-2", 3, before=9.9)
    assert [streak.add(t, True, "region-2") for t in (10.0, 10.1)] == [False, False]
    assert not streak.reached
    assert streak.add(10.2, True, "region-2") and streak.reached
    assert (streak.start, streak.before) == (10.0, 9.9)
    assert streak.add(10.3, True, "region-2")  # while it lasts
    assert not streak.add(10.4, True, "region-1") and not streak.reached  # another region
    assert not streak.add(10.5, False, "region-2")  # a failure from the right region
    assert [streak.add(t, True, "region-2") for t in (10.6, 10.7, 10.8)] == [False, False, True]
    assert (streak.start, streak.before) == (10.6, 10.5)


# --- write accounting: duplicates -----------------------------------------------------------


def _acked(seq: int) -> tuple[object, ...]:
    return (seq, 0, seq * 0.1, seq * 0.1 + 0.01, "ok", "198.18.0.11", None, None)


@pytest.mark.parametrize(("present", "duplicate"), [
    ({1: 1, 2: 1, 3: 1}, 0),
    ({1: 1, 2: 2, 3: 1}, 1),
    ({1: 1, 2: 3, 3: 1}, 2),  # one seq three times: two rows too many
    ({1: 3, 2: 1, 3: 4}, 5),
])
def test_duplicates_count_every_extra_row_of_a_seq(present: dict[int, int],
                                                   duplicate: int) -> None:
    acc = writes.account_writes([_acked(s) for s in (1, 2, 3)], present, t_fault=None)
    assert acc.duplicate == duplicate
    assert acc.lost == 0 and acc.unexpected == 0


def test_duplicates_are_counted_the_same_from_a_stored_run(tmp_path: Path) -> None:
    """The report's path: `final_rows` stored in the run's database."""
    run_dir = fixture_run.build(tmp_path / "run")
    conn = sqlite3.connect(run_dir / timeline.FILE)
    with conn:
        conn.execute("UPDATE final_rows SET n = 3 WHERE seq = 10")
    conn.close()
    s = summaries.build(run_dir)
    assert s["writes"]["duplicate"] == 2
    assert s["verdict"] == "fail"
    assert "integrity failure: 0 unexpected and 2 duplicate canary rows" in s["reasons"]


# --- the DNS flip ---------------------------------------------------------------------------


def test_dns_already_on_the_secondary_before_the_fault_flips_at_the_first_sample_after() -> None:
    r2 = "198.18.0.12"
    rows = [DnsSample(t, "resolver", 1, r2, "NOERROR", 1, 0.001, 0.0, None)
            for t in (9.6, 9.8, 10.1, 10.3, 10.5)]
    flip = instants.dns_flip(_timeline(dns=rows), T_FAULT, "resolver", "region-2", TWO_REGIONS)
    assert flip.at_s == pytest.approx(0.1)  # never before the fault
    assert flip.error_s == pytest.approx(0.3)


def test_dns_flip_with_no_sample_before_the_fault_has_no_error_bar() -> None:
    r2 = "198.18.0.12"
    rows = [DnsSample(t, "authoritative", 1, r2, "NOERROR", 1, 0.001, 0.0, None)
            for t in (10.2, 10.4)]
    flip = instants.dns_flip(_timeline(dns=rows), T_FAULT, "authoritative", "region-2", TWO_REGIONS)
    assert flip.at_s == pytest.approx(0.2) and flip.error_s is None


def test_a_failed_dns_answer_breaks_the_run_that_stays() -> None:
    r1, r2 = "198.18.0.11", "198.18.0.12"
    rows = [DnsSample(10.2, "resolver", 1, r2, "NOERROR", 1, 0.001, 0.0, None),
            DnsSample(10.4, "resolver", 0, r2, "SERVFAIL", 1, 0.001, 0.0, "timeout"),
            DnsSample(10.6, "resolver", 1, r2, "NOERROR", 1, 0.001, 0.0, None),
            DnsSample(10.8, "resolver", 1, r2, "NOERROR", 1, 0.001, 0.0, None)]
    flip = instants.dns_flip(_timeline(dns=rows), T_FAULT, "resolver", "region-2", TWO_REGIONS)
    assert flip.at_s == pytest.approx(0.6) and flip.error_s == pytest.approx(0.2)
    back = [*rows, DnsSample(11.0, "resolver", 1, r1, "NOERROR", 1, 0.001, 0.0, None)]
    assert instants.dns_flip(_timeline(dns=back), T_FAULT, "resolver", "region-2", TWO_REGIONS).at_s is None


# --- the trend's median --------------------------------------------------------------------


def _run(n: int, rto: float) -> dict[str, object]:
    return {"run_id": f"run-{n:02d}", "started_at": f"2026-01-{n:02d}T00:00:00+00:00",
            "verdict": "pass", "targets": {"rto_s": 30.0, "rpo_s": 0.5, "max_lost_writes": 0},
            "rto_s": rto, "rpo_s": 0.0}


def test_the_regression_rule_compares_with_the_median_not_the_mean() -> None:
    """History 1, 1, 10: median 1, mean 4. 2.0 s is twice the median (a regression) but
    half the mean; 1.5 s is exactly 1.5 x the median (not above it)."""
    history = [_run(1, 1.0), _run(2, 1.0), _run(3, 10.0)]
    assert trends.evaluate(_run(4, 2.0), history).regression
    assert not trends.evaluate(_run(4, 1.5), history).regression
    assert trends.evaluate(_run(4, 1.51), history).regression


def test_previous_runs_are_those_that_started_earlier_whatever_their_ids() -> None:
    """Run ids that sort against their start times: the start time decides."""
    def run(run_id: str, day: int, rto: float) -> dict[str, object]:
        return {**_run(day, rto), "run_id": run_id}

    history = [run("c", 1, 1.0), run("b", 2, 1.0), run("a", 3, 1.0), run("z", 9, 50.0)]
    t = trends.evaluate(run("y", 5, 2.0), history)
    assert [e["run_id"] for e in t.previous] == ["c", "b", "a"]
    assert t.regression


# --- the ledger's region -------------------------------------------------------------------


def test_open_faults_of_a_region_are_that_regions_only(tmp_path: Path) -> None:
    ledger = Ledger(fakes.write_lab(tmp_path))
    one = ledger.plan("region-1", "block-egress", {"region": "region-1"})
    two = ledger.plan("region-2", "blackhole", {"region": "region-2"})
    ledger.mark(one, "applied")
    ledger.mark(two, "applied")
    assert [e["id"] for e in ledger.open_faults("region-2")] == [two]
    assert [e["id"] for e in ledger.open_faults("region-1")] == [one]
    assert [e["id"] for e in ledger.open_faults()] == [one, two]
    ledger.mark(two, "reverted")
    assert ledger.open_faults("region-2") == []
    assert [e["id"] for e in ledger.open_faults()] == [one]


def test_restoring_one_region_leaves_the_other_regions_fault_in_place(tmp_path: Path) -> None:
    lab_file = fakes.write_lab(tmp_path)
    cfg = {"lab_file": str(lab_file)}
    region_actions.take_region_down("region-1", "block-egress", configuration=cfg)
    region_actions.take_region_down("region-2", "scale-to-zero", configuration=cfg)
    out = region_actions.restore_region("region-2", configuration=cfg)
    assert out["reverted"] == ["scale-to-zero on region-2"]
    assert fakes.world(lab_file).active == {("region-1", "block-egress")}
    assert [e["region"] for e in Ledger(lab_file).open_faults()] == ["region-1"]


# --- the verdict at its target --------------------------------------------------------------


def _with_targets(run_dir: Path, **targets: float) -> Path:
    conn = sqlite3.connect(run_dir / timeline.FILE)
    with conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('targets', ?)", (json.dumps(
            {"rto_s": 30.0, "rpo_s": 0.0, "max_lost_writes": 0, **targets}),))
    conn.close()
    return run_dir


def test_an_rto_exactly_at_its_target_passes_and_just_above_fails(tmp_path: Path) -> None:
    """The fixture run's RTO is 1.5 s (fault at 1.0, served by region-2 from 2.5)."""
    at = summaries.build(_with_targets(fixture_run.build(tmp_path / "at"), rto_s=1.5))
    assert at["rto_s"] == 1.5
    assert (at["verdict"], at["reasons"]) == ("pass", [])
    above = summaries.build(_with_targets(fixture_run.build(tmp_path / "above"), rto_s=1.4999))
    assert above["verdict"] == "fail"
    assert above["reasons"] == ["RTO 1.500 s exceeds the target 1.4999 s"]


def test_rpo_and_lost_writes_exactly_at_their_targets_pass(tmp_path: Path) -> None:
    """The lost fixture run loses 4 writes with an RPO of 0.09 s."""
    run_dir = fixture_run.build(tmp_path / "lost", lost=True)
    at = summaries.build(_with_targets(run_dir, rpo_s=0.09, max_lost_writes=4))
    assert (at["rpo_s"], at["writes"]["lost"]) == (0.09, 4)
    assert (at["verdict"], at["reasons"]) == ("pass", [])
    above = summaries.build(_with_targets(run_dir, rpo_s=0.0899, max_lost_writes=3))
    assert above["reasons"] == ["RPO 0.090 s exceeds the target 0.0899 s",
                                "4 acknowledged writes lost (at most 3 allowed)"]
