"""Metrics plus report from a synthetic timeline of H hours, about 2 million samples an
hour (targets: at most 5 s at 1 h, 30 s at 8 h, and 500 MB peak memory whatever the
length: the report must not grow with the drill).

Writes a realistic run directory (not timed): DNS from 2 servers and HTTP from the global
name and both regions' health endpoints every 50 ms, replication from 2 servers every
250 ms, 2 canary writers at 450 acknowledged writes/s in all (asynchronous replication),
and a region-1 outage half-way (30 min into one hour): the authoritative DNS flips 1.25 s after the fault, the
resolver 2.05 s after, global requests fail until then; region-2 is promoted at 0.85 s;
writes in flight at the fault are unknown, connections fail until the promotion, and the
writes acknowledged in the last 12 ms before the fault never reached region-2 (lost). The
rows read back from region-2 (`final_rows`) are stored in seq order, as
`summary.snapshot_rows` reads them (`GROUP BY seq ORDER BY seq`).
Then times `gameday.report.outputs.regenerate` (summary.json, report.md, timeline.svg) in
a fresh Python process, from interpreter start to exit, and reads that process's peak
resident memory.

Run: .venv/bin/python bench/bench_metrics.py [--hours H] [--runs N] [--run-dir DIR] [--keep]
(part of `make bench`, at 1 h and at 8 h)
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gameday.measure.store import timeline  # noqa: E402

TARGET_MB = 500.0
# wall-time target by length: 5 s for an hour, 30 s for a working day (8 h)
TARGETS_S = {1.0: 5.0, 8.0: 30.0}

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


def target_s(hours: float) -> float:
    """The wall-time target at this length: the listed one, else interpolated linearly
    between 1 h and 8 h (5 s per hour beyond: an extrapolation, not a promise)."""
    if hours in TARGETS_S:
        return TARGETS_S[hours]
    if hours < 1:
        return TARGETS_S[1.0]
    return 5.0 + (hours - 1) * (30.0 - 5.0) / 7


configure(1.0)


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
        # gameday.report.summary.snapshot_rows
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
                yield (t, server, 0, None, None, None, 1.0, late, "Timeout")
                continue
            answer = R2 if t >= flip else R1
            yield (t, server, 1, answer, "NOERROR", 1, round(rng.uniform(0.0003, 0.002), 6),
                   late, None)


def http_rows(rng: random.Random) -> Iterator[tuple]:
    for t, late in ticks(rng, 0.05, 0.003):
        latency = round(rng.uniform(0.002, 0.012), 6)
        if t < T_FAULT:
            if rng.random() < 0.0002:
                yield (t, "global", 0, None, None, R1, 1.0, late, "ReadTimeout")
            else:
                yield (t, "global", 1, 200, "region-1", R1, latency, late, None)
        elif t < RESOLVER_FLIP:
            yield (t, "global", 0, None, None, R1, latency, late, "ConnectError")
        else:
            yield (t, "global", 1, 200, "region-2", R2, latency, late, None)
    for t, late in ticks(rng, 0.05, 0.007):
        latency = round(rng.uniform(0.001, 0.006), 6)
        if T_FAULT <= t < REVERTED:
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
        if t_send < T_FAULT < t_ack:
            # in flight when region-1 died: unknown; half of them had committed and replicated
            yield (seq, writer, t_send, None, "unknown", R1, "OperationalError:", None)
            if seq % 2:
                present.append((seq, 1))
        elif t_send < T_FAULT:
            yield (seq, writer, t_send, t_ack, "ok", R1, None, None)
            if t_ack < T_FAULT - LOST_BEFORE_S:
                present.append((seq, 1))
        else:
            if t_send < resumed + 0.002 and writer == 0:
                # the first attempt on the new connection hits a session still read-only
                yield (seq, writer, t_send, None, "failed", R2, "ReadOnlySqlTransaction: 25006",
                       None)
                continue
            yield (seq, writer, t_send, t_ack, "ok", R2, None, None)
            present.append((seq, 1))


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
    """Write the synthetic run into `run_dir`; returns the row count of each table."""
    run_dir.mkdir(parents=True, exist_ok=True)
    timeline.create(run_dir, meta())
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
    return counts


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


def measure(run_dir: Path, history: Path) -> dict[str, float]:
    if history.exists():
        history.unlink()
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(run_dir), str(history)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"regenerate failed (exit {proc.returncode})")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    # the child's own high-water mark (VmHWM, read as it ends): not RUSAGE_CHILDREN's
    # ru_maxrss, which Linux carries across exec from the forking parent, so it reported
    # this process's size after building the synthetic run (1,312 MB at 8 h) as the child's
    return {"wall_s": wall, "peak_mb": child["vmhwm_kb"] / 1024, **child}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1.0,
                        help="length of the synthetic run (default 1; 8 is a working day)")
    parser.add_argument("--runs", type=int, default=3,
                        help="time the report this many times (each in a fresh process); "
                             "the targets must hold in every run")
    parser.add_argument("--run-dir", type=Path,
                        help="use (or create) this run directory instead of a temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    configure(args.hours)
    target = target_s(args.hours)
    base = Path(tempfile.mkdtemp(prefix="gameday-bench-metrics-"))
    run_dir = args.run_dir or base / "reports" / RUN_ID
    try:
        if not (run_dir / timeline.FILE).is_file():
            t0 = time.perf_counter()
            counts = build(run_dir)
            print(f"synthetic run written in {time.perf_counter() - t0:.1f} s (not timed): {run_dir}")
        else:
            conn = sqlite3.connect(run_dir / timeline.FILE)
            counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("dns", "http", "replication", "canary", "canary_connect",
                                "events", "final_rows")}
            conn.close()
        samples = sum(counts[t] for t in ("dns", "http", "replication", "canary", "canary_connect"))
        print(f"samples: {samples:,} (" + ", ".join(f"{t} {n:,}" for t, n in counts.items()) + ")")
        results = []
        for i in range(args.runs):
            r = measure(run_dir, base / "history.jsonl")
            results.append(r)
            ok_time, ok_mem = r["wall_s"] <= target, r["peak_mb"] <= TARGET_MB
            print(f"run {i + 1}/{args.runs}: {r['wall_s']:.2f} s wall, process start to exit "
                  f"(target <= {target:g} s): {'ok' if ok_time else 'MISSED'}  "
                  f"[imports {r['import_s']:.2f} s, regenerate {r['regenerate_s']:.2f} s]; "
                  f"peak memory {r['peak_mb']:.0f} MB (target <= {TARGET_MB:g} MB): "
                  f"{'ok' if ok_mem else 'MISSED'}", flush=True)
        walls = sorted(r["wall_s"] for r in results)
        peaks = sorted(r["peak_mb"] for r in results)
        ok_time, ok_mem = walls[-1] <= target, peaks[-1] <= TARGET_MB
        print(f"metrics + report (summary.json, report.md, timeline.svg), {args.hours:g} h, "
              f"{len(results)} runs: wall median {statistics.median(walls):.2f} s "
              f"(min {walls[0]:.2f}, max {walls[-1]:.2f}; target <= {target:g} s): "
              f"{'ok' if ok_time else 'MISSED'}")
        print(f"peak memory median {statistics.median(peaks):.0f} MB (min {peaks[0]:.0f}, "
              f"max {peaks[-1]:.0f}; target <= {TARGET_MB:g} MB): {'ok' if ok_mem else 'MISSED'}")
        print(f"run verdict {results[-1]['verdict']}, RTO {results[-1]['rto_s']} s")
        return 0 if ok_time and ok_mem else 1
    finally:
        if args.keep:
            print(f"kept: {run_dir}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
