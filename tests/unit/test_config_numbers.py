"""Non-finite numbers in the configuration are refused with one line naming the key.

NaN and infinity arrive without anyone meaning them: `--var ready_timeout_s=nan`, YAML's
`.inf`, JSON's `NaN`, a string "Infinity" (float() takes all of them). A NaN timeout never
ends, since every comparison with NaN is false, and int(inf) raises OverflowError. Each
check that can hang runs in a thread with a bound, so the old behaviour fails the test
instead of hanging the suite."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gameday import cli, postgres
from gameday.drill import hypothesis
from gameday.foundation import descriptor
from gameday.foundation.errors import ConfigError
from gameday.foundation.poll import poll_until
from gameday.foundation.settings import GamedaySettings
from tests.unit import fakes

ROOT = Path(__file__).resolve().parents[2]
NON_FINITE = [float("nan"), float("inf"), float("-inf"), "nan", "Infinity", "-inf"]


def _keys_read_by_settings() -> list[str]:
    """Every key GamedaySettings parses as a number, read from its source: a key added
    later is checked here without anyone remembering to."""
    source = (ROOT / "gameday" / "foundation" / "settings.py").read_text()
    return sorted(set(re.findall(r'number\(c, "(\w+)"', source)))


def _bounded(call: Callable[[], Any], seconds: float = 5.0) -> Any:
    """The result (or exception) of `call`, failing the test if it has not returned in
    `seconds` (the thread is left behind: it would wait forever)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: it would never end"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_every_numeric_key_is_known() -> None:
    keys = _keys_read_by_settings()
    assert {"ready_timeout_s", "k_consecutive", "rto_target_s", "promotion_timeout_s",
            "canary_writers", "canary_max_rate"} <= set(keys), keys


@pytest.mark.parametrize("key", _keys_read_by_settings())
@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_a_non_finite_number_is_one_line_naming_the_key(tmp_path: Path, key: str,
                                                        value: Any) -> None:
    lab = fakes.write_lab(tmp_path)
    with pytest.raises(ConfigError) as info:
        GamedaySettings.from_chaos({"lab_file": str(lab), key: value})
    message = str(info.value)
    assert f"configuration '{key}' must be a" in message and "\n" not in message, message


def test_k_consecutive_inf_is_refused_not_an_overflow(tmp_path: Path) -> None:
    lab = fakes.write_lab(tmp_path)
    with pytest.raises(ConfigError, match="'k_consecutive' must be a whole number >= 1"):
        GamedaySettings.from_chaos({"lab_file": str(lab), "k_consecutive": float("inf")})


def test_the_gate_with_a_nan_timeout_refuses_at_once(tmp_path: Path) -> None:
    """The gate waits `ready_timeout_s`: a NaN one would never end. The settings the gate
    is given refuse it, at once, before any gate runs."""
    lab = fakes.write_lab(tmp_path)
    with pytest.raises(ConfigError) as info:
        _bounded(lambda: GamedaySettings.from_chaos({"lab_file": str(lab),
                                                     "ready_timeout_s": "nan"}))
    assert str(info.value) == ("configuration 'ready_timeout_s' must be a finite number >= 0, "
                               "got 'nan'")


def test_gameday_plan_with_a_nan_gate_timeout_is_refused(tmp_path: Path) -> None:
    """As a user would give it: `--var` (Chaos Toolkit substitutes only the keys the
    experiment declares, so this one declares the gate's timeout)."""
    lab = fakes.write_lab(tmp_path)
    experiment = tmp_path / "experiment.json"
    experiment.write_text(json.dumps({
        "title": "a game day", "description": "the gate's timeout is configurable",
        "configuration": {"ready_timeout_s": 20},
        "controls": [{"name": "gameday",
                      "provider": {"type": "python", "module": "gameday.control"}}],
        "method": [{"type": "action", "name": "promote", "provider": {
            "type": "python", "module": "gameday.actions.database", "func": "promote",
            "arguments": {"region": "region-2"}}}]}))

    def plan() -> Any:
        return CliRunner(env={"GAMEDAY_LAB": str(lab),
                              "GAMEDAY_REPORTS": str(tmp_path / "r")}).invoke(
            cli.main, ["plan", str(experiment), "--var", "ready_timeout_s=nan"])

    result = _bounded(plan, 20.0)
    assert result.exit_code == 1, result.output
    assert "REFUSED: configuration 'ready_timeout_s' must be a finite number" in result.output
    assert fakes.world(lab).calls == []


def test_a_tolerance_bound_to_an_infinite_target_is_refused() -> None:
    experiment = {"steady-state-hypothesis": {"probes": [{
        "type": "probe", "name": "rto", "tolerance": {
            "type": "range", "range": [0, 30], "gameday": {"upper": "rto_target_s"}},
        "provider": {"type": "python", "module": "gameday.probes.verdict",
                     "func": "rto_seconds"}}]}}
    with pytest.raises(ConfigError, match="'rto_target_s' must be a finite number"):
        hypothesis.bind(experiment, {"rto_target_s": "inf"})
    assert experiment["steady-state-hypothesis"]["probes"][0]["tolerance"]["range"] == [0, 30]


@pytest.mark.parametrize("timeout", [float("nan"), float("inf")])
def test_a_wait_given_a_non_finite_timeout_refuses(timeout: float) -> None:
    """Activity arguments (`timeout_s`, `${var}` substituted from the configuration) reach
    poll_until without passing the settings: every wait refuses one it can never end."""
    with pytest.raises(ConfigError, match="give a finite number of seconds"):
        _bounded(lambda: poll_until(lambda: False, timeout_s=timeout, interval_s=0.01,
                                    interruptible=False, what="the region"))


def test_a_promotion_given_a_nan_timeout_refuses_before_connecting(tmp_path: Path) -> None:
    lab = descriptor.load(fakes.write_lab(tmp_path))
    with pytest.raises(ConfigError, match="promotion of region-2 was given a timeout of nan"):
        postgres.promote(lab, lab.region("region-2"), float("nan"), clock=lambda: 0.0)
