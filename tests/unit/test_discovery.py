"""Every public activity is discoverable, and activity modules follow chaoslib's rules."""

from __future__ import annotations

import importlib
import inspect

import gameday


def test_discover_lists_every_exported_activity() -> None:
    found = {(a["mod"], a["name"]) for a in gameday.discover()["activities"]}
    for module_name in gameday.ACTIVITY_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            assert (module_name, name) in found


def test_probes_are_listed_as_probes_and_actions_as_actions() -> None:
    kinds = {(a["mod"], a["name"]): a["type"] for a in gameday.discover()["activities"]}
    assert kinds[("gameday.probes.verdict", "rto_within_target")] == "probe"
    assert kinds[("gameday.probes.health", "global_name_serves")] == "probe"
    assert kinds[("gameday.actions.region", "take_region_down")] == "action"
    for (module, _name), kind in kinds.items():
        assert kind == ("probe" if ".probes." in module else "action"), (module, _name, kind)


def test_activities_take_configuration_and_secrets() -> None:
    for module_name in gameday.ACTIVITY_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            params = inspect.signature(getattr(module, name)).parameters
            assert "configuration" in params and "secrets" in params, f"{module_name}.{name}"
