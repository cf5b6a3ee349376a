"""Bad input: a one-line error that names the fix, a non-zero exit, and no fault injected.
All on the shared lab (conftest.shared_lab); every case must leave it as it was."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, chaos, gameday, lab_status

_before: dict[str, str] = {}


def _ledger(env: dict[str, str]) -> str:
    ledger = Path(env["GAMEDAY_HOME"]) / "faults.jsonl"
    return ledger.read_text() if ledger.exists() else ""


@pytest.fixture
def lab(shared_lab: dict[str, str]) -> Iterator[dict[str, str]]:
    """The shared lab, and its fault ledger as the case found it (earlier drills on it left
    their reverted faults there)."""
    _before["ledger"] = _ledger(shared_lab)
    yield shared_lab


def no_fault(env: dict[str, str]) -> None:
    assert _ledger(env) == _before["ledger"], _ledger(env)  # not a line more
    assert not (Path(env["GAMEDAY_HOME"]) / "drill.json").exists()
    status = lab_status(env)
    assert all(status["processes"].values()), status["processes"]


def with_descriptor(env: dict[str, str], tmp_path: Path, change) -> dict[str, str]:
    data = json.loads(Path(env["GAMEDAY_LAB"]).read_text())
    change(data)
    bad = tmp_path / "lab.json"
    bad.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return {**env, "GAMEDAY_LAB": str(bad)}


def error_line(proc: subprocess.CompletedProcess[str], needle: str) -> str:
    out = proc.stdout + proc.stderr
    lines = [ln for ln in out.splitlines() if needle in ln and not ln.startswith(("│", "╭", "╰"))]
    assert lines, out[-3000:]
    return lines[0]


def test_malformed_experiment(lab: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text((ROOT / "experiments" / "game-day.json").read_text()[:-40])
    proc = chaos(str(broken), env=lab, timeout=120)
    assert proc.returncode != 0
    no_fault(lab)


def test_malformed_descriptor(lab: dict[str, str], tmp_path: Path) -> None:
    env = with_descriptor(lab, tmp_path, lambda d: d["regions"][1].update(role="primary"))
    proc = chaos("game-day.json", env=env, timeout=120)
    assert proc.returncode != 0
    assert "one 'primary' and one 'secondary'" in error_line(proc, "gameday:")
    no_fault(lab)


def test_unknown_fault_name(lab: dict[str, str]) -> None:
    proc = chaos("game-day.json", env=lab, timeout=180, extra=("--var", "region_faults=meteor"))
    assert proc.returncode != 0
    assert "unknown fault meteor: choose from scale-to-zero" in error_line(proc, "stopping the drill")
    no_fault(lab)


def test_target_that_is_not_a_number(lab: dict[str, str]) -> None:
    proc = chaos("game-day.json", env=lab, timeout=120, extra=("--var", "rto_target_s=soon"))
    assert proc.returncode != 0
    assert "--var rto_target_s=NUMBER" in error_line(proc, "must be a number")
    no_fault(lab)


def test_dns_server_unreachable(lab: dict[str, str], tmp_path: Path) -> None:
    env = with_descriptor(lab, tmp_path,
                          lambda d: d["dns"]["authoritative"].update(address="198.18.0.99"))
    proc = chaos("game-day.json", env=env, timeout=180,
                 extra=("--var", "ready_timeout_s=1"))
    assert proc.returncode != 0
    assert "198.18.0.99" in error_line(proc, "not ready for a fault")
    no_fault(lab)


def test_database_unreachable(lab: dict[str, str], tmp_path: Path) -> None:
    env = with_descriptor(lab, tmp_path, lambda d: d["regions"][1].update(db_host="198.18.0.98"))
    proc = chaos("game-day.json", env=env, timeout=180, extra=("--var", "ready_timeout_s=1"))
    assert proc.returncode != 0
    assert "cannot reach the database of region-2" in error_line(proc, "not ready for a fault")
    no_fault(lab)


def test_wrong_password(lab: dict[str, str], tmp_path: Path) -> None:
    env = with_descriptor(lab, tmp_path, lambda d: d["database"].update(password="not-it"))
    proc = chaos("game-day.json", env=env, timeout=120)
    assert proc.returncode != 0
    line = error_line(proc, "cannot reach the writable database")
    assert "password authentication failed" in line and "not-it" not in line
    no_fault(lab)


def test_descriptor_that_does_not_match_what_runs(lab: dict[str, str], tmp_path: Path) -> None:
    env = with_descriptor(lab, tmp_path, lambda d: d.update(state_dir=str(tmp_path / "nothing")))
    proc = chaos("game-day.json", env=env, timeout=120)
    assert proc.returncode != 0
    assert "gameday lab down" in error_line(proc, "does not match what is running")
    no_fault(lab)


def test_second_lab_up(lab: dict[str, str]) -> None:
    proc = gameday("lab", "up", env=lab, check=False)
    assert proc.returncode != 0 and "already up" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    no_fault(lab)


def test_lab_addresses_already_in_use(lab_env: dict[str, str], lab: dict[str, str]) -> None:
    """A foreign interface holding the lab's range: `lab up` refuses and creates nothing.
    (The shared lab is up; a second state dir shows the check runs before anything.)"""
    other = {**lab_env, "GAMEDAY_HOME": lab_env["GAMEDAY_HOME"] + "-other"}
    # no `dummy` module in this kernel: one end of a veth pair is an interface as good
    subprocess.run(["ip", "link", "add", "gd-test-dummy", "type", "veth", "peer", "name",
                    "gd-test-peer"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "198.18.0.200/24", "dev", "gd-test-dummy"], check=True)
        proc = gameday("lab", "up", env=other, check=False)
        assert proc.returncode != 0
        assert "already in use on gd-test-dummy" in proc.stderr
        assert not Path(other["GAMEDAY_HOME"]).exists()
    finally:
        subprocess.run(["ip", "link", "del", "gd-test-dummy"], check=False)
    no_fault(lab)
