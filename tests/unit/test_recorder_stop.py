"""The real recorder process keeps its records when it stops, and its death is noticed.

Real parts on loopback, no root and no lab: the recorder's HTTP samplers talk to a TLS
storefront that answers one request a connection and then freezes (test_http_client's
FrozenTlsServer); its database and DNS ports refuse, so the canary and the other samplers
record errors, which are records all the same. The canary's writes in flight at the stop
need a real PostgreSQL: tests/integration/test_bounds.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

from gameday.foundation import descriptor
from gameday.foundation.events import ExperimentEnded, Kind
from gameday.foundation.settings import GamedaySettings
from gameday.measure import run as runs
from gameday.measure import summary as summaries
from gameday.measure.store import timeline
from tests.unit import fakes
from tests.unit.test_http_client import FrozenTlsServer, _server_tls, pki  # noqa: F401 (a fixture)


def _lab(tmp_path: Path, storefront: str, ca: Path) -> Path:
    data = fakes.descriptor_dict(storefront=(storefront, storefront))
    for region in data["regions"]:
        # the recorder is its own process: no `fake` driver there
        region.update(driver="netns", netns=f"gd-unit-{region['name']}")
    data["lab"] = "unit"
    data["tls"] = {"ca_bundle": str(ca)}
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(data))
    return path


def _recorder(tmp_path: Path, lab_file: Path) -> runs.Run:
    # HTTP samples 2 s apart: the connection of the first stays idle until the stop
    settings = GamedaySettings.from_chaos({"lab_file": str(lab_file), "http_interval_s": 2})
    lab = descriptor.load(lab_file)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    anchor, utc = timeline.Clock.new_anchor()
    timeline.create(run_dir, {
        "run_id": "unit", "anchor_ns": anchor, "anchor_utc": utc, "start_seq": 1, "lab": "unit",
        "lab_file": str(Path(lab.path).absolute()),
        # as the run records them: the report needs the regions' roles, the recorder its rates
        **settings.recorded(lab),
        "regions": {role: {"name": r.name, "address": r.address, "db_host": r.db_host}
                    for role, r in (("primary", lab.primary), ("secondary", lab.secondary))}})
    run = runs.Run(run_dir, timeline.Clock(anchor))
    runs.spawn_recorder(run, settings, lab)
    run.watch_recorder()
    return run


def _rows(run: runs.Run, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(run.dir / timeline.FILE)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _wait_for(run: runs.Run, sql: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not _rows(run, sql):
        assert time.monotonic() < deadline, f"nothing for {sql!r} in {timeout} s"
        time.sleep(0.05)


def test_a_stop_keeps_the_last_records_with_an_idle_tls_connection_to_a_frozen_server(
        tmp_path: Path, pki: Path) -> None:  # noqa: F811 (the fixture)
    with FrozenTlsServer(_server_tls(pki)) as server:
        run = _recorder(tmp_path, _lab(tmp_path, f"https://127.0.0.1:{server.port}/",
                                       pki / "ca.pem"))
        try:
            # the first sample was answered: its connection is idle, the server frozen
            _wait_for(run, "SELECT 1 FROM http WHERE ok = 1")
            assert server.answered >= 1
            stop_at = run.now()
            started = time.monotonic()
            run.stop_recorder()
            took = time.monotonic() - started
        finally:
            if run.recorder is not None and run.recorder.poll() is None:
                run.recorder.kill()
                run.recorder.wait()
    assert took < 5.0, f"the stop took {took:.1f} s"
    assert run.recorder is not None and run.recorder.returncode == 0
    assert [e.kind for e in run.events("recorder-stopped")] == ["recorder-stopped"]
    assert not run.events("recorder-killed") and not run.events(Kind.RECORDER_DIED)
    # what the samplers recorded while they stopped reached the timeline: the canary's
    # writers tried to connect until the stop
    (last,), = _rows(run, "SELECT max(t) FROM canary_connect")
    assert isinstance(last, float) and last >= stop_at - 0.1, (last, stop_at)


def test_a_recorder_that_dies_mid_run_is_noticed_and_the_run_is_incomplete(
        tmp_path: Path, pki: Path) -> None:  # noqa: F811 (the fixture)
    with FrozenTlsServer(_server_tls(pki)) as server:
        run = _recorder(tmp_path, _lab(tmp_path, f"https://127.0.0.1:{server.port}/",
                                       pki / "ca.pem"))
        _wait_for(run, "SELECT 1 FROM canary_connect")
        assert run.recorder is not None
        # a Ctrl-C at the terminal goes to the runner's process group, not the recorder's:
        # only the runner stops it (after the rollbacks), or its death
        assert os.getpgid(run.recorder.pid) == run.recorder.pid != os.getpgid(0)
        os.kill(run.recorder.pid, signal.SIGKILL)
        _wait_for(run, "SELECT 1 FROM events WHERE kind = 'recorder-died'", timeout=2.0)
        died = run.events(Kind.RECORDER_DIED)
        assert len(died) == 1 and json.loads(died[0].detail or "{}")["exit_code"] == -9
        run.event(ExperimentEnded(status="completed"))
        run.stop_recorder()  # as the control does at the end: nothing more to record
    assert len(run.events(Kind.RECORDER_DIED)) == 1
    summary = summaries.build(run.dir)
    assert summary["incomplete"] is True and summary["verdict"] == "fail"
    reason = next(r for r in summary["reasons"] if "recorder" in r)
    assert reason.startswith("incomplete run: the recorder died ") and "exit code -9" in reason
    assert "\n" not in reason


def test_a_recorder_whose_runner_died_before_it_could_follow_it_exits(
        tmp_path: Path, pki: Path) -> None:  # noqa: F811 (the fixture)
    """PR_SET_PDEATHSIG is asked for after the recorder's imports: a runner gone by then (a
    `chaos run` stopped while it waited for its recorder) sends it nothing. The recorder
    sees that its parent is no longer the runner that started it, and exits; it used to
    sample on, unwatched, for as long as the machine ran."""
    import subprocess
    import sys

    from gameday.labs.netns.processes import is_zombie

    with FrozenTlsServer(_server_tls(pki)) as server:
        lab_file = _lab(tmp_path, f"https://127.0.0.1:{server.port}/", pki / "ca.pem")
        runner = subprocess.run(
            [sys.executable, "-c",
             "import os, sys; from pathlib import Path; "
             "from tests.unit.test_recorder_stop import _recorder; "
             "run = _recorder(Path(sys.argv[1]), Path(sys.argv[2])); "
             "print(run.recorder.pid, flush=True); os._exit(0)",
             str(tmp_path), str(lab_file)],
            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
            timeout=60)
        assert runner.returncode == 0, runner.stderr
        pid = int(runner.stdout.split()[-1])
        try:
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}").exists() and not is_zombie(pid):
                assert time.monotonic() < deadline, "the recorder outlived its runner"
                time.sleep(0.05)
        finally:
            if Path(f"/proc/{pid}").exists() and not is_zombie(pid):
                os.kill(pid, signal.SIGKILL)  # the recorder this test started, by its pid
    log = (tmp_path / "run" / "recorder.log").read_text()
    assert "its runner (pid" in log and "is gone" in log, log
