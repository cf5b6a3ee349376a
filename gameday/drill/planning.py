"""Plan mode: what a drill would do, without doing it (`gameday plan EXPERIMENT`, and
`chaos run --dry ...` through the control).

A game day is safe to start only when someone can see what it will change first. The plan
runs every check the real run makes before its first fault, read-only: the descriptor and
its guards (promotion strategy, fault markers, the kube-context allow-list, faults never
rolled back), what runs against the descriptor, and the readiness gate (health checks, DNS
answers, the standby streaming: SQL reads and HTTP/DNS queries only). Then it asks each
fault's driver for its plan (`Driver.plan()`, the undo record the real run would write to
the ledger first) and says what the fault changes and how that is undone. It starts no
recorder, so no canary row is written, injects nothing and writes no ledger entry.
Everything the real run would refuse is a refusal here, and the command exits non-zero.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from chaoslib import substitute

from gameday.drill import gate as readiness
from gameday.drill import hypothesis, preflight
from gameday.foundation import lock
from gameday.foundation.descriptor import Lab
from gameday.foundation.driver import for_region
from gameday.foundation.errors import ConfigError, GamedayError
from gameday.foundation.faults import DEFAULT_REGION_FAULTS, Fault, region_faults
from gameday.foundation.ledger import Ledger
from gameday.foundation.settings import GamedaySettings


@dataclasses.dataclass(kw_only=True)
class Plan:
    experiment: str
    descriptor: str = ""
    lab: str = ""
    drill: str = "failover"
    targets: dict[str, float] = dataclasses.field(default_factory=dict)
    checks: list[str] = dataclasses.field(default_factory=list)
    faults: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    steps: list[str] = dataclasses.field(default_factory=list)
    refusals: list[str] = dataclasses.field(default_factory=list)

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "refused": self.refused}

    def render(self) -> str:
        """What a person reads before a drill: checks, each fault's change and undo, the
        steps, and the verdict of the plan."""
        out = [f"plan: {self.experiment}",
               f"lab: {self.lab or '?'} ({self.descriptor}), drill: {self.drill}",
               "targets: " + ", ".join(f"{k}={v:g}" for k, v in self.targets.items())]
        out += [f"check: {c}" for c in self.checks]
        for f in self.faults:
            head = f"fault {f['fault']} on {f['region']}"
            if not f["applicable"]:
                out.append(f"{head}: not applicable here ({f['reason']}); skipped")
                continue
            out += [f"{head}:", f"  changes: {f['changes']}", f"  undo:    {f['undo']}",
                    f"  record:  {json.dumps(f['record'], sort_keys=True)}"]
        out += [f"step: {s}" for s in self.steps]
        out += [f"REFUSED: {r}" for r in self.refusals]
        out.append("plan: the real run would refuse (nothing was changed)" if self.refused
                   else "plan: ready; nothing was injected, no canary row written")
        return "\n".join(out)


def make(experiment: Mapping[str, Any], configuration: Mapping[str, Any] | None,
         secrets: Mapping[str, Any] | None, *, gate: bool = True,
         runs_actions: bool = False) -> Plan:
    """The plan of `experiment` under `configuration`/`secrets` (loaded by chaoslib).
    Never raises: what the real run would refuse, and whatever the plan cannot read, is in
    `refusals` (a plan that cannot be made is refused, never passed). `runs_actions`: the
    dry mode still runs actions (`--dry probes`), so an action marked as a gameday fault
    is refused, since it would inject for real."""
    config = dict(configuration or {})
    plan = Plan(experiment=str(experiment.get("title") or "experiment"))
    try:
        settings = GamedaySettings.from_chaos(config, dict(secrets or {}))
        plan.drill = settings.drill
        plan.targets = {"rto_target_s": settings.targets.rto_s,
                        "rpo_target_s": settings.targets.rpo_s,
                        "max_lost_writes": settings.targets.max_lost_writes}
        bound = hypothesis.bind(dict(experiment), config)
        plan.checks.append("verdict tolerances bound to " + (
            ", ".join(f"{k}={v:g}" for k, v in bound.items()) or "nothing"))
        lab = settings.load_lab()
        plan.descriptor, plan.lab = lab.path, lab.lab
        plan.checks.append(f"descriptor valid: {lab.primary.name} (primary) -> "
                           f"{lab.secondary.name} (secondary)")
        holder = lock.holder(lab.path)
        if holder is not None:
            plan.refusals.append(f"the lab is in use by another drill (pid {holder or '?'} "
                                 f"holds {lock.path(lab.path)})")
        preflight.check(experiment, settings, lab)  # what the run's control checks
        plan.checks.append(f"promotion '{settings.promotion.strategy}' allowed here; fault "
                           "markers name known regions; what runs matches the descriptor")
    except GamedayError as exc:
        plan.refusals.append(str(exc))
        return plan
    except Exception as exc:  # what the plan cannot read, it refuses
        plan.refusals.append(f"cannot plan this experiment ({type(exc).__name__}: {exc})")
        return plan
    for activity in experiment.get("method") or []:
        try:
            _plan_action(plan, activity, config, dict(secrets or {}), settings, lab,
                         runs_actions=runs_actions)
        except GamedayError as exc:
            plan.refusals.append(f"{_name(activity)}: {exc}")
        except Exception as exc:  # idem
            plan.refusals.append(f"{_name(activity)}: cannot plan it ({type(exc).__name__}: "
                                 f"{exc})")
    if gate and not plan.refused:
        problems = readiness.check(settings, lab)
        if problems:
            plan.refusals.append("not ready for a fault: " + "; ".join(problems))
        else:
            plan.checks.append("readiness gate passed (read-only: health, DNS, standby "
                               "streaming and lag)")
    return plan


def _name(activity: Any) -> str:
    return str(activity.get("name") if isinstance(activity, dict) else activity)


def _plan_action(plan: Plan, activity: Any, config: dict[str, Any], secrets: dict[str, Any],
                 settings: GamedaySettings, lab: Lab, *, runs_actions: bool) -> None:
    """One method action: an external fault, one of ours (take_region_down's faults, each
    with its undo record), or any other provider, shown as it would be called. Every
    provider shape Chaos Toolkit accepts is read: a `process` action's arguments may be a
    string, a list or an object."""
    if not isinstance(activity, dict) or activity.get("type") != "action":
        return
    name = _name(activity)
    provider = activity.get("provider")
    if not isinstance(provider, dict):
        raise ConfigError("its provider must be an object with a 'type'")
    marker = activity.get("gameday")
    if isinstance(marker, dict) and marker.get("fault"):
        if runs_actions:
            raise ConfigError("it is marked as a gameday fault, and `--dry probes` runs "
                              "actions: it would inject for real (`--dry actions` plans it)")
        plan.steps.append(f"{name}: an external fault on {marker.get('region')} "
                          f"({provider.get('type')}); its own extension undoes it")
        return
    arguments = provider.get("arguments")
    if arguments is not None and config:
        arguments = substitute(arguments, config, secrets)
    if (provider.get("module"), provider.get("func")) != ("gameday.actions.region",
                                                          "take_region_down"):
        plan.steps.append(f"{name}: {_call(provider, arguments)}")
        return
    if arguments is not None and not isinstance(arguments, dict):
        raise ConfigError("take_region_down's arguments must be an object like "
                          + json.dumps({"region": "region-1", "faults": Fault.SCALE_TO_ZERO}))
    args = dict(arguments or {})
    region = lab.region(str(args.get("region", "region-1")))
    faults = region_faults(args.get("faults", DEFAULT_REGION_FAULTS))
    Ledger(lab.path).refuse_unrecovered(region.name)
    driver = for_region(lab, region, settings)
    for fault in faults:
        record = driver.plan(fault, region)
        plan.faults.append({
            "region": region.name, "fault": fault,
            "applicable": bool(record.get("applicable", True)),
            "reason": record.get("reason"), "changes": fault.changes, "undo": fault.undo,
            "record": record})


def _call(provider: Mapping[str, Any], arguments: Any) -> str:
    """How an action would be called: `module.func(k=v, ...)` for a Python provider,
    `process: path args` and `http: url` for the others."""
    if isinstance(arguments, dict):
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(arguments.items(), key=str))
    elif isinstance(arguments, list | tuple):
        shown = " ".join(str(a) for a in arguments)
    else:
        shown = "" if arguments is None else str(arguments)
    kind = provider.get("type")
    if kind == "process":
        return f"process: {provider.get('path')} {shown}".rstrip()
    if kind == "http":
        return f"http: {provider.get('method', 'GET')} {provider.get('url')}"
    return f"{provider.get('module') or kind}.{provider.get('func') or ''}({shown})"
