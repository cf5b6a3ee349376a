"""The readiness gate before the first fault (DESIGN section 5, step 1).

Each check names what is wrong, so the one-line error tells the SRE what to fix before
trying again. Bounds on TTL and health interval keep the RTO target reachable at all.
"""

from __future__ import annotations

from typing import Any

from chaoslib.exceptions import ActivityFailed

from gameday.errors import GamedayError
from gameday.probes import health
from gameday.settings import GamedaySettings

MAX_TTL_S = 60.0
MAX_HEALTH_INTERVAL_S = 10.0

__all__: list[str] = []


def check(configuration: dict[str, Any] | None, secrets: dict[str, Any] | None) -> list[str]:
    problems: list[str] = []
    try:
        settings = GamedaySettings.from_chaos(configuration, secrets)
        lab = settings.load_lab()
    except GamedayError as exc:
        return [str(exc)]
    primary, secondary = lab.primary.name, lab.secondary.name
    checks = [
        (f"{primary} passes its health check", health.region_is_healthy, {"region": primary}),
        (f"the authoritative DNS answers with {primary}", health.dns_answers_region,
         {"region": primary, "server": "authoritative"}),
        (f"the resolver answers with {primary}", health.dns_answers_region,
         {"region": primary, "server": "resolver"}),
        (f"the {secondary} standby is streaming", health.standby_is_streaming,
         {"region": secondary}),
        (f"replication lag to {secondary} is under max_lag_s={settings.max_lag_s:g}",
         health.replication_lag_below, {"region": secondary}),
    ]
    for what, probe, args in checks:
        try:
            ok = probe(**args, configuration=configuration, secrets=secrets)
        except ActivityFailed as exc:
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
