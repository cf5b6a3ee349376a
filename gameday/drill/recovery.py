"""Putting the lab back: undo what the fault ledger holds and leave exactly one writable
primary. Used by the experiments' rollbacks, by the control after an interrupted run, and
by `gameday recover` after the runner was killed (SIGKILL, a crash, a lost machine).

Why one module: the three callers must make the same decisions in the same order, and
the decisions are a small state machine over what is on disk (the ledger, `drill.json`)
and what the databases answer:

    faults in the ledger          -> revert each, newest first (the driver fences a region
                                     whose database must not come back writable)
    switchover stage 'promoting'  -> wait for the promotion to settle before deciding
    switchover target writable    -> complete it: the old primary follows the new one
    one region writable           -> nothing to do
    no region writable            -> start databases that are down (fenced ones stay
                                     fenced); finish a promotion that was requested;
                                     else make a primary left read-only writable again

Idempotent: a second call finds nothing open and changes nothing. The database side goes
through `Databases`, the lab's store (`gameday.drill.stores`: the `gameday.postgres` or
`gameday.redis` module in real use), so the state machine is tested against a fake without
root or a lab. A Redis lab's Sentinels are its HA manager: recovery there is the HA path,
which never promotes nor makes a database writable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from gameday.drill import stores
from gameday.drill.context import Drill
from gameday.foundation import drill_state
from gameday.foundation.descriptor import Lab
from gameday.foundation.drill_state import Stage
from gameday.foundation.driver import for_region
from gameday.foundation.errors import GamedayError, LabError, TargetError
from gameday.foundation.events import FaultReverted, FaultRevertFailed, RollbackStarted
from gameday.foundation.faults import Fault
from gameday.foundation.ledger import Ledger
from gameday.foundation.poll import poll_until

logger = logging.getLogger(f"chaostoolkit.{__name__}")

SETTLE_S = 15.0
# A requested promotion (pg_promote) makes its standby writable in well under a second,
# also on a loaded machine: recovery waits this long for it, then finishes it itself (a
# second request is harmless). drill.json records the promotion just before it is
# requested (an interrupted run must leave that trace), so a runner killed in between
# leaves a standby nobody asked to promote: it was waited on for all of SETTLE_S.
REQUESTED_PROMOTION_S = 2.0


# the SQL side of recovery (the lab's store answers it: gameday.drill.stores)
Databases = stores.Store


def _databases(lab: Lab) -> Databases:
    return stores.for_lab(lab)


def revert_open_faults(drill: Drill, region: str | None = None) -> list[str]:
    """Undo every fault the ledger still holds (for `region`, or all), newest first. A
    revert that fails does not stop the others: each is attempted, then a LabError names
    every fault that stays in place."""
    reverted, failed = _revert_each(drill, region)
    if failed:
        raise LabError("could not revert " + "; ".join(failed) + (
            f" (reverted: {', '.join(reverted)})" if reverted else "") +
            ": fix the cause, then run `gameday recover`")
    return reverted


def _revert_each(drill: Drill, region: str | None) -> tuple[list[str], list[str]]:
    """(what was reverted, what failed and why), newest first."""
    lab = drill.lab
    ledger = Ledger(lab.path)
    reverted: list[str] = []
    failed: list[str] = []
    if ledger.open_faults(region):
        drill.event(RollbackStarted(region=region))
    for entry in reversed(ledger.open_faults(region)):
        what = f"{entry['fault']} on {entry['region']}"
        try:
            target = lab.region(entry["region"])
            fault = Fault.parse(entry["fault"])
            for_region(lab, target, drill.settings).revert(fault, target, entry["undo"])
        except Exception as exc:  # any failure: the older faults are still attempted
            why = str(exc) if isinstance(exc, GamedayError) else f"{type(exc).__name__}: {exc}"
            failed.append(f"{what} ({why})")
            logger.error("gameday: could not revert %s: %s", what, why)
            drill.event(FaultRevertFailed(region=entry["region"], fault=entry["fault"],
                                          error=why))
            continue
        ledger.mark(entry["id"], "reverted")
        drill.event(FaultReverted(region=target.name, fault=entry["fault"]))
        reverted.append(what)
        logger.info("gameday: reverted %s", what)
    return reverted, failed


def restore_writable_primary(drill: Drill, *, db: Databases | None = None) -> dict[str, Any]:
    """If no region accepts writes: start a database that is down (unless fenced), finish
    a promotion that was requested, or make a primary that a switchover left read-only
    writable again. Never creates a second writable primary; does nothing when one region
    is writable. Returns what it changed and the states it found."""
    lab = drill.lab
    db = db or _databases(lab)
    if lab.ha is not None:
        return _restore_under_ha(drill, db)
    states = {r.name: db.is_writable(lab, r) for r in lab.regions}
    changed: list[str] = []
    switching = (drill_state.read(lab.path) or drill_state.DrillState()).switchover
    if switching and switching.stage == Stage.PROMOTING:
        # pg_promote may have been sent: let it settle before deciding, or the old primary
        # could be made writable next to a new one
        target = lab.region(switching.to)
        _settle(lambda: db.is_writable(lab, target) is True)
        states = {r.name: db.is_writable(lab, r) for r in lab.regions}
    if switching and states.get(switching.to) is True:
        # interrupted after the promotion: complete the switchover, the old primary
        # (stopped cleanly, its shutdown checkpoint replicated) follows the new one
        old, new = lab.region(switching.from_region), lab.region(switching.to)
        if states.get(old.name) is None:
            for_region(lab, old, drill.settings).start_standby(old, new)
            changed.append(f"{old.name} follows {new.name} (switchover completed)")
        db.wait_replayed(lab, old, new, 60, "follow the new primary", interruptible=False)
        db.restore_replication_mode(lab, new)
        drill_state.clear(lab.path)
        return {"changed": changed or None, "states": states}
    if any(v is True for v in states.values()):
        return {"changed": None, "states": states}
    for r in lab.regions:
        if states[r.name] is None and for_region(lab, r, drill.settings).start_database(r):
            changed.append(f"started the database of {r.name}")
    promoted = (drill_state.read(lab.path) or drill_state.DrillState()).promoted
    if promoted and not switching:
        # a promotion was sent (the old primary is fenced because of it): finish it rather
        # than leave no primary at all
        target = lab.region(promoted)
        _settle(lambda: db.is_writable(lab, target) is not False, REQUESTED_PROMOTION_S)
        if db.role(lab, target) == "standby":
            try:
                db.promote(lab, target, 30, clock=drill.now)
                changed.append(f"promoted {target.name} (its promotion was requested)")
            except TargetError:
                # the promotion that was requested ended first: nothing left to finish
                if db.is_writable(lab, target) is not True:
                    raise
            return {"changed": changed or None, "states": states}
    for r in lab.regions:
        if db.make_writable_again(lab, r):
            logger.warning("gameday: switchover interrupted: %s is writable again", r.name)
            changed.append(f"made {r.name} writable again")
            break
    return {"changed": changed or None, "states": states}


def _restore_under_ha(drill: Drill, db: Databases) -> dict[str, Any]:
    """Under an HA manager the manager decides who is primary: gameday never promotes nor
    makes a database writable behind its back. It starts the members that are down, waits
    (bounded by the leader key's TTL and a few loops) for exactly one primary, then has the
    lab see that the other member streams from it (restarted or re-cloned through the
    manager when it does not)."""
    lab = drill.lab
    changed: list[str] = []
    for r in lab.regions:
        if db.is_writable(lab, r) is None and for_region(lab, r, drill.settings).start_database(r):
            changed.append(f"started {lab.ha.manager if lab.ha else 'the HA'} member in {r.name}")
    ha = lab.ha
    bound = (ha.ttl_s or 30) + 3 * (ha.loop_wait_s or 10) + 30 if ha else 60
    with contextlib.suppress(TargetError):
        poll_until(lambda: sum(db.is_writable(lab, r) is True for r in lab.regions) == 1,
                   timeout_s=bound, interval_s=0.2, interruptible=False)
    states = {r.name: db.is_writable(lab, r) for r in lab.regions}
    primaries = [r for r in lab.regions if states[r.name] is True]
    if len(primaries) == 1:
        try:
            rejoined = for_region(lab, primaries[0], drill.settings).rejoin_standby(primaries[0])
        except GamedayError as exc:  # recovery does all it can; the lab's check says the rest
            logger.error("gameday: the standby of %s does not stream: %s", primaries[0].name, exc)
        else:
            if rejoined:
                changed.append(rejoined)
    else:
        logger.error("gameday: %s primaries after %.0f s under the HA manager: %s",
                     sum(v is True for v in states.values()), bound, states)
    return {"changed": changed or None, "states": states}


def _settle(done: Callable[[], bool], timeout_s: float | None = None) -> None:
    """Wait (bounded by `timeout_s`, SETTLE_S by default; not an error when it runs out)
    for the databases to settle; not interruptible, since recovery runs after the
    interruption."""
    with contextlib.suppress(TargetError):
        poll_until(done, timeout_s=SETTLE_S if timeout_s is None else timeout_s,
                   interval_s=0.1, interruptible=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recovery:
    """What `recover` changed, and what still keeps the lab from being recovered (empty
    when the ledger holds no fault and no unreadable line, and exactly one region accepts
    writes)."""

    done: list[str]
    left: list[str]


def recover(drill: Drill, *, databases: Databases | None = None) -> Recovery:
    """`gameday recover`: what the rollbacks would have done, from what is on disk (the
    control's after an interruption, with its run's events). Does all it can (a revert
    that fails does not stop the rest) and says what it could not."""
    lab = drill.lab
    db = databases or _databases(lab)
    reverted, _ = _revert_each(drill, None)  # what failed stays in `left`
    done = [f"reverted {item}" for item in reverted]
    result = restore_writable_primary(drill, db=db)
    done += result["changed"] or []
    left = [f"fault left behind: {item}" for item in Ledger(lab.path).unsettled()]
    primaries = _one_writable(lab, db)
    if primaries:
        left.append(primaries)
    return Recovery(done=done, left=left)


def _one_writable(lab: Lab, db: Databases) -> str | None:
    """None when exactly one region accepts writes (waited for, bounded: a database the
    recovery just started may still be coming up); else what the regions answer."""
    def count() -> int:
        return sum(db.is_writable(lab, r) is True for r in lab.regions)

    if count() != 1:
        _settle(lambda: count() == 1)
    states = {r.name: db.is_writable(lab, r) for r in lab.regions}
    writable = [name for name, ok in states.items() if ok is True]
    if len(writable) == 1:
        return None
    seen = ", ".join(f"{name}: {_ANSWER[ok]}" for name, ok in states.items())
    if writable:
        return (f"{len(writable)} regions accept writes ({seen}): gameday never demotes a "
                "primary; fence the one that must not serve, then run `gameday recover` again")
    return (f"no region accepts writes ({seen}): start or promote one by your runbook, then "
            "run `gameday recover` again")


_ANSWER = {True: "writable", False: "read-only", None: "unreachable"}
