"""Bounded waits. Each returns as soon as the recorder's samples show the condition, and
fails the activity when its timeout passes, so a stuck drill ends instead of hanging."""

import time
from typing import Any, Dict, Optional

import httpx

from gameday.actions._common import context, step
from gameday.errors import LabError, TargetError
from gameday.measure import metrics, timeline
from gameday.measure import run as runs
from gameday.poll import poll_until

__all__ = ["wait_for_detection", "wait_for_recovery"]


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
