"""Every public activity is discoverable, and activity modules follow chaoslib's rules."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import gameday

PACKAGE = Path(gameday.__file__).parent


def exported() -> set[tuple[str, str]]:
    """(module, name) of every activity the activity modules export."""
    return {(m, name) for m in gameday.ACTIVITY_MODULES
            for name in importlib.import_module(m).__all__}


def test_every_activity_module_is_listed_and_exports_something() -> None:
    """A public module of actions/ or probes/ that exports names is an activity module
    (gate.py exports none: the control runs it)."""
    public = [f"gameday.{p.parent.name}.{p.stem}" for folder in ("actions", "probes")
              for p in (PACKAGE / folder).glob("*.py") if not p.stem.startswith("_")]
    exporting = {m for m in public if getattr(importlib.import_module(m), "__all__", None)}
    assert exporting == set(gameday.ACTIVITY_MODULES)
    for module_name in gameday.ACTIVITY_MODULES:
        assert importlib.import_module(module_name).__all__, f"{module_name} exports nothing"


def test_discover_lists_exactly_the_exported_activities() -> None:
    found = [(a["mod"], a["name"]) for a in gameday.discover()["activities"]]
    assert len(found) == len(set(found))  # each once
    # the experiments name these: a few that must never go missing
    assert {("gameday.actions.region", "take_region_down"),
            ("gameday.actions.region", "restore_region"),
            ("gameday.probes.verdict", "rto_seconds")} <= set(found)
    assert set(found) == exported()


def test_probes_are_listed_as_probes_and_actions_as_actions() -> None:
    kinds = {(a["mod"], a["name"]): a["type"] for a in gameday.discover()["activities"]}
    assert kinds[("gameday.probes.verdict", "rto_within_target")] == "probe"
    assert kinds[("gameday.probes.health", "global_name_serves")] == "probe"
    assert kinds[("gameday.actions.region", "take_region_down")] == "action"
    assert set(kinds) == exported()
    for (module, _name), kind in kinds.items():
        assert kind == ("probe" if ".probes." in module else "action"), (module, _name, kind)


def test_activities_take_configuration_and_secrets_last() -> None:
    activities = sorted(exported())
    assert len(activities) >= 20  # every activity module's exports, not an empty loop
    for module_name, name in activities:
        params = list(inspect.signature(
            getattr(importlib.import_module(module_name), name)).parameters)
        assert params[-2:] == ["configuration", "secrets"], f"{module_name}.{name}: {params}"
