"""The CLI as a user meets it: -h everywhere, one exit code per kind of error, --json where a
command prints a result, --lab-file where it reads a lab, and recover's steps on stderr.
The core is faked where it would need a lab (CliRunner; kwargs asserted)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from click.testing import CliRunner

from gameday import cli
from gameday.drill import recovery
from gameday.foundation.errors import ConfigError, GamedayError, LabError, TargetError
from tests.unit import fakes

ROOT = Path(__file__).resolve().parents[2]


def test_every_command_answers_to_h() -> None:
    for argv in ([], ["lab"], ["lab", "up"], ["lab", "down"], ["lab", "status"], ["report"],
                 ["plan"], ["recover"], ["experiments"]):
        result = CliRunner().invoke(cli.main, [*argv, "-h"])
        assert result.exit_code == 0 and "Usage:" in result.output, argv


@pytest.mark.parametrize(("error", "code"), [
    (ConfigError("bad key"), cli.EXIT_CONFIG), (LabError("lab down"), cli.EXIT_LAB),
    (TargetError("no answer"), cli.EXIT_TARGET), (GamedayError("other"), cli.EXIT_FAILED)])
def test_one_exit_code_per_kind_of_error(tmp_path: Path, error: GamedayError,
                                         code: int) -> None:
    lab = fakes.write_lab(tmp_path)
    with mock.patch.object(recovery, "recover", side_effect=error):
        result = CliRunner().invoke(cli.main, ["recover", "--lab-file", str(lab)])
    assert result.exit_code == code
    assert result.output.strip().splitlines()[-1] == f"Error: {error}"


def test_the_exit_codes_are_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for code in range(7):
        assert f"\n| {code} | " in readme, code
    assert len({cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_CONFIG, cli.EXIT_LAB, cli.EXIT_TARGET,
                cli.EXIT_OUTPUT}) == 6


def test_recover_as_json_and_its_steps_on_stderr(tmp_path: Path) -> None:
    lab_file = fakes.write_lab(tmp_path)

    def fake_recover(drill: Any, **kwargs: Any) -> recovery.Recovery:
        logging.getLogger("chaostoolkit.gameday.drill.recovery").info(
            "gameday: reverted block-egress")
        return recovery.Recovery(done=["reverted block-egress on region-1"], left=[])

    with mock.patch.object(recovery, "recover", side_effect=fake_recover) as rec:
        result = CliRunner().invoke(cli.main, ["recover", "--lab-file", str(lab_file), "--json"])
    assert result.exit_code == 0, result.output
    assert rec.call_args.args[0].lab.path == str(lab_file)
    assert json.loads(result.stdout) == {"done": ["reverted block-egress on region-1"], "left": []}
    assert "gameday: reverted block-egress" in result.stderr  # the step, as it was taken


def test_recover_as_json_exits_non_zero_while_something_is_left(tmp_path: Path) -> None:
    lab_file = fakes.write_lab(tmp_path)
    left = recovery.Recovery(done=[], left=["scale-to-zero on region-1 (applied)"])
    with mock.patch.object(recovery, "recover", return_value=left):
        result = CliRunner().invoke(cli.main, ["recover", "--lab-file", str(lab_file), "--json"])
    assert result.exit_code == cli.EXIT_FAILED
    assert json.loads(result.stdout)["left"] == ["scale-to-zero on region-1 (applied)"]


def test_experiments_as_json() -> None:
    result = CliRunner().invoke(cli.main, ["experiments", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    names = {e["name"] for e in listed["experiments"]}
    assert {"game-day", "failback"} <= names
    assert all(Path(e["path"]).is_file() for e in listed["experiments"])
    one = json.loads(CliRunner().invoke(cli.main, ["experiments", "--path", "failback",
                                                   "--json"]).output)
    assert one["name"] == "failback" and one["path"].endswith("failback.json")


def test_plan_reads_the_lab_file_it_is_given(tmp_path: Path) -> None:
    lab = fakes.write_lab(tmp_path)
    env = {"GAMEDAY_LAB": str(tmp_path / "not-this-one.json"), "GAMEDAY_REPORTS": str(tmp_path)}
    args = ["plan", "game-day", "--no-gate", "--json"]
    elsewhere = CliRunner(env=env).invoke(cli.main, args)
    assert elsewhere.exit_code == 1 and "not-this-one.json" in elsewhere.output
    given = CliRunner(env=env).invoke(cli.main, [*args, "--lab-file", str(lab)])
    assert given.exit_code == 0, given.output
    assert json.loads(given.output)["refused"] is False
