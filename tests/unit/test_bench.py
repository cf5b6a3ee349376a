"""The benchmarks' judgements (bench/): missing data is a miss, never a pass, and the
synthetic report's known answers catch a wrong number. The benchmarks themselves need the
lab and a quiet machine; what they decide from their measurements is tested here."""

from __future__ import annotations

import importlib.util
import math
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gameday.measure.store import timeline

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _script(name: str) -> ModuleType:
    """A benchmark script of this checkout, loaded from its file: bench/ is scripts, not an
    installed package, so nothing of it is imported by name."""
    spec = importlib.util.spec_from_file_location(f"bench.{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


bench_canary = _script("bench_canary")
bench_app_canary = _script("bench_app_canary")
bench_metrics = _script("bench_metrics")
bench_recorder = _script("bench_recorder")
Round, Slice = bench_canary.Round, bench_canary.Slice
Measured = bench_recorder.Measured

# --- canary ---------------------------------------------------------------------------


def test_a_round_where_the_canary_acknowledged_nothing_is_a_miss() -> None:
    rnd = Round(Slice(2500, 5.0), Slice(0, 9.9, "CheckViolation: 23514"), [None])
    ratio, verdict = bench_canary.judge_round(rnd)
    assert ratio is None
    assert verdict.startswith("MISSED: no data (1 of 1 pairs")
    assert "CheckViolation: 23514" in verdict


def test_one_slice_without_an_acknowledged_write_is_a_miss() -> None:
    # the median of the other pairs would pass; a slice with no data must not
    rnd = Round(Slice(2500, 5.0), Slice(2400, 5.0), [1.0] * 49 + [None])
    ratio, verdict = bench_canary.judge_round(rnd)
    assert ratio is None and verdict.startswith("MISSED: no data (1 of 50 pairs")


def test_a_round_holds_at_the_target_ratio_and_not_below() -> None:
    pairs = [0.5, 0.9, 0.9, 1.2, 2.0]  # the median: one burst does not decide the round
    assert bench_canary.judge_round(Round(Slice(), Slice(), pairs)) == (0.9, "ok")
    pairs = [0.5, 0.899, 0.899, 1.2, 2.0]
    assert bench_canary.judge_round(Round(Slice(), Slice(), pairs)) == (0.899, "MISSED")


def test_a_slice_without_writes_has_no_rate() -> None:
    assert Slice(0, 0.1).rate is None and Slice(5, 0.0).rate is None
    assert Slice(250, 0.1).rate == pytest.approx(2500)


def test_resolution_without_a_figure_is_a_miss() -> None:
    # the old code turned no data into inf for both, and inf <= 0.75 * inf printed "ok"
    assert bench_canary.judge_resolution(None, None)[0] is False
    assert bench_canary.judge_resolution(0.0215, None)[0] is False
    assert bench_canary.judge_resolution(None, 0.0105)[0] is False
    assert "no data" in bench_canary.judge_resolution(None, None)[1]


def test_resolution_holds_at_three_quarters_of_one_writer() -> None:
    assert bench_canary.judge_resolution(0.02, 0.015)[0] is True
    assert bench_canary.judge_resolution(0.02, 0.0151)[0] is False


def test_too_few_gaps_place_no_stop() -> None:
    assert bench_canary.expected_delay([]) is None
    # one writer, every gap a 43 ms round trip: half a round trip off on average
    assert bench_canary.expected_delay([0.043] * 10) == pytest.approx(0.0215)


# --- application canary beside the database canary ------------------------------------

AppMeasured = bench_app_canary.Measured


def test_evenly_spaced_acknowledgements_place_a_stop_half_a_gap_off() -> None:
    acks = [0.044 * i for i in range(1, 227)]  # one per 44 ms round trip, up to 9.944 s
    m = bench_app_canary.measure(acks, 0.0, 10.0)
    assert m.acked == 226 and m.rate == pytest.approx(22.6)
    assert m.p50 == pytest.approx(0.044)
    assert m.delay == pytest.approx(0.022, abs=0.0005)
    assert m.error is None


def test_a_canary_silent_for_half_the_window_is_judged_by_its_silence() -> None:
    # the gaps between its acknowledgements alone would say 22 ms off, as above
    acks = [0.044 * i for i in range(1, 114)]  # up to 4.97 s, then nothing
    m = bench_app_canary.measure(acks, 0.0, 10.0)
    assert m.delay is not None and m.delay > 1.0
    assert not bench_app_canary.judge(m, m, None)[0][1]


def test_acknowledgements_outside_the_window_do_not_count() -> None:
    acks = [-1.0, *(0.5 * i for i in range(1, 20)), 10.5]
    assert bench_app_canary.measure(acks, 0.0, 10.0).acked == 19


def test_too_few_acknowledgements_are_no_data_and_miss_every_target() -> None:
    few = bench_app_canary.measure([1.0, 2.0], 0.0, 10.0, "HTTP 503")
    assert few.delay is None and few.error == "HTTP 503"
    assert bench_app_canary.measure([], 0.0, 10.0).error == "no error recorded"
    good = bench_app_canary.measure([0.01 * i for i in range(1, 1000)], 0.0, 10.0)
    # application resolution, database resolution, application rate: no data misses each
    held = [h for _, h in bench_app_canary.judge(good, few, 0.020)]
    assert held == [False, True, False]
    held = [h for _, h in bench_app_canary.judge(few, good, 0.020)]
    assert held == [True, False, True]
    assert "no data" in bench_app_canary.judge(few, good, 0.020)[1][0]
    # async: the application canary alone is judged, and without data it misses
    assert bench_app_canary.judge(good, few, None) == [
        ("application canary resolution: MISSED: no data (2 acknowledged, HTTP 503)", False)]


def _judged(db_delay: float, app_delay: float, app_rate: float) -> list[bool]:
    db = AppMeasured(900, 10.0, 0.008, db_delay)
    app = AppMeasured(round(app_rate * 10), 10.0, 0.044, app_delay)
    return [held for _, held in bench_app_canary.judge(db, app, 0.020)]


def test_the_sync_targets_hold_at_their_bounds_and_not_beyond() -> None:
    # application resolution <= 50 ms, database <= the one-way delay, rate >= 12.5/s
    assert _judged(0.020, 0.050, 12.5) == [True, True, True]
    assert _judged(0.020, 0.0501, 12.5) == [False, True, True]
    assert _judged(0.0201, 0.050, 12.5) == [True, False, True]
    assert _judged(0.020, 0.050, 12.4) == [True, True, False]


# --- recorder ---------------------------------------------------------------------------

WANTED = {("dns", "authoritative"): 0.05, ("dns", "resolver"): 0.05,
          ("http", "global"): 0.05, ("replication", "region-1"): 0.25}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    timeline.create(tmp_path, {"anchor_ns": 0})
    conn = timeline.connect(tmp_path)
    yield conn
    conn.close()


def fill(conn: sqlite3.Connection, *, seconds: float = 10.0, skip: frozenset[int] = frozenset(),
         late: float = 0.001, canary: int = 100, start: float = 0.0) -> None:
    """What a working recorder stores: every stream on its slots (those in `skip` left
    out of the DNS streams), the canary acknowledging writes."""
    for k in range(int(seconds / 0.05)):
        t = start + k * 0.05 + late
        if k not in skip:
            for server in ("authoritative", "resolver"):
                conn.execute(timeline.insert_sql("dns"), timeline.DnsSample(
                    t, server, 1, "198.18.0.11", "NOERROR", 1, 0.001, late, None))
        conn.execute(timeline.insert_sql("http"), timeline.HttpSample(
            t, "global", 1, 200, "region-1", "198.18.0.11", 0.002, late, None))
    for k in range(int(seconds / 0.25)):
        conn.execute(timeline.insert_sql("replication"), timeline.ReplicationSample(
            start + k * 0.25, "region-1", 1, 0, None, None, None))
    for seq in range(canary):
        t = start + seq * seconds / max(canary, 1)
        conn.execute(timeline.insert_sql("canary"), timeline.CanaryAttempt(
            seq, 0, t, t + 0.001, "ok", "198.18.0.11", None, None))


REFERENCE = 0.012  # the reference loop's share of a core


def judged(conn: sqlite3.Connection, **kwargs: Any) -> Measured:
    """The window judged, with the recorder's CPU at half its target."""
    m = Measured(cpu=REFERENCE * bench_recorder.CPU_TARGET_RATIO / 2, reference=REFERENCE,
                 reference_late_p99=0.0005)
    bench_recorder.window(conn, WANTED, 0.0, 10.0, m, **kwargs)
    return m


def test_a_working_recorder_meets_both_targets(store: sqlite3.Connection) -> None:
    fill(store)
    m = judged(store)
    assert m.problems == [] and m.skipped == 0 and m.slots > 390
    assert bench_recorder.judge_lateness(m)
    assert bench_recorder.judge_cpu(m)


def test_a_recorder_past_its_cpu_ratio_misses(store: sqlite3.Connection) -> None:
    fill(store)
    m = judged(store)
    m.cpu = REFERENCE * bench_recorder.CPU_TARGET_RATIO * 1.01
    assert m.problems == [] and not bench_recorder.judge_cpu(m)


def test_an_idle_recorder_misses_the_cpu_target(store: sqlite3.Connection) -> None:
    # nothing stored: a recorder that sampled nothing costs little CPU, and used to pass
    m = judged(store)
    m.cpu = 0.001
    assert not bench_recorder.judge_cpu(m)
    assert any("dns:authoritative has an answered sample in 0 of 200" in p for p in m.problems)
    assert "the canary acknowledged no write in the window" in m.problems


def test_a_dead_recorder_misses_the_cpu_target() -> None:
    assert not bench_recorder.judge_cpu(Measured(cpu=None, reference=0.012))


def test_no_dns_sample_misses_the_lateness_target(store: sqlite3.Connection) -> None:
    # the old code read an empty list's p99 as 0.0, "met"
    m = judged(store)
    assert "no DNS sample in the window" in m.problems
    assert not bench_recorder.judge_lateness(m)


def test_skipped_slots_count_as_late(store: sqlite3.Connection) -> None:
    # 3 of 200 slots of each server skipped (1.5%): the punctual rest (1 ms late) no longer
    # makes a p99 of 1 ms
    fill(store, skip=frozenset({50, 100, 150}))
    m = judged(store)
    assert m.skipped == 6 and m.late_p(99) == math.inf
    assert not bench_recorder.judge_lateness(m)


def test_one_skipped_slot_in_a_hundred_is_tolerated_by_the_p99(store: sqlite3.Connection) -> None:
    fill(store, skip=frozenset({100}))
    m = judged(store)
    assert m.skipped == 2 and m.late_p(99) == pytest.approx(0.001)
    assert bench_recorder.judge_lateness(m)


def test_lateness_is_judged_past_the_reference_loops() -> None:
    # p99 12 ms: a miss against a punctual reference, met on a machine whose schedule
    # alone ran 3 ms late, and a miss with no reference figure (no data)
    m = Measured(lateness=[0.012] * 100, reference_late_p99=0.0015)
    assert m.late_excess == pytest.approx(0.0105) and not bench_recorder.judge_lateness(m)
    m.reference_late_p99 = 0.003
    assert bench_recorder.judge_lateness(m)
    m.reference_late_p99 = None
    assert not bench_recorder.judge_lateness(m)


def test_a_canary_slower_than_one_plain_loop_is_not_flat_out(store: sqlite3.Connection) -> None:
    fill(store, canary=1000)  # 100 writes/s
    assert judged(store, canary_floor=90.0).problems == []
    m = judged(store, canary_floor=2500.0)
    assert any("not flat out" in p for p in m.problems)
    assert not bench_recorder.judge_lateness(m)


# --- metrics + report ---------------------------------------------------------------------

ANSWERS = {"rto_s": 2.3418, "first_success_s": 2.0917, "dns_authoritative_s": 1.288,
           "dns_resolver_s": 2.099, "detection_s": 0.0453, "first_write_s": 0.8735,
           "rpo_s": 0.0129, "writes": {"attempted": 100, "acked": 98, "lost": 5,
                                       "recovered": 1, "unknown_absent": 1}}


def right_summary() -> dict[str, Any]:
    a = ANSWERS
    return {"rto_s": a["rto_s"], "write_rto_s": a["first_write_s"], "rpo_s": a["rpo_s"],
            "verdict": "fail",
            "phases": {k: a[k] for k in ("first_success_s", "dns_authoritative_s",
                                         "dns_resolver_s", "detection_s", "first_write_s")},
            "writes": {**a["writes"], "duplicate": 0, "unexpected": 0}}


def test_the_known_answers_pass_a_right_summary() -> None:
    assert bench_metrics.wrong_answers(right_summary(), ANSWERS) == []


@pytest.mark.parametrize(("path", "value"), [
    (("rto_s",), 2.0917),  # the K rule taking the first success, not the first of K
    (("phases", "dns_resolver_s"), 2.049),
    (("rpo_s",), None),
    (("writes", "lost"), 4),
    (("writes", "duplicate"), 1),
    (("verdict",), "pass"),
])
def test_the_known_answers_catch_a_wrong_number(path: tuple[str, ...], value: Any) -> None:
    summary = right_summary()
    node = summary
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    wrong = bench_metrics.wrong_answers(summary, ANSWERS)
    assert len(wrong) == 1 and wrong[0].split()[0].endswith(path[-1])
