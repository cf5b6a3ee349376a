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


def for_region(lab: Lab, region: Region) -> Driver:
    """The driver named by the region in the descriptor."""
    if region.driver == "netns":
        from gameday.labs.netns.driver import NetnsDriver

        return NetnsDriver(lab)
    if region.driver == "kubernetes":
        from gameday.labs.kubernetes import KubernetesDriver

        return KubernetesDriver(lab)
    raise LookupError(region.driver)
