"""The canary is counted in SQLite (writes.account_stored_writes, first_write, the
sampler statistics) and the report draws only the runs in its window (svg._lane). These
tests hold each to the plain row-by-row definition it replaced, on random timelines: the
numbers must be the same, bit for bit."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from collections.abc import Sequence

import pytest

from gameday.measure import instants, stats
from gameday.measure.store import reader, seqsets, writes
from gameday.measure.store import timeline as store_timeline
from gameday.measure.store.timeline import HttpSample
from gameday.report import svg

R1, R2 = "198.18.0.11", "198.18.0.12"

# --- the row-by-row definitions (as they were before the counting moved to SQLite) ------


def reference_accounting(canary: Sequence[tuple], present: dict[int, int], *,
                         t_fault: float | None, start_seq: int = 1, cutoff: float | None = None,
                         live: bool = False) -> writes.WriteAccounting:
    def settled(r: tuple) -> bool:
        return cutoff is None or (r[3] if r[3] is not None else r[2]) < cutoff

    attempts = [r for r in canary if settled(r)]
    inflight = {r[0] for r in canary if not settled(r)}
    attempted_seqs = {r[0] for r in canary}
    acked = [r for r in attempts if r[4] == "ok"]
    lost = [r for r in acked if r[0] not in present]
    unknown = [r for r in attempts if r[4] == "unknown"]
    recovered = sum(1 for r in unknown if r[0] in present)
    failed_present = sum(1 for r in attempts if r[4] == "failed" and r[0] in present)
    unexpected = failed_present + (0 if live else sum(
        1 for seq in present if seq >= start_seq and seq not in attempted_seqs
        and seq not in inflight))
    duplicate = sum(n - 1 for n in present.values() if n > 1)
    not_durable = sum(1 for r in acked if r[7] and writes.SYNC_CANCELLED in r[7])
    rpo_s, rpo_err, window = 0.0, None, None
    lost_after = 0
    if lost:
        lost_t = sorted(r[3] for r in lost)
        window = (lost_t[0], lost_t[-1])
        survivors = [r[3] for r in acked if r[0] in present and r[3] < lost_t[0]]
        last_survivor = max(survivors) if survivors else None
        if t_fault is not None and last_survivor is not None:
            rpo_s = max(0.0, t_fault - last_survivor)
        elif t_fault is not None:
            rpo_s = max(0.0, t_fault - lost_t[0])
        lost_after = sum(1 for t in lost_t if t_fault is not None and t > t_fault)
    ack_times = sorted(r[3] for r in acked)
    if lost:
        first_lost = window[0] if window else None
        before = [t for t in ack_times if first_lost is not None and t < first_lost]
        rpo_err = first_lost - before[-1] if before and first_lost is not None else None
    else:
        near = [t for t in ack_times if t_fault is not None and t_fault - 1.0 <= t <= t_fault]
        rpo_err = stats.percentile(stats.intervals(near), 50) if len(near) > 1 else None
    return writes.WriteAccounting(
        attempted=len(attempts), acked=len(acked), lost=len(lost), recovered=recovered,
        unknown_absent=len(unknown) - recovered, unexpected=unexpected, duplicate=duplicate,
        not_durable=not_durable, lost_seqs=tuple(sorted(r[0] for r in lost)),
        lost_after_fault=lost_after, loss_window=window, rpo_s=rpo_s, rpo_error_s=rpo_err,
        lost_by_server=dict(Counter(r[5] or "?" for r in lost)),
    )


def reference_first_write(canary: Sequence[tuple], connects: Sequence[tuple], t_fault: float,
                          hosts: set[str]) -> tuple[float | None, float | None]:
    first = None
    for row in canary:
        if row[4] == "ok" and row[3] >= t_fault and row[5] in hosts and (
                first is None or row[3] < first[3]):
            first = row
    if first is None:
        return None, None
    t_ack = first[3]
    failures = [r[2] for r in canary if r[4] != "ok" and r[2] < t_ack]
    failures += [r[0] for r in connects if not r[2] and r[0] < t_ack]
    last_fail = max(failures) if failures else None
    error = t_ack - last_fail if last_fail is not None and last_fail >= t_fault else None
    return t_ack - t_fault, error


# --- random timelines -------------------------------------------------------------------


def random_canary(rng: random.Random, n: int, *, start_seq: int = 1) -> list[tuple]:
    rows = []
    t = rng.uniform(0, 5)
    for i in range(n):
        seq = start_seq + i
        if rng.random() < 0.05 and rows:
            seq = rng.choice(rows)[0]  # a duplicate attempt (not expected, still counted)
        elif rng.random() < 0.05:
            continue  # a number never recorded
        t += rng.choice((0.001, 0.002, 0.0025, rng.uniform(0, 0.01)))
        t_send = round(t, rng.choice((3, 6, 9)))
        outcome = rng.choices(("ok", "unknown", "failed"), (0.8, 0.1, 0.1))[0]
        t_ack = t_send + rng.uniform(0.0005, 0.05) if outcome == "ok" else None
        notice = rng.choice((None, None, "", writes.SYNC_CANCELLED + " due to user request",
                             "some other notice"))
        server = rng.choice((R1, R2, None)) if outcome != "failed" or rng.random() < 0.5 else None
        rows.append((seq, rng.randrange(3), t_send, t_ack, outcome, server, None, notice))
    rng.shuffle(rows)  # stored in completion order, not send order
    return rows


def random_present(rng: random.Random, canary: Sequence[tuple], *, sparse: bool) -> dict[int, int]:
    seqs = sorted({r[0] for r in canary})
    present = {s: rng.choice((1, 1, 1, 2)) for s in seqs if rng.random() < 0.85}
    top = max(seqs, default=0)
    for _ in range(rng.randrange(5)):
        present[top + rng.randrange(1, 20)] = 1  # never attempted
        present[rng.randrange(-5, 3)] = 1  # below start_seq
    if sparse:
        present[top + 10**9] = 1
    items = list(present.items())
    rng.shuffle(items)  # the new primary returns its rows in any order
    return dict(items)


@pytest.mark.parametrize("seed", range(40))
def test_stored_accounting_equals_the_row_by_row_definition(seed: int) -> None:
    rng = random.Random(seed)
    start_seq = rng.choice((1, 1, 50))
    canary = random_canary(rng, rng.choice((0, 1, 5, 300)), start_seq=start_seq)
    present = random_present(rng, canary, sparse=seed % 4 == 3)
    sends = sorted(r[2] for r in canary) or [0.0]
    kwargs = {
        "t_fault": rng.choice((None, rng.uniform(sends[0], sends[-1] + 0.1), sends[0] - 1)),
        "start_seq": start_seq,
        "cutoff": rng.choice((None, rng.uniform(sends[0], sends[-1] + 0.1))),
        "live": rng.random() < 0.3,
    }
    assert writes.account_writes(canary, present, **kwargs) == \
        reference_accounting(canary, present, **kwargs)


def test_stored_accounting_of_a_loss_at_the_fault() -> None:
    canary = [(i, i % 2, i * 0.01, i * 0.01 + 0.004, "ok", R1, None, None) for i in range(1, 200)]
    present = {i: 1 for i in range(1, 200) if not 100 <= i < 104}
    acc = writes.account_writes(canary, present, t_fault=1.0)
    assert acc == reference_accounting(canary, present, t_fault=1.0)
    assert acc.lost_seqs == (100, 101, 102, 103) and acc.rpo_s == pytest.approx(1.0 - 0.994)


@pytest.mark.parametrize("seed", range(20))
def test_first_write_equals_the_row_by_row_definition(seed: int) -> None:
    rng = random.Random(seed)
    canary = random_canary(rng, rng.choice((0, 5, 200)))
    connects = [(rng.uniform(0, 6), rng.randrange(3), int(rng.random() < 0.3),
                 rng.choice((R1, R2, None)), None) for _ in range(rng.randrange(20))]
    t_fault = rng.uniform(0, 6)
    tl = reader.Timeline(events=[], dns=[], http=[], canary=canary, replication=[],
                          canary_connect=connects)
    first = instants.first_write(tl, t_fault, {R2})
    assert (first.at_s, first.error_s) == reference_first_write(canary, connects, t_fault, {R2})


def test_canary_sampler_statistics_equal_the_row_by_row_definition() -> None:
    rng = random.Random(7)
    canary = random_canary(rng, 500)
    tl = reader.Timeline(events=[], dns=[], http=[], canary=canary, replication=[])
    gaps = stats.intervals(sorted(r[2] for r in canary))
    assert stats.sampler_stats(tl)["canary"] == {
        "samples": len(canary),
        "errors": sum(1 for r in canary if r[4] != "ok"),
        "interval_p50_s": round(stats.percentile(gaps, 50), 4),
        "interval_p99_s": round(stats.percentile(gaps, 99), 4),
    }


@pytest.mark.parametrize("seed", range(30))
def test_svg_lane_draws_the_same_runs_as_the_whole_stream(seed: int) -> None:
    rng = random.Random(seed)
    t, rows = rng.uniform(-50, 0), []
    for _ in range(rng.choice((0, 1, 2, 40, 400))):
        t += rng.choice((0.05, 0.05, 0.051, rng.uniform(0, 0.2)))
        ok = rng.random() < 0.9
        rows.append(HttpSample(t, "global", int(ok), None,
                               rng.choice(("region-1", "region-1", "region-2")) if ok else None,
                               None, None, None, None))
    origin = rng.uniform(-10, 10)
    t0 = rng.uniform(-60, 20)
    t1 = t0 + rng.choice((0.01, 1.0, 10.0, 100.0))
    state = lambda r: (r.region or "?") if r.ok else "fail"  # noqa: E731
    whole = svg._segments([(r.t - origin, state(r)) for r in rows], t1)
    drawn = [s for s in whole if not (s[1] < t0 or s[0] > t1)]
    stream = reader.Timeline(events=[], dns=[], http=rows, canary=[],
                              replication=[]).stream("http", "global")
    for sql_state in (None, reader.HTTP_STATE):  # walking the rows, or asking SQLite
        assert [s for s in svg._lane(stream, state, origin, t0, t1, sql_state=sql_state)
                if not (s[1] < t0 or s[0] > t1)] == drawn


@pytest.mark.parametrize("seed", range(20))
def test_gap_percentiles_equal_sorting_every_gap(seed: int) -> None:
    # windows of any size, ties, gaps far apart and within one bin of each other
    rng = random.Random(seed)
    times, t = [], rng.uniform(-5, 5)
    for _ in range(rng.choice((0, 1, 2, 3, 50, 3000))):
        t += rng.choice((0.0, 0.05, 0.05 + 1e-9, 2e-7, rng.uniform(0, 2), 37.5))
        times.append(t)
    windows, i = [], 0
    while i < len(times):
        size = rng.choice((1, 2, 7, 500))
        windows.append(times[i:i + size])
        i += size
    ps = (0, 1, 50, 90, 99, 100)
    samples, got = stats.gap_percentiles(windows, ps)
    gaps = stats.intervals(times)
    assert samples == len(times)
    assert got == [stats.percentile(gaps, p) for p in ps]


def test_stream_reads_windows_in_time_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_timeline, "CHUNK", 3)
    rng = random.Random(3)
    rows = [HttpSample(rng.uniform(0, 100), target, 1, 200, "region-1", None, None, None, None)
            for target in ("global", "region-1") for _ in range(20)]
    tl = reader.Timeline(events=[], dns=[], http=rows, canary=[], replication=[])
    stream = tl.stream("http", "global")
    want = sorted(r.t for r in rows if r.target == "global")
    assert len(stream) == 20 and [r.t for r in stream] == want
    assert [t for window in stream.times() for t in window] == want
    assert [r.t for r in stream.rows_back(11)] == want[:11][::-1]
    assert [r.t for r in stream[4:9]] == want[4:9] and stream[-1].t == want[-1]
    assert stream.at(want[7]) == 7 and stream.at(101.0) == 20
    assert tl.names("http") == ["global", "region-1"]
    assert len(tl.stream("http", "nowhere")) == 0


@pytest.mark.parametrize("disorder", [0, 3, 50, 10_000])
def test_canary_sends_come_in_order_however_they_were_stored(
        monkeypatch: pytest.MonkeyPatch, disorder: int) -> None:
    # stored nearly in order (a write recorded up to `disorder` rows late); past the
    # sliding buffer of 8 sends, the read as stored gives up and the gaps come from
    # SQLite's sort
    monkeypatch.setattr(store_timeline, "CHUNK", 2)
    monkeypatch.setattr(reader.Timeline, "SEND_LAG", 8)
    rng = random.Random(disorder)
    sends = sorted(rng.uniform(0, 100) for _ in range(400))
    stored = list(sends)
    for _ in range(20):
        i = rng.randrange(len(stored))
        j = min(len(stored) - 1, i + rng.randint(0, disorder))
        stored.insert(j, stored.pop(i))
    canary = [(seq, 0, t, t + 0.001, "ok", R1, None, None) for seq, t in enumerate(stored, 1)]
    tl = reader.Timeline(events=[], dns=[], http=[], canary=canary, replication=[])
    want = stats.gap_percentiles([sends], (50, 90, 99))
    assert stats.canary_gap_percentiles(tl, (50, 90, 99)) == want
    try:
        as_stored = [t for window in tl.canary_sends_as_stored() for t in window]
    except reader.Disordered:
        assert disorder > 8
    else:
        assert as_stored == sends


def test_svg_lane_finds_the_ends_of_long_runs_in_sql() -> None:
    # a long failing run opens the window and a long region-2 run closes it: their first
    # and last samples lie far outside the window
    rows = [HttpSample(i * 0.05, "global", int(not 100 <= i < 300), None,
                       "region-2" if i >= 300 else "region-1", None, None, None, None)
            for i in range(600)]
    stream = reader.Timeline(events=[], dns=[], http=rows, canary=[],
                              replication=[]).stream("http", "global")
    state = lambda r: (r.region or "?") if r.ok else "fail"  # noqa: E731
    walked = svg._lane(stream, state, 0.0, 12.0, 16.0)
    assert walked == svg._lane(stream, state, 0.0, 12.0, 16.0, sql_state=reader.HTTP_STATE)
    assert walked[0][:3:2] == (5.0, "fail") and walked[-1][2] == "region-2"


@pytest.mark.parametrize("case", ["in order", "gaps", "duplicates", "disorder", "nulls"])
def test_stored_numbers_are_found_by_windows_of_ranges_or_read_as_rows(
        monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    # windows of 8 rowids, halved down to 2: ranges found by aggregates alone, the rest
    # (a gap, a duplicate, numbers out of order, NULLs) read as rows; the same set either way
    monkeypatch.setattr(store_timeline, "CHUNK", 1)
    monkeypatch.setattr(seqsets.SeqSet, "STORED_MIN", 2)
    rng = random.Random(case)
    seqs: list[int | None] = list(range(5, 205))
    if case == "gaps":
        seqs = [s for s in seqs if s % 37 and s not in (50, 51, 52)]
    elif case == "duplicates":
        seqs[10:10] = [seqs[3], seqs[150]]
    elif case == "disorder":
        for _ in range(15):
            i, j = rng.randrange(len(seqs)), rng.randrange(len(seqs))
            seqs[i], seqs[j] = seqs[j], seqs[i]
    elif case == "nulls":
        seqs[20:20] = [None, None]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE final_rows (seq INTEGER, n INTEGER)")
    conn.executemany("INSERT INTO final_rows VALUES (?, 1)", [(s,) for s in seqs])
    found, _ = seqsets.SeqSet.stored(conn, "final_rows")
    want = {s for s in seqs if s is not None}
    assert [s for s in range(0, 210) if s in found] == sorted(want)
    assert found.count(0) == len(want)


def test_a_flush_marks_when_its_batch_was_cut_and_a_reader_waits_for_it(tmp_path) -> None:
    """The probes read the samples up to the moment they are called: wait_flushed returns
    once a flush cut after that moment is committed (every row added before it is then in
    the timeline), instead of sleeping longer than any flush could take."""
    import threading
    import time

    store_timeline.create(tmp_path, {"anchor_ns": 0})
    out = store_timeline.BatchWriter(tmp_path)
    assert store_timeline.flushed_ns(tmp_path) == 0
    assert store_timeline.wait_flushed(tmp_path, timeout_s=0.05) is False  # no flush
    before = time.monotonic_ns()
    out.flush()  # nothing pending: still a flush, everything added is on disk
    assert before <= store_timeline.flushed_ns(tmp_path) <= time.monotonic_ns()
    out.close()

    # the recorder's flusher (its own thread here, as the recorder is its own process)
    writers: list[store_timeline.BatchWriter] = []
    ready, stop = threading.Event(), threading.Event()

    def flusher() -> None:
        writer = store_timeline.BatchWriter(tmp_path)
        writers.append(writer)
        ready.set()
        while not stop.wait(0.1):
            writer.flush()
        writer.close()

    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        assert ready.wait(5)
        writers[0].add(HttpSample(1.0, "global", 1, 200, "region-1", R1, 0.001, 0.0, None))
        started = time.monotonic()
        assert store_timeline.wait_flushed(tmp_path, timeout_s=2.0) is True
        assert time.monotonic() - started < 1.0
        with sqlite3.connect(tmp_path / store_timeline.FILE) as db:
            assert db.execute("SELECT count(*) FROM http").fetchone()[0] == 1
    finally:
        stop.set()
        thread.join()
