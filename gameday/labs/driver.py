"""The one small interface every lab kind implements to break and restore a region.

A fault is applied in three steps so that it can always be undone:
`plan()` says what will change (written to the fault ledger *before* anything changes),
`inject()` changes it, `is_effective()` tells when the change is observed in effect,
and `revert(undo)` puts back exactly what `undo` records, idempotently.
"""

from __future__ import annotations

from typing import Any, Protocol

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
    """What failback needs from a lab beyond SQL: stopping a database, rewinding it onto a
    new timeline, and starting it as a standby of a given upstream (or fenced)."""

    def stop_database(self, region: Region) -> None:
        """Fast shutdown, waiting until the server is gone."""

    def resync_database(self, region: Region, source: Region) -> str:
        """Make the stopped `region` database a copy of `source`'s timeline: pg_rewind, or a
        fresh base backup when rewind fails. Returns "rewind" or "basebackup"."""

    def start_standby(self, region: Region, upstream: Region) -> None:
        """Start `region`'s database as a streaming standby of `upstream`."""


def for_region(lab: Lab, region: Region, configuration: dict[str, Any] | None = None) -> Driver:
    """The driver named by the region in the descriptor."""
    if region.driver == "netns":
        from gameday.labs.netns.driver import NetnsDriver

        return NetnsDriver(lab)
    if region.driver == "kubernetes":
        from gameday.labs.kubernetes import KubernetesDriver

        return KubernetesDriver.from_configuration(lab, configuration)
    raise LookupError(region.driver)
