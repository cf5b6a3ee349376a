"""A run as a node-exporter textfile, for teams that scrape game-day results.

node-exporter's textfile collector reads `*.prom` files in the Prometheus text exposition
format from one directory; the newest drill overwrites its file, so each series keeps one
value and the history lives in Prometheus. Written by hand (the format is a few lines; no
client library needed at run time) and atomically (a temporary file renamed), because the
collector may read while we write. Labels are the experiment, the drill and the lab only:
a run id label would make a new series every run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from gameday.report.contract import Summary

METRICS = (
    ("gameday_rto_seconds", "Service RTO: fault to K consecutive global successes served by "
     "the other region (NaN when not observed)."),
    ("gameday_rpo_seconds", "RPO: how far back the surviving acknowledged writes end "
     "(NaN when not observed)."),
    ("gameday_lost_writes", "Acknowledged canary writes missing from the new primary "
     "(NaN when the canary table was not read)."),
    ("gameday_verdict", "1 when every target was met and the drill completed, else 0."),
    ("gameday_rto_target_seconds", "The RTO target the drill was judged against."),
    ("gameday_rpo_target_seconds", "The RPO target the drill was judged against."),
    ("gameday_max_lost_writes", "The lost-write target the drill was judged against."),
    ("gameday_last_run_timestamp_seconds", "When the drill started (Unix time)."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(v: float | int | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "NaN"
    return repr(float(v)) if isinstance(v, float) else str(v)


def render(s: Summary) -> str:
    from datetime import datetime

    labels = ",".join(f'{k}="{_label(str(v or ""))}"' for k, v in (
        ("experiment", s["experiment"]), ("drill", s["drill"]), ("lab", s["lab"])))
    started = s["started_at"]
    values = {
        "gameday_rto_seconds": s["rto_s"],
        "gameday_rpo_seconds": s["rpo_s"],
        "gameday_lost_writes": s["writes"]["lost"],
        "gameday_verdict": 1 if s["verdict"] == "pass" else 0,
        "gameday_rto_target_seconds": float(s["targets"]["rto_s"]),
        "gameday_rpo_target_seconds": float(s["targets"]["rpo_s"]),
        "gameday_max_lost_writes": s["targets"]["max_lost_writes"],
        "gameday_last_run_timestamp_seconds":
            datetime.fromisoformat(started).timestamp() if started else None,
    }
    lines = []
    for name, help_text in METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                  f"{name}{{{labels}}} {_value(values[name])}"]
    return "\n".join(lines) + "\n"


def write(path: Path, s: Summary) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render(s), encoding="utf-8")
    tmp.replace(path)
