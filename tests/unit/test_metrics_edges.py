"""The metrics at their edges, each case one that mutation testing (`make mutate`) showed no
test could tell apart from a plausible slip: the sample just before the fault, an instant
exactly at the fault, the last row of a stream, a hold whose end was never recorded, a
write-accounting number at its window's edge, a stored set read in small windows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameday.measure import hold as holds
from gameday.measure import instants, stats
from gameday.measure import rto as rtos
from gameday.measure import summary as summaries
from gameday.measure.rto import Streak
from gameday.measure.store import reader, seqsets, timeline, writes
from gameday.measure.store import timeline as store_timeline
from gameday.measure.store.reader import Timeline
from gameday.measure.store.timeline import (
    CanaryAttempt,
    CanaryConnect,
    DnsSample,
    Event,
    HaSample,
    HttpSample,
    ReplicationSample,
)
from tests.fixtures.report import fixture_run
from tests.unit.test_endpoints import TWO_REGIONS

T_FAULT = 10.0
R1, R2 = "198.18.0.11", "198.18.0.12"


def tl_of(**kw: object) -> Timeline:
    base: dict[str, object] = {"events": [], "dns": [], "http": [], "canary": [],
                               "replication": []}
    base.update(kw)
    return Timeline(**base)  # type: ignore[arg-type]


def http(target: str, rows: list[tuple[float, bool, str | None]]) -> list[HttpSample]:
    return [HttpSample(t, target, int(ok), 200 if ok else 503, region, None, 0.001, 0.0, None)
            for t, ok, region in rows]


def acked(seq: int, t: float, server: str = R1) -> CanaryAttempt:
    return CanaryAttempt(seq, 0, t, t + 0.001, "ok", server, None, None)


# --- instants: the sample just before the fault gives the error bar ---------------------------


def test_the_first_sample_after_the_fault_takes_its_error_bar_from_the_one_before() -> None:
    rows = http("region-1", [(9.7, True, "region-1"), (10.1, False, None), (10.3, False, None)])
    seen = instants.detection(tl_of(http=rows), T_FAULT, "region-1")
    assert (seen.at_s, seen.error_s) == (pytest.approx(0.1), pytest.approx(0.4))
    only_after = instants.detection(tl_of(http=rows[1:]), T_FAULT, "region-1")
    assert only_after.at_s == pytest.approx(0.1) and only_after.error_s is None


def test_the_dns_flip_right_after_one_earlier_answer() -> None:
    rows = [DnsSample(t, "resolver", 1, a, "NOERROR", 1, 0.001, 0.0, None)
            for t, a in ((9.5, R1), (10.2, R2), (10.4, R2))]
    flip = instants.dns_flip(tl_of(dns=rows), T_FAULT, "resolver", "region-2", TWO_REGIONS)
    assert (flip.at_s, flip.error_s) == (pytest.approx(0.2), pytest.approx(0.7))


@pytest.mark.parametrize("before", [[9.8], [9.4, 9.8]])
def test_rto_from_the_first_sample_after_the_fault_reaches_back_to_the_one_before(
        before: list[float]) -> None:
    rows = http("global", [*[(t, False, None) for t in before],
                           *[(10.1 + i / 10, True, "region-2") for i in range(5)]])
    rto = rtos.rto(tl_of(http=rows), T_FAULT, "region-2", k=5)
    assert (rto.at_s, rto.error_s) == (pytest.approx(0.1), pytest.approx(0.3))


def test_a_fresh_streak_has_no_start() -> None:
    streak = Streak("region-2")
    assert (streak.start, streak.before, streak.run, streak.k) == (None, None, 0, 5)
    assert not streak.reached


def test_a_failed_answer_from_the_secondary_is_no_first_success() -> None:
    rows = http("global", [(10.1, False, "region-2"), (10.2, True, "region-1"),
                           (10.3, True, "region-2")])
    assert instants.first_success(tl_of(http=rows), T_FAULT, "region-2").at_s == \
        pytest.approx(0.3)


def test_promotion_is_read_from_the_secondarys_samples_only() -> None:
    # the old primary's database still answers, writable, after the fault: not a promotion
    repl = [ReplicationSample(t, server, 1, int(server == "region-2" and t < 10.5), None,
                              None, None) for t in (9.9, 10.1, 10.3, 10.5) for server in
            ("region-1", "region-2")]
    seen = instants.promotion(tl_of(replication=repl), T_FAULT, "region-2", {R2})
    assert seen.at_s == pytest.approx(0.5) and seen.error_s == pytest.approx(0.2)
    assert seen.evidence == ("region-2's database answered out of recovery (replication "
                             "sampler)")
    never = instants.promotion(tl_of(replication=repl[:6]), T_FAULT, "region-2", {R2})
    assert never.at_s is None and never.reason == "region-2 was not seen writable after the fault"


def test_the_runner_promotion_is_the_secondarys_own_from_the_fault_on() -> None:
    events = [Event(9.9, "promoted", "region-2", json.dumps({"error_s": 0.1})),
              Event(10.2, "promoted", "region-1", json.dumps({"error_s": 0.2})),
              Event(T_FAULT, "promoted", "region-2", json.dumps({"error_s": 0.005})),
              Event(10.4, "promoted", "region-2", None)]
    got = instants.runner_promotion(tl_of(events=events), T_FAULT, "region-2")
    assert (got.at_s, got.error_s) == (0.0, 0.005)
    assert got.evidence == "first write accepted by region-2 in the promote loop"
    late = instants.runner_promotion(tl_of(events=events[3:]), T_FAULT, "region-2")
    assert late.at_s == pytest.approx(0.4) and late.error_s is None
    none = instants.runner_promotion(tl_of(events=events[:2]), T_FAULT, "region-2")
    assert none.at_s is None
    assert none.reason == "gameday did not promote (promotion by a command or by the system)"


def test_the_first_write_of_the_new_primary_and_its_error_bar() -> None:
    canary = [acked(1, 9.0), CanaryAttempt(2, 0, T_FAULT, None, "failed", None, "gone", None),
              acked(3, 10.5, server="198.18.0.13")]
    got = instants.first_write(tl_of(canary=canary), T_FAULT, {R2, "198.18.0.13"})
    # the last failure, exactly at the fault, bounds the error bar
    assert (got.at_s, got.error_s) == (pytest.approx(0.501), pytest.approx(0.501))
    assert got.evidence == "first canary write acknowledged by the new primary"
    tl = tl_of(canary=canary)
    assert instants.first_write(tl, 10.6, {"198.18.0.13"}).reason == \
        "no canary write was acknowledged by the new primary"
    assert instants.first_write(tl, T_FAULT, {"198.18.0.13"}).at_s == pytest.approx(0.501)
    # a failed connection after the last failed write bounds it closer
    tl = tl_of(canary=canary, canary_connect=[CanaryConnect(10.3, 0, 0, None, "refused")])
    assert instants.first_write(tl, T_FAULT, {"198.18.0.13"}).error_s == pytest.approx(0.201)


def test_replication_at_the_fault_reads_each_role_from_its_own_stream() -> None:
    senders = json.dumps({"senders": [{"name": "region-2", "sync": "quorum"}]})
    repl = [
        ReplicationSample(9.0, "region-1", 1, 0, None, senders, None),
        ReplicationSample(9.1, "region-2", 1, 1, 0.25, None, None),
        # later, but each is no answer to its question:
        ReplicationSample(9.5, "region-1", 1, 1, 0.9, senders, None),  # in recovery
        ReplicationSample(9.6, "region-1", 0, 0, None, senders, "gone"),  # failed
        ReplicationSample(9.6, "region-2", 1, 0, 0.7, None, None),  # out of recovery
        ReplicationSample(9.7, "region-2", 0, 1, 0.8, None, "gone"),  # failed
        ReplicationSample(9.8, "region-2", 1, 1, None, None, None),  # no lag
        ReplicationSample(9.9, "region-1", 1, 0, None, json.dumps({"senders": []}), None),
        # the secondary's own view of a standby is not the primary's
        ReplicationSample(9.95, "region-2", 1, 0, None, json.dumps(
            {"senders": [{"name": "x", "sync": "async"}]}), None),
        ReplicationSample(11.0, "region-2", 1, 1, 0.01, None, None),  # after the fault
    ]
    got = instants.replication_at(tl_of(replication=repl), T_FAULT, primary="region-1",
                                 standby="region-2")
    assert got == {"sync_state": "quorum", "lag_at_fault_s": 0.25}
    nothing = instants.replication_at(tl_of(replication=repl[6:8]), T_FAULT, primary="region-1",
                                     standby="region-2")
    assert nothing == {"sync_state": None, "lag_at_fault_s": None}
    # the first sample of a stream is reached walking back
    first_only = instants.replication_at(tl_of(replication=repl[:2]), T_FAULT,
                                        primary="region-1", standby="region-2")
    assert first_only == {"sync_state": "quorum", "lag_at_fault_s": 0.25}


# --- a hold -----------------------------------------------------------------------------------


def _hold_timeline(end: float | None, *, samples: bool = True) -> Timeline:
    events = [Event(20.0, "hold-end", "region-2", json.dumps({"checks": 1})),  # an earlier one
              Event(21.0, "hold-start", "region-2", json.dumps({"hold_s": 60.0,
                                                                "timeline_bytes": 1000}))]
    if end is not None:
        events.append(Event(end, "hold-end", "region-2", json.dumps(
            {"checks": 5, "checks_failed": 1, "timeline_bytes": 3000})))
    rows = http("global", [(20.5, True, "region-1"), (21.0, True, "region-2"),
                           (22.0, False, None), (23.0, True, "region-1"),
                           (24.0, True, "region-2")]) if samples else []
    canary = [acked(1, 20.9), acked(2, 21.0), CanaryAttempt(3, 0, 22.0, None, "failed", None,
                                                            "x", None), acked(4, 23.5)]
    return tl_of(events=events, http=rows, canary=canary)


def test_a_hold_counts_between_its_events() -> None:
    h = holds.hold(_hold_timeline(23.0))
    assert h is not None
    assert (h.region, h.planned_s, h.start, h.end, h.ended) == ("region-2", 60.0, 21.0, 23.0,
                                                                 True)
    assert (h.global_requests, h.global_ok, h.served_by_region) == (3, 2, 1)
    assert (h.canary_attempts, h.canary_errors) == (2, 1)
    assert (h.checks, h.checks_failed, h.timeline_bytes) == (5, 1, (1000, 3000))
    at_once = holds.hold(_hold_timeline(21.0))
    assert at_once is not None and (at_once.end, at_once.ended) == (21.0, True)


def test_a_hold_whose_end_was_never_recorded_runs_to_the_last_global_sample() -> None:
    h = holds.hold(_hold_timeline(None))
    assert h is not None
    assert (h.end, h.ended, h.global_requests, h.checks, h.timeline_bytes) == (
        24.0, False, 4, None, (1000, None))
    bare = holds.hold(_hold_timeline(None, samples=False))
    assert bare is not None and (bare.end, bare.global_requests) == (21.0, 0)
    no_detail = tl_of(events=[Event(21.0, "hold-start", None, None),
                              Event(22.0, "hold-end", None, None)])
    h = holds.hold(no_detail)
    assert h is not None and (h.planned_s, h.checks, h.timeline_bytes) == (None, None,
                                                                            (None, None))
    assert holds.hold(tl_of()) is None


# --- sampler statistics and gaps -----------------------------------------------------------------


def test_sampler_statistics_cover_every_stream_with_their_percentiles() -> None:
    # 101 distinct gaps: the 50th, 51st, 99th and 100th percentiles all differ
    ts = [0.0]
    for i in range(101):
        ts.append(round(ts[-1] + 0.01 + i / 10_000, 6))
    rows = http("global", [(t, i % 10 != 0, "region-1") for i, t in enumerate(ts)])
    ha = [HaSample(t, "etcd", 1, "region-1", None, None) for t in ts]
    canary = [acked(i + 1, t) for i, t in enumerate(ts)]
    one = http("region-1", [(1.0, True, "region-1")])
    found = stats.sampler_stats(tl_of(http=rows + one, ha=ha, canary=canary))
    assert set(found) == {"http:global", "http:region-1", "ha:etcd", "canary"}
    gaps = sorted(b - a for a, b in zip(ts, ts[1:], strict=False))
    for name in ("http:global", "ha:etcd", "canary"):
        assert found[name]["samples"] == 102
        assert found[name]["interval_p50_s"] == round(gaps[50], 4)
        assert found[name]["interval_p99_s"] == round(gaps[99], 4)
    assert found["http:global"]["errors"] == 11 and found["ha:etcd"]["errors"] == 0
    assert found["http:region-1"] == {"samples": 1, "errors": 0, "interval_p50_s": None,
                                      "interval_p99_s": None}


def test_gap_percentiles_skip_empty_windows() -> None:
    assert stats.gap_percentiles([[], [1.0, 2.0], [], [4.0]], (0, 100)) == (3, [1.0, 2.0])
    assert stats.gap_percentiles([[], []], (50,)) == (0, [None])


def test_canary_sends_as_stored_at_the_sliding_buffers_edges(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows of 8 sends, a buffer of 4: equal sends across a window's edge are in order;
    a send earlier than one already given is disorder, however little earlier."""
    monkeypatch.setattr(store_timeline, "CHUNK", 1)
    monkeypatch.setattr(reader.Timeline, "SEND_LAG", 4)

    def sends(ts: list[float]) -> list[float]:
        canary = [acked(i + 1, t) for i, t in enumerate(ts)]
        return [t for w in tl_of(canary=canary).canary_sends_as_stored() for t in w]

    ties = [float(i // 2) for i in range(24)]  # 0, 0, 1, 1, ...: a tie across each edge
    assert sends(ties) == ties
    exact = [float(i) for i in range(12)]  # 8, then 4 more: the buffer holds exactly 4
    assert sends(exact) == exact
    assert sends(exact[:4]) == exact[:4]  # a canary as long as the buffer
    edge = [0.0, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert sends(edge) == edge  # the next window starts with the send last given
    # the first window gives 0..3; a later send of 3.5 comes after 3 (fine), one of 2.5
    # came too late: it is neither skipped nor given out of order
    late = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 2.5, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0]
    with pytest.raises(reader.Disordered):
        sends(late)
    fine = [*late[:9], 3.5, *late[10:]]
    assert sends(fine) == sorted(fine)


# --- the write accounting at its edges ------------------------------------------------------------


def test_numbers_never_attempted_are_found_around_and_between_sparse_attempts() -> None:
    far = 5_000_000  # too sparse for a byte per number: the SQL path
    canary = [acked(10, 1.0), acked(10 + far, 2.0), acked(10 + 2 * far, 3.0)]
    present = {s: 1 for s in (10, 10 + far, 10 + 2 * far)}
    edges = {9: 1, 11: 1, 9 + far: 1, 11 + far: 1, 11 + 2 * far: 1}
    acc = writes.account_writes(canary, {**present, **edges}, t_fault=None, start_seq=9)
    assert acc.unexpected == 5
    assert writes.account_writes(canary, {**present, **edges}, t_fault=None,
                                  start_seq=10).unexpected == 4


def test_numbers_never_attempted_in_a_dense_range_from_start_seq_on() -> None:
    canary = [acked(5, 1.0), acked(8, 2.0)]
    present = {5: 1, 6: 1, 7: 1, 8: 1}
    assert writes.account_writes(canary, present, t_fault=None, start_seq=6).unexpected == 2
    assert writes.account_writes(canary, present, t_fault=None, start_seq=7).unexpected == 1
    single = writes.account_writes([acked(5, 1.0)], {4: 1, 5: 1, 6: 1}, t_fault=None)
    assert single.unexpected == 2


def test_the_defaults_judge_every_row_from_seq_1() -> None:
    canary = [acked(2, 1.0)]
    assert writes.account_writes(canary, {1: 1, 2: 1}, t_fault=None).unexpected == 1
    conn = reader.memory_store(canary=canary, present={1: 1, 2: 1})
    assert writes.account_stored_writes(conn, t_fault=None).unexpected == 1


def test_a_write_lost_exactly_at_the_fault_is_not_lost_after_it() -> None:
    canary = [acked(1, 9.0), CanaryAttempt(2, 0, 9.99, T_FAULT, "ok", R1, None, None),
              CanaryAttempt(3, 0, 10.0, 10.2, "ok", R1, None, None)]
    acc = writes.account_writes(canary, {1: 1}, t_fault=T_FAULT)
    assert acc.lost == 2 and acc.lost_after_fault == 1


def test_the_rpo_error_without_loss_is_the_median_gap_of_the_last_second() -> None:
    # older acknowledgements, 1-2 s before the fault, further apart: they do not count
    old = [8.1, 8.5]
    last = [9.01]
    for i in range(51):  # 51 gaps, all different: the 50th and 51st percentiles differ
        last.append(round(last[-1] + 0.01 + i / 10_000, 6))
    canary = [CanaryAttempt(i + 1, 0, t - 0.0005, t, "ok", R1, None, None)
              for i, t in enumerate(old + last)]
    acc = writes.account_writes(canary, {i + 1: 1 for i in range(len(canary))},
                                 t_fault=T_FAULT)
    gaps = sorted(b - a for a, b in zip(last, last[1:], strict=False))
    assert acc.rpo_s == 0.0 and acc.rpo_error_s == pytest.approx(gaps[25])
    assert gaps[24] < gaps[25] < gaps[26]
    one = writes.account_writes([acked(1, 9.5)], {1: 1}, t_fault=T_FAULT)
    assert one.rpo_error_s is None


@st.composite
def stored_tables(draw: st.DrawFn) -> tuple[list[int | None], list[int]]:
    seqs: list[int | None] = list(range(draw(st.integers(1, 5)), draw(st.integers(6, 80))))
    for _ in range(draw(st.integers(0, 6))):
        if not seqs:  # a gap took them all
            break
        kind = draw(st.sampled_from(["swap", "gap", "dup", "null"]))
        i = draw(st.integers(0, len(seqs) - 1))
        if kind == "swap":
            j = draw(st.integers(0, len(seqs) - 1))
            seqs[i], seqs[j] = seqs[j], seqs[i]
        elif kind == "gap":
            del seqs[i:i + draw(st.integers(1, 20))]
        elif kind == "dup":
            seqs.insert(i, seqs[draw(st.integers(0, len(seqs) - 1))])
        else:
            seqs.insert(i, None)
    deleted = draw(st.lists(st.integers(1, len(seqs) + 1), max_size=10))
    return seqs, deleted


@given(stored_tables())
def test_a_stored_set_read_in_small_windows_holds_exactly_its_numbers(
        table: tuple[list[int | None], list[int]]) -> None:
    """Windows of 8 rowids, halved down to 2, over rows with gaps in their rowids (deleted
    rows), numbers out of order, twice or NULL: the same numbers as the table holds, and
    the extra aggregate of every window."""
    seqs, deleted = table
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE final_rows (seq INTEGER, n INTEGER)")
    conn.executemany("INSERT INTO final_rows VALUES (?, 1)", [(s,) for s in seqs])
    conn.executemany("DELETE FROM final_rows WHERE rowid = ?", [(r,) for r in deleted])
    held = [r[0] for r in conn.execute("SELECT seq FROM final_rows WHERE seq IS NOT NULL")]
    chunk, stored_min = store_timeline.CHUNK, seqsets.SeqSet.STORED_MIN
    store_timeline.CHUNK, seqsets.SeqSet.STORED_MIN = 1, 2
    try:
        found, extra = seqsets.SeqSet.stored(conn, "final_rows", ", count(*)")
    finally:
        store_timeline.CHUNK, seqsets.SeqSet.STORED_MIN = chunk, stored_min
    assert [s for s in range(0, 100) if s in found] == sorted(set(held))
    assert found.count(0) == len(set(held))
    assert sum(w[0] for w in extra) == conn.execute("SELECT count(*) FROM final_rows").fetchone()[0]


@pytest.mark.parametrize(("seqs", "deleted"), [
    ([5, 5, 7, 8, 9, 10, 11, 12], []),  # a duplicate and a gap spanning a leaf window's extent
    (list(range(1, 41)), list(range(9, 25))),  # two whole windows of deleted rows
    ([None] * 9 + list(range(3, 20)), []),  # a window of NULLs
])
def test_a_stored_set_across_windows_that_look_like_ranges(
        monkeypatch: pytest.MonkeyPatch, seqs: list[int | None], deleted: list[int]) -> None:
    monkeypatch.setattr(store_timeline, "CHUNK", 1)
    monkeypatch.setattr(seqsets.SeqSet, "STORED_MIN", 4)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE final_rows (seq INTEGER, n INTEGER)")
    conn.executemany("INSERT INTO final_rows VALUES (?, 1)", [(s,) for s in seqs])
    conn.executemany("DELETE FROM final_rows WHERE rowid = ?", [(r,) for r in deleted])
    held = {r[0] for r in conn.execute("SELECT seq FROM final_rows WHERE seq IS NOT NULL")}
    found, _ = seqsets.SeqSet.stored(conn, "final_rows")
    assert [s for s in range(0, 60) if s in found] == sorted(held)


# --- streams and stored rows ------------------------------------------------------------------


def test_a_stream_is_read_by_index_within_its_bounds_only() -> None:
    stream = tl_of(http=http("global", [(t, True, "region-1") for t in (1.0, 2.0, 3.0)])) \
        .stream("http", "global")
    assert [stream[i].t for i in (0, 2, -3)] == [1.0, 3.0, 1.0]
    with pytest.raises(IndexError, match="^3$"):
        stream[3]
    with pytest.raises(IndexError):
        stream[-4]
    with pytest.raises(ValueError, match="^a stream is read by contiguous windows$"):
        stream[::2]
    assert [r.t for r in stream.rows_back(3)] == [3.0, 2.0, 1.0]


def test_a_run_recorded_before_a_table_existed_reads_it_as_an_empty_stream(
        tmp_path: Path) -> None:
    run_dir = fixture_run.build(tmp_path / "run")
    conn = sqlite3.connect(run_dir / timeline.FILE)
    conn.execute("DROP TABLE ha")
    conn.close()
    tl, _ = reader.open_run(run_dir)
    try:
        ha = tl.stream("ha", None)
        assert len(ha) == 0 and list(ha) == [] and list(ha.times()) == []
        with pytest.raises(IndexError):
            ha[0]
        assert list(ha.rows_back(0)) == []
        assert instants.leader_key_lost(tl, 1.0, "region-1").reason == \
            "the HA manager's leader key was not sampled"
        assert "ha:etcd" not in stats.sampler_stats(tl)
    finally:
        tl.close()


def test_a_loaded_run_counts_the_same_from_its_rows_as_a_mapping(tmp_path: Path) -> None:
    """The stored canary and final rows read through their Python views (StoredRows,
    FinalRows) give the numbers the SQL path gives."""
    run_dir = fixture_run.build(tmp_path / "run", lost=True)
    want = summaries.build(run_dir)
    tl, present = reader.open_run(run_dir)
    try:
        assert present is not None
        rows = dict(present)  # FinalRows as a mapping: seq -> n
        assert len(present) == len(rows) == 168 and 47 not in rows and rows[1] == 1
        assert sorted(present) == sorted(rows)
        with pytest.raises(KeyError, match="^47$"):
            present[47]
        assert summaries.compute(tl, rows)["writes"] == want["writes"]
        canary = tl.canary
        assert len(canary) == 200 and [r.seq for r in canary][:3] == [1, 2, 3]
        first = next(iter(canary))
        assert first in canary and first._replace(seq=-1) not in canary
    finally:
        tl.close()
    with pytest.raises(sqlite3.ProgrammingError):
        tl._store.execute("SELECT 1")


def test_final_rows_read_a_seq_stored_twice_by_its_last_row() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE final_rows (seq INTEGER, n INTEGER)")
    conn.executemany("INSERT INTO final_rows VALUES (?, ?)", [(1, 1), (2, 1), (1, 3)])
    rows = reader.FinalRows(conn)
    assert (rows[1], rows[2], len(rows), sorted(rows)) == (3, 1, 2, [1, 2])


def test_first_write_answers_per_instant_and_hosts() -> None:
    canary = [acked(1, 10.2, server=R2), acked(2, 10.6, server=R2)]
    tl = tl_of(canary=canary)
    assert instants.first_write(tl, T_FAULT, {R2}).at_s == pytest.approx(0.201)
    assert instants.first_write(tl, 10.5, {R2}).at_s == pytest.approx(0.101)
    assert instants.first_write(tl, 10.5, {R1}).at_s is None


@pytest.mark.parametrize("connects", ["none", "one", "no table"])
def test_a_stored_run_loads_with_or_without_its_connection_log(tmp_path: Path,
                                                                connects: str) -> None:
    run_dir = fixture_run.build(tmp_path / "run")
    conn = sqlite3.connect(run_dir / timeline.FILE)
    with conn:
        if connects == "one":
            conn.execute("INSERT INTO canary_connect VALUES (1.2, 0, 0, NULL, 'refused')")
        elif connects == "no table":
            conn.execute("DROP TABLE canary_connect")
    conn.close()
    tl = reader.load(timeline.connect(run_dir))
    try:
        want = [CanaryConnect(1.2, 0, 0, None, "refused")] if connects == "one" else []
        assert list(tl.canary_connect) == want
        assert [e.kind for e in tl.events][:2] == ["recorder-ready", "experiment-started"]
    finally:
        tl.close()
