"""The readiness gate before the first fault (docs/design.md, Failover and failback protocol).

Each check names what is wrong, so the one-line error tells the SRE what to fix before
trying again. The TTL and health interval are bounded (`max_ttl_s`, `max_health_interval_s`)
and the RTO target must fit the budget they give (`limits`): a drill whose target the DNS
settings alone make unreachable measures the wait for a cache, not the system.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from gameday.drill import checks
from gameday.foundation.descriptor import Lab
from gameday.foundation.errors import GamedayError, TargetError
from gameday.foundation.poll import poll_until
from gameday.foundation.settings import GamedaySettings
from gameday.measure import app_canary, phases


def check(settings: GamedaySettings, lab: Lab) -> list[str]:
    """The problems that still stand after waiting up to `ready_timeout_s` (default 20 s)
    for them to clear: a standby reconnects a few seconds after its primary restarted, and
    a drill started right after another one should wait for that, not fail. A limit the
    descriptor or the RTO target breaks does not clear by waiting: no wait then."""
    if limits(settings, lab):
        return check_once(settings, lab)
    problems: list[str] = []

    def ready() -> bool:
        nonlocal problems
        problems = check_once(settings, lab)
        return not problems

    with contextlib.suppress(TargetError):
        poll_until(ready, timeout_s=settings.ready_timeout_s, interval_s=0.25)
    return problems


def check_once(settings: GamedaySettings, lab: Lab) -> list[str]:
    problems: list[str] = []
    # the region serving now, and the one the drill moves service to
    serving_region, target_region = lab.roles(settings.drill)
    serving, target = serving_region.name, target_region.name
    wanted: list[tuple[str, Callable[[], bool]]] = [
        (f"{serving} passes its health check", lambda: checks.region_is_healthy(lab, serving)),
        (f"the authoritative DNS answers with {serving}",
         lambda: checks.dns_answers_region(lab, serving, "authoritative")),
        (f"the resolver answers with {serving}",
         lambda: checks.dns_answers_region(lab, serving, "resolver")),
    ]
    if settings.drill == "failover":
        # failback brings its standby up itself (resync), so only failover needs one ready
        wanted += [
            (f"the {target} standby is streaming",
             lambda: checks.standby_is_streaming(lab, target)),
            (f"replication lag to {target} is under max_lag_s={settings.max_lag_s:g}",
             lambda: checks.replication_lag_below(lab, target, settings.max_lag_s)),
        ]
    for what, probe in wanted:
        try:
            ok = probe()
        except GamedayError as exc:
            problems.append(f"{what}: {exc}")
            continue
        if not ok:
            problems.append(f"expected: {what}")
    if settings.app_canary is not None:
        # before any write: nothing of this run may be read back yet
        try:
            problem = checks.app_read_back_problem(lab, settings.app_canary,
                                                   app_canary.start_seq() - 1)
        except GamedayError as exc:
            problem = f"the application canary's read-back: {exc}"
        if problem:
            problems.append(problem)
    return problems + limits(settings, lab)


def limits(settings: GamedaySettings, lab: Lab) -> list[str]:
    """What the descriptor's DNS settings and the RTO target refuse by themselves, before
    anything is asked of the lab."""
    problems: list[str] = []
    ttl, interval = lab.dns.ttl_s, lab.dns.health_interval_s
    bounds = settings.gate
    if ttl is not None and ttl > bounds.max_ttl_s:
        problems.append(f"DNS TTL {ttl:g} s is above max_ttl_s={bounds.max_ttl_s:g} s: lower "
                        "the TTL, or raise max_ttl_s in the experiment's configuration")
    if interval is not None and interval > bounds.max_health_interval_s:
        problems.append(f"DNS health interval {interval:g} s is above max_health_interval_s="
                        f"{bounds.max_health_interval_s:g} s: check more often, or raise "
                        "max_health_interval_s in the experiment's configuration")
    budget = phases.deadlines(settings.recorded(lab)["configuration"])
    rto = budget[phases.RTO.name].deadline_s
    target = settings.targets.rto_s
    if rto > target:
        path = "; ".join(f"{d.name.removesuffix('_s')} +{d.allowance_s:g} s ({d.basis})"
                         for d in phases.path_to(phases.RTO.name, budget))
        short = round(rto - target, 4)
        problems.append(f"the RTO target {target:g} s cannot be reached: the lab's health "
                        f"checks and TTL give an RTO budget of {rto:g} s, {short:g} s more "
                        f"({path}): raise rto_target_s to {rto:g}, or shorten the TTL or the "
                        "health checks")
    return problems
