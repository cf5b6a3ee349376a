"""The recorder refuses to start where the canary's cancel of an overdue write would block.

With libpq older than 17, psycopg's `cancel_safe` falls back to PQcancel, a blocking call
that holds the GIL: one cancel sent to a cut-off region froze every sampler. The check runs
against a real old libpq: the system's (Debian 12 ships libpq 15), which psycopg's pure
Python implementation loads when PSYCOPG_IMPL=python."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.unit import fakes

ROOT = Path(__file__).resolve().parents[2]
START = """
import sys
from pathlib import Path
from gameday.measure import run
from gameday.foundation.settings import GamedaySettings
from gameday.foundation.errors import GamedayError
import tests.unit.fakes  # registers the `fake` driver the descriptor names
settings = GamedaySettings.from_chaos({"lab_file": sys.argv[1], "reports_dir": sys.argv[2]})
try:
    run.start(settings, settings.load_lab(), experiment="game day", kind="failover")
except GamedayError as exc:
    sys.exit(f"refused: {exc}")
"""


def _system_libpq() -> int:
    """The version of the libpq psycopg's Python implementation finds, 0 when none."""
    proc = subprocess.run([sys.executable, "-c", "import psycopg; print(psycopg.pq.version())"],
                          env={**os.environ, "PSYCOPG_IMPL": "python"}, capture_output=True,
                          text=True)
    return int(proc.stdout) if proc.returncode == 0 else 0


@pytest.fixture(scope="module")
def old_libpq() -> dict[str, str]:
    version = _system_libpq()
    if not 0 < version < 170000:
        pytest.skip(f"needs a system libpq older than 17 to load (found {version or 'none'}): "
                    "the bundled one of psycopg[binary] has the non-blocking cancel")
    return {**os.environ, "PSYCOPG_IMPL": "python", "PYTHONPATH": str(ROOT)}


def test_the_run_refuses_to_start_the_recorder(old_libpq: dict[str, str],
                                               tmp_path: Path) -> None:
    lab = fakes.write_lab(tmp_path)
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-c", START, str(lab), str(reports)],
                          env=old_libpq, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line, line
    assert line.startswith("refused: the canary needs libpq 17 or newer"), line
    assert "(python) uses libpq 15." in line or "(python) uses libpq 16." in line, line
    assert "pip install -U 'psycopg[binary]>=3.2.3'" in line, line
    assert not reports.exists()  # refused before anything: no run directory


def test_a_recorder_started_by_hand_refuses_too(old_libpq: dict[str, str],
                                                tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gameday.measure.recorder", str(tmp_path)],
                          env=old_libpq, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("gameday recorder: the canary needs libpq 17")
    assert "\n" not in proc.stderr.strip()


def test_the_bundled_libpq_has_the_non_blocking_cancel() -> None:
    """What `pip install gameday` brings: psycopg[binary] at its lower bound or newer."""
    import psycopg

    assert psycopg.pq.__impl__ == "binary", psycopg.pq.__impl__
    assert psycopg.pq.version() >= 170000, psycopg.pq.version()
    assert psycopg.capabilities.has_cancel_safe()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    psycopg_dep = next(d for d in deps if d.startswith("psycopg"))
    assert psycopg_dep.startswith("psycopg[binary]>=3.2.3,"), psycopg_dep
