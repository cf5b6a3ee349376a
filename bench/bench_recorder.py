"""The recorder at its default rates: its CPU, judged against a reference loop measured in
the same run, and the DNS sampler's lateness at 50 ms while the canary runs flat out.

CPU (sync lab, default rates): the recorder's CPU time over SECONDS, from /proc, divided by
the CPU time of a reference loop over the same seconds: a process of its own that runs the
recorder's schedule (`samplers.every` for each of its samplers at their intervals, its
flusher's and its canary watchdog's waits) with samples that do nothing: no I/O, no
parsing, no SQLite. Both are interpreted Python on the same machine at the same time, so
the ratio is the recorder's work over its bare schedule, whatever the machine's speed: an
absolute share of a core varied by about 30% between two 2-core machines of the same kind
(8.4-9.0% on one, 11.3% on another: issue 24), more than the 20% a fixed target could
absorb, and by 25% on one machine between runs (7.8-9.8%), where the ratio moved by 10%.
Target: the ratio at most CPU_TARGET_RATIO. The absolute share is printed beside it, as
information.

The CPU figure is about a working recorder, so the recorder must still run at the end,
and every stream it samples must hold an answered sample (no timeout, no refused
connection) in at least MIN_FILLED of its slots in the window, with the canary
acknowledging writes: an idle, dead or failing recorder costs little CPU and is a miss,
not a pass.

Lateness (async lab, where the canary writes thousands of rows a second): how long after
its due time each DNS sample started; a slot the sampler skipped (it was already past it,
or MAX_IN_FLIGHT samples were in flight) counts as infinitely late, so skipped slots
cannot pass for punctual ones. The reference loop, run over the same seconds, measures
the lateness the machine alone gives that schedule (its p99 was 2-4 ms on this machine
shared with other test runs, as much as the recorder's own at times). Target: the DNS
samples' p99, over the slots of both servers in the window, at most LATENESS_EXCESS_S
(10 ms, a fifth of the interval) past the reference loop's p99: a latency adds to the
machine's, so it is judged by the difference, not by a ratio of two small and noisy
numbers. The canary must be flat out for that to mean anything: at least
as many acknowledged writes/s as one prepared one-cursor loop (bench_canary's baseline)
wrote just before in the same lab; fewer, or no DNS sample at all, is a miss.

Run: sudo .venv/bin/python bench/bench_recorder.py   (part of `make bench`)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _lab import lab  # noqa: E402
from bench_canary import prepared_loop  # noqa: E402

from gameday.foundation.descriptor import Lab  # noqa: E402
from gameday.foundation.errors import GamedayError  # noqa: E402
from gameday.foundation.settings import GamedaySettings, Rates  # noqa: E402
from gameday.measure import run as runs  # noqa: E402
from gameday.measure import stats  # noqa: E402
from gameday.measure.canary import NICER, WATCH_S  # noqa: E402
from gameday.measure.recorder import FLUSH_S  # noqa: E402
from gameday.measure.samplers import every  # noqa: E402
from gameday.measure.store import timeline  # noqa: E402

SECONDS = 20.0
# recorder CPU / reference loop CPU, sync lab, default rates: 1.25 x the worst of 5 runs
# on this project's 2-core machine shared with other test runs (6.27-6.92, median 6.72;
# the absolute share 7.8-9.8% of one core), rounded up. After the merge with main, 4 runs:
# 6.45-6.67 (the share 9.0-10.6%). The reference loop's CPU is 25-35 clock ticks in the
# window, so the ratio moves by a few percent from rounding alone; a recorder a third
# costlier than the worst run fails (1.5 ms more CPU per DNS sample gave 9.51)
CPU_TARGET_RATIO = 8.7
# a fifth of the DNS interval: the p99 lateness the recorder may add to the schedule's
LATENESS_EXCESS_S = 0.010
# share of each stream's slots in the window that must hold a successful sample
MIN_FILLED = 0.95
# how long the prepared loop runs before the lateness window, for the canary's floor
LOOP_S = 3.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def streams(the_lab: Lab) -> dict[tuple[str, str], float]:
    """(table, stream) -> interval of every sampler the recorder runs on this lab."""
    rates = Rates()
    out = {("dns", "authoritative"): rates.dns_s, ("dns", "resolver"): rates.dns_s,
           ("http", "global"): rates.http_s}
    for r in the_lab.regions:
        out["http", r.name] = rates.http_s
        out["replication", r.name] = rates.replication_s
    return out


# --- the reference loop (a child process) -----------------------------------------------


async def schedule(seconds: float, intervals: list[float]) -> dict[str, float]:
    """The recorder's schedule with samples that do nothing, for `seconds`."""
    anchor, _ = timeline.Clock.new_anchor()
    clock = timeline.Clock(anchor)
    stop = asyncio.Event()

    late: list[float] = []

    async def nothing(t: float, lateness: float) -> None:
        late.append(lateness)

    async def waits(interval: float) -> None:
        # the recorder's flusher (FLUSH_S) and the canary's watchdog (WATCH_S)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def timer() -> None:
        await asyncio.sleep(seconds)
        stop.set()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(every(i, clock, nothing, stop) for i in intervals),
                         waits(FLUSH_S), waits(WATCH_S), timer())
    late.sort()
    return {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
            "late_p50_s": late[len(late) // 2] if late else math.inf,
            "late_p99_s": late[min(len(late) - 1, round(0.99 * (len(late) - 1)))]
            if late else math.inf}


def reference_child(spec: str) -> int:
    args = json.loads(spec)
    print("ready", flush=True)
    print(json.dumps(asyncio.run(schedule(args["seconds"], args["intervals"]))), flush=True)
    return 0


def start_reference(seconds: float, intervals: list[float]) -> subprocess.Popen[str]:
    """The reference loop in a process of its own, started once it has imported
    everything (so that its window is the recorder's)."""
    child = subprocess.Popen([sys.executable, __file__, "--reference",
                              json.dumps({"seconds": seconds, "intervals": intervals})],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        child.kill()
        raise SystemExit("the reference loop did not start")
    return child


def reference_result(child: subprocess.Popen[str], seconds: float = SECONDS) -> dict[str, float]:
    out, _ = child.communicate(timeout=seconds + 30)
    if child.returncode != 0:
        raise SystemExit(f"the reference loop failed (exit {child.returncode})")
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


# --- a measurement ------------------------------------------------------------------------


@dataclass
class Measured:
    problems: list[str] = field(default_factory=list)  # missing data: each one is a miss
    cpu: float | None = None  # share of one core
    reference: float | None = None
    reference_late_p99: float | None = None
    canary_rate: float = 0.0
    lateness: list[float] = field(default_factory=list)  # inf: a skipped slot
    skipped: int = 0
    slots: int = 0
    filled: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return self.cpu / self.reference if self.cpu and self.reference else None

    def late_p(self, p: float) -> float | None:
        return stats.percentile(self.lateness, p)

    @property
    def late_excess(self) -> float | None:
        """The DNS samples' p99 lateness past the reference loop's p99."""
        p99 = self.late_p(99)
        if p99 is None or self.reference_late_p99 is None:
            return None
        return p99 - self.reference_late_p99


def dns_slots(conn: sqlite3.Connection, server: str, interval: float, t0: float, t1: float
              ) -> tuple[list[float], int, int]:
    """(lateness of each sample due in [t0, t1 - interval], slots due there, slots skipped).
    A sample is due at t - lateness, on a grid start + k * interval."""
    rows = conn.execute("SELECT t - lateness, lateness FROM dns WHERE server = ? ORDER BY t",
                        (server,)).fetchall()
    if not rows:
        return [], max(0, int((t1 - t0) / interval)), max(0, int((t1 - t0) / interval))
    start = rows[0][0]
    first = math.ceil((t0 - start) / interval - 1e-6)
    last = math.floor((t1 - interval - start) / interval + 1e-6)
    seen: dict[int, float] = {}
    for due, late in rows:
        k = round((due - start) / interval)
        if first <= k <= last:
            seen.setdefault(k, late)
    slots = max(0, last - first + 1)
    return list(seen.values()), slots, slots - len(seen)


def measure(replication: str) -> Measured:
    m = Measured()
    with lab(replication) as (the_lab, base):
        floor = None
        if replication == "async":
            # as nice as the recorder's canary writers make themselves
            loop = prepared_loop(the_lab.writer_params(), the_lab.database.canary_table, LOOP_S,
                                 nicer=NICER)
            floor = loop.rate
            if floor is None:
                m.problems.append(f"the prepared loop wrote nothing ({loop.error})")
        settings = GamedaySettings.from_chaos({"lab_file": the_lab.path,
                                               "reports_dir": str(base / "reports")})
        try:
            run = runs.start(settings, the_lab, experiment="bench", kind="bench")
        except GamedayError as exc:
            m.problems.append(f"the recorder did not start: {exc}")
            return m
        assert run.recorder is not None
        pid = run.recorder.pid
        wanted = streams(the_lab)
        child = start_reference(SECONDS, list(wanted.values()))
        cpu0, w0, t0 = cpu_seconds(pid), time.monotonic(), run.clock.now()
        time.sleep(SECONDS)
        alive = run.recorder.poll() is None
        cpu1 = cpu_seconds(pid) if alive else None
        w1, t1 = time.monotonic(), run.clock.now()
        ref = reference_result(child)
        run.stop_recorder()
        runs.clear()
        if cpu1 is None:
            m.problems.append(f"the recorder died during the window (exit "
                              f"{run.recorder.returncode}; see its recorder.log)")
        else:
            m.cpu = (cpu1 - cpu0) / (w1 - w0)
        m.reference = ref["cpu_s"] / ref["wall_s"]
        m.reference_late_p99 = ref["late_p99_s"]
        conn = timeline.connect(run.dir)
        try:
            window(conn, wanted, t0, t1, m, canary_floor=floor)
        finally:
            conn.close()
    return m


def window(conn: sqlite3.Connection, wanted: dict[tuple[str, str], float], t0: float,
           t1: float, m: Measured, *, canary_floor: float | None = None) -> None:
    """What the recorder stored between t0 and t1: each stream's successful samples
    against its slots, the canary's rate, the DNS samples' lateness with the slots
    skipped; every shortfall is a problem (missing data) in `m`."""
    for (table, stream), interval in wanted.items():
        col = "target" if table == "http" else "server"
        # answered: region-2's /healthz answers 503 while its database is a standby, a
        # valid sample; a timeout or a refused connection is not
        ok = conn.execute(f"SELECT count(*) FROM {table} WHERE {col} = ? AND error IS NULL "
                          "AND t >= ? AND t < ?", (stream, t0, t1)).fetchone()[0]
        expected = int((t1 - t0) / interval)
        m.filled[f"{table}:{stream}"] = f"{ok}/{expected}"
        if ok < MIN_FILLED * expected:
            m.problems.append(f"{table}:{stream} has an answered sample in {ok} of "
                              f"{expected} slots (at least {MIN_FILLED:.0%} wanted)")
    acked = conn.execute("SELECT count(*) FROM canary WHERE outcome = 'ok' "
                         "AND t_ack >= ? AND t_ack < ?", (t0, t1)).fetchone()[0]
    m.canary_rate = acked / (t1 - t0)
    if not acked:
        m.problems.append("the canary acknowledged no write in the window")
    elif canary_floor is not None and m.canary_rate < canary_floor:
        m.problems.append(f"the canary was not flat out: {m.canary_rate:,.0f} writes/s, "
                          f"less than one prepared loop's {canary_floor:,.0f}")
    for server in ("authoritative", "resolver"):
        late, slots, skipped = dns_slots(conn, server, Rates().dns_s, t0, t1)
        m.lateness += late + [math.inf] * skipped
        m.slots += slots
        m.skipped += skipped
    if not m.slots or m.slots == m.skipped:
        m.problems.append("no DNS sample in the window")


def judge_cpu(m: Measured) -> bool:
    """The recorder's CPU within CPU_TARGET_RATIO of the reference loop's, and about a
    recorder that did its work (no missing data)."""
    return not m.problems and m.ratio is not None and m.ratio <= CPU_TARGET_RATIO


def judge_lateness(m: Measured) -> bool:
    """DNS p99 lateness, skipped slots counted late, at most LATENESS_EXCESS_S past the
    reference loop's p99 in the same run, with data."""
    excess = m.late_excess
    return not m.problems and excess is not None and excess <= LATENESS_EXCESS_S


def _pct(x: float | None) -> str:
    return f"{x * 100:.1f}%" if x is not None else "n/a"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else ("inf" if math.isinf(x) else f"{x * 1000:.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        return reference_child(args.reference)
    failed = False
    for replication in ("sync", "async"):
        m = measure(replication)
        ratio = m.ratio
        print(f"{replication} replication, {SECONDS:g} s at default rates: recorder CPU "
              f"{_pct(m.cpu)} of one core, reference loop {_pct(m.reference)}: ratio "
              f"{f'{ratio:.2f}' if ratio is not None else 'n/a'}; canary "
              f"{m.canary_rate:,.0f} acknowledged writes/s; DNS lateness p50 "
              f"{_ms(m.late_p(50))} p99 {_ms(m.late_p(99))} over {m.slots} slots, the "
              f"reference loop's p99 {_ms(m.reference_late_p99)} "
              f"({m.skipped} skipped); answered samples per slot: "
              + ", ".join(f"{k} {v}" for k, v in m.filled.items()), flush=True)
        for problem in m.problems:
            print(f"  no data: {problem}")
        if replication == "sync":
            ok = judge_cpu(m)
            print(f"  target: recorder CPU <= {CPU_TARGET_RATIO:g} x the reference loop's, "
                  f"with every stream sampled: {'met' if ok else 'MISSED'}")
        else:
            ok = judge_lateness(m)
            print(f"  target: DNS p99 lateness at most {LATENESS_EXCESS_S * 1000:g} ms past the "
                  f"reference loop's (here {_ms(m.late_excess)} past it) with the canary flat "
                  f"out, skipped slots counted late: {'met' if ok else 'MISSED'}")
        failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
