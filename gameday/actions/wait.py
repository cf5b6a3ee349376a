"""Bounded waits. Each returns as soon as the recorder's samples show the condition, and
fails the activity when its timeout passes, so a stuck drill ends instead of hanging."""

import time
from typing import Any, Dict, Optional

import httpx

from gameday.drill import context, stores
from gameday.drill.activity import step
from gameday.drill.context import Drill
from gameday.foundation import interrupt
from gameday.foundation.errors import LabError, TargetError
from gameday.foundation.events import HoldEnd, HoldStart, Kind, Resynced
from gameday.foundation.poll import poll_until
from gameday.foundation.settings import argument
from gameday.measure import rto as rtos
from gameday.measure.run import Run
from gameday.measure.store import queries
from gameday.postgres import dcs

__all__ = ["hold_in_region", "wait_for_detection", "wait_for_recovery", "wait_for_standby"]


@step
def wait_for_detection(region: str = "region-1", timeout_s: float = 30.0,
                       configuration: Optional[Dict[str, Any]] = None,
                       secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Wait until `region`'s health endpoint fails, as the global DNS health check sees it."""
    lab = context.current(configuration, secrets).lab
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


def _recording(drill: Drill, step_name: str) -> Run:
    """The run whose samples a wait reads; LabError naming the fix without the control."""
    if drill.run is None:
        raise LabError(f"{step_name} reads the recorder's samples: declare the "
                       "`gameday.control` control in the experiment")
    return drill.run


@step
def wait_for_recovery(region: str = "region-2", timeout_s: float = 60.0,
                      consecutive: int = 0,
                      configuration: Optional[Dict[str, Any]] = None,
                      secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Wait until `consecutive` global requests in a row were served by `region`, the
    canary has a write acknowledged by `region`'s database (on a store without SQL, the
    application canary one answered from `region`), and every resolver sampled
    (`dns.resolver` and `dns.resolvers`) last answered with `region`'s endpoints alone, as
    the recorder saw them: users behind a resolver that clamps a low TTL up are sent to the
    lost region for longer, and the run must go on until their flip is seen too (the slowest
    is the budget's DNS phase). `consecutive` 0 (the default) takes the configuration's
    `k_consecutive`: the rule the report's RTO is measured by, so `--var k_consecutive=3`
    changes both."""
    drill = context.current(configuration, secrets)
    k = drill.settings.k(consecutive)
    run = _recording(drill, "wait_for_recovery")
    target = drill.lab.region(region)
    since = run.now()
    faults = run.events(Kind.FAULT_APPLIED)
    if faults:
        since = faults[0].t
    started = time.monotonic()
    served = wrote = False
    sql = stores.has_sql_canary(drill.lab)
    resolvers = drill.lab.dns.sampled()
    behind: dict[str, str] = {}  # resolver name -> what it last answered, until it flips

    with queries.Samples(run.dir) as samples:
        def recovered() -> bool:
            nonlocal served, wrote
            streak = rtos.Streak(region, k)
            for t, ok, served_by in samples.last_global(since, k):  # the last K, oldest first
                streak.add(t, ok, served_by)
            served = streak.reached
            wrote = (samples.acked(since=since, server=target.db_host) if sql else
                     samples.app_acked(since=since, region=target.name)) > 0
            behind.clear()
            for r in resolvers:
                last = samples.last_answer(r.stream, since)
                if last is None or last != (1, region):
                    behind[r.name] = ("no sample yet" if last is None else
                                      f"answers {last[1]}" if last[0] else "fails")
            return served and wrote and not behind

        def not_recovered(_: object) -> TargetError:
            writes = "canary writes on its database" if sql else \
                "application-canary writes answered from it"
            missing = [m for m, ok in (("global requests served by it", served),
                                       (writes, wrote)) if not ok]
            flips = ", ".join(f"{name} {what}" for name, what in behind.items())
            return TargetError(f"{region} did not recover within {timeout_s:g} s: "
                               + "; ".join([*(f"no {m}" for m in missing),
                                            *([f"resolvers not on {region}: {flips}"]
                                              if flips else [])]))

        poll_until(recovered, timeout_s=timeout_s, interval_s=0.1, error=not_recovered)
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
    drill = context.current(configuration, secrets)
    lab = drill.lab
    target, upstream = lab.region(region), lab.region(source)
    sync = lab.replication_mode == "sync"
    store = stores.for_lab(lab)
    started = time.monotonic()

    def ready() -> bool:
        if not store.streams_from(lab, upstream, target, synchronous=sync):
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
    # the report's resync line: the manager's own rejoin, as long as gameday waited
    drill.event(Resynced(region=region, standby=region, source=source,
                         method=f"{lab.ha.manager} rejoin" if lab.ha else "rejoin",
                         resync_s=None, catch_up_s=waited))
    return {"region": region, "source": source, "waited_s": waited}


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
    drill = context.current(configuration, secrets)
    # Chaos Toolkit substitutes `${var}` as text: the hold's numbers arrive as strings
    hold = argument(hold_s, "hold_s", 60.0)
    interval = max(argument(check_interval_s, "check_interval_s", 5.0), 0.1)
    outage = argument(max_outage_s, "max_outage_s", 60.0)
    run = _recording(drill, "hold_in_region")
    target = drill.lab.region(region)
    samples = queries.Samples(run.dir)
    started = run.now()
    # recorded at the instant the hold is measured from: held_s is end minus start
    run.event(HoldStart(region=region, hold_s=hold, check_interval_s=interval,
                        timeline_bytes=queries.size(run.dir)), t=started)
    # the rowids already read: each check reads only what the recorder added since
    seen = {"http": samples.last_rowid("http"), "canary": samples.last_rowid("canary")}
    last_served = started
    checks = {"checks": 0, "failed": 0}
    first_failed: list[float] = []

    def check() -> bool:
        nonlocal last_served
        now = run.now()
        rowid, requests, served, served_at = samples.global_since(seen["http"], region)
        seen["http"] = max(seen["http"], rowid or 0)
        rowid, attempts, acked, acked_at = samples.canary_since(seen["canary"], target.db_host)
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
        samples.close()
        ended = run.event(HoldEnd(region=region, hold_s=hold, checks=checks["checks"],
                                  checks_failed=checks["failed"],
                                  first_failed_check_s=(round(first_failed[0] - started, 3)
                                                        if first_failed else None),
                                  timeline_bytes=queries.size(run.dir)))
    return {"region": region, "held_s": round(ended - started, 3), **checks}
