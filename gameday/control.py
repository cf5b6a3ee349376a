"""The Chaos Toolkit control: the recorder runs with the experiment, and the report is
written when it ends.

Declared in the experiment as
    "controls": [{"name": "gameday", "provider": {"type": "python", "module": "gameday.control"}}]

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

import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from chaoslib.exceptions import InterruptExecution

from gameday import hypothesis, interrupt, recovery, stopconditions
from gameday.errors import ConfigError, GamedayError
from gameday.labs import lock
from gameday.measure import run as runs
from gameday.report import journal, live, outputs, trend
from gameday.report import summary as summaries
from gameday.settings import GamedaySettings

logger = logging.getLogger(f"chaostoolkit.{__name__}")

__all__ = ["before_experiment_control", "before_method_control", "after_method_control",
           "before_rollback_control", "before_activity_control", "after_activity_control",
           "after_experiment_control"]


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


@_fails_closed
def before_experiment_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                              secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    _phase["name"] = "before"
    _dry["mode"] = None
    runs.set_refused(None)
    if _dry_mode(context):
        _plan_instead(context, configuration, secrets)
        return
    try:
        _start(context, configuration, secrets)
    except BaseException as exc:
        if runs.current() is None:
            # refused before it started: its rollbacks change nothing either
            runs.set_refused(str(exc) or type(exc).__name__)
            lock.release_all()
        raise


def _start(context: dict[str, Any], configuration: dict[str, Any] | None,
           secrets: dict[str, Any] | None) -> None:
    settings = GamedaySettings.from_chaos(configuration, secrets)
    # the verdict tolerances judge against this run's targets (--var, var files)
    hypothesis.bind(context, configuration)
    lab = settings.load_lab()
    # one drill per lab, held until the report is written (after_experiment_control)
    lock.acquire(lab.path, what="a second drill")
    previous = check_before_start(context, settings, lab, configuration)
    # failover moves service from the lab's primary to its secondary; failback back
    source, target = lab.primary, lab.secondary
    if settings.drill == "failback":
        source, target = lab.secondary, lab.primary
    run = runs.start(settings, lab, experiment=context.get("title", "game day"),
                     kind=settings.drill)
    conn = None
    try:
        from gameday.measure import timeline

        conn = timeline.connect(run.dir)
        extra = {
            "targets": {"rto_s": settings.targets.rto_s, "rpo_s": settings.targets.rpo_s,
                        "max_lost_writes": settings.targets.max_lost_writes},
            "k_consecutive": settings.k_consecutive,
            "regions": {
                role: {"name": r.name, "address": r.address, "db_host": r.db_host}
                for role, r in (("primary", source), ("secondary", target))
            },
            "drill": settings.drill,
            "experiment_id": trend.experiment_identity(context, settings.results.experiment_id),
            "game_day_run": previous,
            "replication": lab.database.replication,
            "promotion": {"strategy": settings.promotion.strategy,
                          "command": list(settings.promotion.command)},
            "ha": _ha_meta(lab),
            "configuration": {
                "dns_ttl_s": lab.dns.ttl_s, "health_interval_s": lab.dns.health_interval_s,
                "inter_region_delay_ms": lab.inter_region_delay_ms,
                "replication": lab.database.replication,
                "canary_writers": settings.rates.canary_writers,
                "k_consecutive": settings.k_consecutive,
                "http_interval_s": settings.rates.http_s,
                "dns_interval_s": settings.rates.dns_s,
                "replication_interval_s": settings.rates.replication_s,
                "health_failures": 1,
                "health_timeout_s": 1.0,
                "promotion": settings.promotion.strategy,
                "promotion_budget_s": settings.budget.promotion_s,
                "write_reconnect_s": settings.budget.write_reconnect_s,
                "regression_factor": settings.results.regression_factor,
                **({"ha_manager": lab.ha.manager, "ha_ttl_s": lab.ha.ttl_s,
                    "ha_loop_wait_s": lab.ha.loop_wait_s,
                    "ha_retry_timeout_s": lab.ha.retry_timeout_s} if lab.ha else {}),
                # only when capped: the configuration of other runs stays as it was
                **({"canary_max_rate": settings.rates.canary_max_rate}
                   if settings.rates.canary_max_rate else {}),
            },
        }
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                         [(k, json.dumps(v)) for k, v in extra.items()])
    finally:
        if conn is not None:
            conn.close()
    _phase["name"] = "before"
    run.event("experiment-started", experiment=context.get("title"))
    interrupt.install()
    live.start(run.dir, run.now, mode=settings.results.live_view,
               heartbeat_s=settings.results.live_heartbeat_s)
    stopconditions.watch(settings.stop, run, target=target.name, k=settings.k_consecutive)


def check_before_start(experiment: Mapping[str, Any], settings: GamedaySettings, lab: Any,
                       configuration: Mapping[str, Any] | None) -> str | None:
    """Every refusal before anything starts, read-only (the run and `gameday plan` share
    it): fault markers, the promotion strategy, what runs against the descriptor, and for
    a failback its precondition. Returns the game day a failback follows."""
    _check_fault_markers(dict(experiment), lab)
    _check_promotion(settings, lab)
    if lab.lab == "netns" and lab.state_dir:
        from gameday.labs.netns.lab import verify_running

        verify_running(lab.state_dir, ha=lab.ha is not None)
    if settings.drill == "failback":
        return _failback_precondition(lab, settings, configuration)
    return None


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


# what this `chaos run` is: its phase ("before", "method", "rollback", "after") and, in
# plan mode, the `--dry` value (module state: the control's hooks are plain functions)
_phase: dict[str, str] = {"name": "before"}
_dry: dict[str, str | None] = {"mode": None}


def _runs_actions() -> bool:
    """In plan mode, whether Chaos Toolkit still runs actions: `--dry probes`, and any value
    it does not know (it compares with its own enum, so an unknown one runs everything)."""
    return _dry["mode"] is not None and _dry["mode"] not in ("actions", "activities")


def _plan_instead(experiment: dict[str, Any], configuration: dict[str, Any] | None,
                  secrets: dict[str, Any] | None) -> None:
    """Plan mode inside `chaos run --dry`: print the plan, start no recorder, and make our
    activities no-ops that return it; a refused plan interrupts the run (exit 1) before
    the first activity. The activities are no-ops from the first line on: a plan that
    cannot be made stops the run as refused, it never lets the drill run for real."""
    from gameday import planning

    mode = _dry_mode(experiment)
    _dry["mode"] = mode
    runs.set_dry({"refused": True, "refusals": ["plan mode could not be entered"],
                  "faults": [], "mode": mode})
    # `--dry probes` skips probes but runs actions: an action of another extension marked
    # as a gameday fault would inject for real, so the plan refuses it
    plan = planning.make(experiment, configuration, secrets, runs_actions=_runs_actions())
    for line in plan.render().splitlines():
        logger.info("gameday: %s", line)
    runs.set_dry({**plan.as_dict(), "mode": mode})
    if plan.refused:
        raise InterruptExecution("gameday: the real run would refuse: " + "; ".join(plan.refusals))


@_fails_closed
def before_method_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                          secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """The readiness gate: no fault is injected unless the drill can measure what it is
    for. A failed gate interrupts the run (exit 1) before the method starts."""
    run = runs.current()
    if run is None:
        return
    from gameday.probes import gate

    problems = gate.check(configuration, secrets)
    if problems:
        run.event("gate-failed", reasons=problems)
        raise InterruptExecution("gameday: not ready for a fault: " + "; ".join(problems))
    run.event("gate-passed")
    _phase["name"] = "method"


def before_rollback_control(context: dict[str, Any], **kwargs: Any) -> None:
    """From here on a failure of ours must not stop Chaos Toolkit's rollbacks: an
    exception of a control in the rollback phase would end them."""
    _phase["name"] = "rollback"


def before_activity_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                            secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Fails closed like the other hooks, except before a rollback: nothing of ours may
    keep Chaos Toolkit from rolling back."""
    if _phase["name"] == "rollback":
        try:
            _before_activity(context)
        except Exception:
            logger.exception("gameday: the control failed before a rollback; rolling back")
        return
    _fails_closed(_before_activity)(context)


def _before_activity(context: dict[str, Any]) -> None:
    """A method action of any Chaos Toolkit extension marked as a fault
    (`"gameday": {"fault": true, "region": "region-1"}`) starts the fault's clock: the
    control records `fault-applied` as it starts, so t_fault exists for a chaosk8s,
    chaosaws or plain `process` fault. That it took effect is shown by the recorder's own
    evidence (the region's health check failing); undoing it stays its extension's job."""
    marker = context.get("gameday") if isinstance(context, dict) else None
    if not isinstance(marker, dict):
        return
    is_fault = bool(marker.get("fault")) and context.get("type") == "action"
    if is_fault and _runs_actions() and _phase["name"] != "rollback":
        # the plan refused it up front; a fault reached otherwise (a `ref`) stops here
        raise InterruptExecution(f"gameday: {context.get('name')!r} is marked as a gameday "
                                 "fault and `--dry probes` runs actions: refused, nothing "
                                 "injected (`--dry actions` plans it)")
    if _phase["name"] != "method" or not is_fault:
        return
    run = runs.current()
    if run is None:
        return
    provider = context.get("provider") or {}
    where = provider.get("module") or provider.get("path") or provider.get("url")
    run.event("fault-applied", str(marker.get("region") or "") or None,
              fault=str(context.get("name") or "external fault"), external=True,
              provider=f"{provider.get('type')}: {where}".strip())


def after_method_control(context: dict[str, Any], state: Any = None,
                         configuration: dict[str, Any] | None = None,
                         secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    _phase["name"] = "after"
    stopconditions.halt()  # the method is over: the rollbacks are not to be interrupted


@_fails_closed
def after_activity_control(context: dict[str, Any], state: dict[str, Any] | None = None,
                           configuration: dict[str, Any] | None = None,
                           secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """A failed action of the method stops the drill. Chaos Toolkit would go on with the
    next action (a switchover after a failed resync would lose data); raised here, in the
    main thread and outside the activity, the interruption reaches the run loop, which
    then plays the rollbacks. Probes failing is a deviation, not an interruption."""
    if _phase["name"] != "method" or not state or state.get("status") != "failed":
        return
    if context.get("type") != "action":
        return
    detail = (state.get("exception") or ["failed"])[-1].strip()
    detail = detail.rsplit("ActivityFailed: ", 1)[-1]
    raise InterruptExecution(f"gameday: {context.get('name')} failed, stopping the drill: {detail}")


def _check_fault_markers(experiment: dict[str, Any], lab: Any) -> None:
    """A method action marked as a fault must name a region of the descriptor: checked
    before anything starts, so a typo injects nothing."""
    for activity in experiment.get("method") or []:
        marker = activity.get("gameday") if isinstance(activity, dict) else None
        if marker is None:
            continue
        name = activity.get("name")
        if not isinstance(marker, dict) or not isinstance(marker.get("fault", False), bool):
            raise ConfigError(f"activity {name!r}: 'gameday' must be an object like "
                              '{"fault": true, "region": "region-1"}')
        if marker.get("fault"):
            if activity.get("type") != "action":
                raise ConfigError(f"activity {name!r}: only an action can be marked as a fault")
            lab.region(str(marker.get("region") or ""))


def _check_promotion(settings: GamedaySettings, lab: Any) -> None:
    """Under an HA manager gameday must not promote or switch over by SQL behind its back
    (two writable primaries, or a manager fighting the drill): refused up front."""
    if lab.ha is not None and settings.promotion.strategy == "runner":
        raise ConfigError(f"this lab's databases are run by {lab.ha.manager}: gameday will not "
                          "promote behind its back; set configuration 'promotion' to 'none' "
                          "(the manager promotes) or 'command' (your runbook's command), e.g. "
                          "experiments/game-day-autonomous.json")


def _ha_meta(lab: Any) -> dict[str, Any] | None:
    """What the report needs to know about the HA manager (never its command environment,
    which may hold credentials)."""
    if lab.ha is None:
        return None
    return {"manager": lab.ha.manager, "scope": lab.ha.scope, "ttl_s": lab.ha.ttl_s,
            "loop_wait_s": lab.ha.loop_wait_s, "retry_timeout_s": lab.ha.retry_timeout_s,
            "maximum_lag_on_failover": lab.ha.maximum_lag_on_failover,
            "leader_key": lab.ha.leader_key if lab.ha.dcs else None}


def _failback_precondition(lab: Any, settings: GamedaySettings,
                           configuration: Mapping[str, Any] | None) -> str | None:
    """Failback needs a game day behind it: the secondary promoted and serving. Checked
    before anything starts, so a wrong call changes nothing."""
    from gameday.errors import LabError
    from gameday.labs import drill, ledger
    from gameday.postgres import is_writable

    state = drill.read(lab.path)
    if lab.ha is not None:
        # the HA manager promoted, not gameday: the secondary serving is the evidence
        if is_writable(lab, lab.secondary) is not True:
            raise LabError(f"{lab.secondary.name} is not the writable primary: nothing to fail "
                           "back from (run experiments/game-day-autonomous.json first)")
        if ledger.Ledger(lab.path).unsettled():
            raise LabError("faults of the game day were never rolled back: run "
                           "`gameday recover` first")
        return (state or {}).get("game_day_run")
    from gameday.labs.driver import for_region

    if settings.promotion.strategy == "runner":
        # gameday's own resync and switchover stop, rewind and start databases
        for region in lab.regions:
            reason = for_region(lab, region, configuration).failback_unsupported(region)
            if reason:
                raise LabError(reason)
    if state is None or state.get("promoted") != lab.secondary.name:
        raise LabError(f"no game day ran ({lab.secondary.name} was not promoted by one): "
                       "run experiments/game-day.json first")
    if is_writable(lab, lab.secondary) is not True:
        raise LabError(f"{lab.secondary.name} is not the writable primary: nothing to fail back from")
    if ledger.Ledger(lab.path).unsettled():
        raise LabError("faults of the game day were never rolled back: run `gameday recover` first")
    return state.get("game_day_run")


def after_experiment_control(context: dict[str, Any], state: dict[str, Any],
                             configuration: dict[str, Any] | None = None,
                             secrets: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """The report, and the end of the run's hold on the lab. Never raises (chaoslib would
    only log it): whatever goes wrong here marks the run failed."""
    try:
        _end(state, configuration, secrets)
    except Exception:
        # the control must never hide a failed drill behind a crashed report
        logger.exception("gameday: could not write the report")
        state["status"] = "failed"
    finally:
        runs.set_dry(None)
        runs.set_refused(None)
        _dry["mode"] = None
        _phase["name"] = "before"
        lock.release_all()


def _end(state: dict[str, Any], configuration: dict[str, Any] | None,
         secrets: dict[str, Any] | None) -> None:
    dry = runs.dry_plan()
    if dry is not None:
        # the plan is the result of a dry run: in the journal, where a dry run's reader looks
        if dry.get("refused"):
            state["status"] = "failed"
        journal.put(state, {"name": journal.NAME, "dry": True, "plan": dry})
        return
    run = runs.current()
    if run is None:
        if runs.refused() is not None:
            state["status"] = "failed"
        return
    try:
        steady = state.get("steady_states") or {}
        before = steady.get("before") or {}
        if run.events("gate-failed"):
            state["status"] = "failed"
        for when in ("before", "after"):
            hypothesis = steady.get(when) or {}
            if hypothesis and not hypothesis.get("steady_state_met", True):
                run.event(f"steady-state-{when}-not-met", probes=_failed_probes(hypothesis))
        settings = GamedaySettings.from_chaos(configuration, secrets)
        lab = settings.load_lab()
        if interrupt.requested():
            # a run the user stopped did not complete, whatever it had measured so far
            run.event("interrupted")
            if state.get("status") == "completed":
                state["status"] = "interrupted"
        _leave_no_fault(run, lab, configuration,
                        interrupted=interrupt.requested() or state.get("status") == "interrupted")
        if run.events("fault-left-behind") and state.get("status") == "completed":
            state["status"] = "failed"
        run.event("experiment-ended", status=state.get("status"))
        # stop the canary first: the final read then sees every write it will ever see
        run.stop_recorder()
        try:
            summaries.snapshot_rows(run.dir, lab, run.now(), live=False)
        except GamedayError as exc:
            logger.error("gameday: %s; lost writes stay unknown", exc)
        runs.prune_earlier_runs(run, lab)  # after the final read, and only past the gate
        # also puts the numbers into the journal's extensions (state is the journal)
        summary = outputs.write_run_outputs(run.dir, state,
                                            pushgateway=settings.results.pushgateway_url)
        live.stop(run.dir, summary)
        if settings.drill == "failback":
            _attach_to_game_day(run.dir, summary["failback"])
        elif lab.ha is not None and summary["promotion"]["observed_s"] is not None:
            _record_observed_promotion(lab, run, summary)
        if before and not before.get("steady_state_met", True):
            state["status"] = "failed"
            logger.error("gameday: the steady state before the fault was not met: no fault "
                         "was injected, the game day failed")
        if summary["verdict"] != "pass" and state.get("status") == "completed":
            state["status"] = "failed"
        logger.info("gameday: verdict %s; report: %s", summary["verdict"].upper(),
                    run.dir / "report.md")
    finally:
        stopconditions.halt()
        live.stop(run.dir)
        run.stop_recorder()
        runs.clear()
        interrupt.rollbacks_done()


def _leave_no_fault(run: Any, lab: Any, configuration: Mapping[str, Any] | None, *,
                    interrupted: bool) -> None:
    """No fault outlives a run unnoticed. After an interruption the rollbacks may not have
    finished: the control recovers as `gameday recover` does (every open fault reverted,
    one writable primary). Then, in every run, what the ledger still holds (a revert that
    failed, an experiment that leaves a fault on purpose to read the old primary) is
    recorded, the verdict fails with it and `gameday recover` is named."""
    from gameday.labs.ledger import Ledger

    if interrupted:
        try:
            result = recovery.recover(lab.path, configuration, lab=lab)
            if result.done:
                run.event("recovered", actions=result.done)
            for item in result.left:
                logger.error("gameday: after the interruption: %s", item)
        except GamedayError as exc:
            logger.error("gameday: recovery after the interruption failed: %s", exc)
    left = Ledger(lab.path).unsettled()
    if left:
        run.event("fault-left-behind", faults=left)
        logger.error("gameday: fault left behind: %s; fix the cause, then run `gameday "
                     "recover`", "; ".join(left))


def _record_observed_promotion(lab: Any, run: Any, summary: Mapping[str, Any]) -> None:
    """Under an HA manager no gameday step records the promotion: the recorder saw it, and
    the failback needs to know which game day it follows (one report covers both)."""
    from datetime import datetime, timedelta

    from gameday.labs import drill

    anchor = datetime.fromisoformat(str(summary["started_at"]))
    t_fault = metrics_fault_time(run)
    at = anchor + timedelta(seconds=(t_fault or 0.0) + float(summary["promotion"]["observed_s"]))
    drill.write(lab.path, {"promoted": lab.secondary.name, "old_primary": lab.primary.name,
                           "promoted_at_utc": at.isoformat(), "observed": True,
                           "strategy": summary["promotion"]["strategy"],
                           "game_day_run": str(run.dir)})


def metrics_fault_time(run: Any) -> float | None:
    applied = run.events("fault-applied")
    return float(applied[0].t) if applied else None


def _attach_to_game_day(failback_dir: Any, block: Mapping[str, Any] | None) -> None:
    """One report covers both drills: the failback's block is stored in the game day's
    timeline and the game day's report is rendered again with it."""
    from pathlib import Path

    from gameday.measure import timeline

    game_day = timeline.read_meta(failback_dir).get("game_day_run")
    if not block or not game_day or not Path(game_day, timeline.FILE).exists():
        return
    conn = timeline.connect(game_day)
    try:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                     ("failback", json.dumps(block, sort_keys=True)))
    finally:
        conn.close()
    outputs.write_run_outputs(Path(game_day))  # `latest` now points at the report of both


def _failed_probes(hypothesis: dict[str, Any]) -> list[str]:
    return [p["activity"]["name"] for p in hypothesis.get("probes", [])
            if not p.get("tolerance_met", p.get("status") == "succeeded")]
