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

import importlib
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

from gameday.foundation import lab_kinds
from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.faults import Fault
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

    def failback_unsupported(self, region: Region) -> str | None:
        """Why gameday cannot stop, rewind and start `region`'s database here (its own
        failback needs the lab's fencing contract), or None when it can. Asked before a
        failback starts, so a drill that cannot finish never begins."""


class LabDriver(Driver, DatabaseOps, Protocol):
    """Everything the actions and the recovery ask of a lab."""


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
