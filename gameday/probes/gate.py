"""The readiness gate before the first fault (docs/design.md, Failover and failback protocol).

Each check names what is wrong, so the one-line error tells the SRE what to fix before
trying again. Bounds on TTL and health interval keep the RTO target reachable at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from chaoslib.exceptions import ActivityFailed

from gameday.errors import GamedayError, TargetError
from gameday.poll import poll_until
from gameday.probes import health
from gameday.settings import GamedaySettings

MAX_TTL_S = 60.0
MAX_HEALTH_INTERVAL_S = 10.0

__all__: list[str] = []


def check(configuration: dict[str, Any] | None, secrets: dict[str, Any] | None) -> list[str]:
    """The problems that still stand after waiting up to `ready_timeout_s` (default 20 s)
    for them to clear: a standby reconnects a few seconds after its primary restarted, and
    a drill started right after another one should wait for that, not fail."""
    try:
        timeout = GamedaySettings.from_chaos(configuration, secrets).ready_timeout_s
    except GamedayError as exc:
        return [str(exc)]
    problems: list[str] = []

    def ready() -> bool:
        nonlocal problems
        problems = _check_once(configuration, secrets)
        return not problems

    with contextlib.suppress(TargetError):
        poll_until(ready, timeout_s=timeout, interval_s=0.25)
    return problems


def _check_once(configuration: dict[str, Any] | None, secrets: dict[str, Any] | None) -> list[str]:
    problems: list[str] = []
    try:
        settings = GamedaySettings.from_chaos(configuration, secrets)
        lab = settings.load_lab()
    except GamedayError as exc:
        return [str(exc)]
    # the region serving now, and the one the drill moves service to
    serving, target = lab.primary.name, lab.secondary.name
    if settings.drill == "failback":
        serving, target = target, serving
    checks: list[tuple[str, Callable[..., bool], dict[str, str]]] = [
        (f"{serving} passes its health check", health.region_is_healthy, {"region": serving}),
        (f"the authoritative DNS answers with {serving}", health.dns_answers_region,
         {"region": serving, "server": "authoritative"}),
        (f"the resolver answers with {serving}", health.dns_answers_region,
         {"region": serving, "server": "resolver"}),
    ]
    if settings.drill == "failover":
        # failback brings its standby up itself (resync), so only failover needs one ready
        checks += [
            (f"the {target} standby is streaming", health.standby_is_streaming,
             {"region": target}),
            (f"replication lag to {target} is under max_lag_s={settings.max_lag_s:g}",
             health.replication_lag_below, {"region": target}),
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
