"""summary.json, typed: the contract for CI, the trend and anyone's scripts
(schema `gameday.summary/v1`, validated against summary.schema.json beside this module).

Why TypedDicts and not dataclasses: the summary *is* a JSON object that other programs
read; the types let mypy check every producer and reader of a key, while what is written
stays exactly the dict it always was. Times are seconds relative to `t_fault`, None when
not observed (docs/design.md, "The summary").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import StrEnum
from importlib import resources
from typing import Any, NotRequired, TypedDict

import jsonschema

from gameday.foundation.errors import ConfigError

SCHEMA_ID = "gameday.summary/v1"


class Verdict(StrEnum):
    """A drill's verdict: every target met; a target missed or a run that could not
    measure; or a stop condition rolled it back (its reasons say which)."""

    PASS = "pass"
    FAIL = "fail"
    ABORTED = "aborted"


class Targets(TypedDict):
    rto_s: float
    rpo_s: float
    max_lost_writes: int


class InstantDetail(TypedDict):
    at_s: float | None
    error_s: float | None
    reason: str | None
    evidence: str | None


class Writes(TypedDict):
    attempted: int | None
    acked: int | None
    lost: int | None
    recovered: int | None
    unknown_absent: int | None
    unexpected: int | None
    duplicate: int | None


class WritesDetail(TypedDict):
    not_durable: int
    lost_ranges: list[tuple[int, int]]
    lost_after_fault: int
    loss_window_s: list[float | None] | None
    lost_by_server: dict[str, int]
    read_from: str | None


class AppWrites(TypedDict):
    """The application canary's writes (issue 23), present only in runs that had one: the
    same counts as `writes`, classified against what the application's read-back returned,
    its own write RTO and RPO, and how the two canaries differ (`differences`, in words)."""

    writes: Writes  # every count None when the read-back failed
    read_back: int | None  # numbers of this run the read-back returned
    never_sent: list[int]  # the first few numbers it returned that the canary never sent
    lost_ranges: list[tuple[int, int]]
    lost_after_fault: int | None
    loss_window_s: list[float | None] | None
    lost_by_region: dict[str, int]  # by the region that acknowledged them (X-Region)
    write_rto_s: float | None  # the first write acknowledged by the secondary region
    write_rto_error_s: float | None
    rpo_s: float | None
    rpo_error_s: float | None
    read_from: str | None
    read_error: str | None
    differences: list[str]


class Replication(TypedDict):
    mode: str | None
    configured: str | None
    sync_state: str | None
    lag_at_fault_s: float | None


class FaultRecord(TypedDict, total=False):
    region: str | None
    fault: str | None
    applied_s: float | None
    effective_s: float | None
    not_applicable: str | None
    external: bool  # injected by another Chaos Toolkit extension, marked as a fault
    provider: str | None


class PromotionRecord(TypedDict):
    strategy: str  # runner, command, none or manager
    observed_s: float | None  # = phases.promotion_s: the first writable answer seen
    observed_by: str | None
    runner_reported_s: float | None  # gameday's own promote loop, when it promoted
    command: dict[str, Any] | None  # argv, returncode, took_s, at_s of promotion_command


class SamplerStats(TypedDict):
    samples: int
    errors: int
    interval_p50_s: float | None
    interval_p99_s: float | None


class Failback(TypedDict, total=False):
    experiment: str | None
    experiment_id: str | None
    started_at: str | None
    duration_s: float | None
    rto_s: float | None
    rto_error_s: float | None
    write_rto_s: float | None
    downtime_s: float | None
    lost: int | None
    split_brain_writes: int | None
    unreplicated_writes: int | None
    split_brain_window_utc: list[str] | None
    resync_method: str | None
    resync_s: float | None
    catch_up_s: float | None
    phases: dict[str, float | None]
    verdict: str
    reasons: list[str]
    run_id: str | None
    strategy: str  # who switched over: runner (gameday by SQL), command, none, manager
    command: dict[str, Any] | None


class Flapping(TypedDict):
    """A DNS server that answered both regions back and forth after the fault."""

    changes: int  # how many times its answer changed region
    from_s: float | None  # the first change, after t_fault
    to_s: float | None  # the last


class ResolverFlip(TypedDict):
    """One resolver's flip: the first sample from which its every answer is the secondary's
    (a resolver that clamps TTLs up or serves stale answers flips later than the authority
    says), with its error bar, or why it was not observed."""

    name: str
    stream: str  # its rows in the timeline's dns table (server = stream)
    kind: str | None
    address: str | None
    flip_s: float | None
    error_s: float | None
    evidence: str | None
    reason: str | None
    slowest: bool  # the DNS phase of the RTO budget (phases.dns_resolver_s)


class AuthorityDetection(TypedDict):
    """The DNS authority's own detection: the authoritative flip (it stopped answering the
    primary) against its health-check budget, interval × failures + timeout (dns.health).
    gameday's detection phase is its own first failed health check; this is the one that
    decides when users are sent away."""

    region: str  # the region withdrawn (the primary)
    withdrawn_s: float | None  # the authoritative flip, after t_fault
    error_s: float | None
    budget_s: float
    interval_s: float
    failures: float
    timeout_s: float
    within: bool | None  # None: not observed, or the budget falls inside the error bar
    verdict: str  # one line, as the report says it


class DnsDetail(TypedDict):
    resolvers: list[ResolverFlip]
    authority: NotRequired[AuthorityDetection]  # absent from summaries written before it


class Hold(TypedDict):
    """A long drill's hold in the secondary region: how available the service was there
    (present only in runs that held, so the summaries of other runs are unchanged)."""

    region: str | None
    planned_s: float | None
    held_s: float
    start_s: float | None  # after t_fault
    ended: bool  # False: the runner stopped during the hold (its end is the last sample)
    global_requests: int
    global_ok: int
    success_ratio: float | None
    served_by_region: int
    canary_attempts: int
    canary_errors: int
    checks: int | None
    checks_failed: int | None
    timeline_mb_per_hour: float | None


class Summary(TypedDict):
    schema: str
    experiment: str | None
    experiment_id: NotRequired[str | None]  # the stable id the trend and metrics key on
    drill: str
    run_id: str | None
    started_at: str | None
    duration_s: NotRequired[float | None]  # the drill, start to end, on the run's clock
    lab: str | None
    verdict: str
    reasons: list[str]
    targets: Targets
    rto_s: float | None
    rto_error_s: float | None
    write_rto_s: float | None
    write_rto_error_s: float | None
    downtime_s: float | None
    downtime_error_s: float | None
    rpo_s: float | None
    rpo_error_s: float | None
    phases: dict[str, float | None]
    phase_detail: dict[str, InstantDetail]
    writes: Writes
    writes_detail: WritesDetail | None
    replication: Replication
    faults: list[FaultRecord]
    promotion: PromotionRecord
    failback: Failback | None
    t_fault_effective_s: float | None
    samplers: dict[str, SamplerStats]
    configuration: dict[str, Any]
    incomplete: bool
    notes: dict[str, str]
    hold: NotRequired[Hold]
    app_writes: NotRequired[AppWrites]  # only when the application canary ran
    flapping: NotRequired[dict[str, Flapping]]  # by DNS server; only when one flapped
    dns: NotRequired[DnsDetail]  # absent from summaries written before it existed


def experiment_id(summary: Mapping[str, Any]) -> str:
    """The stable id a run's JUnit suite and metric labels are named by. A summary written
    before runs had one (`experiment_id`) falls back to its title, made a name."""
    found = summary.get("experiment_id")
    if isinstance(found, str) and found:
        return found
    slug = re.sub(r"[^a-z0-9]+", "-", str(summary.get("experiment") or "game day").lower())
    return slug.strip("-")[:40] or "experiment"


def schema() -> dict[str, Any]:
    text = resources.files("gameday.measure").joinpath("summary.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(data: Any) -> None:
    """ConfigError naming the first field that breaks the contract (a bug of ours, or a
    summary.json edited by hand)."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"summary.json: field '{where}': {err.message}")
