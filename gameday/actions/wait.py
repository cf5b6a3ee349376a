"""Bounded waits. Each returns as soon as the recorder's samples show the condition, and
fails the activity when its timeout passes, so a stuck drill ends instead of hanging."""

import time
from typing import Any, Dict, Optional

import httpx

from gameday import dcs, postgres
from gameday.actions._common import context, step
from gameday.errors import LabError, TargetError
from gameday.measure import metrics, timeline
from gameday.measure import run as runs
from gameday.poll import poll_until

__all__ = ["wait_for_detection", "wait_for_recovery", "wait_for_standby"]


@step
def wait_for_detection(region: str = "region-1", timeout_s: float = 30.0,
                       configuration: Optional[Dict[str, Any]] = None,
                       secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Wait until `region`'s health endpoint fails, as the global DNS health check sees it."""
    _, lab = context(configuration, secrets)
    url = lab.region(region).storefront_url.rstrip("/") + "/healthz"
    started = time.monotonic()
    with httpx.Client(trust_env=False, timeout=0.5, verify=lab.ca_bundle or True) as client:
        def failing() -> bool:
            try:
                return client.get(url).status_code != 200
            except httpx.HTTPError:
                return True

        poll_until(failing, timeout_s=timeout_s, interval_s=0.02,
                   error=lambda _: TargetError(f"{region} still passes its health check after "
                                               f"{timeout_s:g} s: the fault did not take it down"))
    return {"region": region, "waited_s": round(time.monotonic() - started, 3)}


@step
def wait_for_recovery(region: str = "region-2", timeout_s: float = 60.0,
                      consecutive: int = 5,
                      configuration: Optional[Dict[str, Any]] = None,
                      secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Wait until `consecutive` global requests in a row were served by `region` and the
    canary has a write acknowledged by `region`'s database, as the recorder saw them."""
    _, lab = context(configuration, secrets)
    run = runs.current()
    if run is None:
        raise LabError("wait_for_recovery reads the recorder's samples: declare the "
                       "`gameday.control` control in the experiment")
    target = lab.region(region)
    since = run.now()
    faults = run.events("fault-applied")
    if faults:
        since = faults[0].t
    started = time.monotonic()
    conn = timeline.connect(run.dir)
    served = wrote = False

    def recovered() -> bool:
        nonlocal served, wrote
        rows = conn.execute("SELECT t, ok, region FROM http WHERE target = 'global' AND t >= ? "
                            "ORDER BY t DESC LIMIT ?", (since, consecutive)).fetchall()
        streak = metrics.Streak(region, consecutive)
        for t, ok, served_by in reversed(rows):  # the last K samples, oldest first
            streak.add(t, ok, served_by)
        served = streak.reached
        wrote = conn.execute("SELECT count(*) FROM canary WHERE outcome = 'ok' AND "
                             "server = ? AND t_ack >= ?",
                             (target.db_host, since)).fetchone()[0] > 0
        return served and wrote

    def not_recovered(_: object) -> TargetError:
        missing = [m for m, ok in (("global requests served by it", served),
                                   ("canary writes on its database", wrote)) if not ok]
        return TargetError(f"{region} did not recover within {timeout_s:g} s: no "
                           f"{' and no '.join(missing)}")

    try:
        poll_until(recovered, timeout_s=timeout_s, interval_s=0.1, error=not_recovered)
    finally:
        conn.close()
    return {"region": region, "waited_s": round(time.monotonic() - started, 3)}


@step
def wait_for_standby(region: str = "region-1", source: str = "region-2",
                     timeout_s: float = 120.0,
                     configuration: Optional[Dict[str, Any]] = None,
                     secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Wait until `region`'s database streams from `source`'s (as its synchronous standby
    in a sync lab): after a game day under an HA manager, the old primary rejoins by itself
    (Patroni rewinds it as it restarts), and a switchover back must not start before it
    holds everything (Patroni refuses a switchover to a replica that is not its
    synchronous standby)."""
    _, lab = context(configuration, secrets)
    target, upstream = lab.region(region), lab.region(source)
    sync = lab.database.replication == "sync"
    started = time.monotonic()
    def ready() -> bool:
        if not postgres.streams_from(lab, upstream, target, synchronous=sync):
            return False
        if sync and lab.ha is not None and lab.ha.manager == "patroni" and lab.ha.dcs:
            # Patroni names its synchronous standby in the DCS a loop after PostgreSQL
            # reports it, and switches over only to the one named there
            return dcs.patroni_sync(lab.ha).get("sync_standby") == target.name
        return True

    poll_until(ready, timeout_s=timeout_s, interval_s=0.2, retry_on=(TargetError,),
               error=lambda _: TargetError(
                   f"{region} does not stream from {source}"
                   f"{' as its synchronous standby' if sync else ''} after {timeout_s:g} s: "
                   "did its HA member rejoin?"))
    waited = round(time.monotonic() - started, 3)
    run = runs.current()
    if run is not None:
        # the report's resync line: the manager's own rejoin, as long as gameday waited
        run.event("resynced", region, standby=region, source=source,
                  method=f"{lab.ha.manager} rejoin" if lab.ha else "rejoin",
                  resync_s=None, catch_up_s=waited)
    return {"region": region, "source": source, "waited_s": waited}
