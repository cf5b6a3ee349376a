"""Either format works: the shipped YAML game day is the JSON one, and the sync/async var
files set the targets the verdict tolerances are bound to, through chaoslib's own loaders
(what `chaos run --var-file` does)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chaoslib import merge_vars
from chaoslib.configuration import load_configuration
from chaoslib.experiment import ensure_experiment_is_valid
from chaoslib.loader import load_experiment

from gameday import experiments
from gameday.drill import hypothesis

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "gameday" / "experiments"


def test_the_yaml_game_day_is_the_json_one() -> None:
    from_yaml = load_experiment(str(ROOT / "experiments" / "game-day.yaml"))
    from_json = json.loads((SHIPPED / "game-day.json").read_text())
    assert from_yaml == from_json
    ensure_experiment_is_valid(from_yaml)
    assert experiments.path("game-day.yaml") == SHIPPED / "game-day.yaml"


@pytest.mark.parametrize(("var_file", "rpo", "lost"), [("sync.yaml", 0, 0),
                                                        ("async.yaml", 1, 200)])
def test_a_var_file_sets_the_targets_the_tolerances_judge(var_file: str, rpo: float,
                                                          lost: int) -> None:
    experiment = load_experiment(str(ROOT / "experiments" / "game-day.yaml"))
    config_vars, secret_vars = merge_vars({}, [str(ROOT / "experiments" / "vars" / var_file)])
    assert secret_vars == {}
    configuration = load_configuration(experiment["configuration"], config_vars)
    bound = hypothesis.bind(experiment, configuration)
    assert bound == {"rto_target_s": 30, "rpo_target_s": rpo, "max_lost_writes": lost}
    tolerances = {p["provider"]["func"]: p["tolerance"]["range"]
                  for p in experiment["steady-state-hypothesis"]["probes"]
                  if isinstance(p["tolerance"], dict)}
    assert tolerances["lost_writes"] == [0, lost] and tolerances["rpo_seconds"] == [0, rpo]


def test_the_long_drill_is_the_game_day_and_a_hold() -> None:
    """game-day-long.json (composed in compose.py) must not drift from the game day it extends
    (its verdict probes, secrets scopes and rollbacks), only add the hold."""
    game_day = json.loads((SHIPPED / "game-day.json").read_text())
    long = json.loads((SHIPPED / "game-day-long.json").read_text())
    ensure_experiment_is_valid(long)
    *method, hold = long["method"]
    assert method == game_day["method"]
    assert hold["provider"]["func"] == "hold_in_region"
    assert hold["provider"]["secrets"] == ["gameday", "k8s"]
    for key in ("steady-state-hypothesis", "rollbacks", "controls", "secrets"):
        assert long.get(key) == game_day.get(key), key
    added = {k: v for k, v in long["configuration"].items()
             if game_day["configuration"].get(k) != v}
    assert set(added) == {"hold_s", "hold_check_interval_s", "hold_max_outage_s",
                          "canary_max_rate", "experiment_id"}
