"""The application canary's rate and resolution on the lab, beside the database canary's,
both run as the recorder runs them in `make game-day`: sync replication across the lab's
20 ms one-way link, the database canary's default writers (Rates().canary_writers) and the
application canary's (its default, 2, through the global name: DNS, the storefront, its
PostgreSQL), at once, niced as in the recorder, on one timeline with the recorder's flush.

Resolution is bench_canary's: how far, on average, a canary places the instant writes
stopped from the true one, sum(gap^2) / (2 sum(gap)) over the gaps between its
consecutive acknowledgements (bench_canary.expected_delay says why). Here the gaps run from
the window's start to its end: a canary that falls silent for the end of a window has that
silence counted, not left out. Each round's window opens once both canaries have had a
write acknowledged (connecting is not timed) and lasts SECONDS. The median gap is printed
beside it, as information: writers acknowledged in one burst have a median near zero and
are no sharper for it.

What bounds the application canary here is the lab's storefront, not the canary: it writes
through one PostgreSQL connection under a lock (labs/storefront.py, PostgresStore), so its
canary commits go one at a time, at most one per round trip to the standby (2 x 20 ms)
whatever the number of writers (1, 2 or 4 writers: 22-23/s). Until the storefront set
TCP_NODELAY, each of its answers also reached the client about 40 ms late (the headers and
the body in two writes, Nagle holding the body until the client's delayed ACK): one writer
got 11.3/s, and the async lab about 40/s where it now gets about 360/s.

Targets, each in every round (a round where a canary has fewer than MIN_ACKS acknowledged
writes in its window has no figure, and is a miss, never a pass):
- The application canary places a stop at most APP_RESOLUTION_S (50 ms) off. The report
  names a difference between the two canaries' RPOs only when they lie more than 0.1 s
  apart (summary.RPO_GAP_S); an application canary further off than half that would make
  its own imprecision look like a difference.
- Sync only: the application canary at least one acknowledged write per two round trips
  (1 / (4 x the one-way delay): 12.5/s at 20 ms). The storefront's ceiling is one per
  round trip (25/s); half of it is a canary whose writes cost a second round trip each
  (a second statement, a transaction's BEGIN, or the 40 ms stall above, which one writer
  missed it with: 11.2-11.5/s), which doubles the RPO's error bar while still passing the
  50 ms above (that writer: 43-44 ms).
- Sync only: the database canary at most half a round trip off (the one-way delay, 20 ms):
  the most one writer can do (bench_canary: 21-23 ms), so its default writers still divide
  the round trip beside the application canary's (the two share the machine and the
  standby's flushes). It is the yardstick the application canary is read against.
The ratio of the two resolutions is printed, as information: the figure to keep in mind
when reading the report's *Both canaries*.

Missing data is a miss: a canary with no acknowledged write within FIRST_ACK_WAIT_S, or
fewer than MIN_ACKS in a window, fails the round and says why (its last error).

Run: sudo .venv/bin/python bench/bench_app_canary.py [--rounds N] [--seconds S]
     [--replication async] [--app-writers N]   (part of `make bench`, with the defaults:
     3 rounds of 10 s on the sync lab, about 40 s with the lab's up and down)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from _lab import lab  # noqa: E402
from bench_canary import expected_delay  # noqa: E402

from gameday.foundation import settings  # noqa: E402
from gameday.foundation.descriptor import Lab  # noqa: E402
from gameday.foundation.settings import AppCanary, Rates  # noqa: E402
from gameday.measure import app_canary, stats  # noqa: E402
from gameday.measure import canary as canary_mod  # noqa: E402
from gameday.measure.app_canary import RESOLVE_TIMEOUT_S, AppWriters, GlobalName  # noqa: E402
from gameday.measure.canary import Canary  # noqa: E402
from gameday.measure.recorder import FLUSH_S  # noqa: E402
from gameday.measure.store import timeline  # noqa: E402

ROUNDS = 3
SECONDS = 10.0
# the application canary's first write waits for DNS and the storefront's first connection
FIRST_ACK_WAIT_S = 10.0
# fewer acknowledgements than this in a window give no distribution of gaps to judge
MIN_ACKS = 10
# half the RPO difference the report names (summary.RPO_GAP_S)
APP_RESOLUTION_S = 0.050
# the names the two canaries are printed and judged by
DB, APP = "database canary", "application canary"


@dataclass
class Measured:
    """One canary over one window: its acknowledged writes, their median gap, how far off
    it places a stop (None: fewer than MIN_ACKS acknowledged, no figure), and its last
    error, when it had one."""

    acked: int
    seconds: float
    p50: float | None
    delay: float | None
    error: str | None = None

    @property
    def rate(self) -> float | None:
        return self.acked / self.seconds if self.acked and self.seconds > 0 else None


def measure(acks: list[float], start: float, end: float, error: str | None = None
            ) -> Measured:
    """A canary's acknowledgement times judged over the window [start, end]: the gaps run
    from the window's start through each acknowledgement in it to its end, so a canary
    silent for part of the window is as far off there as the silence is long."""
    inside = sorted(t for t in acks if start <= t <= end)
    enough = len(inside) >= MIN_ACKS
    return Measured(len(inside), end - start, stats.percentile(stats.intervals(inside), 50),
                    expected_delay(stats.intervals([start, *inside, end])) if enough else None,
                    None if enough else error or "no error recorded")


def judge(db: Measured, app: Measured, delay_s: float | None) -> list[tuple[str, bool]]:
    """Each target of one round, as (line, held); a canary without a figure misses.
    `delay_s`: the one-way delay of a sync lab, which sets the rate floor and the database
    canary's bound; None (async) judges the application canary's resolution alone."""

    def off(m: Measured, most: float, who: str) -> tuple[str, bool]:
        if m.delay is None:
            return (f"{who} resolution: MISSED: no data ({m.acked} acknowledged, "
                    f"{m.error})", False)
        ok = m.delay <= most
        return (f"{who} resolution {m.delay * 1000:.1f} ms (target <= {most * 1000:.0f} ms): "
                f"{'ok' if ok else 'MISSED'}", ok)

    lines = [off(app, APP_RESOLUTION_S, APP)]
    if delay_s is None:
        return lines
    floor = 1 / (4 * delay_s)
    rate = app.rate if app.delay is not None else None
    rate_ok = rate is not None and rate >= floor
    return [*lines, off(db, delay_s, DB),
            (f"{APP} rate {f'{rate:.1f}' if rate is not None else 'n/a'} acknowledged "
             f"writes/s (target >= {floor:g}: one per two round trips): "
             f"{'ok' if rate_ok else 'MISSED'}", rate_ok)]


def app_settings(the_lab: Lab, writers: int | None = None) -> AppCanary:
    """The application canary the lab's descriptor publishes (its `app_canary` block), with
    its default writers (or `writers`) and deadline, as `make game-day`'s var file gives
    it."""
    block = json.loads(Path(the_lab.path).read_text()).get("app_canary")
    if block is not None and writers is not None:
        block = {**block, "writers": writers}
    canary = settings.app_canary({settings.APP_CANARY_KEY: block})
    if canary is None:
        sys.exit(f"{the_lab.path} has no app_canary block: is the lab older than issue 23?")
    return canary


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1000:5.1f} ms" if seconds is not None else "  n/a   "


def one_round(the_lab: Lab, app_config: AppCanary, seconds: float
              ) -> tuple[Measured, Measured]:
    """Both canaries at once for `seconds`, from the instant both have had a write
    acknowledged (or FIRST_ACK_WAIT_S, whichever is first)."""
    run_dir = Path(tempfile.mkdtemp(prefix="gameday-bench-app-canary-"))
    try:
        anchor, _ = timeline.Clock.new_anchor()
        clock = timeline.Clock(anchor)
        timeline.create(run_dir, {"anchor_ns": anchor})
        out = timeline.BatchWriter(run_dir)
        table = the_lab.database.canary_table
        with psycopg.connect(**the_lab.writer_params(), autocommit=True) as pg:
            row = pg.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {table}").fetchone()
        rates = Rates()
        # as the recorder builds them (measure.recorder.record)
        db = Canary(the_lab.writer_params(tcp_user_timeout=1500), table, clock, out,
                    writers=rates.canary_writers, start_seq=int(row[0]) if row else 1,
                    max_rate=rates.canary_max_rate,
                    attribution=canary_mod.Attribution.of(the_lab))
        name = GlobalName.of(the_lab)
        app = AppWriters(app_config, clock, out, start_seq=app_canary.start_seq(),
                         where=lambda: name.where(RESOLVE_TIMEOUT_S, app_config.deadline_s),
                         verify=name.verify)
        window: list[float] = []

        async def main() -> None:
            stop = asyncio.Event()

            async def flusher() -> None:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), FLUSH_S)
                    out.flush()

            async def timer() -> None:
                give_up = time.monotonic() + FIRST_ACK_WAIT_S
                while (db.acked == 0 or app.acked == 0) and time.monotonic() < give_up:
                    await asyncio.sleep(0.01)
                window.append(clock.now())
                await asyncio.sleep(seconds)
                window.append(clock.now())
                stop.set()

            await asyncio.gather(db.run(stop), app.run(stop), flusher(), timer())

        asyncio.run(main())
        while any(out.pending.values()):
            out.flush()
        out.close()
        conn = timeline.connect(run_dir)
        try:
            db_acks = [t for (t,) in conn.execute(
                "SELECT t_ack FROM canary WHERE outcome = 'ok' AND t_ack IS NOT NULL")]
            app_acks = [t for (t,) in conn.execute(
                "SELECT t_ack FROM app_canary WHERE outcome = 'ok' AND t_ack IS NOT NULL")]
            app_error = conn.execute(
                "SELECT error FROM app_canary WHERE error IS NOT NULL "
                "ORDER BY t_send DESC LIMIT 1").fetchone()
        finally:
            conn.close()
        start, end = window
        return (measure(db_acks, start, end, db.last_error),
                measure(app_acks, start, end, app_error[0] if app_error else None))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _spread(values: list[float | None], unit: str, scale: float = 1000.0) -> str:
    known = [v * scale for v in values if v is not None]
    if not known:
        return "no data"
    return (f"{min(known):.1f}-{max(known):.1f} {unit} (median {statistics.median(known):.1f})"
            + (f", {len(values) - len(known)} round(s) without data"
               if len(known) < len(values) else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"rounds (default {ROUNDS}); each must hold every target")
    parser.add_argument("--seconds", type=float, default=SECONDS,
                        help=f"each round's window (default {SECONDS:g})")
    parser.add_argument("--replication", choices=("sync", "async"), default="sync",
                        help="the lab's replication (default sync, as `make game-day`); "
                             "async judges the application canary's resolution alone")
    parser.add_argument("--app-writers", type=int, default=None,
                        help="the application canary's writers (default: its own, 2)")
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds <= 0 or (args.app_writers or 1) < 1:
        sys.exit("--rounds and --app-writers must be at least 1, --seconds above 0")
    ok = True
    got: list[tuple[Measured, Measured]] = []
    with lab(args.replication) as (the_lab, _):
        config = app_settings(the_lab, args.app_writers)
        delay = the_lab.inter_region_delay_ms
        if args.replication == "sync" and not delay:
            sys.exit(f"{the_lab.path} states no inter-region delay: the sync targets are "
                     "set by it (gameday lab up --delay-ms)")
        delay_s = delay / 1000 if args.replication == "sync" and delay else None
        print(f"{args.replication} replication, "
              f"{f'{delay:g} ms' if delay is not None else 'an unstated delay'}"
              f" one way; {DB} {Rates().canary_writers} writers, {APP} {config.writers} "
              f"writers (deadline {config.deadline_s:g} s), side by side, "
              f"{args.seconds:g} s per round:", flush=True)
        for i in range(args.rounds):
            db, app = one_round(the_lab, config, args.seconds)
            got.append((db, app))
            print(f"round {i + 1}/{args.rounds}:")
            for who, m in ((DB, db), (APP, app)):
                print(f"  {who:18}: {m.rate or 0:7.1f} acknowledged writes/s, gap p50 "
                      f"{_ms(m.p50)}, a stop placed {_ms(m.delay)} off on average"
                      + (f"  (no data: {m.acked} acknowledged, {m.error})"
                         if m.delay is None else ""))
            if db.delay and app.delay:
                print(f"  {APP} / {DB} resolution: {app.delay / db.delay:.2f}")
            for line, held in judge(db, app, delay_s):
                print(f"  {line}")
                ok &= held
            sys.stdout.flush()
    print(f"over {len(got)} rounds: {DB} {_spread([d.rate for d, _ in got], 'writes/s', 1.0)}"
          f", resolution {_spread([d.delay for d, _ in got], 'ms')}; {APP} "
          f"{_spread([a.rate for _, a in got], 'writes/s', 1.0)}, resolution "
          f"{_spread([a.delay for _, a in got], 'ms')}; gap p50 {DB} "
          f"{_spread([d.p50 for d, _ in got], 'ms')}, {APP} "
          f"{_spread([a.p50 for _, a in got], 'ms')}")
    print(f"every target in every round: {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
