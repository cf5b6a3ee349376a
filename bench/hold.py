"""The long drill on a fresh netns lab (sync replication): the figures of the README's
long-drill paragraph. Runs experiments/game-day-long.json with `--var hold_s=S`, then
experiments/failback.json, and prints the game day's RTO and lost writes, the hold's
availability (global requests served by region-2, canary errors, failed checks), the
timeline's growth per hour, the failback's result, and the recorder's CPU during the hold:
its CPU time from /proc between the hold-start and hold-end events, as a share of one core
and against a reference loop run over the same seconds (the recorder's schedule with
samples that do nothing: see bench_recorder.py). No target: information, beside the
recorder's judged figure in bench_recorder.py.

Not part of `make bench`: a 10-minute hold keeps the lab up for about 13 minutes.

Run: sudo .venv/bin/python bench/hold.py --hold-s 600 [--canary-max-rate R]
(R: the experiment's canary cap, 200 writes/s; 0 is flat out)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _lab import BIN, lab  # noqa: E402
from bench_recorder import cpu_seconds, reference_result, start_reference, streams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.2


def recorder_of(parent: int) -> tuple[int, Path] | None:
    """The recorder child of `parent`: its pid and run directory."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"gameday.measure.recorder" in argv:
            return int(entry.name), Path(argv[argv.index(b"gameday.measure.recorder") + 1].decode())
    return None


def has_event(run_dir: Path, kind: str) -> bool:
    try:
        conn = sqlite3.connect(f"file:{run_dir / 'timeline.sqlite'}?mode=ro", uri=True,
                               timeout=5)
        try:
            return conn.execute("SELECT 1 FROM events WHERE kind = ? LIMIT 1",
                                (kind,)).fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def chaos(experiment: str, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(BIN / "chaos"), "--no-version-check", "run", *extra,
                             "--journal-path", os.devnull, str(ROOT / "experiments" / experiment)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def newest_summary(reports: Path) -> dict[str, Any]:
    runs = sorted(p for p in reports.glob("2*") if (p / "summary.json").is_file())
    summary: dict[str, Any] = json.loads((runs[-1] / "summary.json").read_text()) if runs else {}
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hold-s", type=float, default=600.0, help="the hold (default 600)")
    parser.add_argument("--canary-max-rate", type=float,
                        help="the canary's cap in writes/s (default: the experiment's, 200)")
    args = parser.parse_args()
    extra = ["--var", f"hold_s={args.hold_s:g}"]
    if args.canary_max_rate is not None:
        extra += ["--var", f"canary_max_rate={args.canary_max_rate:g}"]
    with lab("sync") as (the_lab, base):
        env = {**os.environ, "GAMEDAY_HOME": str(base / "state"), "GAMEDAY_LAB": the_lab.path,
               "GAMEDAY_REPORTS": str(base / "reports")}
        game_day = chaos("game-day-long.json", env, *extra)
        found = None
        cpu0 = w0 = cpu1 = w1 = None
        reference = None
        while game_day.poll() is None:
            time.sleep(POLL_S)
            found = found or recorder_of(game_day.pid)
            if found is None:
                continue
            pid, run_dir = found
            try:
                if cpu0 is None and has_event(run_dir, "hold-start"):
                    cpu0, w0 = cpu_seconds(pid), time.monotonic()
                    reference = start_reference(args.hold_s, list(streams(the_lab).values()))
                elif cpu0 is not None and cpu1 is None and has_event(run_dir, "hold-end"):
                    cpu1, w1 = cpu_seconds(pid), time.monotonic()
            except FileNotFoundError:  # the recorder ended
                break
        gd_exit = game_day.wait()
        ref = reference_result(reference, args.hold_s) if reference is not None else None
        gd = newest_summary(base / "reports")
        failback = chaos("failback.json", env)
        fb_exit = failback.wait()
        fb = newest_summary(base / "reports")
    hold = gd.get("hold") or {}
    writes = gd.get("writes") or {}
    print(f"game day (hold {args.hold_s:g} s): exit {gd_exit}, verdict {gd.get('verdict')}, "
          f"RTO {gd.get('rto_s')} s, {writes.get('lost')} lost writes")
    if hold:
        print(f"hold in {hold.get('region')}: {hold.get('served_by_region'):,} of "
              f"{hold.get('global_requests'):,} global requests served by it; "
              f"{hold.get('canary_errors')} canary errors in {hold.get('canary_attempts'):,} "
              f"attempts; {hold.get('checks_failed')} of {hold.get('checks')} checks failed; "
              f"timeline {hold.get('timeline_mb_per_hour')} MB per hour")
    print(f"failback: exit {fb_exit}, verdict {fb.get('verdict')}, RTO {fb.get('rto_s')} s, "
          f"{(fb.get('writes') or {}).get('lost')} lost writes")
    if cpu0 is None or cpu1 is None or w0 is None or w1 is None:
        print("recorder CPU during the hold: no data (the hold's start or end was not seen)")
        return 1
    share = (cpu1 - cpu0) / (w1 - w0)
    ratio = (f", {share / (ref['cpu_s'] / ref['wall_s']):.1f} x the reference loop's "
             f"{ref['cpu_s'] / ref['wall_s'] * 100:.2f}%") if ref else ""
    print(f"recorder CPU during the hold: {cpu1 - cpu0:.1f} s in {w1 - w0:.1f} s, "
          f"{share * 100:.1f}% of one core{ratio}")
    return 0 if gd_exit == 0 and fb_exit == 0 and hold else 1


if __name__ == "__main__":
    sys.exit(main())
