"""Every call bounded and no record lost, on the real lab (the shared lab; each test leaves
it as it found it):

- the runner's connections carry their statement and socket bounds;
- a recorder stopped while canary writes are in flight, with an idle TLS connection to a
  frozen storefront, records those writes before it closes anything;
- a recorder killed mid-run: `chaos run` says so, and the run is incomplete with the reason;
- a run started while the standby does not stream refuses at the readiness gate within
  its timeout (it used to hang before the gate, committing its canary pruning on the
  synchronous primary);
- a run whose canary table stays locked refuses at the statement timeout;
- a question to a region cut off midway fails at the socket bound.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gameday import postgres
from gameday.foundation import descriptor
from gameday.foundation.driver import for_region
from gameday.foundation.errors import LabError, TargetError
from gameday.foundation.ledger import Ledger
from gameday.foundation.poll import poll_until
from gameday.foundation.settings import GamedaySettings
from gameday.measure import run as runs
from gameday.measure.canary import WRITE_TIMEOUT_S
from gameday.measure.store import timeline
from tests.integration.conftest import BIN, ROOT
from tests.unit.test_http_client import FrozenTlsServer, _server_tls, pki  # noqa: F401 (a fixture)


@pytest.fixture
def lab(shared_lab: dict[str, str]) -> descriptor.Lab:
    return descriptor.load(shared_lab["GAMEDAY_LAB"])


def _experiment(tmp_path: Path, method: list[dict[str, Any]], **config: Any) -> Path:
    """A drill composed here: the gameday control, the lab and reports from the env, and
    whatever configuration and method the test needs."""
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps({
        "title": "bounds", "description": "a drill of tests/integration/test_bounds.py",
        "configuration": {
            "lab_file": {"type": "env", "key": "GAMEDAY_LAB"},
            "reports_dir": {"type": "env", "key": "GAMEDAY_REPORTS"}, **config},
        "controls": [{"name": "gameday",
                      "provider": {"type": "python", "module": "gameday.control"}}],
        "method": method}))
    return path


def _chaos(experiment: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "chaos"), "--no-version-check", "run",
         "--journal-path", str(experiment.with_suffix(".journal.json")), str(experiment)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
        return out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_runners_connections_carry_their_bounds(lab: descriptor.Lab) -> None:
    with postgres.connect(lab, lab.primary, "check its bounds") as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("10s",)
        given = {o.keyword.decode(): (o.val or b"").decode() for o in conn.pgconn.info}
    assert given["tcp_user_timeout"] == str(postgres.TCP_USER_TIMEOUT_MS)
    assert given["keepalives"] == "1" and given["keepalives_idle"] == "2"
    with postgres.connect(lab, lab.primary, "check",
                          statement_timeout_s=postgres.BULK_TIMEOUT_S) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("2min",)


def _hold_canary_lock(lab: descriptor.Lab, held: threading.Event, release: threading.Event
                      ) -> None:
    """Every canary INSERT waits on the server (its client for an answer) until `release`."""
    with psycopg.connect(**lab.writer_params(), **postgres.bounds()) as conn:
        conn.execute(f"LOCK TABLE {lab.database.canary_table} IN ACCESS EXCLUSIVE MODE")
        held.set()
        release.wait(30)
        conn.rollback()


def _lock_waiters(lab: descriptor.Lab) -> int:
    with postgres.connect(lab, lab.primary, "count the writes waiting") as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                           "'Lock' AND query LIKE 'INSERT INTO %'").fetchone()
    return int(row[0]) if row else 0


def test_a_stop_records_the_canary_writes_in_flight(lab: descriptor.Lab, lab_env: dict[str, str],
                                                    tmp_path: Path, pki: Path  # noqa: F811
                                                    ) -> None:
    """The recorder of a real run (runs.start), whose storefront samples go to a TLS server
    that freezes after its first answer: at the stop it holds an idle connection to it,
    and its canary writers are blocked on the server by a table lock. It used to stop
    flushing at the signal, close its HTTP clients (30 s for the idle TLS connection) and
    be killed by the runner at 10 s, losing the attempts in flight."""
    with FrozenTlsServer(_server_tls(pki)) as server:
        data = json.loads(Path(lab_env["GAMEDAY_LAB"]).read_text())
        for region in data["regions"]:
            region["storefront_url"] = f"https://127.0.0.1:{server.port}/"
        data["tls"] = {"ca_bundle": str(pki / "ca.pem")}
        lab_file = tmp_path / "lab.json"
        lab_file.write_text(json.dumps(data))
        # HTTP samples 2 s apart: the first one's connection stays idle until the stop
        settings = GamedaySettings.from_chaos({"lab_file": str(lab_file), "http_interval_s": 2,
                                               "reports_dir": str(tmp_path / "reports")})
        run = runs.start(settings, settings.load_lab(), experiment="bounds", kind="failover")
        held, release = threading.Event(), threading.Event()
        locker = threading.Thread(target=_hold_canary_lock, args=(lab, held, release))
        try:
            db = sqlite3.connect(run.dir / timeline.FILE)
            poll_until(lambda: db.execute("SELECT 1 FROM http WHERE ok = 1").fetchone(),
                       timeout_s=10, interval_s=0.05, what="a storefront sample answered")
            db.close()
            assert server.answered >= 1
            locker.start()
            assert held.wait(10)
            t_locked = run.now()
            poll_until(lambda: _lock_waiters(lab) >= 1, timeout_s=5, interval_s=0.05,
                       what="a canary write waiting on the lock")
            t_stop = run.now()
            started = time.monotonic()
            run.stop_recorder()
            took = time.monotonic() - started
        finally:
            release.set()
            if locker.is_alive():
                locker.join(10)
            if run.recorder is not None and run.recorder.poll() is None:
                run.recorder.kill()
                run.recorder.wait()
    # the writes in flight were given up at their deadline, then the last records written
    assert took < runs.RECORDER_STOP_S, f"the stop took {took:.1f} s"
    assert not run.events("recorder-killed") and not run.events("recorder-died")
    stopped = run.events("recorder-stopped")
    assert len(stopped) == 1 and json.loads(stopped[0].detail or "{}")["unanswered"] == 0
    db = sqlite3.connect(run.dir / timeline.FILE)
    rows = db.execute("SELECT seq, outcome, error, t_send FROM canary").fetchall()
    db.close()
    start_seq = int(timeline.read_meta(run.dir)["start_seq"])
    seqs = sorted(r[0] for r in rows)
    # every number drawn was recorded once, the last ones too
    assert seqs == list(range(start_seq, start_seq + len(seqs))), seqs[-10:]
    in_flight = [r for r in rows if t_locked - 0.5 <= r[3] <= t_stop and r[1] != "ok"]
    assert in_flight, rows[-10:]
    assert all(r[1] == "failed" and r[2] == "TimeoutError: 57014" for r in in_flight), in_flight
    assert took >= WRITE_TIMEOUT_S - (t_stop - min(r[3] for r in in_flight)) - 0.1


def _recorder_pid(chaos_pid: int) -> int | None:
    """The recorder this `chaos run` started: its own child, found by parent and module."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == chaos_pid and b"gameday.measure.recorder" in cmdline:
            return int(entry.name)
    return None


def test_a_recorder_killed_mid_run_makes_the_run_incomplete(lab: descriptor.Lab,
                                                            lab_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    marker = tmp_path / "method-started"
    experiment = _experiment(tmp_path, [
        {"type": "action", "name": "a-quiet-method",
         "provider": {"type": "process", "path": "sh",
                      "arguments": f"-c 'touch {marker}; sleep 6'"}}])
    reports = Path(lab_env["GAMEDAY_REPORTS"])
    before = set(reports.glob("2*")) if reports.exists() else set()
    proc = _chaos(experiment, lab_env)
    try:
        poll_until(marker.exists, timeout_s=60, interval_s=0.1, interruptible=False,
                   what="the method's start")
        pid = _recorder_pid(proc.pid)
        assert pid is not None, "no recorder under the chaos run"
        os.kill(pid, signal.SIGKILL)
    finally:
        out = _finish(proc, 120)
    assert proc.returncode != 0, out[-3000:]
    assert "the recorder died mid-run (exit code -9" in out, out[-3000:]
    (run_dir,) = set(reports.glob("2*")) - before
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["incomplete"] is True and summary["verdict"] == "fail"
    reason = next(r for r in summary["reasons"] if "recorder" in r)
    assert reason.startswith("incomplete run: the recorder died ") and "exit code -9" in reason
    assert "Incomplete run" in (run_dir / "report.md").read_text()


def test_a_run_whose_standby_does_not_stream_refuses_at_the_gate(lab: descriptor.Lab,
                                                                 lab_env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    """Replication cut (the standby's only path to its primary stopped), then a run: the
    synchronous primary cannot commit, and nothing gameday commits before the gate waits
    for it. The gate refuses within ready_timeout_s; the method never runs."""
    standby = lab.secondary
    driver = for_region(lab, standby)
    undo = driver.plan("replication-cut", standby)
    driver.inject("replication-cut", standby, undo)
    try:
        poll_until(lambda: not postgres.standby_streams(lab, standby), timeout_s=15,
                   interval_s=0.1, interruptible=False, what="the standby to stop streaming")
        marker = tmp_path / "method-ran"
        experiment = _experiment(tmp_path, [
            {"type": "action", "name": "must-not-run",
             "provider": {"type": "process", "path": "touch", "arguments": str(marker)}}],
            ready_timeout_s=3)
        reports = Path(lab_env["GAMEDAY_REPORTS"])
        before = set(reports.glob("2*")) if reports.exists() else set()
        started = time.monotonic()
        out = _finish(_chaos(experiment, lab_env), 90)
        took = time.monotonic() - started
    finally:
        driver.revert("replication-cut", standby, undo)
        poll_until(lambda: postgres.standby_streams(lab, standby), timeout_s=30,
                   interval_s=0.2, interruptible=False, what="the standby to stream again")
    assert "gameday: not ready for a fault: " in out, out[-3000:]
    assert f"the {standby.name} standby is streaming" in out, out[-3000:]
    assert not marker.exists()
    assert Ledger(lab.path).open_faults() == []
    assert took < 60, f"refused after {took:.0f} s"
    # a run refused at its gate is not registered by the canary's retention rule
    (run_dir,) = set(reports.glob("2*")) - before
    runs_table = f"{lab.database.canary_table}_runs"
    with postgres.connect(lab, lab.primary, "read the runs table") as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (runs_table,)).fetchone() != (None,)
        registered = [r[0] for r in conn.execute(f"SELECT run_id FROM {runs_table}")] \
            if exists else []
    assert run_dir.name not in registered, registered


def _bounded(call: Any, seconds: float) -> tuple[Any, BaseException | None, float]:
    """(result, exception, seconds taken) of `call`, failing the test when it has not
    returned within `seconds` (the thread is left behind: it would wait forever)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:
            box["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: it would never end"
    return box.get("value"), box.get("error"), time.monotonic() - started


def test_a_run_refuses_when_its_canary_table_stays_locked(lab: descriptor.Lab,
                                                          tmp_path: Path) -> None:
    """A lock held on the canary table (a long migration, a stuck session): the run's
    first question, the next sequence number, is given up by the server at the statement
    timeout, and the run refuses with one line, before its run directory exists."""
    held, release = threading.Event(), threading.Event()
    locker = threading.Thread(target=_hold_canary_lock, args=(lab, held, release))
    locker.start()
    try:
        assert held.wait(10)
        settings = GamedaySettings.from_chaos({"lab_file": lab.path,
                                               "reports_dir": str(tmp_path / "reports")})
        _, error, took = _bounded(lambda: runs.start(settings, lab, experiment="bounds",
                                                     kind="failover"), 30)
    finally:
        release.set()
        locker.join(10)
    assert isinstance(error, LabError), error
    assert str(error).startswith("the writable database did not read its canary table "
                                 "gameday_canary within 10 s: is the table locked"), error
    assert postgres.STATEMENT_TIMEOUT_S <= took < postgres.STATEMENT_TIMEOUT_S + 3, took
    assert not (tmp_path / "reports").exists()


def test_a_connection_to_a_region_cut_off_midway_fails_within_the_socket_bound(
        lab: descriptor.Lab) -> None:
    """The standby's region drops every packet (blackhole) while the runner holds a
    connection to its database: the next question's bytes are never acknowledged, and
    tcp_user_timeout fails it in 5 s. The server's statement timeout cannot help there (the
    question never reaches it), and the kernel alone would retransmit for ~15 minutes."""
    standby = lab.secondary
    driver = for_region(lab, standby)
    undo = driver.plan("blackhole", standby)
    undo.pop("local_writer")  # only the cut: no split-brain writer in a standby's region
    with postgres.connect(lab, standby, "ask it") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        driver.inject("blackhole", standby, undo)
        try:
            _, error, took = _bounded(lambda: conn.execute("SELECT 1"), 30)
        finally:
            driver.revert("blackhole", standby, undo)
    assert isinstance(error, psycopg.OperationalError), error
    bound = postgres.TCP_USER_TIMEOUT_MS / 1000
    assert bound - 0.5 <= took < bound + 3, took
    poll_until(lambda: postgres.standby_streams(lab, standby), timeout_s=30, interval_s=0.2,
               interruptible=False, retry_on=(TargetError,), what="the standby to stream again")
