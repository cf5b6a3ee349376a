"""Stop conditions on the real lab: a drill whose `abort_when` fires mid-drill, and one whose
outage passes `max_outage_s`, roll back at once; the verdict is ABORTED with the reason,
`chaos run` exits non-zero, and the lab is left with no fault and one writable primary.

Both drills run with `promotion: none` on a lab without an HA manager: nobody promotes
region-2, so the failover can never complete by itself and the stop condition is what ends
it, at a known point (no race with a promotion). They run on the shared lab (each drill
leaves it as it found it, which is what the test checks)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import chaos
from tests.integration.test_interruptions import _states, assert_consistent

# the promote step waits this long for a promotion nobody makes: an abort must come first
PROMOTE_TIMEOUT_S = 30


@pytest.fixture
def lab(shared_lab: dict[str, str]) -> dict[str, str]:
    return shared_lab


def _drill(env: dict[str, str], tmp_path: Path, configuration: dict) -> tuple[int, dict, float]:
    var_file = tmp_path / "vars.yaml"
    var_file.write_text(yaml.safe_dump({"configuration": {"promotion": "none",
                                                          **configuration}}))
    started = time.monotonic()
    proc = chaos("game-day.json", env=env, timeout=300, extra=("--var-file", str(var_file)))
    took = time.monotonic() - started
    run = Path(env["GAMEDAY_REPORTS"]) / "latest"
    summary = json.loads((run / "summary.json").read_text())
    print(f"chaos run: exit {proc.returncode} in {took:.1f} s; verdict {summary['verdict']}: "
          f"{summary['reasons']}")
    if summary["verdict"] != "aborted":
        print(proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.returncode, summary, took


def _events(env: dict[str, str]) -> list[tuple[float, str]]:
    import sqlite3

    run = Path(env["GAMEDAY_REPORTS"]) / "latest" / "timeline.sqlite"
    conn = sqlite3.connect(run)
    try:
        return [(t, k) for t, k in conn.execute("SELECT t, kind FROM events ORDER BY t")]
    finally:
        conn.close()


def _rolled_back_at_once(env: dict[str, str]) -> float:
    """Seconds from the abort to the first fault reverted."""
    events = _events(env)
    aborted = next(t for t, k in events if k == "aborted")
    reverted = next(t for t, k in events if k == "fault-reverted" and t >= aborted)
    assert next(t for t, k in events if k == "fault-applied") < aborted
    print(f"abort -> first fault reverted: {reverted - aborted:.3f} s")
    return reverted - aborted


def test_abort_when_fires_mid_drill_and_rolls_back(lab: dict[str, str], tmp_path: Path) -> None:
    """A command condition, the way a team wires its alarm: it passes (exit 0) until the
    fault ledger holds an applied fault, so it fires mid-drill, after the fault, while the
    drill waits for a promotion nobody makes."""
    ledger = Path(lab["GAMEDAY_HOME"]) / "faults.jsonl"
    # only this drill's lines: the shared lab's ledger holds earlier drills' applied faults
    start = len(ledger.read_text().splitlines()) + 1 if ledger.exists() else 1
    alarm = ["sh", "-c", f"if tail -n +{start} {ledger} 2>/dev/null | grep -q applied; then "
                         "echo 'alarm: region-1 is down'; exit 1; fi"]
    code, summary, took = _drill(lab, tmp_path, {
        "abort_check_interval_s": 0.2,
        "abort_when": [{"name": "pager", "type": "command", "command": alarm}]})
    assert code != 0
    assert summary["verdict"] == "aborted", summary["reasons"]
    assert summary["reasons"][0].startswith("aborted: stop condition pager: `sh -c ")
    assert "exited 1: alarm: region-1 is down" in summary["reasons"][0]
    assert took < PROMOTE_TIMEOUT_S + 30  # not the promote step's own timeout
    assert _rolled_back_at_once(lab) < 10
    assert_consistent(lab)  # no fault left, one writable primary
    assert _states(lab)["region-1"] == (False, "off"), _states(lab)  # region-1 serves again


def test_a_stop_condition_that_cannot_be_read_aborts(lab: dict[str, str], tmp_path: Path) -> None:
    """Fail closed: region-1's health endpoint stops answering once the outage took it
    down; a condition that cannot be evaluated is no protection, so the drill stops."""
    lab_file = json.loads(Path(lab["GAMEDAY_LAB"]).read_text())
    region_1 = lab_file["regions"][0]["storefront_url"].rstrip("/") + "/healthz"
    code, summary, _ = _drill(lab, tmp_path, {
        "abort_check_interval_s": 0.2,
        "abort_when": [{"name": "region-1-health", "type": "http", "url": region_1,
                        "timeout_s": 1}]})
    assert code != 0 and summary["verdict"] == "aborted", summary["reasons"]
    assert summary["reasons"][0].startswith("aborted: stop condition region-1-health")
    assert _rolled_back_at_once(lab) < 10
    assert_consistent(lab)
    assert _states(lab)["region-1"] == (False, "off"), _states(lab)  # region-1 serves again


def test_max_outage_s_restores_region_1_whatever_the_failover_state(lab: dict[str, str],
                                                                   tmp_path: Path) -> None:
    code, summary, took = _drill(lab, tmp_path, {"max_outage_s": 3,
                                                 "abort_check_interval_s": 0.2})
    assert code != 0
    assert summary["verdict"] == "aborted", summary["reasons"]
    assert "max_outage_s: region-2 has not served 5 consecutive global requests" in \
        summary["reasons"][0]
    events = _events(lab)
    fault = next(t for t, k in events if k == "fault-applied")
    aborted = next(t for t, k in events if k == "aborted")
    assert 3 <= aborted - fault < 6, aborted - fault
    assert _rolled_back_at_once(lab) < 10
    assert_consistent(lab)
    # region-1 restored, not a promotion finished that nobody had started
    assert _states(lab)["region-1"] == (False, "off"), _states(lab)
    assert not (Path(lab["GAMEDAY_HOME"]) / "drill.json").exists()
