"""Canary throughput against the best plain psycopg loop on the same database in the same
run, over several rounds (target: ratio >= 0.9 in every round; the median and the spread
are printed), and the resolution the canary writers give under synchronous replication
across the lab's 20 ms one-way link, which is how the default number of writers was
chosen.

The baseline is what a careful application's loop does: one connection, one cursor, the
INSERT prepared on the server, into the same table, one write per transaction, in a
thread of its own. (A loop that opens a cursor per insert is weaker: the canary beat it.)
Both run at the same priority: for these rounds the canary's writers are not made nicer
than their process (canary.NICER is set to 0 here). In the recorder they are, so that the
samplers come first on a busy machine; but a thread 10 nicer than the work around it only
gets the gaps in that work, and on a machine shared with other test runs its rate then
measured the other work, not the code (with both at +10, in 1 s slices: rounds from 0.85
to 1.22).

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

Missing data is a miss, never a pass: a round with a slice where nothing was acknowledged, or
a writer count with fewer than MIN_ACKS acknowledgements, fails with what went wrong.

Each round runs the baseline and the canary (1 writer) for 10 s each, in 100 pairs of
adjacent 0.1 s slices (which goes first alternates from pair to pair), each slice timed
from its first write once connected to the answer to its last. The round's ratio is the
median of the pairs' ratios: on this 2-core machine shared with other test runs, load
comes in bursts shorter than a second, and the ratio of the totals moved with them (the
baseline against itself gave rounds of 0.85-1.06 that way, at a load of 4).
The canary's rows reach its timeline as in the recorder: a flush every 0.25 s of its
running time, beside its writer.

Run: sudo .venv/bin/python bench/bench_canary.py [--rounds N] [--async-only]
     [--sweep-seconds S]   (part of `make bench`, with the defaults; the README's
     30 s sweep: --rounds 0 --sweep-seconds 30)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from _lab import lab  # noqa: E402

from gameday.foundation.settings import Rates  # noqa: E402
from gameday.measure import canary as canary_module  # noqa: E402
from gameday.measure import stats  # noqa: E402
from gameday.measure.canary import Canary  # noqa: E402
from gameday.measure.recorder import FLUSH_S  # noqa: E402
from gameday.measure.store import timeline  # noqa: E402

SECONDS = 10.0
# how long each writer count of the resolution sweep runs
SWEEP_SECONDS = 5.0
# a round of the ratio: baseline and canary alternate in slices of this many seconds
# (SECONDS of each in all), so a burst of load from elsewhere on this 2-core machine falls
# on a few pairs of slices instead of on one 5-second measurement
SLICE_S = 0.1
TARGET_RATIO = 0.9
# how long a canary slice waits for its first acknowledgement before it counts as no data
FIRST_ACK_WAIT_S = 5.0
# fewer acknowledgements than this in a sweep step give no distribution of gaps to judge
MIN_ACKS = 10
DEFAULT_WRITERS = Rates().canary_writers


@dataclass
class Slice:
    """Acknowledged writes over a time, and the error that stopped them, if one did."""

    writes: int = 0
    seconds: float = 0.0
    error: str | None = None

    def add(self, other: Slice) -> None:
        self.writes += other.writes
        self.seconds += other.seconds
        self.error = self.error or other.error

    @property
    def rate(self) -> float | None:
        """Writes per second; None when there is nothing to divide (no data)."""
        return self.writes / self.seconds if self.writes and self.seconds > 0 else None


@contextlib.contextmanager
def writers_niced(by: int) -> Iterator[None]:
    """The canary's writers `by` nicer than their process (canary.NICER) meanwhile."""
    saved = canary_module.NICER
    canary_module.NICER = by
    try:
        yield
    finally:
        canary_module.NICER = saved


def prepared_loop(dsn: dict[str, Any], table: str, seconds: float, *, nicer: int = 0,
                  start_seq: int | None = None) -> Slice:
    """The baseline: one connection, one cursor, a server-side prepared INSERT, in a
    thread `nicer` than this process; timed from its first write (connected). Its numbers
    start at `start_seq`, else after the table's last, read on its connection first."""
    result = Slice()

    def loop() -> None:
        if nicer:
            with contextlib.suppress(OSError):  # a thread's own nice value (Linux)
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                               os.getpriority(os.PRIO_PROCESS, 0) + nicer)
        sql = f"INSERT INTO {table} (seq, writer) VALUES (%s, %s)"
        n, started = 0, time.perf_counter()
        try:
            with psycopg.connect(**dsn, autocommit=True) as conn:
                seq = start_seq
                if seq is None:
                    row = conn.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {table}").fetchone()
                    seq = row[0] if row else 1
                cur = conn.cursor()
                started = time.perf_counter()
                while time.perf_counter() - started < seconds:
                    cur.execute(sql, (seq + n, 99), prepare=True)
                    n += 1
        except (psycopg.Error, OSError) as exc:
            result.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        result.writes, result.seconds = n, time.perf_counter() - started

    thread = threading.Thread(target=loop, name="prepared-loop")
    thread.start()
    thread.join()
    return result


class Rig:
    """One timeline, its writer and a connection to read the table's last number, for
    many canary slices (made afresh for each 0.1 s slice, they took longer than the
    slice), and the recorder's flush schedule across them: a flush every FLUSH_S of the
    canary's running time, while it writes, as in the recorder. (Flushing each slice's
    rows after it, in its time, cost 4-5% of a slice: a cost the recorder's canary does
    not pay, as its flusher runs beside its writers.)"""

    def __init__(self, dsn: dict[str, Any], table: str) -> None:
        self.dsn, self.table = dsn, table
        self.dir = Path(tempfile.mkdtemp(prefix="gameday-bench-canary-"))
        anchor, _ = timeline.Clock.new_anchor()
        self.clock = timeline.Clock(anchor)
        timeline.create(self.dir, {"anchor_ns": anchor})
        self.out = timeline.BatchWriter(self.dir)
        self.conn = psycopg.connect(**dsn, autocommit=True)
        self.ran = 0.0  # seconds the canary has run on this rig
        self.next_flush = FLUSH_S  # when, in those seconds, the flusher flushes next

    def next_seq(self) -> int:
        row = self.conn.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {self.table}").fetchone()
        return int(row[0]) if row else 1

    def attempts(self, start: int) -> list[tuple[int, float, float | None, str]]:
        """(seq, t_send, t_ack, outcome) of the attempts from `start` on, flushed or not."""
        conn = timeline.connect(self.dir)
        try:
            rows = conn.execute("SELECT seq, t_send, t_ack, outcome FROM canary "
                                "WHERE seq >= ?", (start,)).fetchall()
        finally:
            conn.close()
        pending = [timeline.CanaryAttempt(*a) for a in self.out.pending["canary"]]
        rows += [(a.seq, a.t_send, a.t_ack, a.outcome) for a in pending if a.seq >= start]
        return rows

    def close(self) -> None:
        self.conn.close()
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def rig(dsn: dict[str, Any], table: str) -> Iterator[Rig]:
    r = Rig(dsn, table)
    try:
        yield r
    finally:
        r.close()


def _run_canary(r: Rig, writers: int, seconds: float, *, from_first_ack: bool
                ) -> tuple[Canary, int, float]:
    """The recorder's canary on the rig's timeline, with the rig's flusher, stopped after
    `seconds` (counted from its first acknowledged write when `from_first_ack`, so
    connecting is not timed, or from FIRST_ACK_WAIT_S when none comes): the canary, its
    first number and the instant it was stopped."""
    start = r.next_seq()
    canary = Canary(r.dsn, r.table, r.clock, r.out, writers=writers, start_seq=start)
    stopped: list[float] = []
    began = time.monotonic()

    async def main() -> None:
        stop = asyncio.Event()

        async def flusher() -> None:
            while not stop.is_set():
                wait = r.next_flush - (r.ran + time.monotonic() - began)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(wait, 0.0))
                if not stop.is_set():
                    r.out.flush()
                    r.next_flush += FLUSH_S

        async def timer() -> None:
            give_up = time.monotonic() + FIRST_ACK_WAIT_S
            while from_first_ack and canary.acked == 0 and time.monotonic() < give_up:
                await asyncio.sleep(0.001)
            await asyncio.sleep(seconds)
            stop.set()
            stopped.append(r.clock.now())

        await asyncio.gather(canary.run(stop), flusher(), timer())

    asyncio.run(main())
    r.ran += time.monotonic() - began
    return canary, start, stopped[0]


def canary_slice(r: Rig, seconds: float) -> Slice:
    """Acknowledged writes of the canary (1 writer), timed like the baseline: from its
    first attempt (connected) to the answer to the write in flight at its stop, as its
    timeline records them."""
    canary, start, stopped = _run_canary(r, 1, seconds, from_first_ack=True)
    rows = r.attempts(start)
    if not rows:
        return Slice(0, 0.0, f"no write attempted ({canary.last_error or 'no error'})")
    first = min(t_send for _, t_send, _, _ in rows)
    acks = [t_ack for _, _, t_ack, outcome in rows if outcome == "ok" and t_ack is not None]
    return Slice(len(acks), max([stopped, *acks]) - first,
                 None if acks else canary.last_error)


@dataclass
class Round:
    """A round: the baseline's and the canary's slices in all (their rates, as
    information), and the ratio of each pair of adjacent slices."""

    base: Slice
    canary: Slice
    pairs: list[float | None]  # None: a slice of the pair had no data

    @property
    def ratio(self) -> float | None:
        """The median of the pairs' ratios: a burst of load from elsewhere moves the few
        pairs it falls on, not the round. None when a slice had no data."""
        if not self.pairs or any(p is None for p in self.pairs):
            return None
        return statistics.median(p for p in self.pairs if p is not None)


def ratio_round(dsn: dict[str, Any], table: str) -> Round:
    """The baseline and the canary for SECONDS each, in pairs of adjacent slices, which of
    the two goes first alternating from pair to pair."""
    rnd = Round(Slice(), Slice(), [])
    with rig(dsn, table) as r:
        for i in range(round(SECONDS / SLICE_S)):
            got: dict[str, Slice] = {}
            for which in (("canary", "base") if i % 2 else ("base", "canary")):
                if which == "canary":
                    got[which] = canary_slice(r, SLICE_S)
                else:
                    # its first number read on the rig's connection, as the canary's is: a
                    # connection that has just read the table starts warmer than one that
                    # has not (its server process has the table's catalog entries cached)
                    got[which] = prepared_loop(dsn, table, SLICE_S, start_seq=r.next_seq())
            rnd.base.add(got["base"])
            rnd.canary.add(got["canary"])
            b, c = got["base"].rate, got["canary"].rate
            rnd.pairs.append(c / b if b and c else None)
            if not (b and c):
                break  # the round is a miss: no data
    return rnd


def expected_delay(gaps: list[float]) -> float | None:
    """The mean distance from a random instant of the run to the next acknowledgement
    (the same as to the previous one)."""
    total = sum(gaps)
    return sum(g * g for g in gaps) / (2 * total) if total > 0 else None


@dataclass
class Sweep:
    acked: int
    rate: float
    p50: float | None
    p99: float | None
    delay: float | None  # None: too few acknowledgements to say (no data)
    error: str | None


def canary_run(dsn: dict[str, Any], table: str, writers: int, seconds: float) -> Sweep:
    """The canary with `writers` writers for `seconds`: its acknowledged writes/s, the
    gaps between acknowledgements, and how far off it places a stop."""
    with rig(dsn, table) as r:
        canary, start, _ = _run_canary(r, writers, seconds, from_first_ack=False)
        acks = sorted(t_ack for _, _, t_ack, outcome in r.attempts(start)
                      if outcome == "ok" and t_ack is not None)
    gaps = stats.intervals(acks)
    enough = len(acks) >= MIN_ACKS
    return Sweep(len(acks), len(acks) / seconds, stats.percentile(gaps, 50),
                 stats.percentile(gaps, 99), expected_delay(gaps) if enough else None,
                 None if enough else canary.last_error or "no error recorded")


def _ms(seconds: float | None, width: int = 5) -> str:
    return f"{seconds * 1000:{width}.1f} ms" if seconds is not None else f"{'n/a':>{width + 3}}"


def judge_round(rnd: Round) -> tuple[float | None, str]:
    """(canary / baseline, verdict) of one round; no ratio, and a miss, when a slice of
    either acknowledged nothing."""
    ratio = rnd.ratio
    if ratio is None:
        empty = sum(p is None for p in rnd.pairs)
        return None, (f"MISSED: no data ({empty} of {len(rnd.pairs)} pairs of slices without "
                      "an acknowledged write; " + "; ".join(
                          f"{name}: {s.writes} acknowledged writes in {s.seconds:.1f} s, "
                          f"{s.error or 'no error'}"
                          for name, s in (("baseline", rnd.base), ("canary", rnd.canary)))
                      + ")")
    return ratio, "ok" if ratio >= TARGET_RATIO else "MISSED"


def judge_resolution(one: float | None, default: float | None) -> tuple[bool, str]:
    """The default writers against one writer (how far off each places a stop); a miss
    when either has no figure."""
    if one is None or default is None:
        return False, (f"default {DEFAULT_WRITERS} writers against one writer: MISSED: no "
                       "data")
    ok = default <= 0.75 * one
    return ok, (f"default {DEFAULT_WRITERS} writers place a stop {default * 1000:.1f} ms off, "
                f"{default / one:.2f} of one writer's (target <= 0.75): "
                f"{'ok' if ok else 'MISSED'}; issue 3's 10 ms: "
                f"{'reached' if default <= 0.010 else 'not reached'}")


def throughput(dsn: dict[str, Any], table: str, rounds: int) -> bool:
    """The canary against the baseline, `rounds` rounds; True when every round held."""
    ratios: list[float | None] = []
    for i in range(rounds):
        rnd = ratio_round(dsn, table)
        ratio, verdict = judge_round(rnd)
        ratios.append(ratio)
        pairs = sorted(p for p in rnd.pairs if p is not None)
        quartiles = (f"; pairs' quartiles {pairs[len(pairs) // 4]:.2f}-"
                     f"{pairs[3 * len(pairs) // 4]:.2f}" if pairs else "")
        print(f"async replication, round {i + 1}/{rounds}: prepared one-cursor loop "
              f"{rnd.base.rate or 0:,.0f} writes/s, canary (1 writer) "
              f"{rnd.canary.rate or 0:,.0f} writes/s; median ratio of {len(rnd.pairs)} "
              f"pairs of slices {f'{ratio:.2f}' if ratio is not None else 'n/a'}{quartiles} "
              f"(target >= {TARGET_RATIO:.2f}): {verdict}", flush=True)
    known = [r for r in ratios if r is not None]
    ok = len(known) == len(ratios) and min(known) >= TARGET_RATIO
    spread = (f"median {statistics.median(known):.2f}, min {min(known):.2f}, max "
              f"{max(known):.2f}" if known else "no data")
    print(f"canary / prepared loop over {len(ratios)} rounds: {spread}"
          + (f" ({len(ratios) - len(known)} rounds without data)" if len(known) < len(ratios)
             else "")
          + f" (target >= {TARGET_RATIO:.2f} in every round): {'ok' if ok else 'MISSED'}")
    return ok


def resolution(dsn: dict[str, Any], table: str, delay_ms: float | None,
               seconds: float) -> bool:
    """The writer-count sweep under synchronous replication; True when the default writers
    place a stop at most 3/4 as far off as one writer."""
    delay = f"{delay_ms:g} ms" if delay_ms is not None else "an unstated delay"
    print(f"sync replication, {delay} one way, {seconds:g} s per writer count:")
    off: dict[int, float | None] = {}
    for writers in sorted({1, 2, 4, 8, DEFAULT_WRITERS}):
        s = canary_run(dsn, table, writers, seconds)
        off[writers] = s.delay
        print(f"  {writers} writer(s): {s.rate:7.1f} acknowledged writes/s, gap p50 "
              f"{_ms(s.p50)}, p99 {_ms(s.p99)}; a stop placed {_ms(s.delay)} off on average"
              + (f"  (no data: {s.acked} acknowledged, {s.error})" if s.delay is None else ""),
              flush=True)
    ok, line = judge_resolution(off[1], off[DEFAULT_WRITERS])
    print(line)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of baseline + canary (default 5); each must hold; 0: "
                             "the writer-count sweep alone")
    parser.add_argument("--async-only", action="store_true",
                        help="skip the writer-count sweep under synchronous replication")
    parser.add_argument("--sweep-seconds", type=float, default=SWEEP_SECONDS,
                        help=f"how long each writer count of the sweep runs (default "
                             f"{SWEEP_SECONDS:g}; the README's 30 s figures: 30)")
    args = parser.parse_args()
    ok = True
    if args.rounds > 0:
        with lab("async") as (the_lab, _), writers_niced(0):
            ok = throughput(the_lab.writer_params(), the_lab.database.canary_table, args.rounds)
    if args.async_only:
        return 0 if ok else 1
    with lab("sync") as (the_lab, _):
        ok &= resolution(the_lab.writer_params(), the_lab.database.canary_table,
                         the_lab.inter_region_delay_ms, args.sweep_seconds)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
