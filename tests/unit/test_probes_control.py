"""Probes against real local servers (HTTP, a small DNS responder on loopback) and the
control's decisions, on the fake lab (tests/unit/fakes.py): no root, no lab."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.message
import dns.rrset
import pytest
from chaoslib.exceptions import ActivityFailed, InterruptExecution

from gameday import control
from gameday.drill import context as drills
from gameday.probes import health
from tests.unit import fakes


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802
        body = b"ok" if self.status == 200 else b"database not writable"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def storefronts() -> Iterator[tuple[str, str, type[_Health], type[_Health]]]:
    """Two storefronts on loopback: region-1 healthy, region-2 answering 503."""
    handlers = [type("Up", (_Health,), {"status": 200}), type("Down", (_Health,), {"status": 503})]
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), h) for h in handlers]
    for s in servers:
        threading.Thread(target=s.serve_forever, args=(0.01,), daemon=True).start()
    yield (*(f"http://127.0.0.1:{s.server_address[1]}" for s in servers), *handlers)  # type: ignore[misc]
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def dns_server() -> Iterator[tuple[int, list[str]]]:
    """A UDP responder for the global name; the test sets what it answers."""
    answer = ["198.18.0.11"]

    def reply(data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text_list(
            query.question[0].name, 1, "IN", "A", answer))
        return response.to_wire()

    with fakes.udp_responder(reply) as port:
        yield port, answer


def test_region_health_follows_the_storefront(tmp_path: Path, storefronts) -> None:
    up, down, _, _ = storefronts
    cfg = {"lab_file": str(fakes.write_lab(tmp_path, storefront=(up, down)))}
    assert health.region_is_healthy("region-1", configuration=cfg) is True
    assert health.region_is_healthy("region-2", configuration=cfg) is False


def test_dns_probe_compares_the_answer_with_the_region(tmp_path: Path, dns_server) -> None:
    port, answer = dns_server
    cfg = {"lab_file": str(fakes.write_lab(tmp_path, dns_port=port))}
    assert health.dns_answers_region("region-1", "resolver", configuration=cfg) is True
    answer[:] = ["198.18.0.12"]
    assert health.dns_answers_region("region-1", "authoritative", configuration=cfg) is False
    assert health.dns_answers_region("region-2", "authoritative", configuration=cfg) is True
    with pytest.raises(ActivityFailed, match="server must be 'authoritative' or 'resolver'"):
        health.dns_answers_region("region-2", "google", configuration=cfg)


def test_an_unanswering_dns_server_is_a_failed_probe_with_the_reason(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # bound, never answers
    try:
        cfg = {"lab_file": str(fakes.write_lab(tmp_path, dns_port=silent.getsockname()[1]))}
        with pytest.raises(ActivityFailed, match="does not answer .*is the lab up"):
            health.dns_answers_region("region-1", "resolver", configuration=cfg)
    finally:
        silent.close()


def test_an_unreachable_standby_is_named(tmp_path: Path) -> None:
    cfg = {"lab_file": str(fakes.write_lab(tmp_path))}
    with pytest.raises(ActivityFailed, match="cannot reach the database of region-2"):
        health.standby_is_streaming("region-2", configuration=cfg)


# --- the control ----------------------------------------------------------------------------


FAILED_ACTION = {"status": "failed", "exception": ["Traceback...\n",
                                                  "ActivityFailed: promote failed: boom\n"]}


def test_a_failed_action_of_the_method_interrupts_the_drill(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control._now, "phase", control.Phase.METHOD)
    with pytest.raises(InterruptExecution, match="promote-db failed, stopping the drill: "
                                                 "promote failed: boom"):
        control.after_activity_control({"type": "action", "name": "promote-db"}, FAILED_ACTION)
    # a probe that fails is a deviation, not an interruption; an action that worked goes on
    assert control.after_activity_control({"type": "probe", "name": "rto"},
                                          FAILED_ACTION) is None
    assert control.after_activity_control({"type": "action", "name": "promote-db"},
                                          {"status": "succeeded"}) is None


@pytest.mark.parametrize("phase", ["before", "after"])
def test_outside_the_method_failures_do_not_interrupt(monkeypatch: pytest.MonkeyPatch,
                                                      phase: str) -> None:
    """The same failed action that stops the method (above) goes on before it (the
    steady state's probes) and after it (the rollbacks must all run)."""
    monkeypatch.setattr(control._now, "phase", control.Phase.METHOD)
    control.after_method_control({})  # the method ends: the control's own hook
    assert control._now.phase == control.Phase.AFTER
    monkeypatch.setattr(control._now, "phase", control.Phase(phase))
    assert control.after_activity_control({"type": "action", "name": "rollback"},
                                          FAILED_ACTION) is None


def test_an_unreachable_database_stops_the_run_before_anything(tmp_path: Path) -> None:
    cfg = {"lab_file": str(fakes.write_lab(tmp_path)), "reports_dir": str(tmp_path / "r")}
    with pytest.raises(InterruptExecution, match="cannot reach the writable database") as err:
        control.before_experiment_control({"title": "t"}, configuration=cfg)
    assert "\n" not in str(err.value)
    assert "not-used" not in str(err.value)  # the password never reaches a message
    assert fakes.world(cfg["lab_file"]).calls == []


def test_failback_without_a_game_day_is_refused_first(tmp_path: Path) -> None:
    cfg = {"lab_file": str(fakes.write_lab(tmp_path)), "drill": "failback",
           "reports_dir": str(tmp_path / "r")}
    with pytest.raises(InterruptExecution, match="no game day ran"):
        control.before_experiment_control({"title": "t"}, configuration=cfg)
    assert not (tmp_path / "r").exists()


def test_a_bad_target_is_one_line_naming_the_key(tmp_path: Path) -> None:
    cfg = {"lab_file": str(fakes.write_lab(tmp_path)), "rto_target_s": "soon"}
    with pytest.raises(InterruptExecution, match="'rto_target_s' must be a number"):
        control.before_experiment_control({"title": "t"}, configuration=cfg)


def test_an_unknown_driver_is_refused_when_the_descriptor_loads(tmp_path: Path) -> None:
    import json

    lab = fakes.descriptor_dict()
    lab["regions"][1]["driver"] = "docker"
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(lab))
    with pytest.raises(InterruptExecution, match="field 'regions/1/driver': unknown driver "
                                                 "'docker': choose from"):
        control.before_experiment_control({"title": "t"}, configuration={"lab_file": str(path)})


@pytest.mark.parametrize(("extra", "message"), [
    ({"promotion": "magic"}, "'promotion' must be one of runner, command, none"),
    ({"promotion": "command"}, "'promotion_command' is empty"),
    ({"promotion": "command", "promotion_command": {"not": "a command"}},
     "'promotion_command' must be a command line or a list"),
])
def test_bad_promotion_settings_stop_the_run_before_any_fault(tmp_path: Path, extra,
                                                              message: str) -> None:
    cfg = {"lab_file": str(fakes.write_lab(tmp_path)), "reports_dir": str(tmp_path / "r"),
           **extra}
    with pytest.raises(InterruptExecution, match=message) as err:
        control.before_experiment_control({"title": "t"}, configuration=cfg)
    assert "\n" not in str(err.value)
    assert fakes.world(cfg["lab_file"]).calls == [] and not (tmp_path / "r").exists()


def test_gameday_will_not_promote_behind_an_ha_manager(tmp_path: Path) -> None:
    import json

    lab = fakes.descriptor_dict()
    lab["ha"] = {"manager": "patroni", "scope": "gameday", "ttl_s": 10, "loop_wait_s": 1}
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(lab))
    with pytest.raises(InterruptExecution, match="run by patroni: gameday will not promote"):
        control.before_experiment_control({"title": "t"}, configuration={"lab_file": str(path)})


def test_a_fault_marker_must_name_a_region(tmp_path: Path) -> None:
    experiment = {"title": "t", "method": [
        {"type": "action", "name": "kill-it", "gameday": {"fault": True, "region": "mars"},
         "provider": {"type": "process", "path": "true"}}]}
    cfg = {"lab_file": str(fakes.write_lab(tmp_path))}
    with pytest.raises(InterruptExecution, match="unknown region 'mars'"):
        control.before_experiment_control(experiment, configuration=cfg)


def test_failback_is_refused_where_gameday_cannot_fence(tmp_path: Path) -> None:
    from gameday.foundation import drill_state as drill

    lab_file = fakes.write_lab(tmp_path)
    drill.write(lab_file, drill.DrillState.from_json({"promoted": "region-2"}))
    fakes.world(lab_file).failback_unsupported = "no fencing contract here: use your runbook"
    cfg = {"lab_file": str(lab_file), "drill": "failback", "reports_dir": str(tmp_path / "r")}
    with pytest.raises(InterruptExecution, match="no fencing contract here: use your runbook"):
        control.before_experiment_control({"title": "t"}, configuration=cfg)
    assert not (tmp_path / "r").exists()


def test_promote_and_switchover_refuse_to_act_behind_an_ha_manager(tmp_path: Path) -> None:
    """The guard is in the actions themselves, not only in the control: an experiment
    without the control (or any other caller) is refused too, before anything changes."""
    import json

    from gameday.actions import database
    from gameday.foundation import drill_state as drill

    lab = fakes.descriptor_dict()
    lab["ha"] = {"manager": "patroni", "scope": "gameday", "ttl_s": 10, "loop_wait_s": 1}
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(lab))
    cfg = {"lab_file": str(path)}  # promotion defaults to runner
    with pytest.raises(ActivityFailed, match="run by patroni: gameday will not promote"):
        database.promote("region-2", configuration=cfg)
    with pytest.raises(ActivityFailed, match="run by patroni: gameday will not promote"):
        database.switchover("region-1", configuration=cfg)
    assert drill.read(path) is None and fakes.world(path).calls == []


def test_a_fault_left_behind_fails_the_verdict_and_the_run(tmp_path: Path,
                                                             caplog) -> None:
    """At the end of every run the ledger must hold no open fault: one a revert of the
    rollback could not undo fails the verdict, naming it, and the run."""
    from gameday.actions import region as region_actions
    from gameday.foundation.ledger import Ledger
    from gameday.measure import run as runs
    from gameday.measure.store import timeline
    from tests.fixtures.report import fixture_run

    lab_file = fakes.write_lab(tmp_path)
    cfg = {"lab_file": str(lab_file), "reports_dir": str(tmp_path / "r")}
    region_actions.take_region_down("region-1", "block-egress,scale-to-zero", configuration=cfg)
    world = fakes.world(lab_file)
    world.fail_revert = {"scale-to-zero"}
    with pytest.raises(ActivityFailed, match="could not revert scale-to-zero"):
        region_actions.restore_region("region-1", configuration=cfg)  # the rollback
    run_dir = fixture_run.build(tmp_path / "r" / fixture_run.RUN_ID)
    drills.publish(fakes.drill(lab_file, run=runs.Run(run_dir, timeline.Clock(1))))
    state: dict = {"status": "completed", "steady_states": {}}
    control.after_experiment_control({"title": "t"}, state, configuration=cfg)
    assert drills.published() is None
    # the rollback attempted both: block-egress reverted, scale-to-zero could not be
    assert ("revert", "block-egress", "region-1") in world.calls
    assert [e["fault"] for e in Ledger(lab_file).open_faults()] == ["scale-to-zero"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "fail"
    assert summary["reasons"][0] == ("fault left behind: scale-to-zero on region-1 (applied); "
                                     "run `gameday recover`")
    assert state["status"] == "failed"


def test_a_run_whose_rollbacks_left_nothing_passes(tmp_path: Path) -> None:
    """The same stored run with a clean ledger: the verdict is the fixture's own."""
    from gameday.measure import run as runs
    from gameday.measure.store import timeline
    from tests.fixtures.report import fixture_run

    lab_file = fakes.write_lab(tmp_path)
    cfg = {"lab_file": str(lab_file), "reports_dir": str(tmp_path / "r")}
    run_dir = fixture_run.build(tmp_path / "r" / fixture_run.RUN_ID)
    drills.publish(fakes.drill(lab_file, run=runs.Run(run_dir, timeline.Clock(1))))
    state: dict = {"status": "completed", "steady_states": {}}
    control.after_experiment_control({"title": "t"}, state, configuration=cfg)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "pass", summary["reasons"]
    assert state["status"] == "completed"
