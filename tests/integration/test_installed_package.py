"""gameday installed with `pip install .` into a fresh venv, used from a directory outside
the checkout: the package carries its data (schemas, storefront.sql, the experiments),
`chaos discover chaostoolkit-gameday --no-install` lists its activities, the lab comes up,
the shipped game day runs and passes, the lab goes down."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.integration.conftest import ROOT, lab_namespaces


def run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_pip_install_outside_the_checkout_runs_a_game_day(lab_env: dict[str, str],
                                                          installed_venv: Path,
                                                          tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    venv = installed_venv  # `pip install .` into a fresh venv (conftest.PackageInstall)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # no PYTHONPATH, no checkout on the path: only what the wheel carries
    env = {k: v for k, v in lab_env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    site = run([str(venv / "bin" / "python"), "-c",
                "import gameday, pathlib; print(pathlib.Path(gameday.__file__).parent)"],
               cwd=elsewhere, env=env).stdout.strip()
    assert not site.startswith(str(ROOT)), site
    for data in ("labs/storefront.sql", "foundation/descriptor.schema.json",
                 "measure/summary.schema.json", "experiments/game-day.json",
                 "experiments/failback.json"):
        assert (Path(site) / data).is_file(), data
    # Chaos Toolkit finds the extension by its distribution name, already installed
    run([str(venv / "bin" / "chaos"), "--no-version-check", "discover", "chaostoolkit-gameday",
         "--no-install", "--no-system-info", "--discovery-path", "discovery.json"],
        cwd=elsewhere, env=env)
    discovery = json.loads((elsewhere / "discovery.json").read_text())
    assert discovery["extension"]["name"] == "chaostoolkit-gameday"
    names = {a["name"] for a in discovery["activities"]}
    assert {"take_region_down", "promote", "wait_for_recovery", "rto_seconds"} <= names, names
    experiment = run([str(venv / "bin" / "gameday"), "experiments", "--path", "game-day"],
                     cwd=elsewhere, env=env).stdout.strip()
    assert experiment.startswith(site)
    try:
        run([str(venv / "bin" / "gameday"), "lab", "up"], cwd=elsewhere, env=env)
        run([str(venv / "bin" / "chaos"), "--no-version-check", "run", "--journal-path",
             str(tmp_path / "journal.json"), experiment], cwd=elsewhere, env=env)
        summary = json.loads((Path(env["GAMEDAY_REPORTS"]) / "latest" / "summary.json")
                             .read_text())
        assert summary["verdict"] == "pass", summary["reasons"]
    finally:
        run([str(venv / "bin" / "gameday"), "lab", "down"], cwd=elsewhere, env=env)
    assert lab_namespaces() == []
