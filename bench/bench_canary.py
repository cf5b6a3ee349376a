"""Canary throughput against a bare psycopg insert loop on the same database in the same
run, over several rounds (target: ratio >= 0.8 in every round; the median and the spread
are printed), and the resolution the canary writers give under synchronous
replication across the lab's 20 ms one-way link, which is how the default number of
writers was chosen.

Resolution is how far, on average, the canary places the instant writes stopped from the
true one: for a stop at a random instant, the distance back to the last acknowledgement
(or, for a restart, on to the first), averaged over the run, is sum(gap^2) / (2 sum(gap)),
since a random instant falls in long gaps more often than in short ones. One writer is
half a round trip off. Writers that all wait for the same standby flush are acknowledged
in one burst and are no better, while their median gap is near zero, so the median (the
measure issue 3 used) is printed but not judged. Target: the default writers at most 3/4
as far off as one writer (they do divide the round trip). Issue 3 asked for 10 ms; what
the default writers reach is printed against it: in this lab no writer count went below
about 10 ms, as the standby acknowledges about two flushes per round trip.

Each round runs the bare loop and the canary (1 writer) for 5 s each, in alternating 1 s
slices (which goes first alternates by round), each timed from its first write once
connected, so a burst of load from elsewhere on the machine hits both alike.

Run: sudo .venv/bin/python bench/bench_canary.py [--rounds N] [--async-only]
(part of `make bench`)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from _lab import lab  # noqa: E402

from gameday.foundation.settings import Rates  # noqa: E402
from gameday.measure import stats  # noqa: E402
from gameday.measure.canary import Canary  # noqa: E402
from gameday.measure.store import timeline  # noqa: E402

SECONDS = 5.0
# a round of the ratio: bare loop and canary alternate in slices of this many seconds
# (SECONDS of each in all), so a burst of load from elsewhere on this 2-core machine falls
# on both alike instead of on one 5-second measurement
SLICE_S = 1.0
DEFAULT_WRITERS = Rates().canary_writers


def bare_loop(dsn: dict[str, Any], table: str, seconds: float = SECONDS) -> tuple[int, float]:
    """(writes, seconds) of a plain psycopg loop, timed from its first write (connected)."""
    with psycopg.connect(**dsn, autocommit=True) as conn:
        seq = conn.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {table}").fetchone()[0]
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            conn.execute(f"INSERT INTO {table} (seq, writer) VALUES (%s, %s)", (seq + n, 99))
            n += 1
        return n, time.perf_counter() - started


def _run_canary(dsn: dict[str, Any], table: str, writers: int, seconds: float, *,
                from_first_ack: bool) -> tuple[Path, Canary, float]:
    """The recorder's canary with its own timeline and flusher, stopped after `seconds`
    (counted from its first acknowledged write when `from_first_ack`, so connecting is not
    timed): its run directory, the canary and the instant it was stopped."""
    run_dir = Path(tempfile.mkdtemp(prefix="gameday-bench-canary-"))
    anchor, _ = timeline.Clock.new_anchor()
    clock = timeline.Clock(anchor)
    timeline.create(run_dir, {"anchor_ns": anchor})
    out = timeline.BatchWriter(run_dir)
    with psycopg.connect(**dsn, autocommit=True) as conn:
        start = conn.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {table}").fetchone()[0]
    canary = Canary(dsn, table, clock, out, writers=writers, start_seq=start)
    stopped: list[float] = []

    async def main() -> None:
        stop = asyncio.Event()

        async def flusher() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.25)
                out.flush()

        async def timer() -> None:
            while from_first_ack and canary.acked == 0 and canary.connect_errors < 100:
                await asyncio.sleep(0.001)
            await asyncio.sleep(seconds)
            stop.set()
            stopped.append(clock.now())

        await asyncio.gather(canary.run(stop), flusher(), timer())

    asyncio.run(main())
    out.close()
    return run_dir, canary, stopped[0]


def canary_slice(dsn: dict[str, Any], table: str, seconds: float) -> tuple[int, float]:
    """(acknowledged writes, seconds) of the canary (1 writer), timed like the bare loop:
    from its first attempt (connected) to its stop, as its own timeline records them."""
    run_dir, _, stopped = _run_canary(dsn, table, 1, seconds, from_first_ack=True)
    conn = timeline.connect(run_dir)
    first, acked = conn.execute("SELECT min(t_send), sum(outcome = 'ok' AND t_ack <= ?) "
                                "FROM canary", (stopped,)).fetchone()
    conn.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    return int(acked or 0), stopped - first


def ratio_round(dsn: dict[str, Any], table: str, canary_first: bool) -> tuple[float, float]:
    """(bare writes/s, canary writes/s) over SECONDS of each, in alternating slices."""
    bare = [0, 0.0]
    can = [0, 0.0]
    for _ in range(round(SECONDS / SLICE_S)):
        for which in ((1, 0) if canary_first else (0, 1)):
            n, s = canary_slice(dsn, table, SLICE_S) if which else bare_loop(dsn, table, SLICE_S)
            acc = can if which else bare
            acc[0] += n
            acc[1] += s
    return bare[0] / bare[1], can[0] / can[1]


def expected_delay(gaps: list[float]) -> float | None:
    """The mean distance from a random instant of the run to the next acknowledgement
    (the same as to the previous one)."""
    total = sum(gaps)
    return sum(g * g for g in gaps) / (2 * total) if total > 0 else None


def canary_run(dsn: dict[str, Any], table: str, writers: int
               ) -> tuple[float, float | None, float | None, float | None]:
    """(acknowledged writes/s, p50 and p99 gap between acknowledgements, expected delay)."""
    run_dir, canary, _ = _run_canary(dsn, table, writers, SECONDS, from_first_ack=False)
    conn = timeline.connect(run_dir)
    acks = [r[0] for r in conn.execute("SELECT t_ack FROM canary WHERE outcome = 'ok' ORDER BY t_ack")]
    conn.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    gaps = stats.intervals(acks)
    return (canary.acked / SECONDS, stats.percentile(gaps, 50), stats.percentile(gaps, 99),
            expected_delay(gaps))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of bare loop + canary (default 5); each must hold")
    parser.add_argument("--async-only", action="store_true",
                        help="skip the writer-count sweep under synchronous replication")
    args = parser.parse_args()
    failed = False
    with lab("async") as (the_lab, _):
        dsn, table = the_lab.writer_params(), the_lab.database.canary_table
        ratios = []
        for i in range(args.rounds):
            bare, rate = ratio_round(dsn, table, canary_first=bool(i % 2))
            ratios.append(rate / bare)
            print(f"async replication, round {i + 1}/{args.rounds}: bare psycopg loop "
                  f"{bare:,.0f} writes/s, canary (1 writer) {rate:,.0f} writes/s, ratio "
                  f"{rate / bare:.2f} (target >= 0.80): "
                  f"{'ok' if rate / bare >= 0.8 else 'MISSED'}", flush=True)
        print(f"canary / bare loop over {len(ratios)} rounds: median "
              f"{statistics.median(ratios):.2f}, min {min(ratios):.2f}, max {max(ratios):.2f} "
              f"(target >= 0.80 in every round): "
              f"{'ok' if min(ratios) >= 0.8 else 'MISSED'}")
        failed |= min(ratios) < 0.8
    if args.async_only:
        return 1 if failed else 0
    with lab("sync") as (the_lab, _):
        dsn, table = the_lab.writer_params(), the_lab.database.canary_table
        print(f"sync replication, {the_lab.inter_region_delay_ms:g} ms one way:")
        off: dict[int, float] = {}
        for writers in sorted({1, 2, 4, 8, DEFAULT_WRITERS}):
            rate, p50, p99, delay = canary_run(dsn, table, writers)
            off[writers] = delay if delay is not None else float("inf")
            print(f"  {writers} writer(s): {rate:7.1f} acknowledged writes/s, gap p50 "
                  f"{(p50 or 0) * 1000:5.1f} ms, p99 {(p99 or 0) * 1000:5.1f} ms; a stop "
                  f"placed {off[writers] * 1000:5.1f} ms off on average")
        ok = off[DEFAULT_WRITERS] <= 0.75 * off[1]
        print(f"default {DEFAULT_WRITERS} writers place a stop {off[DEFAULT_WRITERS] * 1000:.1f} "
              f"ms off, {off[DEFAULT_WRITERS] / off[1]:.2f} of one writer's (target <= 0.75): "
              f"{'ok' if ok else 'MISSED'}; issue 3's 10 ms: "
              f"{'reached' if off[DEFAULT_WRITERS] <= 0.010 else 'not reached'}")
        failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
