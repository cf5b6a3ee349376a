"""Database promotion, split-brain accounting, resync and planned switchover.

The SQL lives in gameday.postgres (promotion is timed there with a write loop, not with
the promote call's return); stopping, rewinding and starting a database is the lab
driver's; putting the lab back after an interruption is gameday.recovery's. What stays
here is the drill's order of steps and the record each leaves on disk first.
"""

import logging
import time
from datetime import UTC, datetime
from typing import Any, Dict, Optional

from gameday import interrupt, postgres, recovery
from gameday.actions import _runbook
from gameday.actions._common import changing, context, rollback, step
from gameday.errors import ConfigError, LabError, TargetError
from gameday.labs import drill
from gameday.labs.descriptor import Lab, Region
from gameday.labs.driver import for_region
from gameday.measure import run as runs
from gameday.poll import poll_until
from gameday.settings import GamedaySettings

__all__ = ["promote", "count_split_brain", "resync", "switchover", "ensure_writable_primary",
           "cut_replication"]

logger = logging.getLogger(f"chaostoolkit.{__name__}")


def refuse_runner_behind_manager(settings: GamedaySettings, lab: Lab) -> None:
    """Under an HA manager gameday must not promote or switch over by SQL behind its back
    (two writable primaries, or a manager fighting the drill). The control refuses such a
    run up front; the steps refuse too, whoever calls them."""
    if lab.ha is not None and settings.promotion.strategy == "runner":
        raise ConfigError(f"this lab's databases are run by {lab.ha.manager}: gameday will not "
                          "promote behind its back; set configuration 'promotion' to 'none' "
                          "(the manager promotes) or 'command' (your runbook's command), e.g. "
                          "experiments/game-day-autonomous.json")


def _promote(lab: Lab, target: Region, timeout_s: float) -> Dict[str, Any]:
    """postgres.promote with the run's events: `promote-requested` at once (an interrupted
    run must leave that trace), `promoted` at the first accepted write."""
    run = runs.current()
    clock = run.now if run else time.monotonic

    def requested(t: float) -> None:
        if run:
            run.event("promote-requested", target.name, t=t)

    p = postgres.promote(lab, target, timeout_s, clock=clock, on_requested=requested)
    if run:
        run.event("promoted", target.name, t=p.writable, error_s=p.error_s,
                  took_s=round(p.took_s, 4))
    logger.info("gameday: %s promoted, writable %.0f ms after the request", target.name,
                p.took_s * 1000)
    return {"region": target.name, "requested": p.requested, "writable": p.writable,
            "took_s": p.took_s, "timeline": p.timeline, "writable_utc": p.writable_utc}


def _run_promotion_command(lab: Lab, settings: GamedaySettings, target: Region,
                           what: str) -> Dict[str, Any]:
    """The operator's command, its output in the timeline whether it worked or not."""
    run = runs.current()
    if run:
        run.event("promote-requested", target.name, strategy="command")
    env = dict(lab.ha.command_env) if lab.ha else {}
    ran = _runbook.run(settings.promotion.command, timeout_s=settings.promotion.timeout_s,
                       env=env)
    if run:
        run.event("promotion-command", target.name, argv=list(ran.argv),
                  returncode=ran.returncode, took_s=ran.took_s, output=ran.output)
    _runbook.check(ran, timeout_s=settings.promotion.timeout_s, what=what)
    last = ran.output.strip().splitlines()[-1] if ran.output.strip() else ""
    return {"argv": list(ran.argv), "returncode": ran.returncode, "took_s": ran.took_s,
            "last_line": last}


def _await_writable(lab: Lab, target: Region, timeout_s: float, who: str) -> float:
    """Until `target` answers as a writable primary; the instant the runner saw it (the
    recorder's samplers see it independently, and theirs is the measured one)."""
    run = runs.current()
    clock = run.now if run else time.monotonic
    poll_until(lambda: postgres.is_writable(lab, target) is True, timeout_s=timeout_s,
               interval_s=0.02,
               error=lambda _: TargetError(f"{target.name} did not become a writable primary "
                                           f"within {timeout_s:g} s ({who})"))
    return clock()


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
    settings, lab = changing(configuration, secrets)
    refuse_runner_behind_manager(settings, lab)
    target = lab.region(region)
    strategy = settings.promotion.strategy
    if strategy != "none":
        for other in lab.regions:
            if other.name != region and postgres.is_writable(lab, other) is True:
                raise LabError(f"{other.name} still accepts writes: promoting {region} now "
                               "would make two writable primaries (did the outage not take "
                               "it down?)")
    run = runs.current()
    state = {
        "promoted": region,
        "old_primary": next(r.name for r in lab.regions if r.name != region),
        "promoted_at_utc": datetime.now(UTC).isoformat(),
        "timeline": None,
        "strategy": strategy,
        "game_day_run": str(run.dir) if run else None,
    }
    # written before the promotion is requested: a run interrupted half-way must still
    # leave failback (and `gameday recover`) the record that a promotion may have happened
    drill.write(lab.path, state)
    if strategy == "runner":
        result = _promote(lab, target, timeout_s)
        drill.write(lab.path, {**state, "promoted_at_utc": result["writable_utc"],
                               "timeline": result["timeline"]})
        return {**result, "strategy": strategy}
    ran = None
    if strategy == "command":
        ran = _run_promotion_command(lab, settings, target, "the promotion command")
    said = f": the command said {ran['last_line']!r}" if ran and ran.get("last_line") else ""
    seen = _await_writable(lab, target, max(timeout_s, settings.promotion.timeout_s),
                           f"promotion {strategy}{said}")
    drill.write(lab.path, {**state, "promoted_at_utc": datetime.now(UTC).isoformat()})
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
    _, lab = context(configuration, secrets)
    state = drill.read(lab.path)
    if not state or state.get("promoted") != new_primary:
        raise LabError(f"no game day promoted {new_primary}: run experiments/game-day.json first")
    promoted_at = datetime.fromisoformat(state["promoted_at_utc"])
    old, new = lab.region(old_primary), lab.region(new_primary)
    old_rows = postgres.canary_rows(lab, old, "read its canary rows")
    new_seqs = {r[0] for r in postgres.canary_rows(lab, new, "read its canary rows")}
    only_old = [(seq, at) for seq, at in old_rows if seq not in new_seqs]
    split = sorted(at for _, at in only_old if at > promoted_at)
    unreplicated = sum(1 for _, at in only_old if at <= promoted_at)
    result = {
        "old_primary": old_primary, "split_brain_writes": len(split),
        "unreplicated_writes": unreplicated,
        "window_utc": [split[0].isoformat(), split[-1].isoformat()] if split else None,
        "promoted_at_utc": state["promoted_at_utc"],
    }
    run = runs.current()
    if run:
        run.event("split-brain-counted", old_primary, **result)
    logger.info("gameday: %d split-brain writes on %s, %d never replicated", len(split),
                old_primary, unreplicated)
    return result


@step
def resync(region: str = "region-1", source: str = "region-2", timeout_s: float = 300.0,
           configuration: Optional[Dict[str, Any]] = None,
           secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Turn the old primary `region` into a streaming standby of `source`: stop it, rewind
    it onto the source's timeline (pg_rewind after a CHECKPOINT on the source; a fresh base
    backup when rewind fails), start it as a standby and wait until it has replayed
    everything the source had written (bounded by `timeout_s`)."""
    _, lab = changing(configuration, secrets)
    target, upstream = lab.region(region), lab.region(source)
    if postgres.is_writable(lab, upstream) is not True:
        raise LabError(f"{source} is not the writable primary: nothing to resync from "
                       "(run experiments/game-day.json first)")
    driver = for_region(lab, target, configuration)
    run = runs.current()
    started = time.monotonic()
    postgres.checkpoint(lab, upstream)
    driver.stop_database(target)
    method = driver.resync_database(target, upstream)
    driver.start_standby(target, upstream)
    copied_s = time.monotonic() - started
    catch_up_s = postgres.wait_replayed(lab, target, upstream, timeout_s, "catch up")
    result: Dict[str, Any] = {"standby": region, "source": source, "method": method,
                              "resync_s": round(copied_s, 3),
                              "catch_up_s": round(catch_up_s, 3)}
    if run:
        run.event("resynced", region, **result)
    logger.info("gameday: %s resynced from %s by %s in %.1f s, caught up in %.2f s", region,
                source, method, copied_s, catch_up_s)
    return result


@step
def switchover(to: str = "region-1", timeout_s: float = 60.0,
               configuration: Optional[Dict[str, Any]] = None,
               secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Planned switchover to `to`, with zero loss: make the current primary read-only (its
    clients are disconnected and may not write again), wait until `to` has replayed all of
    it, stop it (its shutdown checkpoint reaches the standby), promote `to`, and restart the
    old primary as a standby of `to`."""
    settings, lab = changing(configuration, secrets)
    refuse_runner_behind_manager(settings, lab)
    target = lab.region(to)
    current = next(r for r in lab.regions if r.name != to)
    if postgres.is_writable(lab, current) is not True:
        raise LabError(f"{current.name} is not the writable primary: no switchover to do")
    if postgres.is_writable(lab, target) is not False:
        raise LabError(f"{to} is not a standby: resync it first")
    run = runs.current()
    t_start = run.event("fault-applied", current.name, fault="switchover") if run else 0.0
    if settings.promotion.strategy != "runner":
        return _switchover_by_others(lab, settings, target, current, timeout_s, t_start)
    driver = for_region(lab, current, configuration)
    progress = {**(drill.read(lab.path) or {}), "switchover": {"to": to, "from": current.name}}

    def stage(name: str) -> None:
        # each stage on disk first, so a rollback or `gameday recover` after an
        # interruption knows whether to undo the switchover or to complete it
        progress["switchover"]["stage"] = name
        drill.write(lab.path, progress)

    stage("read-only")
    postgres.make_read_only(lab, current)
    if run:
        run.event("fault-effective", current.name, fault="switchover")
    replay_s = postgres.wait_replayed(lab, target, current, timeout_s, "replay the old primary")
    stage("stopping")
    driver.stop_database(current)
    stage("promoting")
    promoted = _promote(lab, target, timeout_s)
    stage("promoted")
    driver.start_standby(current, target)
    postgres.wait_replayed(lab, current, target, timeout_s, "follow the new primary")
    postgres.restore_replication_mode(lab, target)
    drill.clear(lab.path)
    result: Dict[str, Any] = {"to": to, "from_region": current.name,
                              "replay_wait_s": round(replay_s, 3),
                              "promotion_s": round(promoted["took_s"], 4), "t_start": t_start}
    if run:
        run.event("switched-over", to, **{k: v for k, v in result.items() if k != "t_start"})
    return result


def _switchover_by_others(lab: Lab, settings: GamedaySettings, target: Region,
                          current: Region, timeout_s: float, t_start: float) -> Dict[str, Any]:
    """The switchover as the system does it (an HA manager's switchover command, or on its
    own): gameday runs the command, then waits until `target` is the writable primary and
    the old primary streams from it again, so that the drill measures the whole of it."""
    run = runs.current()
    ran = None
    if settings.promotion.strategy == "command":
        ran = _run_promotion_command(lab, settings, target, "the switchover command")
    bound = max(timeout_s, settings.promotion.timeout_s)
    said = f": the command said {ran['last_line']!r}" if ran and ran.get("last_line") else ""
    _await_writable(lab, target, bound, f"switchover {settings.promotion.strategy}{said}")
    poll_until(lambda: postgres.streams_from(lab, target, current), timeout_s=bound,
               interval_s=0.1,
               error=lambda _: TargetError(f"{current.name} does not stream from {target.name} "
                                           f"{bound:g} s after the switchover"))
    drill.clear(lab.path)
    result: Dict[str, Any] = {"to": target.name, "from_region": current.name,
                              "strategy": settings.promotion.strategy, "command": ran,
                              "t_start": t_start}
    if run:
        run.event("switched-over", target.name, to=target.name, from_region=current.name,
                  strategy=settings.promotion.strategy)
    return result


@rollback
def ensure_writable_primary(configuration: Optional[Dict[str, Any]] = None,
                            secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Rollback of an interrupted switchover; see `restore_writable_primary`."""
    _, lab = changing(configuration, secrets)
    return recovery.restore_writable_primary(lab, configuration)


@step
def cut_replication(region: str = "region-2", hold_s: float = 1.0,
                    configuration: Optional[Dict[str, Any]] = None,
                    secrets: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Cut the standby in `region` off its primary and hold it so for `hold_s` seconds:
    with asynchronous replication every write acknowledged meanwhile exists only on the
    primary, a known amount of data for a later outage to lose. Recorded in the fault
    ledger (rolled back by restore_region on `region`), and as a `replication-cut` event,
    not as the outage's fault."""
    from gameday.labs.ledger import Ledger

    _, lab = changing(configuration, secrets)
    target = lab.region(region)
    driver = for_region(lab, target, configuration)
    undo = driver.plan("replication-cut", target)
    ledger = Ledger(lab.path)
    fault_id = ledger.plan(region, "replication-cut", undo)
    run = runs.current()
    driver.inject("replication-cut", target, undo)
    ledger.mark(fault_id, "applied")
    poll_until(lambda: driver.is_effective("replication-cut", target, undo), timeout_s=10,
               interval_s=0.01,
               error=lambda _: TargetError(f"the replication path of {region} is still up"))
    t = run.event("replication-cut", region, hold_s=hold_s) if run else None
    interrupt.pause(hold_s)
    return {"region": region, "cut_at": t, "hold_s": hold_s}
