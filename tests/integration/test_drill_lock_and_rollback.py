"""One drill per lab, and no fault outliving a run, on the real netns lab (issue 18).

1. During a drill, a second `chaos run`, `gameday recover` and `gameday lab down` are each
   refused with one line naming the drill's pid; they change nothing, and the first drill
   passes.
2. A revert that fails (region-1's storefront cannot be started again: its log path is a
   directory) does not stop the rollback: the other fault is still reverted, the verdict
   says "fault left behind" and `chaos run` exits 1; `gameday recover` exits 1 until the
   cause is gone, then reverts it and exits 0."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from gameday import cli
from tests.fixtures import experiments as composed
from tests.integration.conftest import BIN, ROOT, SharedLab, gameday
from tests.integration.test_interruptions import _wait_event, assert_consistent


def _start(env: dict[str, str], experiment: Path, journal: str
           ) -> tuple[subprocess.Popen[str], set[Path]]:
    reports = Path(env["GAMEDAY_REPORTS"])
    before = set(reports.glob("2*")) if reports.exists() else set()
    proc = subprocess.Popen(
        [str(BIN / "chaos"), "--no-version-check", "run", "--journal-path",
         str(reports.parent / journal), str(experiment)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, before


def _finish(proc: subprocess.Popen[str], timeout: float = 300) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
        return out
    finally:
        if proc.poll() is None:  # never leave a drill running behind a failed test
            proc.kill()
            proc.wait()


def _lines(env: dict[str, str]) -> list[str]:
    path = Path(env["GAMEDAY_LAB"]).parent / "faults.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def _ledger(env: dict[str, str], since: int) -> list[dict]:
    """The faults recorded after the ledger's first `since` lines (earlier drills on the
    shared lab left theirs), each with its latest state."""
    states: dict[str, dict] = {}
    for line in _lines(env)[since:]:
        rec = json.loads(line)
        states.setdefault(rec["id"], rec)["state"] = rec["state"]
    return list(states.values())


@pytest.mark.takes_shared_lab_down
def test_a_second_drill_recover_and_lab_down_are_refused_during_a_drill(
        shared_lab: dict[str, str], labs: SharedLab, tmp_path: Path) -> None:
    lab_env = shared_lab
    started = time.monotonic()
    since = len(_lines(lab_env))
    # the game day, with a pause after its last step: the drill is sure to be running
    # while the three refusals are checked
    experiment = composed.game_day()
    experiment["method"][-1]["pauses"] = {"after": 5}
    path = tmp_path / "game-day-paused.json"
    path.write_text(json.dumps(experiment))
    first, before = _start(lab_env, path, "journal-first.json")
    try:
        run_dir = _wait_event(lab_env, before, "fault-effective", first)
        others = {
            "chaos run": subprocess.Popen(
                [str(BIN / "chaos"), "--no-version-check", "run", "--journal-path",
                 str(tmp_path / "journal-second.json"), str(path)],
                env=lab_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True),
            "recover": subprocess.Popen([str(BIN / "gameday"), "recover"], env=lab_env,
                                        cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True),
            "lab down": subprocess.Popen([str(BIN / "gameday"), "lab", "down"],
                                         env=lab_env, cwd=ROOT, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True),
        }
        outputs = {what: (p.communicate(timeout=120), p.returncode)
                   for what, p in others.items()}
        assert first.poll() is None, "the first drill ended before the refusals were seen"
    finally:
        out = _finish(first)
    held = f"in use by another drill (pid {first.pid} holds "
    (second_out, _), second_rc = outputs["chaos run"]
    assert second_rc == 1 and held in second_out, second_out[-3000:]
    for what in ("recover", "lab down"):
        (stdout, stderr), rc = outputs[what]
        assert rc == cli.EXIT_LAB and held in stderr, (what, stdout, stderr)  # exit 4
        assert len(stderr.strip().splitlines()) == 1 and stdout == "", (what, stderr)
    # the second run started nothing: no run directory, no fault of its own, and its
    # rollbacks undid none of the first drill's
    reports = Path(lab_env["GAMEDAY_REPORTS"])
    assert set(reports.glob("2*")) - before == {run_dir}
    second = json.loads((tmp_path / "journal-second.json").read_text())
    assert second["run"] == [] and all(
        r["output"]["skipped"] == "restore_region" for r in second["rollbacks"])
    faults = _ledger(lab_env, since)
    assert sorted(f["fault"] for f in faults) == ["block-egress", "scale-to-zero"]
    assert all(f["state"] == "reverted" for f in faults)
    # and the first drill passed
    summary = json.loads((run_dir / "summary.json").read_text())
    assert first.returncode == 0 and summary["verdict"] == "pass", (
        summary["reasons"], out[-3000:])
    assert summary["writes"]["unexpected"] == 0 and summary["writes"]["duplicate"] == 0
    # the lab is free again once the drill ended
    done = gameday("recover", env=lab_env)
    assert done.stdout == "recover: nothing to undo\n"
    labs.down()  # region-2 serves now: the next test gets a fresh lab
    print(f"one drill per lab: {time.monotonic() - started:.1f} s, lab down included")


@pytest.mark.takes_shared_lab_down
def test_a_revert_that_fails_leaves_the_others_reverted_and_fails_the_run(
        shared_lab: dict[str, str], labs: SharedLab, tmp_path: Path) -> None:
    lab_env = shared_lab
    started = time.monotonic()
    since = len(_lines(lab_env))
    # scale-to-zero last, so the rollback (newest first) meets its failure first
    experiment = composed.game_day()
    experiment["method"][0] = composed.region_outage("block-egress,scale-to-zero")
    path = tmp_path / "game-day-failing-revert.json"
    path.write_text(json.dumps(experiment))
    # region-1's storefront cannot be started again: its log file's path is taken by a
    # directory (the running storefront keeps writing to the file it has open)
    log = Path(lab_env["GAMEDAY_HOME"]) / "logs" / "storefront-region-1.log"
    log.rename(log.with_suffix(".moved"))
    log.mkdir()
    proc, before = _start(lab_env, path, "journal-failing-revert.json")
    out = _finish(proc)
    assert proc.returncode == 1, out[-3000:]
    (run_dir,) = set(Path(lab_env["GAMEDAY_REPORTS"]).glob("2*")) - before
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "fail"
    assert summary["reasons"][0] == ("fault left behind: scale-to-zero on region-1 "
                                     "(applied); run `gameday recover`"), summary["reasons"]
    assert "could not revert scale-to-zero on region-1 (IsADirectoryError" in out
    # the other fault was reverted after the failed one: no nft table in region-1
    states = {f["fault"]: f["state"] for f in _ledger(lab_env, since)}
    assert states == {"block-egress": "reverted", "scale-to-zero": "applied"}
    tables = subprocess.run(["ip", "netns", "exec", "gd-region-1", "nft", "list", "tables"],
                            capture_output=True, text=True, check=True).stdout
    assert "gameday" not in tables
    # recover exits 1 while the fault stays, and 0 once its cause is gone
    refused = gameday("recover", env=lab_env, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "fault left behind: scale-to-zero on region-1 (applied)" in refused.stderr
    shutil.rmtree(log)
    log.with_suffix(".moved").rename(log)
    done = gameday("recover", env=lab_env)
    assert done.stdout == "recover: reverted scale-to-zero on region-1\n", done.stdout
    assert_consistent(lab_env)
    labs.down()  # region-2 serves now: the next test gets a fresh lab
    print(f"a failing revert: {time.monotonic() - started:.1f} s, lab down included")
