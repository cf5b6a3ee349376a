"""The Chaos Toolkit control: the recorder runs with the experiment, and the report is
written when it ends.

Declared in the experiment as
    "controls": [{"name": "gameday", "provider": {"type": "python", "module": "gameday.control"}}]

It builds the drill's context once, in chaoslib's control lifecycle: `configure_control`
forgets anything an earlier run of this process left, `before_experiment_control` parses
the settings, loads the lab, starts the run and publishes them (gameday.drill.context) for
every activity of the run, and `cleanup_control` drops them.

It also fixes one Chaos Toolkit behaviour: a run whose steady state before the fault is not
met ends as `completed` with exit code 0. A game day that could not start has failed, so
the control marks it `failed` (exit 1); so does a run whose final verdict is `fail`.

And it guards the run: it holds the lab's drill lock from before it checks the lab until
the report is written (one drill per lab), turns `chaos run --dry` into plan mode before
anything else, fails closed (chaoslib would log an exception of a control and go on), and
leaves no fault behind unnoticed: a fault the ledger still holds at the end fails the
verdict.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from chaoslib.exceptions import InterruptExecution

from gameday.drill import context as drills
from gameday.drill import gate, hypothesis, preflight, recovery, watcher
from gameday.drill.context import Drill
from gameday.foundation import drill_state, interrupt, lock
from gameday.foundation.descriptor import Lab
from gameday.foundation.drill_state import DrillState
from gameday.foundation.errors import GamedayError
from gameday.foundation.events import (
    ExperimentEnded,
    ExperimentStarted,
    FaultApplied,
    FaultLeftBehind,
    GateFailed,
    GatePassed,
    Interrupted,
    Kind,
    Recovered,
    steady_state_not_met,
)
from gameday.foundation.ledger import Ledger
from gameday.foundation.settings import GamedaySettings
from gameday.measure import run as runs
from gameday.measure import summary as summaries
from gameday.measure.contract import Summary, Verdict
from gameday.measure.run import Run
from gameday.measure.store import timeline
from gameday.report import journal, live, outputs, trend

logger = logging.getLogger(f"chaostoolkit.{__name__}")

__all__ = ["configure_control", "cleanup_control", "before_experiment_control",
           "before_method_control", "after_method_control", "before_rollback_control",
           "before_hypothesis_control", "after_hypothesis_control",
           "before_activity_control", "after_activity_control", "after_experiment_control"]


class Status(StrEnum):
    """The journal's status of a run, as Chaos Toolkit writes it (`chaos run` exits 1
    unless it is completed)."""

    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class Phase(StrEnum):
    """Where this `chaos run` is: the control's hooks behave by it."""

    BEFORE = "before"
    METHOD = "method"
    ROLLBACK = "rollback"
    AFTER = "after"


@dataclasses.dataclass
class _Lifecycle:
    """The control's own state of one `chaos run`: its phase and, in plan mode, the
    `--dry` value (the drill's context is gameday.drill.context's)."""

    phase: Phase = Phase.BEFORE
    dry_mode: str | None = None


_now = _Lifecycle()


def _reset() -> None:
    global _now
    _now = _Lifecycle()
    drills.reset()


def _fails_closed(hook: Callable[..., None]) -> Callable[..., None]:
    """chaoslib logs a control's exception at DEBUG and goes on with the run: a control
    that crashed would let the drill go on unguarded (plan mode never entered, a gate never
    checked). Every exception of a hook wrapped so becomes InterruptExecution, one line
    (the traceback goes to the DEBUG log), and the run stops there."""

    @functools.wraps(hook)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except InterruptExecution:
            raise
        except GamedayError as exc:
            raise InterruptExecution(f"gameday: {exc}") from None
        except Exception as exc:
            logger.debug("gameday: the control failed", exc_info=True)
            raise InterruptExecution(f"gameday: the control failed ({type(exc).__name__}: "
                                     f"{exc}); stopping the drill") from exc

    return wrapper


def configure_control(experiment: dict[str, Any] | None = None,
                      configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """chaoslib's first call of a run: nothing of an earlier run of this process (a test
    session, a notebook) carries over. Never raises (chaoslib would only log it): what
    can be refused is refused by `before_experiment_control`, which fails closed."""
    _reset()


def cleanup_control() -> None:
    """chaoslib's last call of a run, after the report: the context goes with it."""
    _reset()
    lock.release_all()


@_fails_closed
def before_experiment_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                              secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    _reset()
    if _dry_mode(context):
        _plan_instead(context, configuration, secrets)
        return
    try:
        _start(context, configuration, secrets)
    except BaseException as exc:
        if drills.published() is None:
            # refused before it started: its rollbacks change nothing either
            drills.stand_down(refused=str(exc) or type(exc).__name__)
            lock.release_all()
        raise


def _start(experiment: dict[str, Any], configuration: dict[str, Any] | None,
           secrets: dict[str, Any] | None) -> None:
    settings = GamedaySettings.from_chaos(configuration, secrets)
    # the verdict tolerances judge against this run's targets (--var, var files)
    hypothesis.bind(experiment, configuration)
    lab = settings.load_lab()
    # one drill per lab, held until the report is written (after_experiment_control)
    lock.acquire(lab.path, what="a second drill")
    previous = preflight.check(experiment, settings, lab)
    run = runs.start(settings, lab, experiment=experiment.get("title", "game day"),
                     kind=settings.drill,
                     experiment_id=trend.experiment_identity(experiment,
                                                             settings.results.experiment_id),
                     game_day_run=previous)
    drills.publish(Drill(settings=settings, lab=lab, run=run))
    run.event(ExperimentStarted(experiment=experiment.get("title")))
    interrupt.install()
    live.start(run.dir, run.now, mode=settings.results.live_view,
               heartbeat_s=settings.results.live_heartbeat_s)
    _, target = lab.roles(settings.drill)
    watcher.watch(settings.stop, run, target=target.name, k=settings.k_consecutive)


def _dry_mode(experiment: Mapping[str, Any]) -> str | None:
    """`chaos run --dry actions|probes|activities`: chaoslib skips some activities, but a
    drill half run is worse than none (faults without a recorder, or a recorder writing
    canary rows for nothing). Every dry mode but `pause` is plan mode; an unknown value is
    plan mode too (fail closed). The mode, or None for a real run."""
    dry = experiment.get("dry")
    value = getattr(dry, "value", dry)
    if not value or value == "pause":
        return None
    return str(value)


def _runs_actions() -> bool:
    """In plan mode, whether Chaos Toolkit still runs actions: `--dry probes`, and any value
    it does not know (it compares with its own enum, so an unknown one runs everything)."""
    return _now.dry_mode is not None and _now.dry_mode not in ("actions", "activities")


def _plan_instead(experiment: dict[str, Any], configuration: dict[str, Any] | None,
                  secrets: dict[str, Any] | None) -> None:
    """Plan mode inside `chaos run --dry`: print the plan, start no recorder, and make our
    activities no-ops that return it; a refused plan interrupts the run (exit 1) before
    the first activity. The activities are no-ops from the first line on: a plan that
    cannot be made stops the run as refused, it never lets the drill run for real."""
    from gameday.drill import planning

    mode = _dry_mode(experiment)
    _now.dry_mode = mode
    drills.stand_down(plan={"refused": True, "refusals": ["plan mode could not be entered"],
                            "faults": [], "mode": mode})
    # `--dry probes` skips probes but runs actions: an action of another extension marked
    # as a gameday fault would inject for real, so the plan refuses it
    plan = planning.make(experiment, configuration, secrets, runs_actions=_runs_actions())
    for line in plan.render().splitlines():
        logger.info("gameday: %s", line)
    drills.stand_down(plan={**plan.as_dict(), "mode": mode})
    if plan.refused:
        raise InterruptExecution("gameday: the real run would refuse: " + "; ".join(plan.refusals))


def _running() -> tuple[Drill, Run] | None:
    """The drill and its run, when this `chaos run` started one."""
    drill = drills.published()
    if drill is None or drill.run is None:
        return None
    return drill, drill.run


@_fails_closed
def before_method_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                          secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """The readiness gate: no fault is injected unless the drill can measure what it is
    for. A failed gate interrupts the run (exit 1) before the method starts."""
    running = _running()
    if running is None:
        return
    drill, run = running
    problems = gate.check(drill.settings, drill.lab)
    if problems:
        run.event(GateFailed(reasons=problems))
        raise InterruptExecution("gameday: not ready for a fault: " + "; ".join(problems))
    run.event(GatePassed())
    _now.phase = Phase.METHOD


def before_hypothesis_control(context: dict[str, Any], **kwargs: Any) -> None:
    """The verdict probes of this evaluation of the steady state read the run once and
    judge that one snapshot (0.3 s of flush and a read of the canary rows per probe, paid
    three times before), so each says the same about the same moment."""
    drills.evaluation.start()


def after_hypothesis_control(context: dict[str, Any], **kwargs: Any) -> None:
    drills.evaluation.end()


def before_rollback_control(context: dict[str, Any], **kwargs: Any) -> None:
    """From here on a failure of ours must not stop Chaos Toolkit's rollbacks: an
    exception of a control in the rollback phase would end them."""
    _now.phase = Phase.ROLLBACK


def before_activity_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                            secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Fails closed like the other hooks, except before a rollback: nothing of ours may
    keep Chaos Toolkit from rolling back."""
    if _now.phase == Phase.ROLLBACK:
        try:
            _before_activity(context)
        except Exception:
            logger.exception("gameday: the control failed before a rollback; rolling back")
        return
    _fails_closed(_before_activity)(context)


def _before_activity(activity: dict[str, Any]) -> None:
    """A method action of any Chaos Toolkit extension marked as a fault
    (`"gameday": {"fault": true, "region": "region-1"}`) starts the fault's clock: the
    control records `fault-applied` as it starts, so t_fault exists for a chaosk8s,
    chaosaws or plain `process` fault. That it took effect is shown by the recorder's own
    evidence (the region's health check failing); undoing it stays its extension's job."""
    marker = activity.get("gameday") if isinstance(activity, dict) else None
    if not isinstance(marker, dict):
        return
    is_fault = bool(marker.get("fault")) and activity.get("type") == "action"
    if is_fault and _runs_actions() and _now.phase != Phase.ROLLBACK:
        # the plan refused it up front; a fault reached otherwise (a `ref`) stops here
        raise InterruptExecution(f"gameday: {activity.get('name')!r} is marked as a gameday "
                                 "fault and `--dry probes` runs actions: refused, nothing "
                                 "injected (`--dry actions` plans it)")
    if _now.phase != Phase.METHOD or not is_fault:
        return
    running = _running()
    if running is None:
        return
    provider = activity.get("provider") or {}
    where = provider.get("module") or provider.get("path") or provider.get("url")
    running[1].event(FaultApplied(region=str(marker.get("region") or "") or None,
                                  fault=str(activity.get("name") or "external fault"),
                                  external=True,
                                  provider=f"{provider.get('type')}: {where}".strip()))


def after_method_control(context: dict[str, Any], state: Any = None,
                         configuration: dict[str, Any] | None = None,
                         secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    _now.phase = Phase.AFTER
    watcher.halt()  # the method is over: the rollbacks are not to be interrupted


@_fails_closed
def after_activity_control(context: dict[str, Any], state: dict[str, Any] | None = None,
                           configuration: dict[str, Any] | None = None,
                           secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """A failed action of the method stops the drill. Chaos Toolkit would go on with the
    next action (a switchover after a failed resync would lose data); raised here, in the
    main thread and outside the activity, the interruption reaches the run loop, which
    then plays the rollbacks. Probes failing is a deviation, not an interruption."""
    if _now.phase != Phase.METHOD or not state or state.get("status") != "failed":
        return
    if context.get("type") != "action":
        return
    detail = (state.get("exception") or ["failed"])[-1].strip()
    detail = detail.rsplit("ActivityFailed: ", 1)[-1]
    raise InterruptExecution(f"gameday: {context.get('name')} failed, stopping the drill: {detail}")


def after_experiment_control(context: dict[str, Any], state: dict[str, Any],
                             configuration: dict[str, Any] | None = None,
                             secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """The report, and the end of the run's hold on the lab. Never raises (chaoslib would
    only log it): whatever goes wrong here marks the run failed."""
    try:
        _end(state)
    except Exception:
        # the control must never hide a failed drill behind a crashed report
        logger.exception("gameday: could not write the report")
        state["status"] = Status.FAILED
    finally:
        _reset()
        lock.release_all()


def _end(state: dict[str, Any]) -> None:
    standdown = drills.standdown()
    if standdown is not None and standdown.plan is not None:
        # the plan is the result of a dry run: in the journal, where a dry run's reader looks
        if standdown.plan.get("refused"):
            state["status"] = Status.FAILED
        journal.put(state, {"name": journal.NAME, "dry": True, "plan": dict(standdown.plan)})
        return
    running = _running()
    if running is None:
        if standdown is not None and standdown.refused is not None:
            state["status"] = Status.FAILED
        return
    drill, run = running
    try:
        steady = state.get("steady_states") or {}
        before = steady.get("before") or {}
        if run.events(Kind.GATE_FAILED):
            state["status"] = Status.FAILED
        for when in ("before", "after"):
            hypothesis_run = steady.get(when) or {}
            if hypothesis_run and not hypothesis_run.get("steady_state_met", True):
                run.event(steady_state_not_met(when, _failed_probes(hypothesis_run)))
        if interrupt.requested():
            # a run the user stopped did not complete, whatever it had measured so far
            run.event(Interrupted())
            if state.get("status") == Status.COMPLETED:
                state["status"] = Status.INTERRUPTED
        _leave_no_fault(drill, interrupted=interrupt.requested()
                        or state.get("status") == Status.INTERRUPTED)
        _forget_a_promotion_never_seen(drill.lab)
        if run.events(Kind.FAULT_LEFT_BEHIND) and state.get("status") == Status.COMPLETED:
            state["status"] = Status.FAILED
        run.event(ExperimentEnded(status=state.get("status")))
        # stop the canary first: the final read then sees every write it will ever see
        run.stop_recorder()
        try:
            summaries.snapshot_rows(run.dir, drill.lab, run.now(), live=False)
        except GamedayError as exc:
            logger.error("gameday: %s; lost writes stay unknown", exc)
        runs.prune_earlier_runs(run, drill.lab)  # after the final read, and only past the gate
        # also puts the numbers into the journal's extensions (state is the journal)
        summary = outputs.write_run_outputs(run.dir, state,
                                            pushgateway=drill.settings.results.pushgateway_url)
        live.stop(run.dir, summary)
        if drill.settings.drill == "failback":
            _attach_to_game_day(run.dir, summary["failback"])
        elif drill.lab.ha is not None and summary["promotion"]["observed_s"] is not None:
            _record_observed_promotion(drill.lab, run, summary)
        if before and not before.get("steady_state_met", True):
            state["status"] = Status.FAILED
            logger.error("gameday: the steady state before the fault was not met: no fault "
                         "was injected, the game day failed")
        if summary["verdict"] != Verdict.PASS and state.get("status") == Status.COMPLETED:
            state["status"] = Status.FAILED
        logger.info("gameday: verdict %s; report: %s", summary["verdict"].upper(),
                    run.dir / "report.md")
    finally:
        watcher.halt()
        live.stop(run.dir)
        run.stop_recorder()
        interrupt.rollbacks_done()


def _forget_a_promotion_never_seen(lab: Lab) -> None:
    """A drill stopped while it waited for a promotion nobody was asked to make (promotion
    `none`, no HA manager) leaves region-1 the primary: its record of the awaited region
    would only make the next drill's fence and failback act on a promotion that never
    happened."""
    state = drill_state.read(lab.path)
    if state is not None and state.awaiting and not state.promoted:
        drill_state.clear(lab.path)


def _leave_no_fault(drill: Drill, *, interrupted: bool) -> None:
    """No fault outlives a run unnoticed. After an interruption the rollbacks may not have
    finished: the control recovers as `gameday recover` does (every open fault reverted,
    one writable primary). Then, in every run, what the ledger still holds (a revert that
    failed, an experiment that leaves a fault on purpose to read the old primary) is
    recorded, the verdict fails with it and `gameday recover` is named."""
    if interrupted:
        try:
            result = recovery.recover(drill)
            if result.done:
                drill.event(Recovered(actions=result.done))
            for item in result.left:
                logger.error("gameday: after the interruption: %s", item)
        except GamedayError as exc:
            logger.error("gameday: recovery after the interruption failed: %s", exc)
    left = Ledger(drill.lab.path).unsettled()
    if left:
        drill.event(FaultLeftBehind(faults=left))
        logger.error("gameday: fault left behind: %s; fix the cause, then run `gameday "
                     "recover`", "; ".join(left))


def _record_observed_promotion(lab: Lab, run: Run, summary: Summary) -> None:
    """Under an HA manager no gameday step records the promotion: the recorder saw it, and
    the failback needs to know which game day it follows (one report covers both)."""
    anchor = datetime.fromisoformat(str(summary["started_at"]))
    applied = run.events(Kind.FAULT_APPLIED)
    t_fault = float(applied[0].t) if applied else 0.0
    at = anchor + timedelta(seconds=t_fault + float(summary["promotion"]["observed_s"] or 0.0))
    drill_state.write(lab.path, DrillState(
        promoted=lab.secondary.name, old_primary=lab.primary.name,
        promoted_at_utc=at.isoformat(), observed=True,
        strategy=summary["promotion"]["strategy"], game_day_run=str(run.dir)))


def _attach_to_game_day(failback_dir: Path, block: Mapping[str, Any] | None) -> None:
    """One report covers both drills: the failback's block is stored in the game day's
    timeline and the game day's report is rendered again with it."""
    game_day = timeline.read_meta(failback_dir).get("game_day_run")
    if not block or not game_day or not Path(game_day, timeline.FILE).exists():
        return
    timeline.write_meta(game_day, {"failback": block}, sort_keys=True)
    outputs.write_run_outputs(Path(game_day))  # `latest` now points at the report of both


def _failed_probes(hypothesis_run: dict[str, Any]) -> list[str]:
    return [p["activity"]["name"] for p in hypothesis_run.get("probes", [])
            if not p.get("tolerance_met", p.get("status") == "succeeded")]
