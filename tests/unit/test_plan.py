"""Plan mode on the fake lab (tests/unit/fakes.py): `gameday plan` and `chaos run --dry`
show each fault's change and undo record, refuse where the real run would (exit 1), and
change nothing: no driver call, no ledger entry, no run directory. The same commands run
on the real lab in tests/integration/test_ctk_native.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaoslib.exceptions import InterruptExecution
from chaoslib.types import Dry
from click.testing import CliRunner

from gameday import cli, control
from gameday.actions import region as region_actions
from gameday.drill import context as drills
from gameday.drill import preflight
from gameday.foundation.ledger import Ledger
from tests.unit import fakes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def _dns_that_fails_at_once() -> Iterator[None]:
    """The fake lab's DNS servers answer every question at once with bytes that are no DNS
    message: a question fails as it did with nothing listening (a DNSException, "does not
    answer"), without the 2 s timeout each one waited for (UDP: no error comes back from
    a closed port), 10 s of this module."""
    real = fakes.write_lab
    # bytes shorter than a DNS header
    with fakes.udp_responder(lambda _data: b"\0") as port, pytest.MonkeyPatch.context() as patch:
        patch.setattr(fakes, "write_lab", lambda tmp_path, **kw: real(
            tmp_path, **{"dns_port": port, **kw}))
        yield


def _plan(tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    lab = fakes.write_lab(tmp_path)
    result = CliRunner(env={"GAMEDAY_LAB": str(lab), "GAMEDAY_REPORTS": str(tmp_path / "r")}) \
        .invoke(cli.main, ["plan", *args])
    return result.exit_code, result.output, lab


def test_the_plan_shows_each_fault_and_changes_nothing(tmp_path: Path) -> None:
    code, out, lab = _plan(tmp_path, "game-day", "--no-gate")
    assert code == 0, out
    assert "fault scale-to-zero on region-1:" in out
    assert "  undo:    starts exactly what the record lists again" in out
    assert '  record:  {"applicable": true, "fault": "scale-to-zero", "region": "region-1"}' in out
    assert "fault cordon on region-1: not applicable here (the fake lab has no nodes)" in out
    assert "step: promote-region-2-database: gameday.actions.database.promote(" in out
    assert out.rstrip().endswith("nothing was injected, no canary row written")
    assert fakes.world(lab).calls == [] and Ledger(str(lab)).open_faults() == []
    assert not (tmp_path / "r").exists()


def test_the_plan_refuses_what_the_run_would_refuse(tmp_path: Path) -> None:
    code, out, lab = _plan(tmp_path, "game-day", "--no-gate", "--var", "region_faults=meteor")
    assert code == 1 and "REFUSED: region-1-outage: unknown fault meteor" in out
    code, out, _ = _plan(tmp_path, "game-day", "--no-gate", "--var", "rto_target_s=soon")
    assert code == 1 and "'rto_target_s' must be a number" in out
    # the readiness gate (nothing listens on the fake lab's ports; its DNS fails), read-only
    code, out, lab = _plan(tmp_path, "game-day", "--var", "ready_timeout_s=0")
    assert code == 1 and "REFUSED: not ready for a fault: " in out
    assert fakes.world(lab).calls == []


def test_a_missing_experiment_is_one_line(tmp_path: Path) -> None:
    code, out, _ = _plan(tmp_path, "no-such-drill")
    assert code == cli.EXIT_CONFIG and "no shipped experiment 'no-such-drill'" in out
    assert len(out.strip().splitlines()) == 1


def test_the_plan_as_json(tmp_path: Path) -> None:
    code, out, _ = _plan(tmp_path, str(ROOT / "experiments" / "game-day.json"), "--no-gate",
                         "--json")
    plan = json.loads(out)
    assert code == 0 and plan["refused"] is False
    assert [f["fault"] for f in plan["faults"]] == ["scale-to-zero", "cordon", "block-egress"]
    assert plan["targets"]["rto_target_s"] == 30


def test_chaos_dry_is_plan_mode(tmp_path: Path) -> None:
    lab = fakes.write_lab(tmp_path)
    experiment = json.loads((ROOT / "experiments" / "game-day.json").read_text())
    experiment["dry"] = Dry.ACTIONS
    cfg = {**experiment["configuration"], "lab_file": str(lab), "reports_dir": str(tmp_path / "r"),
           "ready_timeout_s": 0}
    # the fake lab is not ready (nothing listens, its DNS fails): the dry run refuses, as
    # the real one would
    with pytest.raises(InterruptExecution, match="the real run would refuse: not ready"):
        control.before_experiment_control(experiment, configuration=cfg)
    state: dict = {"status": "completed"}
    control.after_experiment_control(experiment, state, configuration=cfg)
    assert state["status"] == "failed" and state["extensions"][0]["dry"] is True
    # a step called in dry mode (chaos run --dry probes runs actions) changes nothing
    drills.stand_down(plan={"faults": [], "refused": False})
    try:
        out = region_actions.take_region_down("region-1", "scale-to-zero", configuration=cfg)
        assert out["dry"] is True and out["would_run"] == "take_region_down"
    finally:
        drills.reset()
    assert fakes.world(lab).calls == [] and not (tmp_path / "r").exists()


# --- dry means dry, failing closed (issue 18) ------------------------------------------------


def _composed(tmp_path: Path) -> tuple[Path, dict]:
    """The fake lab, and the configuration chaoslib would load for a composed experiment."""
    from tests.fixtures import experiments

    lab = fakes.write_lab(tmp_path)
    cfg = {k: v for k, v in experiments.CONFIGURATION.items() if not isinstance(v, dict)}
    return lab, {**cfg, "lab_file": str(lab), "reports_dir": str(tmp_path / "r")}


def test_any_provider_shape_is_planned(tmp_path: Path) -> None:
    """A `process` action whose arguments is a string (or a list) is shown as it would
    run; the plan does not crash on it."""
    from gameday.drill import planning
    from tests.fixtures import experiments

    lab, cfg = _composed(tmp_path)
    listed = experiments.say_hello()
    listed["provider"]["arguments"] = ["-n", "hello"]
    plan = planning.make(experiments.game_day(experiments.say_hello(), listed), cfg, {},
                         gate=False)
    assert not plan.refused, plan.refusals
    assert plan.steps[:2] == ["say-hello: process: true hello", "say-hello: process: true -n hello"]
    assert [f["fault"] for f in plan.faults] == ["scale-to-zero", "cordon", "block-egress"]
    # `gameday plan` on such a file: the plan, exit 0 (it was a ValueError traceback)
    path = tmp_path / "hello.json"
    path.write_text(json.dumps(experiments.game_day(experiments.say_hello())))
    result = CliRunner(env={"GAMEDAY_LAB": str(lab)}).invoke(
        cli.main, ["plan", str(path), "--no-gate"])
    assert result.exit_code == 0, result.output
    assert "step: say-hello: process: true hello" in result.output
    assert fakes.world(lab).calls == [] and Ledger(str(lab)).entries() == []


def test_what_the_plan_cannot_read_it_refuses(tmp_path: Path) -> None:
    from gameday.drill import planning
    from tests.fixtures import experiments

    _, cfg = _composed(tmp_path)
    odd = experiments.region_outage()
    odd["provider"]["arguments"] = "region-1"  # not an object: chaoslib would refuse it too
    plan = planning.make(experiments.experiment("odd", method=[odd, {"type": "action",
                                                                      "name": "x",
                                                                      "provider": "nope"}]),
                         cfg, {}, gate=False)
    assert plan.refusals == [
        "region-1-outage: take_region_down's arguments must be an object like "
        '{"region": "region-1", "faults": "scale-to-zero"}',
        "x: its provider must be an object with a 'type'"]


def _run_dry(experiment: dict, dry: Dry, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The experiment through chaoslib itself, in this process, under `dry`; the readiness
    gate (nothing listens on the fake lab) is taken as passed."""
    from chaoslib.experiment import run_experiment

    from gameday.drill import gate

    monkeypatch.setattr(gate, "check", lambda configuration, secrets: [])
    experiment["dry"] = dry
    return run_experiment(experiment)


@pytest.mark.parametrize("dry", [Dry.ACTIONS, Dry.PROBES, Dry.ACTIVITIES])
def test_a_dry_run_injects_nothing_whatever_the_experiment_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dry: Dry) -> None:
    """issue 18, item 1: a string-argument `process` action first in the game day's method
    made plan mode crash, chaoslib went on, and `--dry probes` injected for real."""
    from tests.fixtures import experiments

    lab, _ = _composed(tmp_path)
    monkeypatch.setenv("GAMEDAY_LAB", str(lab))
    monkeypatch.setenv("GAMEDAY_REPORTS", str(tmp_path / "r"))
    journal = _run_dry(experiments.game_day(experiments.say_hello(),
                                            probes=[experiments.canary_writing(),
                                                    *experiments.verdict_probes()]),
                       dry, monkeypatch)
    assert journal["status"] == "completed", journal["status"]
    # the whole method was walked; our steps returned the plan where they ran
    assert [r["activity"]["name"] for r in journal["run"]] == [
        "say-hello", "region-1-outage", "wait-for-detection", "promote-region-2-database",
        "wait-for-recovery"]
    if dry == Dry.PROBES:
        outage = journal["run"][1]["output"]
        assert outage["dry"] is True and outage["would_run"] == "take_region_down"
    if dry == Dry.ACTIONS:  # the steady state judged from the plan, not from a recorder
        assert journal["steady_states"]["before"]["steady_state_met"] is True
    (ours,) = [e for e in journal["extensions"] if e["name"] == "gameday"]
    assert ours["dry"] is True and ours["plan"]["mode"] == dry.value
    assert fakes.world(lab).calls == [] and not Ledger(str(lab)).path.exists()
    assert not (tmp_path / "r").exists() and not (tmp_path / "drill.json").exists()


def test_dry_probes_refuses_a_foreign_fault_before_it_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fixtures import experiments

    lab, _ = _composed(tmp_path)
    monkeypatch.setenv("GAMEDAY_LAB", str(lab))
    evidence = tmp_path / "the-foreign-fault-ran"
    journal = _run_dry(experiments.game_day(experiments.foreign_fault(evidence)), Dry.PROBES,
                       monkeypatch)
    assert journal["status"] == "failed" and journal["run"] == []
    (ours,) = [e for e in journal["extensions"] if e["name"] == "gameday"]
    assert ours["plan"]["refusals"] == [
        "foreign-fault: it is marked as a gameday fault, and `--dry probes` runs actions: it "
        "would inject for real (`--dry actions` plans it)"]
    assert not evidence.exists() and fakes.world(lab).calls == []
    # `--dry actions` plans it (Chaos Toolkit does not run actions)
    journal = _run_dry(experiments.game_day(experiments.foreign_fault(evidence)), Dry.ACTIONS,
                       monkeypatch)
    assert journal["status"] == "completed" and not evidence.exists()


def test_a_fault_reached_otherwise_is_refused_at_the_activity(tmp_path: Path) -> None:
    from tests.fixtures import experiments

    marked = experiments.foreign_fault(tmp_path / "x")
    control._now.dry_mode = "probes"
    try:
        with pytest.raises(InterruptExecution, match="'foreign-fault' is marked as a gameday "
                                                     "fault and `--dry probes` runs actions"):
            control.before_activity_control(marked)
        control.before_rollback_control(marked)
        control.before_activity_control(marked)  # never stops a rollback
    finally:
        control.cleanup_control()


def test_plan_mode_that_cannot_be_entered_stops_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any exception in the control, not only a GamedayError, stops the run with one line
    (chaoslib would log it at DEBUG and go on); the steps stay no-ops."""
    from gameday.drill import planning
    from tests.fixtures import experiments

    lab, cfg = _composed(tmp_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("dictionary update sequence element #0 has length 1; 2 is required")

    monkeypatch.setattr(planning, "make", broken)
    experiment = experiments.game_day()
    experiment["dry"] = Dry.PROBES
    with pytest.raises(InterruptExecution) as err:
        control.before_experiment_control(experiment, configuration=cfg)
    assert str(err.value) == ("gameday: the control failed (ValueError: dictionary update "
                              "sequence element #0 has length 1; 2 is required); stopping the "
                              "drill")
    try:
        out = region_actions.take_region_down("region-1", "scale-to-zero", configuration=cfg)
        assert out["dry"] is True and out["refused"] is True
    finally:
        state: dict = {"status": "interrupted"}
        control.after_experiment_control(experiment, state, configuration=cfg)
    assert state["status"] == "failed" and drills.standdown() is None
    assert fakes.world(lab).calls == [] and not Ledger(str(lab)).path.exists()


def test_a_crash_in_the_control_stops_a_real_run_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab, cfg = _composed(tmp_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("region")

    monkeypatch.setattr(preflight, "check", broken)
    with pytest.raises(InterruptExecution, match="the control failed \\(KeyError: 'region'\\)"):
        control.before_experiment_control({"title": "t"}, configuration=cfg)
    try:
        # the run was refused before it started: its rollbacks undo nothing
        out = region_actions.restore_region("region-1", configuration=cfg)
        assert out["skipped"] == "restore_region"
    finally:
        control.after_experiment_control({"title": "t"}, {"status": "interrupted"},
                                         configuration=cfg)
    assert fakes.world(lab).calls == []
