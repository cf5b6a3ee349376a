"""The run's events: every kind a timeline's `events` table holds, and the record each
carries (its `detail`, stored as JSON).

Why typed: the runner, the recorder, the control, the steps and the stop conditions write
events, and the summary, the report, the live view, the waits and the watcher read them;
one misspelt kind is an event nobody reads. A kind is a `Kind`, each with one frozen
payload type here, and `Run.event` takes only a payload: its kind comes with it. Readers
ask for a `Kind` (`Timeline.events_of(Kind.FAULT_APPLIED)`).

A payload's fields are its detail's keys, written as they always were: a field marked
`optional` is left out of the detail while it holds its default (a fault of gameday's own
has no `external` key), so the timelines of earlier runs and of this one read alike.
`region` is the event's column, not part of its detail.
"""

from __future__ import annotations

import dataclasses
import json
from enum import StrEnum
from typing import Any, ClassVar

OPTIONAL = {"optional": True}  # a field left out of the detail while it holds its default


class Kind(StrEnum):
    """Every kind of event a run records, in the order a drill meets them."""

    RECORDER_READY = "recorder-ready"
    EXPERIMENT_STARTED = "experiment-started"
    GATE_PASSED = "gate-passed"
    GATE_FAILED = "gate-failed"
    REPLICATION_CUT = "replication-cut"
    FAULT_APPLIED = "fault-applied"
    FAULT_NOT_APPLICABLE = "fault-not-applicable"
    FAULT_EFFECTIVE = "fault-effective"
    PROMOTE_REQUESTED = "promote-requested"
    PROMOTION_COMMAND = "promotion-command"
    PROMOTED = "promoted"
    HOLD_START = "hold-start"
    HOLD_END = "hold-end"
    SPLIT_BRAIN_COUNTED = "split-brain-counted"
    RESYNCED = "resynced"
    SWITCHED_OVER = "switched-over"
    STEP_FAILED = "step-failed"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"
    ROLLBACK_STARTED = "rollback-started"
    FAULT_REVERTED = "fault-reverted"
    FAULT_REVERT_FAILED = "fault-revert-failed"
    RECOVERED = "recovered"
    FAULT_LEFT_BEHIND = "fault-left-behind"
    STEADY_STATE_BEFORE_NOT_MET = "steady-state-before-not-met"
    STEADY_STATE_AFTER_NOT_MET = "steady-state-after-not-met"
    EXPERIMENT_ENDED = "experiment-ended"
    RECORDER_STOPPED = "recorder-stopped"
    RECORDER_DIED = "recorder-died"
    RECORDER_KILLED = "recorder-killed"

    @property
    def payload(self) -> type[Payload]:
        """The record an event of this kind carries."""
        return PAYLOADS[self]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Payload:
    """An event's record. Subclasses name their `KIND`."""

    KIND: ClassVar[Kind]
    region: str | None = None

    def detail(self) -> dict[str, Any]:
        """The detail as stored: every field but `region`, optional ones only when set."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "region" or (f.metadata.get("optional") and value == f.default):
                continue
            out[f.name] = value
        return out

    def detail_json(self) -> str:
        return json.dumps(self.detail(), sort_keys=True, default=str)


# -- the run and its recorder --------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class RecorderReady(Payload):
    """The recorder's canary had its first write acknowledged: the run may start."""

    KIND = Kind.RECORDER_READY


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentStarted(Payload):
    KIND = Kind.EXPERIMENT_STARTED
    experiment: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class GatePassed(Payload):
    KIND = Kind.GATE_PASSED


@dataclasses.dataclass(frozen=True, kw_only=True)
class GateFailed(Payload):
    KIND = Kind.GATE_FAILED
    reasons: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentEnded(Payload):
    """The control finished the run (a runner killed mid-run never records it)."""

    KIND = Kind.EXPERIMENT_ENDED
    status: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecorderStopped(Payload):
    KIND = Kind.RECORDER_STOPPED
    acked: int = 0
    connect_errors: int = 0
    unanswered: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecorderDied(Payload):
    """The recorder exited unbidden (or died before its last records): the run is
    incomplete from `t` on."""

    KIND = Kind.RECORDER_DIED
    exit_code: int | None = None
    last_line: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecorderKilled(Payload):
    KIND = Kind.RECORDER_KILLED
    waited_s: float = 0.0


# -- faults --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class FaultApplied(Payload):
    """A fault starts to apply: the first one is t_fault, which every measure counts from.
    `external`: another extension's action marked as a fault, seen by the control."""

    KIND = Kind.FAULT_APPLIED
    fault: str
    external: bool = dataclasses.field(default=False, metadata=OPTIONAL)
    provider: str | None = dataclasses.field(default=None, metadata=OPTIONAL)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaultNotApplicable(Payload):
    KIND = Kind.FAULT_NOT_APPLICABLE
    fault: str
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaultEffective(Payload):
    KIND = Kind.FAULT_EFFECTIVE
    fault: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReplicationCut(Payload):
    """A standby cut off its primary ahead of the outage (not the outage's fault)."""

    KIND = Kind.REPLICATION_CUT
    hold_s: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class RollbackStarted(Payload):
    KIND = Kind.ROLLBACK_STARTED


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaultReverted(Payload):
    KIND = Kind.FAULT_REVERTED
    fault: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaultRevertFailed(Payload):
    KIND = Kind.FAULT_REVERT_FAILED
    fault: str
    error: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaultLeftBehind(Payload):
    """What the ledger still held at the end of the run: it fails the verdict."""

    KIND = Kind.FAULT_LEFT_BEHIND
    faults: list[str] = dataclasses.field(default_factory=list)


# -- promotion, failback -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class PromoteRequested(Payload):
    KIND = Kind.PROMOTE_REQUESTED
    strategy: str | None = dataclasses.field(default=None, metadata=OPTIONAL)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromotionCommand(Payload):
    """The operator's promotion (or switchover) command ran: what it said, whatever it did."""

    KIND = Kind.PROMOTION_COMMAND
    argv: list[str]
    returncode: int | None
    took_s: float
    output: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Promoted(Payload):
    """gameday's own promote loop saw the first write accepted (a cross-check: the report's
    promoted instant is the one the recorder observed)."""

    KIND = Kind.PROMOTED
    error_s: float
    took_s: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class SplitBrainCounted(Payload):
    KIND = Kind.SPLIT_BRAIN_COUNTED
    old_primary: str
    split_brain_writes: int
    unreplicated_writes: int
    window_utc: list[str] | None
    promoted_at_utc: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Resynced(Payload):
    KIND = Kind.RESYNCED
    standby: str
    source: str
    method: str
    resync_s: float | None
    catch_up_s: float | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SwitchedOver(Payload):
    KIND = Kind.SWITCHED_OVER
    to: str
    from_region: str
    replay_wait_s: float | None = dataclasses.field(default=None, metadata=OPTIONAL)
    promotion_s: float | None = dataclasses.field(default=None, metadata=OPTIONAL)
    strategy: str | None = dataclasses.field(default=None, metadata=OPTIONAL)


# -- a long drill's hold -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class HoldStart(Payload):
    KIND = Kind.HOLD_START
    hold_s: float
    check_interval_s: float
    timeline_bytes: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class HoldEnd(Payload):
    KIND = Kind.HOLD_END
    hold_s: float
    checks: int
    checks_failed: int
    first_failed_check_s: float | None
    timeline_bytes: int


# -- how the run ended ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class StepFailed(Payload):
    KIND = Kind.STEP_FAILED
    step: str
    error: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Aborted(Payload):
    """A stop condition fired: the drill was rolled back at once."""

    KIND = Kind.ABORTED
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Interrupted(Payload):
    """Ctrl-C or SIGTERM (or a stop condition) interrupted the run."""

    KIND = Kind.INTERRUPTED


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recovered(Payload):
    """After an interruption the control recovered the lab as `gameday recover` does."""

    KIND = Kind.RECOVERED
    actions: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SteadyStateBeforeNotMet(Payload):
    KIND = Kind.STEADY_STATE_BEFORE_NOT_MET
    probes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SteadyStateAfterNotMet(Payload):
    KIND = Kind.STEADY_STATE_AFTER_NOT_MET
    probes: list[str] = dataclasses.field(default_factory=list)


PAYLOADS: dict[Kind, type[Payload]] = {
    cls.KIND: cls for cls in (
        RecorderReady, ExperimentStarted, GatePassed, GateFailed, ExperimentEnded,
        RecorderStopped, RecorderDied, RecorderKilled, FaultApplied, FaultNotApplicable,
        FaultEffective, ReplicationCut, RollbackStarted, FaultReverted, FaultRevertFailed,
        FaultLeftBehind, PromoteRequested, PromotionCommand, Promoted, SplitBrainCounted,
        Resynced, SwitchedOver, HoldStart, HoldEnd, StepFailed, Aborted, Interrupted,
        Recovered, SteadyStateBeforeNotMet, SteadyStateAfterNotMet)
}


def steady_state_not_met(when: str, probes: list[str]) -> Payload:
    """The event of a steady-state hypothesis not met `before` or `after` the method."""
    cls = SteadyStateBeforeNotMet if when == "before" else SteadyStateAfterNotMet
    return cls(probes=probes)


def detail(stored: str | None) -> dict[str, Any]:
    """An event's stored detail as a mapping ({} when it has none)."""
    found = json.loads(stored or "{}")
    return found if isinstance(found, dict) else {}
