"""The faults gameday injects, named once: what each changes and how its rollback undoes it.

A fault name arrives as text (an experiment's `faults`, a ledger record, an undo record) and
becomes a `Fault` at the edge (`Fault.parse`), where an unknown name is a ConfigError naming
the choices: the one answer to an unknown fault, for every caller. A driver is asked only
for a `Fault`; a fault its lab cannot apply is planned as not applicable (`not_applicable`),
which the drill records and skips.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from gameday.foundation.errors import ConfigError


class Fault(StrEnum):
    # a region outage, by `take_region_down`
    SCALE_TO_ZERO = "scale-to-zero"
    CORDON = "cordon"
    BLOCK_EGRESS = "block-egress"
    BLACKHOLE = "blackhole"
    # a standby cut off its primary ahead of the outage, by `cut_replication`
    REPLICATION_CUT = "replication-cut"
    # the planned switchover of a failback: measured as a fault is, never a driver's
    SWITCHOVER = "switchover"

    @classmethod
    def parse(cls, name: object, *, choices: Iterable[Fault] | None = None) -> Fault:
        """The fault named `name`, one of `choices` (default: every fault a driver
        injects); ConfigError naming the choices otherwise."""
        allowed = tuple(choices) if choices is not None else INJECTED
        for fault in allowed:
            if fault.value == name:
                return fault
        shown = "(none)" if name in (None, "") else str(name)
        raise ConfigError(f"unknown fault {shown}: choose from {', '.join(allowed)}")

    @property
    def changes(self) -> str:
        """What the fault changes, for the plan a person reads before the drill."""
        return _TEXT[self][0]

    @property
    def undo(self) -> str:
        """How its rollback undoes it (the driver's undo record says exactly what)."""
        return _TEXT[self][1]


# what `take_region_down` may inject, and what it injects when the experiment names none
REGION_FAULTS: tuple[Fault, ...] = (Fault.SCALE_TO_ZERO, Fault.CORDON, Fault.BLOCK_EGRESS,
                                    Fault.BLACKHOLE)
DEFAULT_REGION_FAULTS: tuple[Fault, ...] = (Fault.SCALE_TO_ZERO, Fault.CORDON,
                                            Fault.BLOCK_EGRESS)
# what a driver plans, injects and reverts
INJECTED: tuple[Fault, ...] = (*REGION_FAULTS, Fault.REPLICATION_CUT)


def region_faults(faults: Any) -> tuple[Fault, ...]:
    """The faults an action names (a list or a comma-separated string), checked."""
    items = faults.split(",") if isinstance(faults, str) else list(faults)
    names = [str(f).strip() for f in items if str(f).strip()]
    if not names:
        Fault.parse(None, choices=REGION_FAULTS)
    return tuple(Fault.parse(name, choices=REGION_FAULTS) for name in names)


def not_applicable(reason: str) -> dict[str, Any]:
    """A driver's plan of a fault its lab cannot apply: recorded, skipped, never undone."""
    return {"applicable": False, "reason": reason}


_TEXT: dict[Fault, tuple[str, str]] = {
    Fault.SCALE_TO_ZERO: ("stops the region's workloads (storefront and database; under an HA "
                          "manager, the manager first)",
                          "starts exactly what the record lists again; the old primary's "
                          "database comes back fenced (read-only) once the other region "
                          "was promoted"),
    Fault.CORDON: ("marks the region's nodes unschedulable",
                   "uncordons exactly the nodes the record lists"),
    Fault.BLOCK_EGRESS: ("blocks every new outbound connection from the region (nftables in "
                         "the region's namespace, or a NetworkPolicy)",
                         "deletes the table or policy the record names"),
    Fault.BLACKHOLE: ("drops all the region's traffic while its processes keep running (the "
                      "split-brain case)",
                      "deletes the rules / unpauses the node containers the record names"),
    Fault.REPLICATION_CUT: ("stops the region's cross-region path (its delay proxy)",
                            "starts the proxy again with the recorded delay"),
    Fault.SWITCHOVER: ("makes the primary read-only, promotes the standby and makes the old "
                       "primary its standby",
                       "completed or undone from the drill record (`gameday recover`)"),
}
