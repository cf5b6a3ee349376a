"""Metrics plus report from a synthetic timeline of H hours, about 2 million samples an
hour, judged as a ratio to a floor measured in the same run, on the same file: a target
in seconds said more about the machine than about the code (issue 24: 3.2-3.3 s on one
2-core machine, 4.5-6.0 s on another of the same kind, with the same code).

The floor is one pass over every row of every table of the same timeline.sqlite, in
SQLite itself (`SELECT count(*), sum(length(col)), ... FROM table` per table), timed in
this process between the timed runs, so that a slower machine or a busier moment
slows both alike. Each run is judged against the mean of the floors just before and just
after it. Targets: `report time / floor` at most RATIO_TARGETS (1 h and 8 h), and
500 MB peak memory whatever the length (memory does not depend on the machine's speed:
the report must not grow with the drill). Both hold in every run.

The synthetic run has known answers, which every run checks in the summary it wrote: the
RTO by the K rule, the DNS flips, detection, the first write on region-2, the write
accounting (attempted, acknowledged, lost, recovered, unknown and absent), the RPO and the
verdict. A report that is fast and wrong is a miss.

Writes a realistic run directory (not timed): DNS from 2 servers and HTTP from the global
name and both regions' health endpoints every 50 ms, replication from 2 servers every
250 ms, 2 canary writers at 450 acknowledged writes/s in all (asynchronous replication),
and a region-1 outage half-way (30 min into one hour): the authoritative DNS flips 1.25 s after the fault, the
resolver 2.05 s after, global requests fail until then (and once more after K - 1
successes, so that the K rule decides the RTO); region-2 is promoted at 0.85 s;
writes in flight at the fault are unknown, connections fail until the promotion, and the
writes acknowledged in the last 12 ms before the fault never reached region-2 (lost). The
rows read back from region-2 (`final_rows`) are stored in seq order, as
`summary.snapshot_rows` reads them (`GROUP BY seq ORDER BY seq`).
Then times `gameday.report.outputs.regenerate` (summary.json, report.md, timeline.svg) in
a fresh Python process, from interpreter start to exit, and reads that process's peak
resident memory.

`--check` is the regression guard `make test` runs: the 1 h case once, failing when its
ratio exceeds CHECK_FACTOR x CHECK_BASELINE (the committed median of the 1 h runs), when
an answer is wrong or when memory passes its target.

Run: .venv/bin/python bench/bench_metrics.py [--hours H] [--runs N] [--run-dir DIR] [--keep]
     .venv/bin/python bench/bench_metrics.py --check
(part of `make bench`, at 1 h and at 8 h; `--check` is part of `make test`)
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gameday.measure.store import timeline  # noqa: E402

TARGET_MB = 500.0
# report CPU time / floor CPU time, by length: 1.15 x the worst of the runs that chose
# them, rounded up to 0.1, on this project's 2-core machine shared with other helpers'
# test runs (load 2-5). 1 h: 5 invocations, 17 runs, 1.68-2.65 (median 2.17); 8 h: 5 runs
# in 2 invocations, 1.75-1.95 (median 1.84). The worst 1 h run lay 22% above its median,
# with the load at 4-5; 15% above the worst leaves room for one more such burst, while a
# report 43% (1 h) or 25% (8 h) slower than the median fails in every run.
RATIO_TARGETS = {1.0: 3.1, 8.0: 2.3}
# `--check`: the 1 h ratio may grow to this many times the committed baseline (the median
# of the 1 h runs above) before `make test` fails
CHECK_BASELINE = 2.17
CHECK_FACTOR = 1.5
# the summary rounds times to 0.1 ms; a wrong sample picked is 50 ms off
TOLERANCE_S = 0.001
K = 5

START = 1.0
R1, R2 = "198.18.0.11", "198.18.0.12"
CANARY_RATE = 450.0
WRITERS = 2
LOST_BEFORE_S = 0.012


def configure(hours: float) -> None:
    """Set the run's length and the instants that follow from it (the fault half-way)."""
    global DURATION, T_FAULT, AUTH_FLIP, RESOLVER_FLIP, EFFECTIVE, PROMOTED, REVERTED, RUN_ID
    DURATION = 3600.0 * hours
    T_FAULT = DURATION / 2 + 0.0123
    AUTH_FLIP = T_FAULT + 1.25
    RESOLVER_FLIP = T_FAULT + 2.05
    EFFECTIVE = T_FAULT + 0.35
    PROMOTED = T_FAULT + 0.85
    REVERTED = T_FAULT + 120.0
    RUN_ID = ("20260101T000000Z-bench-one-hour" if hours == 1 else
              f"20260101T000000Z-bench-{hours:g}-hours")


configure(1.0)
# what the synthetic run must give, found as it is generated (see answers())
ANSWERS: dict[str, Any] = {}


def meta() -> dict:
    configuration = {
        "dns_ttl_s": 1.0, "health_interval_s": 1.0, "inter_region_delay_ms": 20.0,
        "replication": "async", "canary_writers": WRITERS, "k_consecutive": 5,
        "http_interval_s": 0.05, "dns_interval_s": 0.05, "replication_interval_s": 0.25,
        "health_failures": 1, "health_timeout_s": 1.0,
    }
    return {
        # gameday.measure.run.start
        "run_id": RUN_ID, "experiment": "Region failover (bench)", "kind": "failover",
        "anchor_ns": 1_000_000_000, "anchor_utc": "2026-01-01T00:00:00+00:00", "lab": "netns",
        "start_seq": 1, "lab_file": "/nonexistent/lab.json",
        # gameday.control.before_experiment_control
        "targets": {"rto_s": 30.0, "rpo_s": 0.0, "max_lost_writes": 0},
        "k_consecutive": 5,
        "regions": {"primary": {"name": "region-1", "address": R1, "db_host": R1},
                    "secondary": {"name": "region-2", "address": R2, "db_host": R2}},
        "drill": "failover", "game_day_run": None, "replication": "async",
        "configuration": configuration,
        # gameday.measure.summary.snapshot_rows
        "final_read_t": DURATION + START + 0.2, "final_read_server": R2,
        "final_read_live": False,
    }


def ticks(rng: random.Random, interval: float, offset: float) -> Iterator[tuple[float, float]]:
    """(t, lateness) of a sampler that does not drift: mostly on time, now and then late."""
    n = int(DURATION / interval)
    for i in range(n):
        late = rng.expovariate(1 / 0.0008) if rng.random() < 0.995 else rng.uniform(0.005, 0.02)
        yield round(START + offset + i * interval + late, 6), round(late, 6)


def dns_rows(rng: random.Random) -> Iterator[tuple]:
    for server, offset, flip in (("authoritative", 0.0, AUTH_FLIP), ("resolver", 0.011, RESOLVER_FLIP)):
        for t, late in ticks(rng, 0.05, offset):
            if t < T_FAULT - 1.0 and rng.random() < 0.0005:
                # a lost UDP answer now and then (none after the fault: one would mean the
                # server never settled on region-2, see instants.dns_flip)
                yield (t, server, 0, None, None, None, 1.0, late, "Timeout", None, None)
                continue
            answer = R2 if t >= flip else R1
            if answer == R2:
                ANSWERS.setdefault(f"dns_{server}_s", t - T_FAULT)
            # as the recorder writes it: no CNAME chain, and the region the answer is
            yield (t, server, 1, answer, "NOERROR", 1, round(rng.uniform(0.0003, 0.002), 6),
                   late, None, "", "region-2" if answer == R2 else "region-1")


def http_rows(rng: random.Random) -> Iterator[tuple]:
    streak: list[float] = []
    after_flip = 0
    for t, late in ticks(rng, 0.05, 0.003):
        latency = round(rng.uniform(0.002, 0.012), 6)
        if t < T_FAULT:
            if rng.random() < 0.0002:
                yield (t, "global", 0, None, None, R1, 1.0, late, "ReadTimeout")
            else:
                yield (t, "global", 1, 200, "region-1", R1, latency, late, None)
        elif t < RESOLVER_FLIP:
            streak.clear()
            yield (t, "global", 0, None, None, R1, latency, late, "ConnectError")
        else:
            after_flip += 1
            if after_flip == K:
                # a flap: K - 1 successes, then one timeout, so that the K rule (not the
                # first success) decides the RTO, and K - 1 in a row is told from K
                streak.clear()
                yield (t, "global", 0, None, None, R2, 1.0, late, "ReadTimeout")
                continue
            # the K rule, directly: the first of K successes in a row served by region-2
            ANSWERS.setdefault("first_success_s", t - T_FAULT)
            if len(streak) < K:
                streak.append(t)
            if len(streak) == K:
                ANSWERS.setdefault("rto_s", streak[0] - T_FAULT)
            yield (t, "global", 1, 200, "region-2", R2, latency, late, None)
    for t, late in ticks(rng, 0.05, 0.007):
        latency = round(rng.uniform(0.001, 0.006), 6)
        if T_FAULT <= t < REVERTED:
            ANSWERS.setdefault("detection_s", t - T_FAULT)
            yield (t, "region-1", 0, None, None, None, latency, late, "ConnectError")
        else:
            yield (t, "region-1", 1, 200, "region-1", None, latency, late, None)
    for t, late in ticks(rng, 0.05, 0.009):
        latency = round(rng.uniform(0.001, 0.006), 6)
        up = t >= PROMOTED + 0.1
        yield (t, "region-2", int(up), 200 if up else 503, "region-2", None, latency, late, None)


def replication_rows(rng: random.Random) -> Iterator[tuple]:
    for t, _late in ticks(rng, 0.25, 0.013):
        if t < T_FAULT:
            lag = round(rng.uniform(0.0005, 0.004), 6)
            senders = [{"name": "region-2", "state": "streaming", "sync": "async",
                        "replay_lag": lag, "behind_bytes": rng.randrange(0, 4096)}]
            yield (t, "region-1", 1, 0, lag, json.dumps({"senders": senders, "receiver": None}),
                   None)
        else:
            yield (t, "region-1", 0, None, None, None, "OperationalError")
    for t, _late in ticks(rng, 0.25, 0.017):
        if t < PROMOTED:
            yield (t, "region-2", 1, 1, round(rng.uniform(0.001, 0.02), 6),
                   json.dumps({"senders": None, "receiver": "streaming"}), None)
        else:
            yield (t, "region-2", 1, 0, None, json.dumps({"senders": None, "receiver": None}),
                   None)


def canary(rng: random.Random, present: list[tuple[int, int]],
           connects: list[tuple]) -> Iterator[tuple]:
    """Writes at CANARY_RATE in all, writer = seq % WRITERS; fills `present` (the rows the
    new primary holds) and `connects` as it goes."""
    period = 1 / CANARY_RATE
    seq = 0
    resumed = PROMOTED + 0.02
    k = 0
    down_logged = False
    # the write accounting, by Jepsen set semantics, as the rows are made
    n = dict.fromkeys(("attempted", "acked", "lost", "recovered", "unknown_absent"), 0)
    # acknowledged before the fault: (t_ack, survived), for the RPO
    before: list[tuple[float, bool]] = []
    ANSWERS["writes"] = n
    while True:
        t_send = START + k * period + rng.uniform(0, period / 4)
        k += 1
        if t_send >= START + DURATION:
            break
        if T_FAULT <= t_send < resumed:
            if not down_logged:
                down_logged = True
                for w in range(WRITERS):
                    t = T_FAULT + 0.01 + w * 0.003
                    while t < resumed - 0.005:
                        connects.append((round(t, 6), w, 0, None, "OperationalError"))
                        t += 0.1
                    connects.append((round(resumed - 0.004 + w * 0.001, 6), w, 1, R2, None))
            continue
        seq += 1
        writer = seq % WRITERS
        t_ack = t_send + rng.uniform(0.0015, 0.0045)
        t_send, t_ack = round(t_send, 6), round(t_ack, 6)
        n["attempted"] += 1
        if t_send < T_FAULT < t_ack:
            # in flight when region-1 died: unknown; half of them had committed and replicated
            yield (seq, writer, t_send, None, "unknown", R1, "OperationalError:", None)
            if seq % 2:
                present.append((seq, 1))
                n["recovered"] += 1
            else:
                n["unknown_absent"] += 1
        elif t_send < T_FAULT:
            yield (seq, writer, t_send, t_ack, "ok", R1, None, None)
            n["acked"] += 1
            survived = t_ack < T_FAULT - LOST_BEFORE_S
            if survived:
                present.append((seq, 1))
            else:
                n["lost"] += 1
            if t_ack > T_FAULT - 1.0:
                before.append((t_ack, survived))
        else:
            if t_send < resumed + 0.002 and writer == 0:
                # the first attempt on the new connection hits a session still read-only
                yield (seq, writer, t_send, None, "failed", R2, "ReadOnlySqlTransaction: 25006",
                       None)
                continue
            yield (seq, writer, t_send, t_ack, "ok", R2, None, None)
            n["acked"] += 1
            ANSWERS.setdefault("first_write_s", t_ack - T_FAULT)
            present.append((seq, 1))
    # RPO: t_fault minus the ack of the last surviving write acknowledged before the
    # earliest lost one (0 when nothing was lost)
    lost = [t for t, survived in before if not survived]
    if lost:
        kept = [t for t, survived in before if survived and t < min(lost)]
        ANSWERS["rpo_s"] = max(0.0, T_FAULT - max(kept))
    else:
        ANSWERS["rpo_s"] = 0.0


def events() -> list[tuple]:
    out = [
        (0.5, "recorder-ready", None, {}),
        (0.6, "experiment-started", None, {"experiment": "Region failover (bench)"}),
        (T_FAULT - 1.0, "gate-passed", None, {}),
        (T_FAULT, "fault-applied", "region-1", {"fault": "scale-to-zero"}),
        (EFFECTIVE, "fault-effective", "region-1", {"fault": "scale-to-zero"}),
        (PROMOTED - 0.05, "promote-requested", "region-2", {}),
        (PROMOTED, "promoted", "region-2", {"error_s": 0.004, "took_s": 0.05}),
        (REVERTED, "fault-reverted", "region-1", {"fault": "scale-to-zero"}),
        (START + DURATION + 0.1, "experiment-ended", None, {"status": "completed"}),
        (START + DURATION + 0.3, "recorder-stopped", None, {"acked": 0}),
    ]
    return [(t, k, r, json.dumps(d, sort_keys=True)) for t, k, r, d in out]


def build(run_dir: Path) -> dict[str, int]:
    """Write the synthetic run into `run_dir`, and its known answers into ANSWERS_FILE
    there; returns the row count of each table."""
    run_dir.mkdir(parents=True, exist_ok=True)
    timeline.create(run_dir, meta())
    ANSWERS.clear()
    rng = random.Random(20260101)
    present: list[tuple[int, int]] = []
    connects: list[tuple] = []
    conn = timeline.connect(run_dir)
    try:
        conn.execute("BEGIN")
        for table, rows in (("dns", dns_rows(rng)), ("http", http_rows(rng)),
                            ("replication", replication_rows(rng)),
                            ("canary", canary(rng, present, connects))):
            cols = timeline.COLUMNS[table]
            conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                             f"({', '.join('?' * len(cols))})", rows)
        conn.executemany("INSERT INTO canary_connect (t, writer, ok, server, error) "
                         "VALUES (?, ?, ?, ?, ?)", connects)
        conn.executemany("INSERT INTO events (t, kind, region, detail) VALUES (?, ?, ?, ?)",
                         events())
        conn.execute("CREATE TABLE final_rows (seq INTEGER, n INTEGER)")
        # as snapshot_rows stores them: in seq order (the canary writes them so already)
        present.sort()
        conn.executemany("INSERT INTO final_rows VALUES (?, ?)", present)
        conn.execute("COMMIT")
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("dns", "http", "replication", "canary", "canary_connect", "events",
                            "final_rows")}
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    (run_dir / ANSWERS_FILE).write_text(json.dumps(ANSWERS, indent=2, sort_keys=True) + "\n")
    return counts


ANSWERS_FILE = "bench-answers.json"


def wrong_answers(summary: dict[str, Any], answers: dict[str, Any]) -> list[str]:
    """Where the summary disagrees with the synthetic run's known answers."""
    phases = summary.get("phases") or {}
    times = {
        "rto_s": (summary.get("rto_s"), answers["rto_s"]),
        "first_success_s": (phases.get("first_success_s"), answers["first_success_s"]),
        "dns_authoritative_s": (phases.get("dns_authoritative_s"),
                                answers["dns_authoritative_s"]),
        "dns_resolver_s": (phases.get("dns_resolver_s"), answers["dns_resolver_s"]),
        "detection_s": (phases.get("detection_s"), answers["detection_s"]),
        "first_write_s": (phases.get("first_write_s"), answers["first_write_s"]),
        "write_rto_s": (summary.get("write_rto_s"), answers["first_write_s"]),
        "rpo_s": (summary.get("rpo_s"), answers["rpo_s"]),
    }
    wrong = [f"{name} {got} (known: {want:.4f})" for name, (got, want) in times.items()
             if got is None or abs(got - want) > TOLERANCE_S]
    writes = summary.get("writes") or {}
    want_writes = {**answers["writes"], "duplicate": 0, "unexpected": 0}
    wrong += [f"writes.{k} {writes.get(k)} (known: {v})" for k, v in want_writes.items()
              if writes.get(k) != v]
    verdict = "fail" if answers["writes"]["lost"] or answers["rpo_s"] > 0 else "pass"
    if summary.get("verdict") != verdict:
        wrong.append(f"verdict {summary.get('verdict')} (known: {verdict})")
    return wrong


def floor_s(run_dir: Path) -> tuple[float, float]:
    """(wall, CPU seconds) of one pass over every row of every table of the run's timeline,
    in SQLite: the least any report of it must do, on this machine."""
    conn = sqlite3.connect(f"file:{run_dir / timeline.FILE}?mode=ro", uri=True)
    try:
        queries = []
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            cols = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            queries.append(f"SELECT count(*), {', '.join(f'sum(length({c}))' for c in cols)} "
                           f"FROM {table}")
        started, cpu = time.perf_counter(), time.process_time()
        for query in queries:
            conn.execute(query).fetchone()
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        conn.close()


CHILD = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from gameday.report import outputs
t1 = time.perf_counter()
out = outputs.regenerate(Path(sys.argv[1]), history=Path(sys.argv[2]))
t2 = time.perf_counter()
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(json.dumps({"import_s": t1 - t0, "regenerate_s": t2 - t1, "vmhwm_kb": hwm,
                  "verdict": out.summary["verdict"], "rto_s": out.summary["rto_s"]}))
"""


def measure(run_dir: Path, history: Path) -> dict[str, Any]:
    """One timed run of the report, in a fresh process: its time, memory and the summary it
    wrote."""
    if history.exists():
        history.unlink()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(run_dir), str(history)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the child's CPU time: this process waits for no other child meanwhile
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"regenerate failed (exit {proc.returncode})")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = json.loads((run_dir / "summary.json").read_text())
    # the child's own high-water mark (VmHWM, read as it ends): not RUSAGE_CHILDREN's
    # ru_maxrss, which Linux carries across exec from the forking parent, so it reported
    # this process's size after building the synthetic run (1,312 MB at 8 h) as the child's
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": child["vmhwm_kb"] / 1024, "summary": summary, **child}


def row_counts(run_dir: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{run_dir / timeline.FILE}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("dns", "http", "replication", "canary", "canary_connect", "events",
                          "final_rows")}
    finally:
        conn.close()


def spread(values: list[float], fmt: str) -> str:
    v = sorted(values)
    return (f"median {statistics.median(v):{fmt}} (min {v[0]:{fmt}}, max {v[-1]:{fmt}})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1.0,
                        help="length of the synthetic run (default 1; 8 is a working day)")
    parser.add_argument("--runs", type=int, default=3,
                        help="time the report this many times (each in a fresh process, "
                             "after its own floor); the targets must hold in every run")
    parser.add_argument("--run-dir", type=Path,
                        help="use (or create) this run directory instead of a temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--check", action="store_true",
                        help=f"the regression guard: 1 h, one run, ratio at most "
                             f"{CHECK_FACTOR:g} x the committed baseline ({CHECK_BASELINE:g})")
    args = parser.parse_args()
    if args.check:
        args.hours, args.runs = 1.0, 1
    configure(args.hours)
    target = CHECK_FACTOR * CHECK_BASELINE if args.check else RATIO_TARGETS.get(args.hours)
    base = Path(tempfile.mkdtemp(prefix="gameday-bench-metrics-"))
    run_dir = args.run_dir or base / "reports" / RUN_ID
    try:
        if not (run_dir / timeline.FILE).is_file():
            t0 = time.perf_counter()
            counts = build(run_dir)
            print(f"synthetic run written in {time.perf_counter() - t0:.1f} s (not timed): {run_dir}")
        else:
            counts = row_counts(run_dir)
        if not (run_dir / ANSWERS_FILE).is_file():
            print(f"MISSED: {run_dir} has no {ANSWERS_FILE} (it was not written by this "
                  "benchmark): nothing to check the report against; give a new --run-dir")
            return 1
        answers = json.loads((run_dir / ANSWERS_FILE).read_text())
        samples = sum(counts[t] for t in ("dns", "http", "replication", "canary", "canary_connect"))
        print(f"samples: {samples:,} (" + ", ".join(f"{t} {n:,}" for t, n in counts.items()) + ")")
        results = []
        missed = False
        # the floor before each run and after the last: each run is judged against the
        # mean of the floors on either side of it, so that load that comes or goes during
        # a run weighs on its floor as on the run
        floors = [floor_s(run_dir)]
        for i in range(args.runs):
            r = measure(run_dir, base / "history.jsonl")
            floors.append(floor_s(run_dir))
            r["floor_s"] = (floors[-2][0] + floors[-1][0]) / 2
            r["floor_cpu_s"] = (floors[-2][1] + floors[-1][1]) / 2
            r["ratio"] = r["cpu_s"] / r["floor_cpu_s"]
            r["wall_ratio"] = r["wall_s"] / r["floor_s"]
            results.append(r)
            wrong = wrong_answers(r["summary"], answers)
            ok_ratio = target is None or r["ratio"] <= target
            ok_mem = r["peak_mb"] <= TARGET_MB
            missed |= not (ok_ratio and ok_mem) or bool(wrong)
            print(f"run {i + 1}/{args.runs}: report / floor {r['ratio']:.2f} in CPU time "
                  f"(target <= {f'{target:.2f}' if target is not None else 'none at this length'})"
                  f": {'ok' if ok_ratio else 'MISSED'}  [report {r['cpu_s']:.2f} s CPU, "
                  f"{r['wall_s']:.2f} s wall from process start to exit (imports "
                  f"{r['import_s']:.2f} s, regenerate {r['regenerate_s']:.2f} s); floor "
                  f"{r['floor_cpu_s']:.2f} s CPU, {r['floor_s']:.2f} s wall (mean of "
                  f"{floors[-2][0]:.2f} before and {floors[-1][0]:.2f} after); wall / wall "
                  f"{r['wall_ratio']:.2f}]; peak memory {r['peak_mb']:.0f} MB (target <= "
                  f"{TARGET_MB:g} MB): {'ok' if ok_mem else 'MISSED'}; known answers: "
                  + ("ok" if not wrong else "MISSED: " + "; ".join(wrong)), flush=True)
        ratios = [r["ratio"] for r in results]
        print(f"metrics + report (summary.json, report.md, timeline.svg), {args.hours:g} h, "
              f"{len(results)} run(s): report / floor in CPU time {spread(ratios, '.2f')}; "
              f"in wall time {spread([r['wall_ratio'] for r in results], '.2f')}; report "
              f"wall {spread([r['wall_s'] for r in results], '.2f')} s, CPU "
              f"{spread([r['cpu_s'] for r in results], '.2f')} s; floor wall "
              f"{spread([r['floor_s'] for r in results], '.2f')} s; peak memory "
              f"{spread([r['peak_mb'] for r in results], '.0f')} MB")
        if args.check:
            print(f"check: ratio {ratios[0]:.2f} against {CHECK_FACTOR:g} x the baseline "
                  f"{CHECK_BASELINE:.2f} = {target:.2f}: {'ok' if not missed else 'MISSED'}")
        else:
            print(f"targets (every run): ratio <= {target if target is not None else 'none'}, "
                  f"memory <= {TARGET_MB:g} MB, the known answers: "
                  f"{'ok' if not missed else 'MISSED'}")
        return 1 if missed else 0
    finally:
        if args.keep:
            print(f"kept: {run_dir}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
