"""The RTO phases, defined once: what each is called where, what evidence shows it, and
which phase its budget waits for and with what allowance.

Why one registry: the summary measures the phases, the report tabulates them, the gantt
chart and the SVG draw them, the budget derives their deadlines and the live view says
which one the drill is waiting for. Six lists of the same names drifted apart; these
records are what all six read, in chain order. A phase is an instant after `t_fault`
(docs/design.md, Measurement).

Budget formula: `deadline(phase) = deadline(after) + allowance(parameters)`, with the
parameters from the run's configuration over DEFAULTS (`deadlines`). The report's budget
(gameday.report.budget) and the readiness gate's check that the RTO target is reachable at
all (gameday.drill.gate) both read them from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from gameday.foundation.endpoints import Endpoints
from gameday.measure import instants
from gameday.measure.instants import Instant
from gameday.measure.store.reader import Timeline

Params = Mapping[str, float]

# The budget's inputs when the run's configuration does not give them (docs/runbook.md).
DEFAULTS: dict[str, float] = {
    "health_interval_s": 1.0,
    "health_failures": 1,
    "health_timeout_s": 1.0,
    "promotion_budget_s": 1.0,
    "dns_ttl_s": 1.0,
    "dns_ttl_floor_s": 0.0,  # the highest TTL floor among the resolvers sampled (none: 0)
    "http_interval_s": 0.05,
    "write_reconnect_s": 1.0,
    "k_consecutive": 5,
    "ha_ttl_s": 30.0,  # Patroni's defaults, when an autonomous run did not record its own
    "ha_loop_wait_s": 10.0,
    "sentinel_down_after_s": 30.0,  # Sentinel's default down-after-milliseconds
}


def parameters(configuration: Mapping[str, Any] | None) -> dict[str, float]:
    """The budget's inputs: the configuration's values over DEFAULTS (bad values ignored)."""
    out = dict(DEFAULTS)
    for key in DEFAULTS:
        raw = (configuration or {}).get(key)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
            continue
        out[key] = float(raw)
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class Deadline:
    """One phase's deadline (seconds after t_fault): `after`'s deadline plus `allowance_s`."""

    name: str
    after: str | None
    allowance_s: float
    deadline_s: float
    basis: str


def deadlines(configuration: Mapping[str, Any] | None) -> dict[str, Deadline]:
    """Deadlines by phase name, in chain order (the keys of summary["phases"] plus "rto"),
    from each phase's allowance over the configuration's parameters."""
    p = parameters(configuration)
    out: dict[str, Deadline] = {}
    for phase in chain(configuration):
        allowance, basis = phase.allowance(p)
        start = out[phase.after].deadline_s if phase.after else 0.0
        out[phase.name] = Deadline(name=phase.name, after=phase.after,
                                   allowance_s=round(allowance, 4),
                                   deadline_s=round(start + allowance, 4), basis=basis)
    return out


def path_to(name: str, budget: Mapping[str, Deadline]) -> list[Deadline]:
    """The phases whose allowances add up to `name`'s deadline, first to last."""
    out: list[Deadline] = []
    at: str | None = name
    while at is not None:
        out.append(budget[at])
        at = budget[at].after
    return out[::-1]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Roles:
    """The regions of the drill as the run recorded them (meta `regions`): the one service
    moves away from (`primary`) and the one it moves to (`secondary`)."""

    primary: Mapping[str, Any]
    secondary: Mapping[str, Any]
    # every resolver sampled (meta `dns_resolvers`: name, stream, kind, address, ...); a
    # run recorded before there were several has its one `resolver`
    resolvers: tuple[Mapping[str, Any], ...] = ({"name": "resolver", "stream": "resolver"},)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Roles:
        regions = meta["regions"]
        found = tuple(meta.get("dns_resolvers") or ())
        return cls(primary=regions["primary"], secondary=regions["secondary"],
                   **({"resolvers": found} if found else {}))

    def endpoints(self) -> dict[str, Endpoints]:
        """Each region's endpoint set as the run recorded it; a run recorded before
        regions had endpoint sets has each region's address."""
        return {r["name"]: Endpoints.parse(r["endpoints"]) if r.get("endpoints")
                else Endpoints.of_address(r["address"])
                for r in (self.primary, self.secondary)}


Measure = Callable[[Timeline, float, Roles], Instant]
Allowance = Callable[[Params], tuple[float, str]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Phase:
    name: str  # the key in summary.json `phases` (and in the budget)
    label: str  # the report's table
    short: str  # the gantt chart's bars
    marker: str  # the SVG's vertical markers
    waiting: str  # the live view, until this phase is reached
    seen: str  # the evidence the live view watches for (gameday.report.live.EVIDENCE)
    after: str | None  # the phase this one's budget waits for
    allowance: Allowance
    measure: Measure | None  # None for "rto", which the summary measures with its K rule


def _detection(tl: Timeline, t_fault: float, r: Roles) -> Instant:
    return instants.detection(tl, t_fault, r.primary["name"])


def _promotion(tl: Timeline, t_fault: float, r: Roles) -> Instant:
    return instants.promotion(tl, t_fault, r.secondary["name"], {r.secondary["db_host"]})


def _dns(server: str) -> Measure:
    def measure(tl: Timeline, t_fault: float, r: Roles) -> Instant:
        return instants.dns_flip(tl, t_fault, server, r.secondary["name"], r.endpoints())

    return measure


def resolver_flips(tl: Timeline, t_fault: float, r: Roles
                   ) -> list[tuple[Mapping[str, Any], Instant]]:
    """Each resolver's flip (instants.dns_flip of its stream), in the order the run recorded
    them; asked by the phase and by the summary's `dns.resolvers`, scanned once."""
    key = ("resolver_flips", t_fault, r.secondary["name"])
    if key not in tl._answers:
        tl._answers[key] = [
            (res, instants.dns_flip(tl, t_fault, str(res["stream"]), r.secondary["name"],
                                    r.endpoints(), label=_resolver_label(res)))
            for res in r.resolvers]
    found: list[tuple[Mapping[str, Any], Instant]] = tl._answers[key]
    return found


def _resolver_label(res: Mapping[str, Any]) -> str | None:
    """A resolver by its name in the evidence; the one unnamed `resolver` as it always was."""
    return None if res.get("name") == res.get("stream") else f"the resolver {res.get('name')}"


def slowest(flips: list[tuple[Mapping[str, Any], Instant]]
            ) -> tuple[Mapping[str, Any], Instant] | None:
    """The resolver whose users see the flip last: one that never settled (unbounded),
    else the latest flip; None when no resolver was sampled."""
    if not flips:
        return None
    never = [f for f in flips if f[1].at_s is None]
    return never[0] if never else max(flips, key=lambda f: float(f[1].at_s or 0.0))


def _dns_resolvers(tl: Timeline, t_fault: float, r: Roles) -> Instant:
    """The DNS phase of the budget: the slowest resolver's flip (users behind it are the
    last to be sent to the secondary); with one resolver, its flip."""
    flips = resolver_flips(tl, t_fault, r)
    found = slowest(flips)
    if found is None:
        return instants.missing("no resolver was sampled")
    res, flip = found
    if len(flips) == 1:
        return flip
    name = res.get("name")
    if flip.at_s is None:
        return instants.missing(f"the resolver {name} never settled on "
                                f"{r.secondary['name']} (of {len(flips)} resolvers)")
    return dataclasses.replace(
        flip, evidence=f"the slowest of {len(flips)} resolvers, {name}, answers with "
                       f"{r.secondary['name']}'s endpoints only from here on")


def _resolver_allowance(p: Params) -> tuple[float, str]:
    """The TTL, or a resolver's TTL floor when it is higher: the slowest resolver's users
    are the budget's, and one that keeps every answer at least its floor (dnsmasq's
    min-cache-ttl) holds the old region that long, whatever the record's TTL says."""
    ttl, floor = p["dns_ttl_s"], p["dns_ttl_floor_s"]
    if floor > ttl:
        return floor, f"DNS TTL {ttl:g} s, held {floor:g} s by a resolver's TTL floor"
    return ttl, f"DNS TTL {ttl:g} s"


def _first_success(tl: Timeline, t_fault: float, r: Roles) -> Instant:
    return instants.first_success(tl, t_fault, r.secondary["name"])


def _first_write(tl: Timeline, t_fault: float, r: Roles) -> Instant:
    return instants.first_write(tl, t_fault, {r.secondary["db_host"]})


PHASES: tuple[Phase, ...] = (
    Phase(name="detection_s", label="Detection (first failed health check of the primary)",
          short="Detection", marker="detection", waiting="waiting for detection",
          seen="primary-unhealthy", after=None,
          allowance=lambda p: (
              p["health_interval_s"] * p["health_failures"] + p["health_timeout_s"],
              f"health interval {p['health_interval_s']:g} s × {p['health_failures']:g} "
              f"failure(s) + check timeout {p['health_timeout_s']:g} s"),
          measure=_detection),
    Phase(name="promotion_s", label="Promotion (first writable answer from the secondary)",
          short="Promotion",
          marker="promotion", waiting="waiting for promotion", seen="secondary-writable",
          after="detection_s",
          allowance=lambda p: (p["promotion_budget_s"],
                               f"promotion allowance {p['promotion_budget_s']:g} s"),
          measure=_promotion),
    Phase(name="dns_authoritative_s", label="DNS flip at the authoritative server",
          short="DNS authoritative flip", marker="DNS auth",
          waiting="waiting for the authoritative DNS flip", seen="dns-authoritative",
          after="promotion_s",
          allowance=lambda p: (p["health_interval_s"],
                               f"one health interval {p['health_interval_s']:g} s to see the "
                               "secondary healthy"),
          measure=_dns("authoritative")),
    Phase(name="dns_resolver_s", label="DNS flip through the caching resolver",
          short="DNS resolver flip", marker="DNS resolver",
          waiting="waiting for the resolver DNS flip", seen="dns-resolver",
          after="dns_authoritative_s",
          allowance=_resolver_allowance,
          measure=_dns_resolvers),
    Phase(name="first_success_s", label="First global request served by the secondary",
          short="First success", marker="first success",
          waiting="waiting for the first success via the global name",
          seen="global-served", after="dns_resolver_s",
          allowance=lambda p: (p["http_interval_s"],
                               f"one request interval {p['http_interval_s']:g} s"),
          measure=_first_success),
    Phase(name="first_write_s", label="First canary write acknowledged by the new primary",
          short="First write", marker="first write",
          waiting="waiting for the first write on the new primary", seen="secondary-write",
          after="promotion_s",
          allowance=lambda p: (p["write_reconnect_s"],
                               f"canary reconnect allowance {p['write_reconnect_s']:g} s"),
          measure=_first_write),
)

RTO = Phase(name="rto", label="**RTO** ({k} consecutive global successes)", short="RTO",
            marker="RTO", waiting="waiting for consecutive successes", seen="streak",
            after="first_success_s",
            allowance=lambda p: ((p["k_consecutive"] - 1) * p["http_interval_s"],
                                 f"{p['k_consecutive'] - 1:g} more request intervals for "
                                 f"{p['k_consecutive']:g} consecutive successes"),
            measure=None)

def _leader_key_lost(tl: Timeline, t_fault: float, r: Roles) -> Instant:
    return instants.leader_key_lost(tl, t_fault, r.primary["name"])


# An HA manager that promotes by itself (Patroni) detects the loss when its leader key
# expires in the DCS (at most its TTL after the old leader's last refresh), and its
# replica promotes at its next HA loop. The other phases are the same.
HA_DETECTION = dataclasses.replace(
    PHASES[0], label="Detection (the HA manager's leader key expired)",
    short="Leader key expired", marker="leader key expired",
    waiting="waiting for the HA manager's leader key to expire", seen="leader-key-lost",
    allowance=lambda p: (p["ha_ttl_s"], f"leader key TTL {p['ha_ttl_s']:g} s"),
    measure=_leader_key_lost)
HA_PROMOTION = dataclasses.replace(
    PHASES[1], label="Promotion by the HA manager (first writable answer from the secondary)",
    allowance=lambda p: (p["ha_loop_wait_s"] + p["promotion_budget_s"],
                         f"one HA loop {p['ha_loop_wait_s']:g} s + promotion allowance "
                         f"{p['promotion_budget_s']:g} s"))
HA_PHASES: tuple[Phase, ...] = (HA_DETECTION, HA_PROMOTION, *PHASES[2:])

def _sentinel_odown(tl: Timeline, t_fault: float, r: Roles) -> Instant:
    return instants.sentinel_odown(tl, t_fault, r.primary["name"])


# Redis's Sentinels detect the loss when a quorum of them holds the master down for
# down-after-milliseconds (+odown), elect one of them, which promotes the replica
# (+switch-master); the replica is seen as the master at the next sample of its INFO.
SENTINEL_DETECTION = dataclasses.replace(
    PHASES[0], label="Detection (the Sentinels hold the master objectively down: +odown)",
    short="Sentinel +odown", marker="+odown",
    waiting="waiting for the Sentinels' +odown", seen="sentinel-odown",
    allowance=lambda p: (p["sentinel_down_after_s"] + 1.0,
                         f"down-after {p['sentinel_down_after_s']:g} s + 1 s for a quorum "
                         "of Sentinels to agree"),
    measure=_sentinel_odown)
SENTINEL_PROMOTION = dataclasses.replace(
    PHASES[1], label="Promotion by the Sentinels (first answer of the secondary's Redis as "
                     "the master)",
    allowance=lambda p: (1.0 + p["promotion_budget_s"],
                         f"the Sentinels' election 1 s + promotion allowance "
                         f"{p['promotion_budget_s']:g} s"))


def _first_app_write(tl: Timeline, t_fault: float, r: Roles) -> Instant:
    return instants.first_app_write(tl, t_fault, r.secondary["name"])


# no SQL, so no database canary: the first write is the application canary's
APP_FIRST_WRITE = dataclasses.replace(
    PHASES[5], label="First application-canary write acknowledged by the secondary",
    measure=_first_app_write)
SENTINEL_PHASES: tuple[Phase, ...] = (SENTINEL_DETECTION, SENTINEL_PROMOTION, *PHASES[2:5],
                                      APP_FIRST_WRITE)

NAMES: tuple[str, ...] = tuple(p.name for p in PHASES)
BY_NAME: dict[str, Phase] = {p.name: p for p in (*PHASES, RTO)}


def autonomous(configuration: Mapping[str, Any] | None) -> bool:
    """A run whose HA manager's leader key was sampled (configuration of the run)."""
    return (configuration or {}).get("ha_manager") == "patroni"


def by_sentinels(configuration: Mapping[str, Any] | None) -> bool:
    """A run on Redis whose Sentinels were sampled (configuration of the run)."""
    return (configuration or {}).get("ha_manager") == "sentinel"


def chain(configuration: Mapping[str, Any] | None = None) -> tuple[Phase, ...]:
    """Every phase and then RTO, in the order of the budget's chain, as defined for the
    run's configuration (an autonomous HA manager detects and promotes by itself)."""
    if by_sentinels(configuration):
        return (*SENTINEL_PHASES, RTO)
    return (*(HA_PHASES if autonomous(configuration) else PHASES), RTO)


def by_name(configuration: Mapping[str, Any] | None = None) -> dict[str, Phase]:
    return {p.name: p for p in chain(configuration)}


def measure_all(tl: Timeline, t_fault: float, roles: Roles) -> dict[str, Instant]:
    phases = chain(tl.meta.get("configuration"))
    return {p.name: p.measure(tl, t_fault, roles) for p in phases if p.measure is not None}
