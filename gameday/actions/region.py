"""Take a region down with a list of faults, and put it back exactly.

Each fault's undo record is written to the fault ledger before the fault is applied, so
`restore_region` (the experiment's rollback) and `gameday recover` (after a crash) can
always undo it. A fault counts from the instant it starts to apply (`fault-applied`) and
is confirmed when seen in effect (`fault-effective`).
"""

import logging
import time
from typing import Any, Dict, List, Optional

from gameday.drill import context, recovery
from gameday.drill.activity import rollback, step
from gameday.foundation.driver import for_region
from gameday.foundation.errors import LabError
from gameday.foundation.events import FaultApplied, FaultEffective, FaultNotApplicable
from gameday.foundation.faults import DEFAULT_REGION_FAULTS, Fault, region_faults
from gameday.foundation.ledger import Ledger
from gameday.foundation.poll import poll_until

__all__ = ["take_region_down", "restore_region"]

logger = logging.getLogger(f"chaostoolkit.{__name__}")


# what take_region_down injects when the experiment names no faults
DEFAULT_FAULTS = ",".join(DEFAULT_REGION_FAULTS)

# How often a fault is asked whether it is in effect. The check runs inside the measured
# window, in the process that records the RTO and drives the canary, and on a remote lab it
# is API calls: every 5 ms was a hot loop. 100 ms is then the resolution of `fault-effective`
# (reported as t_fault_effective_s), which no target is measured from: the RTO and the RPO
# count from `fault-applied`.
EFFECTIVE_POLL_S = 0.1


@step
def take_region_down(region: str = "region-1",
                     faults: str = DEFAULT_FAULTS,
                     effective_timeout_s: float = 30.0,
                     configuration: Optional[Dict[str, Any]] = None,
                     secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Inject a region outage: every fault in `faults` (a list or a comma-separated string
    of scale-to-zero, cordon, block-egress, blackhole) on `region`, then wait until each is
    seen in effect. Returns per fault the applied and effective times (seconds on the run's
    clock) or why it did not apply on this lab."""
    names = region_faults(faults)
    drill = context.changing(configuration, secrets)
    lab = drill.lab
    target = lab.region(region)
    driver = for_region(lab, target, drill.settings)
    ledger = Ledger(lab.path)
    ledger.refuse_unrecovered(region)
    applied: List[Dict[str, Any]] = []
    undos: Dict[Fault, Dict[str, Any]] = {}
    for fault in names:
        undo = driver.plan(fault, target)
        if not undo.get("applicable", True):
            drill.event(FaultNotApplicable(region=region, fault=fault, reason=undo["reason"]))
            applied.append({"fault": fault, "applicable": False, "reason": undo["reason"]})
            continue
        fault_id = ledger.plan(region, fault, undo)
        t = drill.event(FaultApplied(region=region, fault=fault))
        driver.inject(fault, target, undo)
        ledger.mark(fault_id, "applied")
        undos[fault] = undo
        applied.append({"fault": fault, "applicable": True, "applied": t})
        logger.info("gameday: %s applied to %s", fault, region)
    deadline = time.monotonic() + effective_timeout_s
    for item in applied:
        if not item["applicable"]:
            continue
        fault, undo = item["fault"], undos[item["fault"]]

        def in_effect(fault: Fault = fault, undo: Dict[str, Any] = undo) -> bool:
            return driver.is_effective(fault, target, undo)

        def not_in_effect(_: object, fault: Fault = fault) -> LabError:
            return LabError(f"{fault} on {region} was not seen in effect within "
                            f"{effective_timeout_s:g} s")

        poll_until(in_effect, timeout_s=max(0.0, deadline - time.monotonic()),
                   interval_s=EFFECTIVE_POLL_S, error=not_in_effect)
        item["effective"] = drill.event(FaultEffective(region=region, fault=fault))
        logger.info("gameday: %s on %s in effect", fault, region)
    return {"region": region, "faults": applied}


@rollback
def restore_region(region: str = "region-1",
                   configuration: Optional[Dict[str, Any]] = None,
                   secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Undo every fault the ledger holds for `region`, newest first. Its database comes
    back fenced (read-only) when the other region's database is the writable primary.
    Safe to run when nothing was injected, and twice."""
    drill = context.changing(configuration, secrets)
    reverted = recovery.revert_open_faults(drill, region)
    return {"region": region, "reverted": reverted}
