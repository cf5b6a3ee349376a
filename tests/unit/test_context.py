"""One context: the control builds the drill's context once and every activity of the run
uses it; an activity without the control builds its own once. And the records that context
writes keep their shape: the events' details, the drill state, the recorded configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gameday.drill import context as drills
from gameday.foundation import descriptor, drill_state
from gameday.foundation.drill_state import DrillState, Stage, Switchover
from gameday.foundation.errors import ConfigError
from gameday.foundation.events import FaultApplied, HoldEnd, PromoteRequested, Resynced
from gameday.foundation.faults import REGION_FAULTS, Fault, region_faults
from gameday.foundation.settings import GamedaySettings
from gameday.probes import health
from tests.unit import fakes


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loads: list[str] = []
    real = descriptor.load

    def counted(path: Any = None, **kwargs: Any) -> descriptor.Lab:
        loads.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(descriptor, "load", counted)
    return loads


def test_an_activity_without_the_control_builds_its_context_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each activity used to parse the configuration and read and validate the descriptor
    again; now the second call with the same configuration takes the context built by the
    first, and a descriptor rewritten in place (a `lab up` after a `lab down`) is read
    again."""
    lab_file = fakes.write_lab(tmp_path)
    cfg = {"lab_file": str(lab_file), "max_lag_s": 3}
    loads = _count_loads(monkeypatch)
    first = drills.current(cfg, None)
    assert drills.current(dict(cfg), None) is first and len(loads) == 1
    assert first.settings.max_lag_s == 3.0 and first.run is None
    other = drills.current({**cfg, "max_lag_s": 4}, None)  # other configuration: its own
    assert other.settings.max_lag_s == 4.0 and len(loads) == 2
    data = json.loads(lab_file.read_text())
    data["dns"]["name"] = "shop.other.test"
    lab_file.write_text(json.dumps(data, indent=1))
    assert drills.current(cfg, None).lab.dns.name == "shop.other.test" and len(loads) == 3


def test_the_controls_context_is_every_activitys(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Published by the control, the context answers every activity of the run, whatever
    configuration the activity is handed: nothing is parsed or read again."""
    lab_file = fakes.write_lab(tmp_path)
    drill = fakes.drill(lab_file, configuration={"max_lag_s": 7})
    drills.publish(drill)
    loads = _count_loads(monkeypatch)
    assert drills.current({"lab_file": "/nonexistent/lab.json"}, None) is drill
    assert loads == []
    drills.reset()
    with pytest.raises(Exception, match="no lab descriptor at /nonexistent/lab.json"):
        drills.current({"lab_file": "/nonexistent/lab.json"}, None)


def test_a_probe_asks_the_context_not_the_configuration(tmp_path: Path) -> None:
    lab_file = fakes.write_lab(tmp_path)
    drills.publish(fakes.drill(lab_file))
    # the probe's own configuration names no lab: the run's context serves it
    assert health.region_is_healthy("region-1", configuration={"lab_file": "/nowhere"}) is False


def test_plan_mode_and_a_refusal_stand_every_step_down(tmp_path: Path) -> None:
    from gameday.actions import region as region_actions

    lab_file = fakes.write_lab(tmp_path)
    cfg = {"lab_file": str(lab_file)}
    drills.stand_down(refused="the lab is another drill's")
    assert region_actions.take_region_down("region-1", configuration=cfg) == {
        "skipped": "take_region_down", "reason": "the run was refused: the lab is another "
                                                 "drill's"}
    drills.stand_down(plan={"faults": ["x"], "refused": False})
    assert region_actions.restore_region("region-1", configuration=cfg) == {
        "dry": True, "would_run": "restore_region", "faults": ["x"], "refused": False}
    assert fakes.world(lab_file).calls == []


# --- the vocabulary's records keep their shape -----------------------------------------------


def test_an_events_detail_is_written_as_it_always_was() -> None:
    """A field marked optional is left out while it holds its default: a timeline of this
    version reads as one of the last (the report reads `.get`)."""
    assert FaultApplied(region="region-1", fault=Fault.SCALE_TO_ZERO).detail_json() == \
        '{"fault": "scale-to-zero"}'
    assert FaultApplied(region=None, fault="chaosk8s-kill", external=True,
                        provider="python: chaosk8s").detail_json() == \
        '{"external": true, "fault": "chaosk8s-kill", "provider": "python: chaosk8s"}'
    assert PromoteRequested(region="region-2").detail_json() == "{}"
    assert PromoteRequested(region="region-2", strategy="command").detail() == \
        {"strategy": "command"}
    # an explicit None that readers look for stays
    assert Resynced(region="r", standby="r", source="s", method="patroni rejoin",
                    resync_s=None, catch_up_s=1.5).detail()["resync_s"] is None
    assert HoldEnd(hold_s=60, checks=3, checks_failed=0, first_failed_check_s=None,
                   timeline_bytes=1).detail()["first_failed_check_s"] is None


def test_one_answer_to_an_unknown_fault() -> None:
    with pytest.raises(ConfigError, match="^unknown fault cordn: choose from scale-to-zero, "
                                          "cordon, block-egress, blackhole$"):
        region_faults("scale-to-zero,cordn")
    with pytest.raises(ConfigError, match=r"^unknown fault \(none\): choose from"):
        region_faults(" , ")
    assert region_faults(["blackhole", " cordon"]) == (Fault.BLACKHOLE, Fault.CORDON)
    assert Fault.parse("replication-cut") is Fault.REPLICATION_CUT
    with pytest.raises(ConfigError, match="unknown fault switchover"):
        Fault.parse("switchover", choices=REGION_FAULTS)
    for fault in Fault:
        assert fault.changes and fault.undo  # the plan says what each changes


def test_every_lab_kind_answers_a_fault_it_lacks_alike(tmp_path: Path) -> None:
    """The netns driver raised on a fault it did not know, the kubernetes driver planned it
    not applicable; both plan it not applicable now, by the same rule."""
    from gameday.labs.kubernetes import KubernetesDriver
    from gameday.labs.netns.driver import NetnsDriver

    data = {**fakes.descriptor_dict(), "lab": "netns", "state_dir": str(tmp_path)}
    for r in data["regions"]:
        r.update(driver="netns", netns=f"gd-{r['name']}")
    lab = descriptor.from_dict(data, path=str(tmp_path / "lab.json"))
    netns = NetnsDriver(lab)
    kube = KubernetesDriver(lab, allowed_contexts=("kind-*",))
    region = lab.primary
    assert netns.plan(Fault.SWITCHOVER, region) == {
        "applicable": False, "reason": "the netns driver has no fault 'switchover'"}
    assert kube.plan(Fault.SWITCHOVER, region) == {
        "applicable": False, "reason": "the kubernetes driver has no fault 'switchover'"}
    assert netns.plan(Fault.CORDON, region) == {
        "applicable": False, "reason": "the netns lab has no nodes to cordon"}
    netns.inject(Fault.SWITCHOVER, region, {"applicable": False})  # nothing to do
    netns.revert(Fault.SWITCHOVER, region, {"applicable": False})
    assert netns.is_effective(Fault.SWITCHOVER, region, {}) is True


def test_the_drill_state_reads_what_it_wrote_and_nothing_else(tmp_path: Path) -> None:
    lab_file = tmp_path / "lab.json"
    state = DrillState(promoted="region-2", old_primary="region-1",
                       promoted_at_utc="2026-01-01T00:00:00+00:00", strategy="runner",
                       switchover=Switchover(to="region-1", from_region="region-2",
                                             stage=Stage.PROMOTING))
    drill_state.write(lab_file, state)
    stored = json.loads(drill_state.path(lab_file).read_text())
    assert stored == {"promoted": "region-2", "old_primary": "region-1",
                      "promoted_at_utc": "2026-01-01T00:00:00+00:00", "strategy": "runner",
                      "switchover": {"to": "region-1", "from": "region-2",
                                     "stage": "promoting"}}
    assert drill_state.read(lab_file) == state
    assert state.promoted_other_than("region-1") == "region-2"
    assert state.promoted_other_than("region-2") is None
    drill_state.path(lab_file).write_text('{"promoted": "region-2", "someone": "else"}')
    assert drill_state.read(lab_file) == DrillState(promoted="region-2")
    drill_state.path(lab_file).write_text('["not", "a", "state"]')
    assert drill_state.read(lab_file) is None
    drill_state.path(lab_file).write_text('{"promoted": "region-2", "sw')  # torn
    assert drill_state.read(lab_file) is None
    drill_state.clear(lab_file)
    assert drill_state.read(lab_file) is None


def test_the_settings_record_the_configuration_under_the_keys_users_set(tmp_path: Path) -> None:
    """The recorder reads its rates back from the run's recorded configuration: the same
    keys, no second spelling (`http_s`) of a setting."""
    from gameday.foundation import settings as settings_module

    lab_file = fakes.write_lab(tmp_path)
    s = GamedaySettings.from_chaos({"lab_file": str(lab_file), "http_interval_s": "0.1",
                                    "canary_writers": 2, "canary_max_rate": 50})
    recorded = s.recorded(s.load_lab())
    assert recorded["configuration"]["http_interval_s"] == 0.1
    assert settings_module.rates(recorded["configuration"]) == s.rates
    assert recorded["targets"] == {"rto_s": 30.0, "rpo_s": 0.0, "max_lost_writes": 0}
    assert "http_s" not in json.dumps(recorded)
