"""The numbers reach the Chaos Toolkit journal: verdict tolerances bound to the run's
targets and judged by chaoslib itself, the summary in the journal's extensions, and every
experiment we ship (and the documented example) valid for `chaos run`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from chaoslib.experiment import ensure_experiment_is_valid
from chaoslib.hypothesis import within_tolerance
from chaoslib.loader import load_experiment

from gameday.drill import hypothesis
from gameday.foundation.errors import ConfigError
from gameday.report import journal, outputs
from tests.fixtures.report import fixture_run

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "gameday" / "experiments").glob("*.json")) + [
    ROOT / "gameday" / "experiments" / "game-day.yaml",
    ROOT / "docs" / "examples" / "your-game-day.json"]


def _experiment() -> dict:
    return json.loads((ROOT / "experiments" / "game-day.json").read_text())


def _tolerance(experiment: dict, func: str) -> dict:
    return next(p["tolerance"] for p in experiment["steady-state-hypothesis"]["probes"]
                if p["provider"].get("func") == func)


def test_a_bound_tolerance_judges_against_the_runs_target() -> None:
    experiment = _experiment()
    # what `chaos run --var rto_target_s=10` hands the control (vars arrive as strings)
    bound = hypothesis.bind(experiment, {**experiment["configuration"], "rto_target_s": "10"})
    assert bound["rto_target_s"] == 10
    rto = _tolerance(experiment, "rto_seconds")
    assert rto["range"] == [0, 10]
    # chaoslib's own tolerance check, on the bound range
    assert within_tolerance(rto, 9.5) is True
    assert within_tolerance(rto, 12.3) is False
    lost = _tolerance(experiment, "lost_writes")
    assert within_tolerance(lost, 0) is True and within_tolerance(lost, 1) is False


def test_bad_bindings_are_one_line_and_change_nothing() -> None:
    experiment = _experiment()
    before = copy.deepcopy(experiment)
    config = {**experiment["configuration"], "rpo_target_s": "soon"}
    with pytest.raises(ConfigError, match="'rpo_target_s' must be a number") as err:
        hypothesis.bind(experiment, config)
    assert "\n" not in str(err.value)
    config = {k: v for k, v in experiment["configuration"].items() if k != "max_lost_writes"}
    with pytest.raises(ConfigError, match="--var max_lost_writes=NUMBER"):
        hypothesis.bind(experiment, config)
    assert experiment == before  # the rto bound, checked first, was not applied either
    _tolerance(experiment, "rto_seconds")["gameday"] = {"upper": 30}
    with pytest.raises(ConfigError, match="probe 'rto-within-target': a bound tolerance"):
        hypothesis.bind(experiment, experiment["configuration"])


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_is_valid_and_its_bounds_match_its_targets(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the documented example names its descriptor only through the environment
    monkeypatch.setenv("GAMEDAY_LAB", str(ROOT / "docs" / "examples" / "your-environment.lab.json"))
    monkeypatch.setenv("GAMEDAY_DB_PASSWORD", "from-the-environment")
    experiment = load_experiment(str(path))
    ensure_experiment_is_valid(experiment)
    bound = hypothesis.bound_tolerances(experiment)
    assert {key for _, key in bound} >= {"rto_target_s", "max_lost_writes"}
    for tolerance, key in bound:
        # the number in the file is the experiment's own default target
        assert tolerance["range"][1] == experiment["configuration"][key], (path.name, key)
    funcs = [p["provider"].get("func") for p in experiment["steady-state-hypothesis"]["probes"]]
    assert "integrity_violations" in funcs
    assert not {"rto_within_target", "rpo_within_target", "lost_writes_within_target"} & set(funcs)


def test_the_summary_goes_into_the_journal_extensions(tmp_path: Path) -> None:
    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID)
    state = {"status": "completed", "extensions": [{"name": "chaosreliably", "x": 1},
                                                   {"name": "gameday", "stale": True}]}
    summary = outputs.write_run_outputs(run_dir, state)
    ours = [e for e in state["extensions"] if e["name"] == "gameday"]
    assert len(ours) == 1 and "stale" not in ours[0]
    assert {"name": "chaosreliably", "x": 1} in state["extensions"]  # others' entries kept
    entry = ours[0]
    assert entry["rto_s"] == summary["rto_s"] and entry["rto_s"] is not None
    assert entry["rpo_s"] == summary["rpo_s"] and entry["lost_writes"] == summary["writes"]["lost"]
    assert entry["verdict"] == summary["verdict"] and entry["summary"]["schema"] == summary["schema"]
    # the run directory's copy of the journal carries it too, and it is plain JSON
    written = json.loads((run_dir / "journal.json").read_text())
    assert [e for e in written["extensions"] if e["name"] == "gameday"][0]["rto_s"] == summary["rto_s"]
    assert json.loads(json.dumps(journal.extension(summary, run_dir)))["name"] == "gameday"
