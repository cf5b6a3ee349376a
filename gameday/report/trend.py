"""The trend across runs: `<reports_dir>/history.jsonl` holds one compact line per run, and
a run regresses when its RTO or RPO exceeds the target, or `factor` times the median of the
previous comparable runs.

Comparable means like with like: the same drill (a failback's RTO is not a failover's),
the same experiment (its stable `experiment_id`, not its title, which people reword) and
the same lab profile (the lab and the settings its numbers depend on). A reports directory
holds the game day and the failback side by side, so a trend over every line would flag a
failover against the failbacks' faster median, and hide a failback that slowed down.

Which runs are "previous" depends only on the history lines, never on when the report is
rendered: the comparable runs that started before this one (ordered by `started_at`, then
`run_id`), so regenerating an old run's report gives the same file after newer runs were
appended.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(f"chaostoolkit.{__name__}")

FILE = "history.jsonl"
DEFAULT_FACTOR = 1.5
DEFAULT_WINDOW = 10
DEFAULT_MIN_RUNS = 3
METRICS = (("rto_s", "RTO"), ("rpo_s", "RPO"))


# the configuration that changes what a drill's numbers mean, in the order the profile
# names them (recorded by the control in summary.json `configuration`)
PROFILE_KEYS = (("replication", "replication"), ("ha_manager", "ha"), ("promotion", "promotion"),
                ("dns_ttl_s", "ttl_s"), ("health_interval_s", "health_interval_s"),
                ("inter_region_delay_ms", "delay_ms"), ("k_consecutive", "k"))


def experiment_identity(experiment: Mapping[str, Any], configured: str | None = None) -> str:
    """The experiment's stable id: configuration `experiment_id` when it is set (each shipped
    experiment sets it to its file's name), else a digest of the method's step names. Not
    the title: a reworded title is the same drill, and a method with other steps is not."""
    if configured:
        return configured
    steps = [str(a.get("name")) for a in experiment.get("method") or [] if isinstance(a, dict)]
    digest = hashlib.sha256("\n".join(steps).encode()).hexdigest()[:12]
    return f"method-{digest}"


def profile(summary: Mapping[str, Any]) -> str:
    """The lab profile of a run: the lab kind and the settings that shape its numbers
    (replication, HA manager, who promotes, DNS TTL, health interval, delay between the
    regions, K) and the faults it injected, as `key=value` words in a fixed order."""
    config = summary.get("configuration") or {}
    words = [f"lab={summary.get('lab') or 'unknown'}"]
    for key, short in PROFILE_KEYS:
        value = config.get(key)
        if value is not None:
            words.append(f"{short}={value:g}" if isinstance(value, float) else f"{short}={value}")
    faults = sorted({str(f.get("fault")) for f in summary.get("faults") or []
                     if f.get("fault") and not f.get("not_applicable")})
    if faults:
        words.append("faults=" + ",".join(faults))
    return " ".join(words)


def compact(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The history line of one run: what the trend table and the regression rule need."""
    fb = summary.get("failback") or {}
    return {
        "run_id": summary.get("run_id"),
        "started_at": summary.get("started_at"),
        "drill": summary.get("drill"),
        "experiment_id": summary.get("experiment_id"),
        "profile": profile(summary),
        "experiment": summary.get("experiment"),
        "lab": summary.get("lab"),
        "verdict": summary.get("verdict"),
        "targets": summary.get("targets"),
        "rto_s": summary.get("rto_s"),
        "rto_error_s": summary.get("rto_error_s"),
        "write_rto_s": summary.get("write_rto_s"),
        "downtime_s": summary.get("downtime_s"),
        "rpo_s": summary.get("rpo_s"),
        "lost": (summary.get("writes") or {}).get("lost"),
        "failback_rto_s": fb.get("rto_s"),
    }


def line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


def read(path: Path) -> list[dict[str, Any]]:
    """Every parseable line of the history (a torn or foreign line is skipped)."""
    if not path.is_file():
        return []
    out = []
    for n, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError:
            logger.warning("gameday: %s line %d is not JSON; skipped", path.name, n)
            continue
        if isinstance(entry, dict) and entry.get("run_id"):
            out.append(entry)
    return out


def record(path: Path, entry: dict[str, Any]) -> None:
    """Append the run's line, or replace its earlier line: recording a run twice (a
    regenerated report) leaves one line, and an unchanged line leaves the file untouched."""
    text = line(entry)
    existing = [t for t in path.read_text().splitlines() if t.strip()] if path.is_file() else []
    lines: list[str] = []
    replaced = False
    for old in existing:
        try:
            same = json.loads(old).get("run_id") == entry["run_id"]
        except (json.JSONDecodeError, AttributeError):
            same = False
        if same:
            if not replaced:
                lines.append(text)
            replaced = True
        else:
            lines.append(old)
    if not replaced:
        lines.append(text)
    new = "\n".join(lines) + "\n"
    if path.is_file() and path.read_text() == new:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new)
    tmp.replace(path)


def _key(entry: dict[str, Any]) -> tuple[str, str]:
    return (str(entry.get("started_at") or ""), str(entry.get("run_id") or ""))


def like(entry: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """What a run is compared by: (drill, experiment id, lab profile). A line recorded
    before runs were keyed has None there, and so is compared only with such lines."""
    def part(name: str) -> str | None:
        value = entry.get(name)
        return value if isinstance(value, str) and value else None

    return part("drill"), part("experiment_id"), part("profile")


def previous(history: Sequence[dict[str, Any]], current: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparable runs that started before `current`, oldest first, one line per run id."""
    key = like(current)
    by_id = {e["run_id"]: e for e in history if e.get("run_id") != current.get("run_id")}
    return sorted((e for e in by_id.values() if like(e) == key and _key(e) < _key(current)),
                  key=_key)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Trend:
    current: dict[str, Any]
    previous: list[dict[str, Any]]  # oldest first, every comparable one
    factor: float
    window: int
    min_runs: int
    medians: dict[str, float | None]
    flags: list[str]
    compared: dict[str, int] = dataclasses.field(default_factory=dict)  # runs per median
    left_out: int = 0  # earlier runs of another drill, experiment or profile

    @property
    def against(self) -> str:
        """What this run was compared with, in words (the report says it)."""
        drill, experiment, prof = like(self.current)
        n = len(self.previous)
        text = (f"the {n} earlier {drill or 'unkeyed'} run{'' if n == 1 else 's'} of "
                f"experiment `{experiment or 'unknown'}` on lab profile `{prof or 'unknown'}`")
        if self.left_out:
            text += (f" ({self.left_out} other earlier run{'' if self.left_out == 1 else 's'} "
                     "of another drill, experiment or profile left out)")
        return text

    @property
    def regression(self) -> bool:
        return bool(self.flags)

    def last(self, n: int) -> list[dict[str, Any]]:
        """The last n runs up to and including this one, oldest first."""
        return [*self.previous, self.current][-n:]


def evaluate(current: dict[str, Any], history: Sequence[dict[str, Any]], *,
             factor: float = DEFAULT_FACTOR, window: int = DEFAULT_WINDOW,
             min_runs: int = DEFAULT_MIN_RUNS) -> Trend:
    """Flag RTO or RPO above its target, or above `factor` × the median of the last
    `window` previous runs that observed it (compared only with at least `min_runs`)."""
    prev = previous(history, current)
    earlier = {e["run_id"] for e in history
               if e.get("run_id") != current.get("run_id") and _key(e) < _key(current)}
    targets = current.get("targets") or {}
    flags: list[str] = []
    medians: dict[str, float | None] = {}
    compared: dict[str, int] = {}
    for key, label in METRICS:
        value = current.get(key)
        values = [e[key] for e in prev if isinstance(e.get(key), int | float)][-window:]
        median = statistics.median(values) if len(values) >= min_runs else None
        medians[key] = None if median is None else round(median, 4)
        compared[key] = len(values)
        target = targets.get(key)
        if value is None:
            if current.get("verdict") is not None and key == "rto_s":
                flags.append(f"{label} not observed")
            continue
        if isinstance(target, int | float) and value > target:
            flags.append(f"{label} {value:.3f} s exceeds its target {target:g} s")
        if median is not None and value > factor * median:
            flags.append(f"{label} {value:.3f} s exceeds {factor:g} × the median {median:.3f} s "
                         f"of the previous {len(values)} runs")
    return Trend(current=current, previous=prev, factor=factor, window=window,
                 min_runs=min_runs, medians=medians, flags=flags, compared=compared,
                 left_out=len(earlier) - len(prev))


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """One character per run, scaled from the smallest to the largest value (all at the
    bottom when they are equal); `·` when not observed."""
    seen = [v for v in values if v is not None]
    lo, hi = (min(seen), max(seen)) if seen else (0.0, 0.0)
    out = []
    for v in values:
        if v is None:
            out.append("·")
        elif hi == lo:
            out.append(SPARKS[0])
        else:
            out.append(SPARKS[round((v - lo) / (hi - lo) * (len(SPARKS) - 1))])
    return "".join(out)
