"""The recorder at its default rates: CPU (target: at most 15% of one core in the default
lab, synchronous replication) and the DNS sampler's lateness at 50 ms (target: p99 at most
10 ms while the canary runs flat out, in an asynchronous lab where it writes thousands of
rows a second). Reads the recorder's own CPU time from /proc and the lateness each sample
stored.

Run: sudo .venv/bin/python bench/bench_recorder.py   (part of `make bench`)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _lab import lab  # noqa: E402

from gameday.foundation.settings import GamedaySettings  # noqa: E402
from gameday.measure import run as runs  # noqa: E402
from gameday.measure import stats  # noqa: E402
from gameday.measure.store import timeline  # noqa: E402

SECONDS = 20.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(replication: str) -> dict[str, float]:
    with lab(replication) as (the_lab, base):
        settings = GamedaySettings.from_chaos({"lab_file": the_lab.path,
                                               "reports_dir": str(base / "reports")})
        run = runs.start(settings, the_lab, experiment="bench", kind="bench")
        pid = run.recorder.pid
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(SECONDS)
        cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        run.stop_recorder()
        conn = timeline.connect(run.dir)
        lateness = [r[0] for r in conn.execute("SELECT lateness FROM dns")]
        dns_t = {s: [r[0] for r in conn.execute(
            "SELECT t FROM dns WHERE server = ? ORDER BY t", (s,))] for s in ("authoritative", "resolver")}
        acked = conn.execute("SELECT count(*) FROM canary WHERE outcome = 'ok'").fetchone()[0]
        conn.close()
        gaps = stats.intervals(dns_t["authoritative"]) + stats.intervals(dns_t["resolver"])
        return {"cpu": cpu, "late_p50": stats.percentile(lateness, 50) or 0.0,
                "late_p99": stats.percentile(lateness, 99) or 0.0,
                "interval_p50": stats.percentile(gaps, 50) or 0.0,
                "interval_p99": stats.percentile(gaps, 99) or 0.0,
                "canary_rate": acked / SECONDS}


def main() -> int:
    failed = False
    for replication in ("sync", "async"):
        m = measure(replication)
        print(f"{replication} replication, {SECONDS:g} s at default rates: recorder CPU "
              f"{m['cpu'] * 100:.1f}% of one core; canary {m['canary_rate']:,.0f} acknowledged "
              f"writes/s; DNS lateness p50 {m['late_p50'] * 1000:.2f} ms p99 "
              f"{m['late_p99'] * 1000:.2f} ms; DNS interval p50 {m['interval_p50'] * 1000:.1f} ms "
              f"p99 {m['interval_p99'] * 1000:.1f} ms")
        if replication == "sync":
            print(f"  target: CPU <= 15% at default rates: {'met' if m['cpu'] <= 0.15 else 'MISSED'}")
            failed |= m["cpu"] > 0.15
        else:
            ok = m["late_p99"] <= 0.010
            print(f"  target: DNS p99 lateness <= 10 ms with the canary flat out: "
                  f"{'met' if ok else 'MISSED'}")
            failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
