"""Interrupting a drill at each point (before the fault, mid-fault, during promotion, during
rollback) with SIGINT or SIGKILL followed by `gameday recover` (SIGTERM mid-failback), always
ends in a consistent lab: no fault left in place, one writable primary, region-1 either that
primary or fenced, and the next drill can run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from gameday.foundation.ledger import Ledger
from tests.integration.conftest import BIN, ROOT, chaos, gameday, lab_status

POINTS = {
    "before-fault": "gate-passed",
    "mid-fault": "fault-effective",
    "during-promotion": "promote-requested",
    "during-rollback": "rollback-started",
}
FAILBACK_CASES = [
    ("split-brain-counted", signal.SIGINT), ("resynced", signal.SIGTERM),
    ("fault-applied", signal.SIGINT), ("promote-requested", signal.SIGKILL),
    ("switched-over", signal.SIGKILL),
]
# Each interrupted failback follows an interrupted game day that left region-2 serving (a
# game day runs first when one did not), so the lab is failed back once per pair instead of
# a game day and two failbacks per failback case. SIGTERM is the same handler as SIGINT
# (tests/unit/test_interrupt.py), so it is sent where the drill differs: mid-failback; and
# every abort_when test of test_stop_conditions.py interrupts a drill mid-fault with SIGTERM
CASES = [
    ("before-fault", signal.SIGINT, None), ("mid-fault", signal.SIGINT, None),
    ("during-promotion", signal.SIGINT, FAILBACK_CASES[0]),
    ("during-rollback", signal.SIGINT, FAILBACK_CASES[1]),
    ("mid-fault", signal.SIGKILL, FAILBACK_CASES[4]),
    ("during-promotion", signal.SIGKILL, FAILBACK_CASES[2]),
    ("during-rollback", signal.SIGKILL, FAILBACK_CASES[3]),
]


def _case_id(point: str, sig: signal.Signals, failback: tuple[str, signal.Signals] | None
             ) -> str:
    then = f"-then-failback-{failback[0]}-{failback[1].name}" if failback else ""
    return f"{point}-{sig.name}{then}"


def _start(env: dict[str, str], experiment: str = "game-day.json"
           ) -> tuple[subprocess.Popen, set[Path]]:
    reports = Path(env["GAMEDAY_REPORTS"])
    before = set(reports.glob("2*")) if reports.exists() else set()
    proc = subprocess.Popen(
        [str(BIN / "chaos"), "--no-version-check", "run",
         "--journal-path", str(reports / "journal-interrupt.json"),
         str(ROOT / "experiments" / experiment)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, before


def _interrupt(proc: subprocess.Popen, sig: signal.Signals, *, twice: bool) -> str:
    """Send `sig` (and, when `twice`, an impatient second one) and wait for the run."""
    try:
        os.kill(proc.pid, sig)
        if twice:
            time.sleep(0.2)
            os.kill(proc.pid, sig)
        try:
            out, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            # where it hangs: SIGABRT makes faulthandler print every thread's stack
            # (PYTHONFAULTHANDLER, conftest.lab_env) before the process dies
            os.kill(proc.pid, signal.SIGABRT)
            out, _ = proc.communicate(timeout=30)
            raise AssertionError("the interrupted run did not end within 180 s; its "
                                 f"output and threads:\n{out[-12000:]}") from None
        return out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _wait_event(env: dict[str, str], before: set[Path], kind: str, proc: subprocess.Popen,
                timeout: float = 90) -> Path:
    reports = Path(env["GAMEDAY_REPORTS"])
    deadline = time.monotonic() + timeout
    # polled every 2 ms (a promotion lasts about 80 ms): the run's timeline is opened once,
    # so the wait costs the drill it watches little CPU on this 2-core machine
    opened: dict[Path, sqlite3.Connection] = {}
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read()
                proc.stdout.close()
                raise AssertionError(f"the run ended before '{kind}':\n{out[-3000:]}")
            if not opened:
                for p in reports.glob("2*"):
                    if p not in before and (p / "timeline.sqlite").exists():
                        with contextlib.suppress(sqlite3.Error):
                            opened[p] = sqlite3.connect(p / "timeline.sqlite", timeout=1)
            for run_dir, db in opened.items():
                try:
                    found = db.execute("SELECT 1 FROM events WHERE kind = ?", (kind,)).fetchone()
                except sqlite3.Error:
                    found = None
                if found:
                    return run_dir
            time.sleep(0.002)
    finally:
        for db in opened.values():
            db.close()
    proc.kill()  # never leave a drill running behind a failed test
    proc.wait()
    proc.stdout.close()
    raise AssertionError(f"no '{kind}' event within {timeout} s")


def _states(env: dict[str, str]) -> dict[str, tuple]:
    lab = json.loads(Path(env["GAMEDAY_LAB"]).read_text())
    db = lab["database"]
    out = {}
    for r in lab["regions"]:
        try:
            with psycopg.connect(host=r["db_host"], port=db["port"], user=db["user"],
                                 password=db["password"], dbname=db["name"], autocommit=True,
                                 connect_timeout=2) as c:
                out[r["name"]] = c.execute(
                    "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')"
                ).fetchone()
        except psycopg.Error:
            out[r["name"]] = None
    return out


def assert_consistent(env: dict[str, str]) -> None:
    states = _states(env)
    writable = [n for n, s in states.items() if s is not None and s == (False, "off")]
    assert len(writable) == 1, states
    if writable == ["region-2"]:
        assert states["region-1"] in (None, (True, "off"), (True, "on")), states  # fenced
    else:
        # back on region-1 with region-2 streaming: the configured replication mode holds
        lab_json = json.loads(Path(env["GAMEDAY_LAB"]).read_text())
        db = lab_json["database"]
        r1 = lab_json["regions"][0]
        with psycopg.connect(host=r1["db_host"], port=db["port"], user=db["user"],
                             password=db["password"], dbname=db["name"], autocommit=True) as c:
            modes = [r[0] for r in c.execute("SELECT sync_state FROM pg_stat_replication")]
        want = "sync" if db["replication"] == "sync" else "async"
        deadline = time.monotonic() + 30  # a restarted primary's standby reconnects
        while modes != [want] and time.monotonic() < deadline:
            time.sleep(0.1)
            with psycopg.connect(host=r1["db_host"], port=db["port"], user=db["user"],
                                 password=db["password"], dbname=db["name"],
                                 autocommit=True) as c:
                modes = [r[0] for r in c.execute("SELECT sync_state FROM pg_stat_replication")]
        assert modes == [want], f"region-2 does not stream from region-1: {modes}"
    open_faults = Ledger(env["GAMEDAY_LAB"]).open_faults()  # the lab's own fault ledger
    assert open_faults == [], open_faults
    ns = subprocess.run(["ip", "netns", "exec", "gd-region-1", "nft", "list", "tables"],
                        capture_output=True, text=True).stdout
    assert "gameday" not in ns
    status = lab_status(env)
    for name in ("storefront-region-1", "storefront-region-2", "postgres-region-2", "pdns",
                 "unbound", "delay-region-1", "delay-region-2"):
        assert status["processes"].get(name), f"{name} is not running: {status['processes']}"


def _back_to_start(env: dict[str, str]) -> None:
    if _states(env).get("region-2") == (False, "off"):
        fb = chaos("failback.json", env=env)
        assert fb.returncode == 0, fb.stdout[-3000:]


@pytest.fixture
def lab(shared_lab: dict[str, str]):
    """The shared lab, in its starting state before each case and checked to be in it again
    after (conftest.shared_lab): each case ends by failing back and asserting so, and each
    interruption point is judged on its own, not on what an earlier case left behind."""
    yield shared_lab
    log = Path(shared_lab["GAMEDAY_HOME"], "logs", "postgres-region-2.log")
    if log.exists():
        print("postgres-region-2.log (tail):\n" + "\n".join(log.read_text().splitlines()[-15:]))


@pytest.mark.parametrize(("point", "sig", "failback"), CASES,
                         ids=[_case_id(*case) for case in CASES])
def test_interrupted_drill_leaves_a_consistent_lab(
        lab: dict[str, str], point: str, sig: signal.Signals,
        failback: tuple[str, signal.Signals] | None) -> None:
    proc, before = _start(lab)
    _wait_event(lab, before, POINTS[point], proc)
    # an impatient second signal must not skip the rollback
    out = _interrupt(proc, sig, twice=sig != signal.SIGKILL)
    if sig == signal.SIGKILL:
        rec = gameday("recover", env=lab)
        again = gameday("recover", env=lab)
        assert "nothing to undo" in again.stdout, again.stdout
        del rec
    else:
        assert proc.returncode != 0, out[-2000:]
    assert_consistent(lab)
    if failback is not None:
        _interrupted_failback(lab, *failback)
    _back_to_start(lab)
    assert_consistent(lab)


def _interrupted_failback(lab: dict[str, str], event: str, sig: signal.Signals) -> None:
    """A failback interrupted at `event`: one writable primary, and the drill can go on."""
    if _states(lab).get("region-2") != (False, "off"):
        gd = chaos("game-day.json", env=lab)  # the interruption left region-1 serving
        assert gd.returncode == 0, gd.stdout[-3000:]
    proc, before = _start(lab, "failback.json")
    _wait_event(lab, before, event, proc)
    _interrupt(proc, sig, twice=False)
    if sig == signal.SIGKILL:
        gameday("recover", env=lab)
    states = _states(lab)
    writable = [n for n, s in states.items() if s == (False, "off")]
    assert len(writable) == 1, (event, sig.name, states)
    # and the drill can go on: fail back (again) if region-2 still serves
    _back_to_start(lab)
    states = _states(lab)
    assert states["region-1"] == (False, "off"), states


def test_sigkill_mid_run_keeps_the_measurements(lab: dict[str, str]) -> None:
    """After SIGKILL of the runner, `gameday report RUN_DIR` renders what was stored, marked
    incomplete, with at most about one second of samples missing."""
    proc, before = _start(lab)
    try:
        run_dir = _wait_event(lab, before, "fault-effective", proc)
        time.sleep(0.5)
        killed_ns = time.monotonic_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    time.sleep(1.0)  # the recorder dies with its parent and flushes on the way out
    gameday("recover", env=lab)
    report = gameday("report", str(run_dir), env=lab, check=False)
    assert report.returncode in (0, 1), report.stderr  # 1: the verdict of an incomplete run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["incomplete"] is True
    assert "ncomplete" in (run_dir / "report.md").read_text()
    db = sqlite3.connect(run_dir / "timeline.sqlite")
    anchor = json.loads(db.execute("SELECT value FROM meta WHERE key = 'anchor_ns'").fetchone()[0])
    last = max(db.execute("SELECT max(t) FROM dns").fetchone()[0],
               db.execute("SELECT max(t) FROM http").fetchone()[0])
    killed_t = (killed_ns - anchor) / 1e9
    assert killed_t - last <= 1.0, (killed_t, last)
    assert_consistent(lab)
    _back_to_start(lab)

