"""scripts/ci-game-day.sh, the scheduled workflow's netns job, run here as the workflow runs
it: the real lab up, the game day and the failback, each run's report with
--fail-on-regression, the step summary, and the lab down, also when it is stopped half-way.
Isolated through GAMEDAY_HOME / GAMEDAY_LAB / GAMEDAY_REPORTS (see conftest.lab_env)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from xml.etree import ElementTree as ET

from tests.integration.conftest import ROOT, residue

SCRIPT = ROOT / "scripts" / "ci-game-day.sh"


def _run_dirs(reports: Path) -> list[Path]:
    return sorted(p for p in reports.glob("2*") if (p / "timeline.sqlite").is_file())


def test_ci_game_day_script_passes_and_leaves_the_machine_as_it_found_it(
    lab_env: dict[str, str], tmp_path: Path
) -> None:
    # a reports directory of its own, as the workflow's (its cache holds only scheduled
    # runs): the session's earlier drills, run under other tests' load, are no history to
    # judge --fail-on-regression against
    reports = tmp_path / "reports"
    step_summary = tmp_path / "step-summary.md"
    env = {**lab_env, "GITHUB_STEP_SUMMARY": str(step_summary), "GAMEDAY_REPORTS": str(reports)}
    before = _run_dirs(reports) if reports.exists() else []
    started = time.monotonic()
    proc = subprocess.run([str(SCRIPT)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    took = time.monotonic() - started
    output = proc.stdout + proc.stderr
    print(f"scripts/ci-game-day.sh: exit {proc.returncode} in {took:.0f} s")
    assert proc.returncode == 0, output[-4000:]

    runs = [r for r in _run_dirs(reports) if r not in before]
    assert len(runs) == 2, runs  # the game day, then the failback
    drills = []
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["verdict"] == "pass" and summary["lab"] == "netns", summary["reasons"]
        # make game-day runs the application canary beside the database canary: under sync
        # replication both lose nothing, and the report has them side by side
        app = summary["app_writes"]
        assert app["read_error"] is None and app["writes"]["acked"] > 0, app
        assert app["writes"]["lost"] == summary["writes"]["lost"] == 0, app
        assert "## Both canaries" in (run / "report.md").read_text()
        drills.append(summary["experiment"])
    assert len(set(drills)) == 2
    # JUnit for the CI test view: each drill published once, the failback's suite in the
    # game day's file (its block is there); no case twice across the files the workflow globs
    files = sorted((reports / "junit").glob("*.xml"))
    assert [f.stem for f in files] == [runs[0].name], files
    suites, cases = [], []
    for f in files:
        junit = ET.parse(f).getroot()
        assert junit.get("failures") == "0", f.read_text()
        suites += [s.get("name") for s in junit.iter("testsuite")]
        cases += [(tc.get("classname"), tc.get("name")) for tc in junit.iter("testcase")]
        assert all(float(s.get("time") or 0) > 0 for s in junit.iter("testsuite"))
    assert suites == ["gameday failover: game-day", "gameday failback: failback"]
    assert len(cases) == len(set(cases)) > 10
    for journal in ("journal-game-day.json", "journal-failback.json"):
        assert json.loads((reports / journal).read_text())["status"] == "completed"
    history = (reports / "history.jsonl").read_text().splitlines()
    assert {json.loads(line)["run_id"] for line in history} >= {r.name for r in runs}

    # The PostgreSQL the lab found, named in the summary: the newest major installed.
    majors = sorted(int(p.name) for p in Path("/usr/lib/postgresql").glob("*")
                    if (p / "bin" / "postgres").exists())
    text = step_summary.read_text()
    assert "## netns game day" in text
    assert f"(PostgreSQL) {majors[-1]}." in text, text
    for run in runs:  # and each run appended its verdict there
        assert run.name in text

    assert residue(lab_env, []) == []
    assert not Path(lab_env["GAMEDAY_LAB"]).exists()


def test_ci_game_day_script_stopped_half_way_still_takes_the_lab_down(
    lab_env: dict[str, str]
) -> None:
    """As a cancelled workflow run: SIGTERM to the script's process group once the lab is
    up. Its trap must still run `make lab-down`."""
    lab_file = Path(lab_env["GAMEDAY_LAB"])
    proc = subprocess.Popen([str(SCRIPT)], env=lab_env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        while not lab_file.exists():
            assert proc.poll() is None, f"exited before the lab was up: {proc.stdout.read()}"
            assert time.monotonic() < deadline, "the lab did not come up in 600 s"
            time.sleep(0.1)
        time.sleep(2)  # the drill has started (or is starting)
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:  # only our own process group, by its id
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, output[-3000:]
    assert "taking the lab down" in output, output[-3000:]
    _wait_group_gone(proc.pid)
    assert residue(lab_env, []) == [], output[-3000:]
    # the recorder runs in a session of its own (a Ctrl-C is for the runner), so it is not
    # in the script's group: it must end with its runner all the same (a SIGTERM while the
    # runner waited for it left one sampling for half an hour)
    deadline = time.monotonic() + 15
    while (left := _recorders_of(lab_env)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:  # only the recorders writing into this session's reports, by pid
        os.kill(pid, signal.SIGKILL)
    assert not left, f"recorders outlived the stopped run: {left}"


def _recorders_of(env: dict[str, str]) -> list[int]:
    """The live recorder processes whose run directory is under this session's reports."""
    reports = env["GAMEDAY_REPORTS"].encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"gameday.measure.recorder" in argv and state != "Z" \
                and any(arg.startswith(reports) for arg in argv):
            found.append(int(entry.name))
    return found


def _wait_group_gone(pgid: int, timeout: float = 120) -> None:
    """The drill's own processes (chaos, the recorder) end on the same signal; wait for them
    so that the residue check sees the end state. Kill what is left of our group after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)
    raise AssertionError(f"processes of the script's group still ran {timeout:g} s after it ended")
