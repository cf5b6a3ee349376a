"""Bounded waits. Each returns as soon as the recorder's samples show the condition, and
fails the activity when its timeout passes, so a stuck drill ends instead of hanging."""

import time
from typing import Any, Dict

import httpx

from gameday import interrupt
from gameday.actions._common import context, step
from gameday.errors import LabError, TargetError
from gameday.measure import run as runs
from gameday.measure import timeline

__all__ = ["wait_for_detection", "wait_for_recovery"]


@step
def wait_for_detection(region: str = "region-1", timeout_s: float = 30.0,
                       configuration: Dict[str, Any] = None,
                       secrets: Dict[str, Any] = None) -> Dict[str, Any]:
    """Wait until `region`'s health endpoint fails, as the global DNS health check sees it."""
    _, lab = context(configuration, secrets)
    url = lab.region(region).storefront_url.rstrip("/") + "/healthz"
    started = time.monotonic()
    with httpx.Client(trust_env=False, timeout=0.5) as client:
        while True:
            try:
                healthy = client.get(url).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if not healthy:
                return {"region": region, "waited_s": round(time.monotonic() - started, 3)}
            if time.monotonic() - started > timeout_s:
                raise TargetError(f"{region} still passes its health check after "
                                  f"{timeout_s:g} s: the fault did not take it down")
            interrupt.pause(0.02)


@step
def wait_for_recovery(region: str = "region-2", timeout_s: float = 60.0,
                      consecutive: int = 5,
                      configuration: Dict[str, Any] = None,
                      secrets: Dict[str, Any] = None) -> Dict[str, Any]:
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
        since = faults[0][0]
    started = time.monotonic()
    conn = timeline.connect(run.dir)
    try:
        while True:
            rows = conn.execute("SELECT ok, region FROM http WHERE target = 'global' AND t >= ? "
                                "ORDER BY t DESC LIMIT ?", (since, consecutive)).fetchall()
            served = len(rows) == consecutive and all(ok and r == region for ok, r in rows)
            wrote = conn.execute("SELECT count(*) FROM canary WHERE outcome = 'ok' AND "
                                 "server = ? AND t_ack >= ?",
                                 (target.db_host, since)).fetchone()[0] > 0
            if served and wrote:
                return {"region": region, "waited_s": round(time.monotonic() - started, 3)}
            if time.monotonic() - started > timeout_s:
                missing = [m for m, ok in (("global requests served by it", served),
                                           ("canary writes on its database", wrote)) if not ok]
                raise TargetError(f"{region} did not recover within {timeout_s:g} s: no "
                                  f"{' and no '.join(missing)}")
            interrupt.pause(0.1)
    finally:
        conn.close()
