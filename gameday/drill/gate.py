"""The readiness gate before the first fault (docs/design.md, Failover and failback protocol).

Each check names what is wrong, so the one-line error tells the SRE what to fix before
trying again. Bounds on TTL and health interval keep the RTO target reachable at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from gameday.drill import checks
from gameday.foundation.descriptor import Lab
from gameday.foundation.errors import GamedayError, TargetError
from gameday.foundation.poll import poll_until
from gameday.foundation.settings import GamedaySettings

MAX_TTL_S = 60.0
MAX_HEALTH_INTERVAL_S = 10.0


def check(settings: GamedaySettings, lab: Lab) -> list[str]:
    """The problems that still stand after waiting up to `ready_timeout_s` (default 20 s)
    for them to clear: a standby reconnects a few seconds after its primary restarted, and
    a drill started right after another one should wait for that, not fail."""
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
    if lab.dns.ttl_s is not None and lab.dns.ttl_s > MAX_TTL_S:
        problems.append(f"DNS TTL {lab.dns.ttl_s:g} s is above {MAX_TTL_S:g} s")
    if lab.dns.health_interval_s is not None and lab.dns.health_interval_s > MAX_HEALTH_INTERVAL_S:
        problems.append(f"DNS health interval {lab.dns.health_interval_s:g} s is above "
                        f"{MAX_HEALTH_INTERVAL_S:g} s")
    return problems
