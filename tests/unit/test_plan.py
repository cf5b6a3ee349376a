"""Plan mode on the fake lab (tests/unit/fakes.py): `gameday plan` and `chaos run --dry`
show each fault's change and undo record, refuse where the real run would (exit 1), and
change nothing: no driver call, no ledger entry, no run directory. The same commands run
on the real lab in tests/integration/test_ctk_native.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chaoslib.exceptions import InterruptExecution
from chaoslib.types import Dry
from click.testing import CliRunner

from gameday import cli, control
from gameday.actions import region as region_actions
from gameday.labs.ledger import Ledger
from gameday.measure import run as runs
from tests.unit import fakes

ROOT = Path(__file__).resolve().parents[2]


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
    # the readiness gate (nothing listens on the fake lab's ports), read-only
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
    # the fake lab is not ready (nothing listens): the dry run refuses, as the real one would
    with pytest.raises(InterruptExecution, match="the real run would refuse: not ready"):
        control.before_experiment_control(experiment, configuration=cfg)
    state: dict = {"status": "completed"}
    control.after_experiment_control(experiment, state, configuration=cfg)
    assert state["status"] == "failed" and state["extensions"][0]["dry"] is True
    # a step called in dry mode (chaos run --dry probes runs actions) changes nothing
    runs.set_dry({"faults": [], "refused": False})
    try:
        out = region_actions.take_region_down("region-1", "scale-to-zero", configuration=cfg)
        assert out["dry"] is True and out["would_run"] == "take_region_down"
    finally:
        runs.set_dry(None)
    assert fakes.world(lab).calls == [] and not (tmp_path / "r").exists()
