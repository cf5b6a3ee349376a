"""The one small interface every lab kind implements to break and restore a region, and
the way to a region's implementation (its descriptor's `driver`, a name of
gameday.foundation.lab_kinds).

A fault is applied in three steps so that it can always be undone:
`plan()` says what will change (written to the fault ledger *before* anything changes),
`inject()` changes it, `is_effective()` tells when the change is observed in effect,
and `revert(undo)` puts back exactly what `undo` records, idempotently.

Failback and recovery also need a lab to stop, rewind and start a database, which SQL
cannot do: `DatabaseOps`. A lab driver implements both (`LabDriver`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeAlias

from gameday.foundation import lab_kinds
from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.faults import Fault, not_applicable
from gameday.foundation.settings import GamedaySettings


class Driver(Protocol):
    def plan(self, fault: Fault, region: Region) -> dict[str, Any]:
        """The undo record of `fault` on `region`, computed before anything changes.

        A fault this lab cannot apply is planned as `faults.not_applicable(reason)`: the
        drill records it and goes on without it."""

    def inject(self, fault: Fault, region: Region, undo: dict[str, Any]) -> None:
        """Apply the fault planned in `undo`."""

    def is_effective(self, fault: Fault, region: Region, undo: dict[str, Any]) -> bool:
        """True once the fault is seen in effect (replicas at zero, rule present and a
        connection refused or dropped)."""

    def revert(self, fault: Fault, region: Region, undo: dict[str, Any]) -> None:
        """Put back exactly what `undo` records. Calling it twice is harmless."""


class DatabaseOps(Protocol):
    """What failback and recovery need from a lab beyond SQL: stopping a database,
    rewinding it onto a new timeline, and starting it as a standby of a given upstream
    (or as its data directory says)."""

    def stop_database(self, region: Region) -> None:
        """Fast shutdown, waiting until the server is gone."""

    def resync_database(self, region: Region, source: Region) -> str:
        """Make the stopped `region` database a copy of `source`'s timeline: pg_rewind, or a
        fresh base backup when rewind fails. Returns "rewind" or "basebackup"."""

    def start_standby(self, region: Region, upstream: Region) -> None:
        """Start `region`'s database as a streaming standby of `upstream`."""

    def start_database(self, region: Region) -> bool:
        """Start a database that is down, as it was left (primary, standby or fenced).
        False when it was already running."""

    def rejoin_standby(self, primary: Region) -> str | None:
        """Under an HA manager, once `primary` is the one writable region after a recovery:
        see that the other member streams from it, and have the manager restart or re-clone
        it when it does not. What was done, or None."""

    def failback_unsupported(self, region: Region) -> str | None:
        """Why gameday cannot stop, rewind and start `region`'s database here (its own
        failback needs the lab's fencing contract), or None when it can. Asked before a
        failback starts, so a drill that cannot finish never begins."""


class LabDriver(Driver, DatabaseOps, Protocol):
    """Everything the actions and the recovery ask of a lab."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaultOps:
    """How one lab kind plans, injects, checks and reverts one fault (the `Driver`
    protocol's four steps, for one fault)."""

    plan: Callable[[Region], dict[str, Any]]
    inject: Callable[[Region, dict[str, Any]], None]
    is_effective: Callable[[Region, dict[str, Any]], bool]
    revert: Callable[[Region, dict[str, Any]], None]


class FaultTable:
    """The `Driver` protocol over a table of the faults a lab kind applies: each fault's
    four steps side by side (a new fault is one entry), and one answer, for every lab kind,
    to a fault it cannot apply: planned not applicable (the drill records it and goes on),
    never injected, never reverted. An entry that is a string is that answer's reason."""

    kind = "lab"

    def faults(self) -> Mapping[Fault, FaultOps | str]:
        """The faults this lab applies; a string: why it cannot apply that one here."""
        raise NotImplementedError

    def _ops(self, fault: Fault) -> FaultOps | None:
        ops = self.faults().get(fault)
        return ops if isinstance(ops, FaultOps) else None

    def plan(self, fault: Fault, region: Region) -> dict[str, Any]:
        ops = self.faults().get(fault)
        if ops is None:
            return not_applicable(f"the {self.kind} driver has no fault '{fault}'")
        if isinstance(ops, str):
            return not_applicable(ops)
        return ops.plan(region)

    def inject(self, fault: Fault, region: Region, undo: dict[str, Any]) -> None:
        ops = self._ops(fault)
        if ops is not None and undo.get("applicable") is not False:
            ops.inject(region, undo)

    def is_effective(self, fault: Fault, region: Region, undo: dict[str, Any]) -> bool:
        ops = self._ops(fault)
        return True if ops is None else ops.is_effective(region, undo)

    def revert(self, fault: Fault, region: Region, undo: dict[str, Any]) -> None:
        ops = self._ops(fault)
        if ops is not None and undo.get("applicable") is not False:
            ops.revert(region, undo)


DriverFactory: TypeAlias = Callable[[Lab, GamedaySettings | None], LabDriver]


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def factory(name: str) -> DriverFactory:
    made: DriverFactory = _load(lab_kinds.kind(name).factory)
    return made


def for_region(lab: Lab, region: Region, settings: GamedaySettings | None = None) -> LabDriver:
    """The driver named by the region in the descriptor, with its section of the settings
    (None: its defaults, as `gameday recover` without an experiment has them)."""
    return factory(region.driver)(lab, settings)


def verify_running(lab: Lab) -> None:
    """Refuse a descriptor that does not match what runs, as each of its regions' lab kind
    checks it (the netns lab: its namespaces and services are up)."""
    for name in sorted({r.driver for r in lab.regions}):
        verify = lab_kinds.kind(name).verify
        if verify is not None:
            _load(verify)(lab)
