"""The shipped experiments are written by gameday/experiments/compose.py, from one game day:
a committed file that differs from what it composes (edited by hand, or compose.py changed
and `make experiments` not run) fails here, naming the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chaoslib.experiment import ensure_experiment_is_valid

from gameday import experiments
from gameday.experiments import compose


def test_every_committed_experiment_is_what_compose_writes() -> None:
    directory = experiments.directory()
    assert compose.stale(directory) == [], (
        "edit gameday/experiments/compose.py, not the files, then run `make experiments`")
    # and compose writes every shipped experiment: none is left kept by hand
    assert {f"{s.name}.json" for s in experiments.shipped()} | {"game-day.yaml"} \
        == set(compose.files())


def test_check_names_a_file_edited_by_hand(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert compose.main(["--directory", str(tmp_path)]) == 0
    assert compose.main(["--check", "--directory", str(tmp_path)]) == 0
    edited = tmp_path / "failback.json"
    data = json.loads(edited.read_text())
    data["configuration"]["rto_target_s"] = 10
    edited.write_text(json.dumps(data, indent=2) + "\n")
    assert compose.main(["--check", "--directory", str(tmp_path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{edited} differs from gameday/experiments/compose.py")
    assert "make experiments" in line


@pytest.mark.parametrize("name", sorted(compose.files()))
def test_each_composed_experiment_is_valid_for_chaos_toolkit(name: str) -> None:
    ensure_experiment_is_valid(yaml.safe_load(compose.files()[name]))


def test_the_variants_differ_from_the_game_day_only_where_they_say() -> None:
    """What a reader of compose.py is told: the autonomous game day drops the promote step,
    the long drill adds a hold, the failbacks share the game day's configuration."""
    game_day, autonomous = compose.game_day(), compose.game_day_autonomous()
    names = [a["name"] for a in game_day["method"]]
    assert [a["name"] for a in autonomous["method"]] == \
        [n for n in names if n != "promote-region-2-database"]
    assert [a["name"] for a in compose.game_day_long()["method"]] == [*names, "hold-in-region-2"]
    for variant in (compose.failback(), compose.failback_autonomous()):
        shared = {k: v for k, v in variant["configuration"].items()
                  if k in game_day["configuration"]}
        differ = {k for k, v in shared.items() if game_day["configuration"][k] != v}
        assert differ <= {"experiment_id", "promotion"}, differ
        assert variant["configuration"]["drill"] == "failback"
