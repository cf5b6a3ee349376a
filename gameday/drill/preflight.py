"""Every refusal before anything starts, read-only: the real run (the control) and plan mode
(`gameday plan`, `chaos run --dry`) make the same checks, so a plan that passes is a run
that starts. Fault markers name regions of the descriptor, the promotion strategy suits the
lab, the descriptor matches what runs, and a failback has a game day behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gameday import postgres
from gameday.foundation import drill_state, ledger
from gameday.foundation.descriptor import Lab
from gameday.foundation.driver import for_region, verify_running
from gameday.foundation.errors import ConfigError, LabError
from gameday.foundation.settings import GamedaySettings


def check(experiment: Mapping[str, Any], settings: GamedaySettings, lab: Lab) -> str | None:
    """Every refusal before anything starts (a GamedayError naming the fix). Returns the
    game day run a failback follows."""
    check_fault_markers(experiment, lab)
    refuse_runner_behind_manager(settings, lab)
    verify_running(lab)
    if settings.drill == "failback":
        return failback_precondition(lab, settings)
    return None


def check_fault_markers(experiment: Mapping[str, Any], lab: Lab) -> None:
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


def refuse_runner_behind_manager(settings: GamedaySettings, lab: Lab) -> None:
    """Under an HA manager gameday must not promote or switch over by SQL behind its back
    (two writable primaries, or a manager fighting the drill): refused up front by the
    control, and by the steps themselves, whoever calls them."""
    if lab.ha is not None and settings.promotion.strategy == "runner":
        raise ConfigError(f"this lab's databases are run by {lab.ha.manager}: gameday will not "
                          "promote behind its back; set configuration 'promotion' to 'none' "
                          "(the manager promotes) or 'command' (your runbook's command), e.g. "
                          "experiments/game-day-autonomous.json")


def failback_precondition(lab: Lab, settings: GamedaySettings) -> str | None:
    """Failback needs a game day behind it: the secondary promoted and serving. Checked
    before anything starts, so a wrong call changes nothing. Returns that game day's run."""
    state = drill_state.read(lab.path) or drill_state.DrillState()
    if lab.ha is not None:
        # the HA manager promoted, not gameday: the secondary serving is the evidence
        if postgres.is_writable(lab, lab.secondary) is not True:
            raise LabError(f"{lab.secondary.name} is not the writable primary: nothing to fail "
                           "back from (run experiments/game-day-autonomous.json first)")
        if ledger.Ledger(lab.path).unsettled():
            raise LabError("faults of the game day were never rolled back: run "
                           "`gameday recover` first")
        return state.game_day_run
    if settings.promotion.strategy == "runner":
        # gameday's own resync and switchover stop, rewind and start databases
        for region in lab.regions:
            reason = for_region(lab, region, settings).failback_unsupported(region)
            if reason:
                raise LabError(reason)
    if state.promoted != lab.secondary.name:
        raise LabError(f"no game day ran ({lab.secondary.name} was not promoted by one): "
                       "run experiments/game-day.json first")
    if postgres.is_writable(lab, lab.secondary) is not True:
        raise LabError(f"{lab.secondary.name} is not the writable primary: nothing to fail back from")
    if ledger.Ledger(lab.path).unsettled():
        raise LabError("faults of the game day were never rolled back: run `gameday recover` first")
    return state.game_day_run
