"""Bounded waits. Each returns as soon as the recorder's samples show the condition, and
fails the activity when its timeout passes, so a stuck drill ends instead of hanging."""

import time
from typing import Any, Dict, Optional

import httpx

from gameday import dcs, interrupt, postgres
from gameday.actions._common import context, step
from gameday.errors import LabError, TargetError
from gameday.measure import metrics, timeline
from gameday.measure import run as runs
from gameday.poll import poll_until
from gameday.settings import number

__all__ = ["hold_in_region", "wait_for_detection", "wait_for_recovery", "wait_for_standby"]


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
                      consecutive: int = 0,
                      configuration: Optional[Dict[str, Any]] = None,
                      secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Wait until `consecutive` global requests in a row were served by `region` and the
    canary has a write acknowledged by `region`'s database, as the recorder saw them.
    `consecutive` 0 (the default) takes the configuration's `k_consecutive`: the rule the
    report's RTO is measured by, so `--var k_consecutive=3` changes both."""
    settings, lab = context(configuration, secrets)
    # Chaos Toolkit substitutes `${var}` as text: the number may arrive as a string
    consecutive = int(number({"consecutive": consecutive}, "consecutive", 0, integer=True)) \
        or settings.k_consecutive
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


def timeline_bytes(run_dir: Any) -> int:
    """The timeline's size on disk, its write-ahead log included (what a long drill costs)."""
    return sum(p.stat().st_size for p in run_dir.glob(timeline.FILE + "*") if p.is_file())


@step
def hold_in_region(region: str = "region-2", hold_s: float = 60.0,
                   check_interval_s: float = 5.0, max_outage_s: float = 60.0,
                   configuration: Optional[Dict[str, Any]] = None,
                   secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Keep the service in `region` for `hold_s` seconds with the recorder running: a long
    drill, such as a working day run from the secondary region before failing back, as DR
    practice recommends. Every `check_interval_s` a steady-state check reads the samples the
    recorder stored since the last check: it passes when every global request was served
    by `region` and every canary attempt was acknowledged by its database. The hold fails
    (and the drill rolls back) when `region` served no global request and acknowledged no
    canary write for `max_outage_s`: the service is down, not merely degraded.

    Records `hold-start` and `hold-end` events; the report's hold availability (success
    ratio of global requests, canary errors) is computed between them. Reads only the rows
    added since the last check, so a check costs the same in the eighth hour as in the
    first."""
    _, lab = context(configuration, secrets)
    # Chaos Toolkit substitutes `${var}` as text: the hold's numbers arrive as strings
    given = {"hold_s": hold_s, "check_interval_s": check_interval_s,
             "max_outage_s": max_outage_s}
    hold = number(given, "hold_s", 60.0)
    interval = max(number(given, "check_interval_s", 5.0), 0.1)
    outage = number(given, "max_outage_s", 60.0)
    run = runs.current()
    if run is None:
        raise LabError("hold_in_region reads the recorder's samples: declare the "
                       "`gameday.control` control in the experiment")
    target = lab.region(region)
    conn = timeline.connect(run.dir)
    started = run.now()
    run.event("hold-start", region, hold_s=hold, check_interval_s=interval,
              timeline_bytes=timeline_bytes(run.dir))
    # the rowids already read: each check reads only what the recorder added since
    seen = {t: conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {t}").fetchone()[0]
            for t in ("http", "canary")}
    last_served = started
    checks = {"checks": 0, "failed": 0}
    first_failed: list[float] = []

    def check() -> bool:
        nonlocal last_served
        now = run.now()
        rowid, requests, served, served_at = conn.execute(
            "SELECT max(rowid), count(*), coalesce(sum(ok AND region = ?), 0), "
            "max(CASE WHEN ok AND region = ? THEN t END) "
            "FROM http WHERE rowid > ? AND target = 'global'",
            (region, region, seen["http"])).fetchone()
        seen["http"] = max(seen["http"], rowid or 0)
        rowid, attempts, acked, acked_at = conn.execute(
            "SELECT max(rowid), count(*), coalesce(sum(outcome = 'ok' AND server = ?), 0), "
            "max(CASE WHEN outcome = 'ok' AND server = ? THEN t_ack END) "
            "FROM canary WHERE rowid > ?",
            (target.db_host, target.db_host, seen["canary"])).fetchone()
        seen["canary"] = max(seen["canary"], rowid or 0)
        last_served = max([last_served, *(t for t in (served_at, acked_at) if t is not None)])
        checks["checks"] += 1
        if not (requests and served == requests and attempts and acked == attempts):
            checks["failed"] += 1
            if not first_failed:
                first_failed.append(now)
        if now - last_served > outage:
            raise TargetError(f"{region} served no global request and acknowledged no canary "
                              f"write for {now - last_served:.0f} s during the hold "
                              f"(max_outage_s {outage:g})")
        return now - started >= hold

    try:
        interrupt.pause(interval)  # poll_until checks at once: let the recorder sample first
        poll_until(check, timeout_s=hold + interval + 60.0, interval_s=interval,
                   what=f"the hold in {region}")
    finally:
        conn.close()
        ended = run.event("hold-end", region, hold_s=hold, checks=checks["checks"],
                          checks_failed=checks["failed"],
                          first_failed_check_s=(round(first_failed[0] - started, 3)
                                                if first_failed else None),
                          timeline_bytes=timeline_bytes(run.dir))
    return {"region": region, "held_s": round(ended - started, 3), **checks}
