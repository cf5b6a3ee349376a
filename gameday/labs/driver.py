"""The one small interface every lab kind implements to break and restore a region, and
the registry that maps a descriptor's `driver` name to its implementation.

A fault is applied in three steps so that it can always be undone:
`plan()` says what will change (written to the fault ledger *before* anything changes),
`inject()` changes it, `is_effective()` tells when the change is observed in effect,
and `revert(undo)` puts back exactly what `undo` records, idempotently.

Failback and recovery also need a lab to stop, rewind and start a database, which SQL
cannot do: `DatabaseOps`. A lab driver implements both (`LabDriver`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from gameday.errors import ConfigError

if TYPE_CHECKING:  # the descriptor validates driver names against this registry
    from gameday.labs.descriptor import Lab, Region

FAULTS = ("scale-to-zero", "cordon", "block-egress", "blackhole")


class Driver(Protocol):
    def plan(self, fault: str, region: Region) -> dict[str, Any]:
        """The undo record of `fault` on `region`, computed before anything changes.

        Returns `{"applicable": False, "reason": ...}` when this lab cannot apply it."""

    def inject(self, fault: str, region: Region, undo: dict[str, Any]) -> None:
        """Apply the fault planned in `undo`."""

    def is_effective(self, fault: str, region: Region, undo: dict[str, Any]) -> bool:
        """True once the fault is seen in effect (replicas at zero, rule present and a
        connection refused or dropped)."""

    def revert(self, fault: str, region: Region, undo: dict[str, Any]) -> None:
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


DriverFactory: TypeAlias = "Callable[[Lab, Mapping[str, Any] | None], LabDriver]"

# name in the descriptor -> "module:factory"; imported only when a region names it, so the
# netns lab never loads the kubernetes client
_REGISTRY: dict[str, str] = {
    "netns": "gameday.labs.netns.driver:NetnsDriver.for_lab",
    "kubernetes": "gameday.labs.kubernetes:KubernetesDriver.from_configuration",
}


def register(name: str, factory: str) -> None:
    """Add a lab kind: `factory` is "module:callable", called as `factory(lab, configuration)`."""
    _REGISTRY[name] = factory


def names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def factory(name: str) -> DriverFactory:
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown driver '{name}': the descriptor's driver must be one of "
                          f"{', '.join(names())}") from None
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    made: DriverFactory = obj
    return made


def for_region(lab: Lab, region: Region,
               configuration: Mapping[str, Any] | None = None) -> LabDriver:
    """The driver named by the region in the descriptor."""
    return factory(region.driver)(lab, configuration)
