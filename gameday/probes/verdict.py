"""Verdict probes for the steady state after the method: RTO, RPO and lost writes,
computed from the run's own timeline.

The `*_seconds` / count probes return the measured number, so it lands in the Chaos
Toolkit journal (and whatever reads it: `chaos report`, notifications, Reliably); the
experiment judges it with a `range` tolerance bound to its target (`gameday.drill.hypothesis`).
A number that was not observed cannot be judged: the probe fails with the reason, which
fails the steady state as a missed target would. The `*_within_target` booleans are kept
for experiments written before the numbers were returned."""

import logging
from typing import Any, Dict, Optional

from gameday.drill import checks, context, stores
from gameday.drill.activity import activity
from gameday.foundation.errors import GamedayError, LabError
from gameday.foundation.events import Kind
from gameday.measure import app_canary
from gameday.measure import summary as summaries
from gameday.measure.contract import Summary
from gameday.measure.store import timeline

logger = logging.getLogger(f"chaostoolkit.{__name__}")

# how many times the verdict probes read the application canary back before its losses
# are unknown (each read bounded by the canary's deadline per request)
LIVE_READS = 3

__all__ = ["rto_seconds", "rpo_seconds", "lost_writes", "integrity_violations",
           "rto_within_target", "rpo_within_target", "lost_writes_within_target",
           "global_name_served_by"]

# Chaos Toolkit runs the same hypothesis before and after the method. Before any fault
# there is nothing to recover from: RTO holds vacuously (0 s), and RPO / lost writes are
# checked for real (no acknowledged write may be missing even before the fault).


def _summary(configuration: Optional[Dict[str, Any]],
             secrets: Optional[Dict[str, Any]]) -> Summary:
    drill = context.current(configuration, secrets)
    if drill.run is None:
        raise LabError("verdict probes read the run's timeline: declare the "
                       "`gameday.control` control in the experiment")
    run = drill.run

    def read() -> Summary:
        timeline.wait_flushed(run.dir)  # the samples up to now, on disk (every 250 ms)
        summaries.snapshot_rows(run.dir, drill.lab, run.now(), live=True)
        canary = drill.settings.app_canary
        if canary is not None and not stores.has_sql_canary(drill.lab):
            # the application canary is this store's RPO measure: read back now, while
            # its writers write (the control reads again once they stopped); a read that
            # fails is recorded in the run as why the application's losses are unknown
            # A read that fails is tried again, LIVE_READS in all: in the seconds after a
            # failover the application's own connections are still finding the new
            # master, and a read-back that fails once then (seen in CI: RPO "not observed"
            # in a run whose final read found nothing lost) says nothing of the data
            for attempt in range(1, LIVE_READS + 1):
                try:
                    app_canary.snapshot(
                        run.dir, checks.global_where(drill.lab, canary.deadline_s),
                        canary.read_back, run.now(), verify=drill.lab.ca_bundle or True,
                        live=True)
                    break
                except GamedayError as exc:
                    logger.warning("gameday: the application canary's read-back, attempt "
                                   "%d of %d: %s", attempt, LIVE_READS, exc)
        return summaries.build(run.dir)

    # the probes of one steady-state evaluation judge one snapshot (the control opens it)
    return context.evaluation.once(read)


def _before_fault() -> bool:
    drill = context.published()
    return drill is not None and drill.run is not None \
        and not drill.run.events(Kind.FAULT_APPLIED)


def _dry() -> bool:
    """`chaos run --dry actions`: no fault and no recorder, so nothing to recover from and
    nothing lost (0); the journal's gameday extension says it was a dry run."""
    standdown = context.standdown()
    return standdown is not None and standdown.plan is not None


def _observed(value: Optional[float], what: str, summary: Summary) -> float:
    if value is None:
        why = "; ".join(summary["reasons"]) or "not observed"
        raise LabError(f"{what} was not observed, so no target can be met ({why})")
    return value


@activity
def rto_seconds(configuration: Optional[Dict[str, Any]] = None,
                secrets: Optional[Dict[str, Any]] = None) -> float:
    """The service RTO in seconds (fault to K consecutive global successes served by the
    other region); 0 before any fault. Judge it with
    `{"type": "range", "range": [0, 30], "gameday": {"upper": "rto_target_s"}}`."""
    if _before_fault() or _dry():
        return 0.0
    s = _summary(configuration, secrets)
    return _observed(s["rto_s"], "RTO", s)


@activity
def rpo_seconds(configuration: Optional[Dict[str, Any]] = None,
                secrets: Optional[Dict[str, Any]] = None) -> float:
    """RPO in seconds: how far back the surviving acknowledged data ends (0 when no
    acknowledged write was lost)."""
    if _dry():
        return 0.0
    s = _summary(configuration, secrets)
    return _observed(s["rpo_s"], "RPO", s)


@activity
def lost_writes(configuration: Optional[Dict[str, Any]] = None,
                secrets: Optional[Dict[str, Any]] = None) -> int:
    """How many acknowledged canary writes are missing from the writable primary."""
    if _dry():
        return 0
    s = _summary(configuration, secrets)
    return int(_observed(s["writes"]["lost"], "the lost-write count", s))


@activity
def integrity_violations(configuration: Optional[Dict[str, Any]] = None,
                         secrets: Optional[Dict[str, Any]] = None) -> int:
    """Canary rows that must not exist: present but never attempted or refused
    (unexpected), or present twice (duplicate). Anything above 0 is a broken database,
    whatever the RPO says; judge it with `{"type": "range", "range": [0, 0]}`."""
    if _dry():
        return 0
    s = _summary(configuration, secrets)
    w = s["writes"]
    unexpected = _observed(w["unexpected"], "the canary table on the primary", s)
    return int(unexpected) + int(_observed(w["duplicate"], "the canary table on the primary", s))


@activity
def rto_within_target(configuration: Optional[Dict[str, Any]] = None,
                      secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when the service RTO was observed and is within `rto_target_s`."""
    if _before_fault():
        return True
    s = _summary(configuration, secrets)
    return s["rto_s"] is not None and s["rto_s"] <= s["targets"]["rto_s"]


@activity
def rpo_within_target(configuration: Optional[Dict[str, Any]] = None,
                      secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when RPO seconds are within `rpo_target_s` and no integrity check failed."""
    s = _summary(configuration, secrets)
    w = s["writes"]
    return (s["rpo_s"] is not None and s["rpo_s"] <= s["targets"]["rpo_s"]
            and not w["unexpected"] and not w["duplicate"])


@activity
def lost_writes_within_target(configuration: Optional[Dict[str, Any]] = None,
                              secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when at most `max_lost_writes` acknowledged canary writes are missing."""
    s = _summary(configuration, secrets)
    lost = s["writes"]["lost"]
    return lost is not None and lost <= s["targets"]["max_lost_writes"]


@activity
def global_name_served_by(region: str = "region-2",
                          configuration: Optional[Dict[str, Any]] = None,
                          secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when a client resolving the global name through the caching resolver is
    served by `region`."""
    return checks.served_by(context.current(configuration, secrets).lab, region)
