"""Steady-state probes: what must hold before a fault is injected (docs/design.md, Failover
and failback protocol). Each asks gameday.drill.checks, as the readiness gate does."""

from typing import Any, Dict, Optional

from gameday.drill import checks, context, stores
from gameday.drill.activity import activity
from gameday.foundation.descriptor import Lab
from gameday.measure.store import queries, timeline

__all__ = ["region_is_healthy", "dns_answers_region", "standby_is_streaming",
           "replication_lag_below", "canary_is_writing", "global_name_serves"]


def _lab(configuration: Optional[Dict[str, Any]], secrets: Optional[Dict[str, Any]]) -> Lab:
    return context.current(configuration, secrets).lab


@activity
def region_is_healthy(region: str = "region-1",
                      configuration: Optional[Dict[str, Any]] = None,
                      secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when `region`'s storefront answers /healthz with 200 (its database is writable)."""
    return checks.region_is_healthy(_lab(configuration, secrets), region)


@activity
def dns_answers_region(region: str = "region-1", server: str = "resolver",
                       configuration: Optional[Dict[str, Any]] = None,
                       secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when `server` (authoritative or resolver) answers the global name with
    `region`'s endpoints only (the descriptor's `dns.endpoints`, or the region's address):
    A and AAAA, through any CNAME chain. A mixed or unknown answer is no region's."""
    return checks.dns_answers_region(_lab(configuration, secrets), region, server)


@activity
def standby_is_streaming(region: str = "region-2",
                         configuration: Optional[Dict[str, Any]] = None,
                         secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when `region`'s database is a standby whose WAL receiver is streaming."""
    return checks.standby_is_streaming(_lab(configuration, secrets), region)


@activity
def replication_lag_below(region: str = "region-2", max_lag_s: float = -1.0,
                          configuration: Optional[Dict[str, Any]] = None,
                          secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when the standby in `region` replays within `max_lag_s` seconds of its primary
    (default: configuration `max_lag_s`). Measured as the primary sees it: the bytes the
    standby has not replayed must be 0, or its reported replay lag under the bound."""
    drill = context.current(configuration, secrets)
    bound = drill.settings.max_lag_s if max_lag_s < 0 else max_lag_s
    return checks.replication_lag_below(drill.lab, region, bound)


@activity
def canary_is_writing(within_s: float = 2.0,
                      configuration: Optional[Dict[str, Any]] = None,
                      secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when the recorder's canary had a write acknowledged in the last `within_s`
    (on a store without SQL, Redis with Sentinel, the application canary). In plan mode
    (`chaos run --dry`) no recorder runs: the plan stands in for it, true unless the plan
    was refused."""
    standdown = context.standdown()
    if standdown is not None and standdown.plan is not None:
        return not standdown.plan.get("refused", True)
    drill = context.published()
    if drill is None or drill.run is None:
        return False
    timeline.wait_flushed(drill.run.dir)  # its latest batch, on disk
    with queries.Samples(drill.run.dir) as samples:
        since = drill.run.now() - within_s
        if not stores.has_sql_canary(drill.lab):
            # no SQL, no database canary: the application canary is the one that writes
            return samples.app_acked(since=since) > 0
        return samples.acked(since=since) > 0


@activity
def global_name_serves(within_s: float = 10.0,
                       configuration: Optional[Dict[str, Any]] = None,
                       secrets: Optional[Dict[str, Any]] = None) -> bool:
    """Resolve the global name through the caching resolver, as a client does, and ask the
    answer whether it can take an order (/healthz). True before the fault (the primary
    serves) and after the failover (the secondary serves): the service's steady state.
    Retries for up to `within_s` seconds, so a drill started right after another one waits
    for DNS to settle (a resolver may hold the previous answer for a TTL)."""
    return checks.global_name_serves(_lab(configuration, secrets), within_s)
