"""Canary throughput against a bare psycopg insert loop on the same database in the same
run (target: ratio >= 0.8), and the resolution the canary writers give under synchronous
replication across the lab's 20 ms one-way link (target: acknowledgements at most 10 ms
apart), which is how the default number of writers was chosen.

Run: sudo .venv/bin/python bench/bench_canary.py   (part of `make bench`)
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from _lab import lab  # noqa: E402

from gameday.measure import metrics, timeline  # noqa: E402
from gameday.measure.canary import Canary  # noqa: E402

SECONDS = 5.0


def bare_loop(dsn: str, table: str) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        seq = conn.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {table}").fetchone()[0]
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < SECONDS:
            conn.execute(f"INSERT INTO {table} (seq, writer) VALUES (%s, %s)", (seq + n, 99))
            n += 1
    return n / SECONDS


def canary_run(dsn: str, table: str, writers: int) -> tuple[float, float | None, float | None]:
    """(acknowledged writes/s, p50 and p99 gap between acknowledgements)."""
    run_dir = Path(tempfile.mkdtemp(prefix="gameday-bench-canary-"))
    anchor, _ = timeline.Clock.new_anchor()
    timeline.create(run_dir, {"anchor_ns": anchor})
    out = timeline.BatchWriter(run_dir)
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = conn.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {table}").fetchone()[0]
    canary = Canary(dsn, table, timeline.Clock(anchor), out, writers=writers, start_seq=start)

    async def main() -> None:
        stop = asyncio.Event()

        async def flusher() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.25)
                out.flush()

        async def timer() -> None:
            await asyncio.sleep(SECONDS)
            stop.set()

        await asyncio.gather(canary.run(stop), flusher(), timer())

    asyncio.run(main())
    out.close()
    conn = timeline.connect(run_dir)
    acks = [r[0] for r in conn.execute("SELECT t_ack FROM canary WHERE outcome = 'ok' ORDER BY t_ack")]
    conn.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    gaps = metrics.intervals(acks)
    return canary.acked / SECONDS, metrics.percentile(gaps, 50), metrics.percentile(gaps, 99)


def main() -> int:
    failed = False
    with lab("async") as (the_lab, _):
        dsn, table = the_lab.writer_dsn(), the_lab.database.canary_table
        bare = bare_loop(dsn, table)
        rate, _, _ = canary_run(dsn, table, 1)
        ratio = rate / bare
        print(f"async replication: bare psycopg loop {bare:,.0f} writes/s, canary (1 writer) "
              f"{rate:,.0f} writes/s, ratio {ratio:.2f} (target >= 0.80)")
        failed |= ratio < 0.8
    with lab("sync") as (the_lab, _):
        dsn, table = the_lab.writer_dsn(), the_lab.database.canary_table
        print(f"sync replication, {the_lab.inter_region_delay_ms:g} ms one way:")
        chosen = None
        for writers in (1, 2, 4, 8):
            rate, p50, p99 = canary_run(dsn, table, writers)
            print(f"  {writers} writer(s): {rate:7.1f} acknowledged writes/s, gap p50 "
                  f"{(p50 or 0) * 1000:5.1f} ms, p99 {(p99 or 0) * 1000:5.1f} ms")
            if chosen is None and p50 is not None and p50 <= 0.010:
                chosen = writers
        print(f"smallest writer count with acknowledgements <= 10 ms apart (p50): {chosen} "
              "(default canary_writers = 4)")
        failed |= chosen is None or chosen > 4
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
