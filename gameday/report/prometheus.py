"""A run's numbers as Prometheus gauges: a textfile for node-exporter's textfile collector,
or a push to a Pushgateway (CI runners have no node-exporter; a Pushgateway, or a Grafana
agent that accepts its API, is what they can reach).

Written with prometheus_client, the library Prometheus maintains, rather than by hand: its
exposition is what Prometheus parses, its textfile writer renames a temporary file into
place (the collector may read while we write), and its push speaks the Pushgateway's API
with a timeout.

Labels are stable: the drill, the experiment's stable id (not its title, which people
reword) and the lab kind. A run id label would make a new series every run. The
Pushgateway groups by the same labels under job `gameday`, so each drill of each
experiment keeps its own group, replaced by its next run. A series of several values adds
one label of its own, as stable: a phase's name, a resolver's name from the descriptor
(never whether it was the slowest this run, which would move its series from run to run).
"""

from __future__ import annotations

import math
import urllib.error
import urllib.parse
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile
from prometheus_client.exposition import generate_latest

from gameday.foundation.errors import TargetError
from gameday.measure.contract import Summary, Verdict, experiment_id

JOB = "gameday"
LABELS = ("drill", "experiment", "lab")
PUSH_TIMEOUT_S = 10.0

# name, help; every gauge is NaN when its number was not observed
SERIES = (
    ("gameday_rto_seconds", "Service RTO: fault to K consecutive global successes served by "
     "the other region."),
    ("gameday_write_rto_seconds", "Write RTO: fault to the first canary write acknowledged by "
     "the new primary."),
    ("gameday_downtime_seconds", "Downtime: the time global requests failed between the fault "
     "and the RTO."),
    ("gameday_rpo_seconds", "RPO: how far back the surviving acknowledged writes end."),
    ("gameday_lost_writes", "Acknowledged canary writes missing from the new primary."),
    ("gameday_verdict", "1 when every target was met and the drill completed, else 0."),
    ("gameday_aborted", "1 when a stop condition aborted the drill, else 0."),
    ("gameday_duration_seconds", "The drill from its start to its end."),
    ("gameday_rto_target_seconds", "The RTO target the drill was judged against."),
    ("gameday_rpo_target_seconds", "The RPO target the drill was judged against."),
    ("gameday_max_lost_writes", "The lost-write target the drill was judged against."),
    ("gameday_last_run_timestamp_seconds", "When the drill started (Unix time)."),
)
FAILBACK_SERIES = (
    ("gameday_failback_rto_seconds", "Failback RTO: the switchover back to K consecutive "
     "global successes served by the original primary."),
    ("gameday_split_brain_writes", "Writes the old primary acknowledged after the promotion, "
     "found at failback (lost)."),
)
# only when the summary has `dns.authority` (older summaries lack it)
AUTHORITY_SERIES = (
    ("gameday_dns_authority_withdrawal_seconds", "The DNS authority's withdrawal of the "
     "primary: seconds after the fault from which it no longer answered with it."),
    ("gameday_dns_authority_budget_seconds", "The DNS authority's health-check budget: "
     "interval x failures + timeout (dns.health)."),
    ("gameday_dns_authority_within_budget", "1 when the withdrawal was within the budget, 0 "
     "when beyond it, NaN when not observed or the budget falls inside its error bar."),
)


def labels(s: Summary) -> dict[str, str]:
    return {"drill": str(s["drill"]), "experiment": experiment_id(s),
            "lab": str(s["lab"] or "unknown")}


def _number(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def registry(s: Summary) -> CollectorRegistry:
    """Every gauge of the run, in a registry of its own (never the process's default one)."""
    reg = CollectorRegistry(auto_describe=True)
    started = s["started_at"]
    values: dict[str, Any] = {
        "gameday_rto_seconds": s["rto_s"],
        "gameday_write_rto_seconds": s["write_rto_s"],
        "gameday_downtime_seconds": s["downtime_s"],
        "gameday_rpo_seconds": s["rpo_s"],
        "gameday_lost_writes": s["writes"]["lost"],
        "gameday_verdict": 1 if s["verdict"] == Verdict.PASS else 0,
        "gameday_aborted": 1 if s["verdict"] == Verdict.ABORTED else 0,
        "gameday_duration_seconds": s.get("duration_s"),
        "gameday_rto_target_seconds": s["targets"]["rto_s"],
        "gameday_rpo_target_seconds": s["targets"]["rpo_s"],
        "gameday_max_lost_writes": s["targets"]["max_lost_writes"],
        "gameday_last_run_timestamp_seconds":
            datetime.fromisoformat(started).timestamp() if started else None,
    }
    series = list(SERIES)
    fb = s["failback"]
    if fb:
        series += FAILBACK_SERIES
        values["gameday_failback_rto_seconds"] = fb.get("rto_s")
        values["gameday_split_brain_writes"] = fb.get("split_brain_writes")
    dns = s.get("dns")
    authority = dns.get("authority") if dns else None
    if authority:
        series += AUTHORITY_SERIES
        within = authority.get("within")
        values["gameday_dns_authority_withdrawal_seconds"] = authority.get("withdrawn_s")
        values["gameday_dns_authority_budget_seconds"] = authority.get("budget_s")
        values["gameday_dns_authority_within_budget"] = None if within is None else int(within)
    mine = labels(s)
    for name, help_text in series:
        Gauge(name, help_text, LABELS, registry=reg).labels(**mine).set(_number(values[name]))
    phases = Gauge("gameday_phase_seconds", "Each RTO phase: seconds after the fault at which "
                   "the recorder saw it (docs/runbook.md, RTO budget by phase).",
                   (*LABELS, "phase"), registry=reg)
    for name, at in sorted((s["phases"] or {}).items()):
        phases.labels(**mine, phase=name.removesuffix("_s")).set(_number(at))
    if dns:
        flips = Gauge("gameday_dns_resolver_flip_seconds", "Each resolver's DNS flip: seconds "
                      "after the fault from which its every answer was the secondary's "
                      "(summary dns.resolvers).", (*LABELS, "resolver"), registry=reg)
        for r in dns.get("resolvers") or []:
            flips.labels(**mine, resolver=r["name"]).set(_number(r.get("flip_s")))
    return reg


def render(s: Summary) -> str:
    """The text exposition format (what the textfile holds and the push sends)."""
    return generate_latest(registry(s)).decode()


def write(path: Path, s: Summary) -> None:
    """The textfile, replaced atomically (prometheus_client writes a temporary file and
    renames it)."""
    write_to_textfile(str(path), registry(s))


def push(url: str, s: Summary, *, timeout_s: float = PUSH_TIMEOUT_S) -> None:
    """Replace this drill's group on the Pushgateway at `url` (PUT, bounded by `timeout_s`).
    A TargetError names the gateway without any credentials in its URL."""
    try:
        push_to_gateway(url, job=JOB, registry=registry(s), grouping_key=labels(s),
                        timeout=timeout_s)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TargetError(f"cannot push the metrics to the Pushgateway at {safe_url(url)}: "
                          f"{reason}") from None


def safe_url(url: str) -> str:
    """`url` without a user or password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
