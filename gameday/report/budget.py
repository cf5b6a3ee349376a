"""The RTO budget by phase, derived from the run's configuration (docs/runbook.md).

Every phase (gameday.measure.phases, the registry) is an instant after `t_fault`. Its
budget is a deadline:
the deadline of the phase it waits for plus an allowance that follows from the
configuration, so a report can set each measured instant beside its deadline and say which
phase overran and by how much.

    detection           H × F + C            health interval × failures to mark down + check timeout
    promotion           detection + P        promote and see the first write accepted
    dns_authoritative   promotion + H        the next health check sees the secondary healthy
    dns_resolver        authoritative + TTL  the resolver's cached answer expires
    first_success       resolver + I         the next global request goes to the secondary
    first_write         promotion + W        the canary reconnects to the new primary
    rto                 first_success + (K - 1) × I   K consecutive successes

Keys read from the configuration (defaults in DEFAULTS): `health_interval_s` (H),
`health_failures` (F, PowerDNS ifurlup marks a target down after one failed check unless
`minimumFailures` says otherwise), `health_timeout_s` (C, the ifurlup `timeout`: a check of
a dropped host takes that long to fail), `promotion_budget_s` (P), `dns_ttl_s` (TTL),
`http_interval_s` (I, the global request sampler), `write_reconnect_s` (W) and
`k_consecutive` (K).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gameday.measure import phases

# the inputs and their defaults are the phase registry's (measure/phases.py)
DEFAULTS = phases.DEFAULTS
parameters = phases.parameters


@dataclasses.dataclass(frozen=True, kw_only=True)
class PhaseBudget:
    """One phase's deadline (seconds after t_fault): `after`'s deadline plus `allowance_s`."""

    name: str
    after: str | None
    allowance_s: float
    deadline_s: float
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def derive(configuration: dict[str, Any] | None) -> dict[str, PhaseBudget]:
    """Deadlines by phase name, in chain order (the keys of summary["phases"] plus "rto"),
    from the phase registry's allowances."""
    return {name: PhaseBudget(**dataclasses.asdict(d))
            for name, d in phases.deadlines(configuration).items()}


def overrun(at_s: float | None, budget: PhaseBudget) -> float | None:
    """Seconds past the deadline (0 when within it), None when not observed."""
    if at_s is None:
        return None
    return round(max(0.0, at_s - budget.deadline_s), 4)
