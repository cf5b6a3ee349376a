"""Configuration that is documented does something: `k_consecutive` reaches the wait for
recovery (the shipped experiments passed `"consecutive": 5` to it, so `--var
k_consecutive=3` changed the report's rule but not the wait), and the budget's allowances
and the regression factor reach the report through the run's recorded configuration."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from chaoslib import substitute
from chaoslib.exceptions import ActivityFailed

from gameday import cli
from gameday.actions import wait
from gameday.drill import context as drills
from gameday.foundation.settings import GamedaySettings
from gameday.measure import run as runs
from gameday.measure.store import timeline
from tests.unit import fakes

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "gameday" / "experiments"


def _stored_recovery(run_dir: Path, served: int) -> runs.Run:
    """A run whose fault is at t=1 and whose last `served` global requests (and a canary
    write) were served by region-2, after failures: K of them is reached only for K <=
    `served`."""
    run_dir.mkdir()
    timeline.create(run_dir, {"run_id": "r", "anchor_ns": 1})
    conn = timeline.connect(run_dir)
    with conn:
        conn.execute("INSERT INTO events VALUES (1.0, 'fault-applied', 'region-1', '{}')")
        rows = [(1.0 + i / 10, "global", 0, None, None, None, 0.5, 0.0, "ConnectError")
                for i in range(10)]
        rows += [(2.0 + i / 10, "global", 1, 200, "region-2", "198.18.0.12", 0.01, 0.0, None)
                 for i in range(served)]
        cols = timeline.COLUMNS["http"]
        conn.executemany(f"INSERT INTO http VALUES ({', '.join('?' * len(cols))})", rows)
        conn.execute("INSERT INTO canary VALUES (1, 0, 2.0, 2.01, 'ok', '127.0.0.1', NULL, NULL)")
        # the resolver answers region-2 (the wait waits for every resolver's flip too)
        conn.execute(timeline.insert_sql("dns"), timeline.DnsSample(
            2.0, "resolver", 1, "198.18.0.12", "NOERROR", 1, 0.001, 0.0, None, "", "region-2"))
    conn.close()
    return runs.Run(run_dir, timeline.Clock(1))


def _wait_step(experiment: str, *var: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shipped experiment's wait-for-recovery arguments as `chaos run --var ...` would
    call it (vars applied, `${...}` substituted), and the run's configuration."""
    loaded, configuration, _ = cli._load_experiment(str(SHIPPED / experiment), var, ())
    (step,) = [a for a in loaded["method"] if a["provider"].get("func") == "wait_for_recovery"]
    return substitute(step["provider"].get("arguments") or {}, configuration, {}), configuration


@pytest.mark.parametrize("experiment", ["game-day.json", "game-day.yaml", "failback.json",
                                        "game-day-long.json", "game-day-autonomous.json",
                                        "failback-autonomous.json"])
def test_var_k_consecutive_changes_the_wait_for_recovery(experiment: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    lab_file = fakes.write_lab(tmp_path)
    run = _stored_recovery(tmp_path / "run", served=3)
    region = "region-2"
    for k, recovers in (("3", True), ("5", False)):
        args, configuration = _wait_step(experiment, f"k_consecutive={k}")
        configuration["lab_file"] = str(lab_file)
        # the control's context of this run: built from the same configuration
        drills.publish(fakes.drill(lab_file, run=run, configuration=configuration))
        args = {**args, "region": region, "timeout_s": 0.3}
        if recovers:
            assert wait.wait_for_recovery(**args, configuration=configuration)["region"] == region
        else:
            with pytest.raises(ActivityFailed, match="no global requests served by it"):
                wait.wait_for_recovery(**args, configuration=configuration)
        assert GamedaySettings.from_chaos(configuration).k_consecutive == int(k)


def test_an_explicit_consecutive_argument_still_wins(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    lab_file = fakes.write_lab(tmp_path)
    configuration = {"lab_file": str(lab_file), "k_consecutive": 5}
    drills.publish(fakes.drill(lab_file, run=_stored_recovery(tmp_path / "run", served=3),
                               configuration=configuration))
    assert wait.wait_for_recovery("region-2", 0.3, "3", configuration=configuration)


def test_budget_allowances_and_regression_factor_are_settings() -> None:
    s = GamedaySettings.from_chaos({"promotion_budget_s": "2.5", "write_reconnect_s": 0.5,
                                    "regression_factor": 2})
    assert (s.budget.promotion_s, s.budget.write_reconnect_s) == (2.5, 0.5)
    assert s.results.regression_factor == 2.0
    from gameday.foundation.errors import ConfigError

    with pytest.raises(ConfigError, match="'regression_factor' must be a finite number >= 1"):
        GamedaySettings.from_chaos({"regression_factor": 0.5})


def test_the_control_records_what_the_report_reads(tmp_path: Path) -> None:
    """The budget reads promotion_budget_s and write_reconnect_s, the trend
    regression_factor, from the run's recorded configuration: the settings record them,
    and the run records its experiment_id."""
    settings = GamedaySettings.from_chaos({"lab_file": str(fakes.write_lab(tmp_path)),
                                           "promotion_budget_s": 2, "regression_factor": 3})
    recorded = settings.recorded(settings.load_lab())["configuration"]
    assert (recorded["promotion_budget_s"], recorded["write_reconnect_s"],
            recorded["regression_factor"]) == (2.0, 1.0, 3.0)
    assert "experiment_id" in inspect.signature(runs.start).parameters
    text = json.loads((SHIPPED / "game-day.json").read_text())
    assert text["configuration"]["experiment_id"] == "game-day"


@pytest.mark.parametrize("experiment", ["game-day.json", "game-day.yaml", "failback.json",
                                        "game-day-long.json", "game-day-autonomous.json",
                                        "failback-autonomous.json"])
def test_every_documented_key_can_be_set_with_var(experiment: str) -> None:
    """chaoslib drops a `--var` whose key the experiment does not declare: the shipped
    experiments declare each key of the results and the stop conditions."""
    _, configuration, _ = cli._load_experiment(str(SHIPPED / experiment), (
        "regression_factor=2", "promotion_budget_s=3", "write_reconnect_s=0.5",
        "live_view=quiet", "pushgateway_url=http://127.0.0.1:9091", "max_outage_s=120",
        "abort_check_interval_s=2", "ready_timeout_s=3",
        'abort_when=[{"type": "command", "command": "true", "name": "ok"}]'), ())
    s = GamedaySettings.from_chaos(configuration)
    assert s.results.regression_factor == 2 and s.results.live_view == "quiet"
    assert (s.budget.promotion_s, s.budget.write_reconnect_s) == (3, 0.5)
    assert s.results.pushgateway_url == "http://127.0.0.1:9091"
    assert s.stop.max_outage_s == 120 and s.stop.interval_s == 2
    assert [c.name for c in s.stop.conditions] == ["ok"]
    assert s.ready_timeout_s == 3
    defaults = GamedaySettings.from_chaos(cli._load_experiment(str(SHIPPED / experiment),
                                                               (), ())[1])
    assert not defaults.stop.active and defaults.results.pushgateway_url is None
    assert defaults.results.experiment_id == Path(experiment).stem
