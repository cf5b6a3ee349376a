"""Database promotion, split-brain accounting, resync and planned switchover.

The SQL lives in gameday.postgres (promotion is timed there with a write loop, not with
the promote call's return); stopping, rewinding and starting a database is the lab
driver's; putting the lab back after an interruption is gameday.drill.recovery's. What
stays here is the drill's order of steps and the record each leaves on disk first.
"""

import dataclasses
import logging
import time
from datetime import UTC, datetime
from typing import Any, Dict, Optional

from gameday import postgres
from gameday.actions import _runbook
from gameday.drill import context, recovery
from gameday.drill.activity import rollback, step
from gameday.drill.context import Drill
from gameday.drill.preflight import refuse_runner_behind_manager
from gameday.foundation import drill_state, interrupt
from gameday.foundation.descriptor import Region
from gameday.foundation.drill_state import DrillState, Stage, Switchover
from gameday.foundation.driver import for_region
from gameday.foundation.errors import LabError, TargetError
from gameday.foundation.events import (
    FaultApplied,
    FaultEffective,
    Promoted,
    PromoteRequested,
    PromotionCommand,
    ReplicationCut,
    Resynced,
    SplitBrainCounted,
    SwitchedOver,
)
from gameday.foundation.faults import Fault
from gameday.foundation.ledger import Ledger
from gameday.foundation.poll import poll_until

__all__ = ["promote", "count_split_brain", "resync", "switchover", "ensure_writable_primary",
           "cut_replication"]

logger = logging.getLogger(f"chaostoolkit.{__name__}")


def _promote(drill: Drill, target: Region, timeout_s: float) -> Dict[str, Any]:
    """postgres.promote with the run's events: `promote-requested` at once (an interrupted
    run must leave that trace), `promoted` at the first accepted write."""

    def requested(t: float) -> None:
        drill.event(PromoteRequested(region=target.name), t=t)

    p = postgres.promote(drill.lab, target, timeout_s, clock=drill.now, on_requested=requested)
    drill.event(Promoted(region=target.name, error_s=p.error_s, took_s=round(p.took_s, 4)),
                t=p.writable)
    logger.info("gameday: %s promoted, writable %.0f ms after the request", target.name,
                p.took_s * 1000)
    return {"region": target.name, "requested": p.requested, "writable": p.writable,
            "took_s": p.took_s, "timeline": p.timeline, "writable_utc": p.writable_utc}


def _run_promotion_command(drill: Drill, target: Region, what: str) -> Dict[str, Any]:
    """The operator's command, its output in the timeline whether it worked or not."""
    lab, promotion = drill.lab, drill.settings.promotion
    drill.event(PromoteRequested(region=target.name, strategy="command"))
    env = dict(lab.ha.command_env) if lab.ha else {}
    ran = _runbook.run(promotion.command, timeout_s=promotion.timeout_s, env=env)
    drill.event(PromotionCommand(region=target.name, argv=list(ran.argv),
                                 returncode=ran.returncode, took_s=ran.took_s,
                                 output=ran.output))
    _runbook.check(ran, timeout_s=promotion.timeout_s, what=what)
    last = ran.output.strip().splitlines()[-1] if ran.output.strip() else ""
    return {"argv": list(ran.argv), "returncode": ran.returncode, "took_s": ran.took_s,
            "last_line": last}


def _await_writable(drill: Drill, target: Region, timeout_s: float, who: str) -> float:
    """Until `target` answers as a writable primary; the instant the runner saw it (the
    recorder's samplers see it independently, and theirs is the measured one)."""
    poll_until(lambda: postgres.is_writable(drill.lab, target) is True, timeout_s=timeout_s,
               interval_s=0.02,
               error=lambda _: TargetError(f"{target.name} did not become a writable primary "
                                           f"within {timeout_s:g} s ({who})"))
    return drill.now()


@step
def promote(region: str = "region-2", timeout_s: float = 30.0,
            configuration: Optional[Dict[str, Any]] = None,
            secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Have the standby database of `region` promoted, as configuration `promotion` says,
    and wait until it accepts writes: `runner` promotes it by SQL (its synchronous standby
    list is cleared, since its old primary is gone), `command` runs `promotion_command`
    (e.g. patronictl failover, a cloud CLI; bounded by `promotion_timeout_s`), `none` waits
    for the system to promote by itself. The promoted instant of the report is the first
    writable answer the recorder sees, in every mode."""
    drill = context.changing(configuration, secrets)
    settings, lab = drill.settings, drill.lab
    refuse_runner_behind_manager(settings, lab)
    target = lab.region(region)
    strategy = settings.promotion.strategy
    if strategy != "none":
        for other in lab.regions:
            if other.name != region and postgres.is_writable(lab, other) is True:
                raise LabError(f"{other.name} still accepts writes: promoting {region} now "
                               "would make two writable primaries (did the outage not take "
                               "it down?)")
    state = DrillState(
        promoted=region,
        old_primary=next(r.name for r in lab.regions if r.name != region),
        promoted_at_utc=datetime.now(UTC).isoformat(),
        strategy=strategy,
        game_day_run=str(drill.run.dir) if drill.run else None,
    )
    if strategy == "none" and lab.ha is None:
        # nobody is asked to promote, and the lab names no manager that would: the record
        # says which region is awaited, and that it was promoted only once it answers
        # writable. A drill stopped while it waits (a stop condition, Ctrl-C) then brings
        # region-1 back as the primary, instead of finishing a promotion nobody started
        # (the drivers still fence region-1 whenever another region answers as a primary)
        drill_state.write(lab.path, dataclasses.replace(state, promoted=None, awaiting=region))
    else:
        # written before the promotion is requested: a run interrupted half-way must still
        # leave failback (and `gameday recover`) the record that a promotion may have
        # happened
        drill_state.write(lab.path, state)
    if strategy == "runner":
        result = _promote(drill, target, timeout_s)
        drill_state.write(lab.path, dataclasses.replace(
            state, promoted_at_utc=result["writable_utc"], timeline=result["timeline"]))
        return {**result, "strategy": strategy}
    ran = None
    if strategy == "command":
        ran = _run_promotion_command(drill, target, "the promotion command")
    said = f": the command said {ran['last_line']!r}" if ran and ran.get("last_line") else ""
    seen = _await_writable(drill, target, max(timeout_s, settings.promotion.timeout_s),
                           f"promotion {strategy}{said}")
    drill_state.write(lab.path, dataclasses.replace(
        state, promoted_at_utc=datetime.now(UTC).isoformat()))
    return {"region": region, "strategy": strategy, "command": ran, "writable_seen": seen}


@step
def count_split_brain(old_primary: str = "region-1", new_primary: str = "region-2",
                      configuration: Optional[Dict[str, Any]] = None,
                      secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Before the old primary is touched: read its canary rows and compare them with the new
    primary's. Rows only the old primary has, written after the promotion, are split-brain
    writes (acknowledged there while the new primary served): they are lost at failback.
    Rows it has that were written before the promotion were acknowledged but never
    replicated: lost at failover."""
    drill = context.current(configuration, secrets)
    lab = drill.lab
    state = drill_state.read(lab.path)
    if not state or state.promoted != new_primary or state.promoted_at_utc is None:
        raise LabError(f"no game day promoted {new_primary}: run experiments/game-day.json first")
    promoted_at = datetime.fromisoformat(state.promoted_at_utc)
    old, new = lab.region(old_primary), lab.region(new_primary)
    old_rows = postgres.canary_rows(lab, old, "read its canary rows")
    new_seqs = {r[0] for r in postgres.canary_rows(lab, new, "read its canary rows")}
    only_old = [(seq, at) for seq, at in old_rows if seq not in new_seqs]
    split = sorted(at for _, at in only_old if at > promoted_at)
    unreplicated = sum(1 for _, at in only_old if at <= promoted_at)
    counted = SplitBrainCounted(
        region=old_primary, old_primary=old_primary, split_brain_writes=len(split),
        unreplicated_writes=unreplicated,
        window_utc=[split[0].isoformat(), split[-1].isoformat()] if split else None,
        promoted_at_utc=state.promoted_at_utc)
    drill.event(counted)
    logger.info("gameday: %d split-brain writes on %s, %d never replicated", len(split),
                old_primary, unreplicated)
    return counted.detail()


@step
def resync(region: str = "region-1", source: str = "region-2", timeout_s: float = 300.0,
           configuration: Optional[Dict[str, Any]] = None,
           secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Turn the old primary `region` into a streaming standby of `source`: stop it, rewind
    it onto the source's timeline (pg_rewind after a CHECKPOINT on the source; a fresh base
    backup when rewind fails), start it as a standby and wait until it has replayed
    everything the source had written (bounded by `timeout_s`)."""
    drill = context.changing(configuration, secrets)
    lab = drill.lab
    target, upstream = lab.region(region), lab.region(source)
    if postgres.is_writable(lab, upstream) is not True:
        raise LabError(f"{source} is not the writable primary: nothing to resync from "
                       "(run experiments/game-day.json first)")
    driver = for_region(lab, target, drill.settings)
    started = time.monotonic()
    postgres.checkpoint(lab, upstream)
    driver.stop_database(target)
    method = driver.resync_database(target, upstream)
    driver.start_standby(target, upstream)
    copied_s = time.monotonic() - started
    catch_up_s = postgres.wait_replayed(lab, target, upstream, timeout_s, "catch up")
    resynced = Resynced(region=region, standby=region, source=source, method=method,
                        resync_s=round(copied_s, 3), catch_up_s=round(catch_up_s, 3))
    drill.event(resynced)
    logger.info("gameday: %s resynced from %s by %s in %.1f s, caught up in %.2f s", region,
                source, method, copied_s, catch_up_s)
    return resynced.detail()


@step
def switchover(to: str = "region-1", timeout_s: float = 60.0,
               configuration: Optional[Dict[str, Any]] = None,
               secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Planned switchover to `to`, with zero loss: make the current primary read-only (its
    clients are disconnected and may not write again), wait until `to` has replayed all of
    it, stop it (its shutdown checkpoint reaches the standby), promote `to`, and restart the
    old primary as a standby of `to`."""
    drill = context.changing(configuration, secrets)
    settings, lab = drill.settings, drill.lab
    refuse_runner_behind_manager(settings, lab)
    target = lab.region(to)
    current = next(r for r in lab.regions if r.name != to)
    if postgres.is_writable(lab, current) is not True:
        raise LabError(f"{current.name} is not the writable primary: no switchover to do")
    if postgres.is_writable(lab, target) is not False:
        raise LabError(f"{to} is not a standby: resync it first")
    t_start = drill.event(FaultApplied(region=current.name, fault=Fault.SWITCHOVER)) \
        if drill.run else 0.0
    if settings.promotion.strategy != "runner":
        return _switchover_by_others(drill, target, current, timeout_s, t_start)
    driver = for_region(lab, current, drill.settings)
    progress = drill_state.read(lab.path) or DrillState()

    def stage(name: Stage) -> None:
        # each stage on disk first, so a rollback or `gameday recover` after an
        # interruption knows whether to undo the switchover or to complete it
        nonlocal progress
        progress = dataclasses.replace(progress, switchover=Switchover(
            to=to, from_region=current.name, stage=name))
        drill_state.write(lab.path, progress)

    stage(Stage.READ_ONLY)
    postgres.make_read_only(lab, current)
    drill.event(FaultEffective(region=current.name, fault=Fault.SWITCHOVER))
    replay_s = postgres.wait_replayed(lab, target, current, timeout_s, "replay the old primary")
    stage(Stage.STOPPING)
    driver.stop_database(current)
    stage(Stage.PROMOTING)
    promoted = _promote(drill, target, timeout_s)
    stage(Stage.PROMOTED)
    driver.start_standby(current, target)
    postgres.wait_replayed(lab, current, target, timeout_s, "follow the new primary")
    postgres.restore_replication_mode(lab, target)
    drill_state.clear(lab.path)
    switched = SwitchedOver(region=to, to=to, from_region=current.name,
                            replay_wait_s=round(replay_s, 3),
                            promotion_s=round(promoted["took_s"], 4))
    drill.event(switched)
    return {**switched.detail(), "t_start": t_start}


def _switchover_by_others(drill: Drill, target: Region, current: Region, timeout_s: float,
                          t_start: float) -> Dict[str, Any]:
    """The switchover as the system does it (an HA manager's switchover command, or on its
    own): gameday runs the command, then waits until `target` is the writable primary and
    the old primary streams from it again, so that the drill measures the whole of it."""
    promotion = drill.settings.promotion
    ran = None
    if promotion.strategy == "command":
        ran = _run_promotion_command(drill, target, "the switchover command")
    bound = max(timeout_s, promotion.timeout_s)
    said = f": the command said {ran['last_line']!r}" if ran and ran.get("last_line") else ""
    _await_writable(drill, target, bound, f"switchover {promotion.strategy}{said}")
    poll_until(lambda: postgres.streams_from(drill.lab, target, current), timeout_s=bound,
               interval_s=0.1,
               error=lambda _: TargetError(f"{current.name} does not stream from {target.name} "
                                           f"{bound:g} s after the switchover"))
    drill_state.clear(drill.lab.path)
    drill.event(SwitchedOver(region=target.name, to=target.name, from_region=current.name,
                             strategy=promotion.strategy))
    return {"to": target.name, "from_region": current.name, "strategy": promotion.strategy,
            "command": ran, "t_start": t_start}


@rollback
def ensure_writable_primary(configuration: Optional[Dict[str, Any]] = None,
                            secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Rollback of an interrupted switchover; see `restore_writable_primary`."""
    return recovery.restore_writable_primary(context.changing(configuration, secrets))


@step
def cut_replication(region: str = "region-2", hold_s: float = 1.0,
                    configuration: Optional[Dict[str, Any]] = None,
                    secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Cut the standby in `region` off its primary and hold it so for `hold_s` seconds:
    with asynchronous replication every write acknowledged meanwhile exists only on the
    primary, a known amount of data for a later outage to lose. Recorded in the fault
    ledger (rolled back by restore_region on `region`), and as a `replication-cut` event,
    not as the outage's fault."""
    drill = context.changing(configuration, secrets)
    lab = drill.lab
    target = lab.region(region)
    driver = for_region(lab, target, drill.settings)
    undo = driver.plan(Fault.REPLICATION_CUT, target)
    ledger = Ledger(lab.path)
    fault_id = ledger.plan(region, Fault.REPLICATION_CUT, undo)
    driver.inject(Fault.REPLICATION_CUT, target, undo)
    ledger.mark(fault_id, "applied")
    poll_until(lambda: driver.is_effective(Fault.REPLICATION_CUT, target, undo), timeout_s=10,
               interval_s=0.01,
               error=lambda _: TargetError(f"the replication path of {region} is still up"))
    t = drill.event(ReplicationCut(region=region, hold_s=hold_s)) if drill.run else None
    interrupt.pause(hold_s)
    return {"region": region, "cut_at": t, "hold_s": hold_s}
