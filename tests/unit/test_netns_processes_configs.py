"""The netns lab's process records and configuration files, without root: processes are
started, found and stopped by their recorded pid (real child processes, no namespace), and
the files the lab writes say what the lab needs (checked by unbound's own checker where it
is installed). The lab itself is brought up in tests/integration."""

from __future__ import annotations

import os
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gameday.foundation.errors import LabError
from gameday.labs.netns import configs, processes
from gameday.labs.netns import topology as topo
from gameday.labs.netns.processes import Processes

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
STUBBORN = [sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)"]


def test_a_process_is_recorded_found_and_stopped_by_its_pid(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    pid = procs.start("sleeper", SLEEPER)
    try:
        assert procs.pid("sleeper") == pid and procs.alive("sleeper")
        assert procs.names() == ["sleeper"]
        with pytest.raises(LabError, match=f"sleeper is already running \\(pid {pid}\\)"):
            procs.start("sleeper", SLEEPER)
        assert procs.signal("sleeper", 0) is True
        assert procs.stop("sleeper", timeout=5) is True
        assert not Path(f"/proc/{pid}").exists() or processes.is_zombie(pid)
        assert procs.names() == [] and procs.pid("sleeper") is None
        assert procs.stop("sleeper") is False and procs.signal("sleeper", 0) is False
    finally:
        with_pid_gone(pid)


def test_a_process_that_ignores_sigterm_is_killed_after_its_timeout(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    pid = procs.start("stubborn", STUBBORN)
    try:
        log = tmp_path / "logs" / "stubborn.log"
        deadline = time.monotonic() + 10
        while "ready" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        assert procs.stop("stubborn", timeout=0.3) is True
        assert 0.3 <= time.monotonic() - started < 5
        assert procs.pid("stubborn") is None
    finally:
        with_pid_gone(pid)


def test_processes_stopped_together_shut_down_side_by_side(tmp_path: Path) -> None:
    """`lab down` stops each stage's processes with one stop_all: all are signalled first,
    so two that each take their whole timeout cost one timeout, not two."""
    procs = Processes(tmp_path)
    pids = [procs.start(name, STUBBORN) for name in ("stubborn-1", "stubborn-2")]
    sleeper = procs.start("sleeper", SLEEPER)
    try:
        deadline = time.monotonic() + 10
        while not all("ready" in (tmp_path / "logs" / f"stubborn-{i}.log").read_text()
                      for i in (1, 2)) and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        stopped = procs.stop_all(["stubborn-1", "stubborn-2", "gone"], timeout=1.0)
        assert stopped == ["stubborn-1", "stubborn-2"]
        assert 1.0 <= time.monotonic() - started < 2.0  # one timeout (two would be 2 s)
        assert procs.names() == ["sleeper"] and procs.pid("sleeper") == sleeper
        assert procs.stop_all(["sleeper"], timeout=5) == ["sleeper"] and procs.names() == []
    finally:
        for pid in [*pids, sleeper]:
            with_pid_gone(pid)


def test_a_recorded_pid_now_someone_elses_is_not_ours(tmp_path: Path) -> None:
    """A pid file outliving its process (a reboot, a crash) names a pid the kernel may have
    given another program: its start time differs, so it is not signalled."""
    procs = Processes(tmp_path)
    pid = procs.start("sleeper", SLEEPER)
    try:
        record = procs.pid_dir / "sleeper.json"
        record.write_text(record.read_text().replace('"start_time": ', '"start_time": 1'))
        assert procs.pid("sleeper") is None
        assert procs.stop("sleeper") is False  # the record goes, the process is not touched
        assert Path(f"/proc/{pid}").exists() and not record.exists()
    finally:
        os.kill(pid, signal.SIGKILL)
        with_pid_gone(pid)


def test_run_names_the_command_that_failed_and_its_last_line() -> None:
    assert processes.run(["true"]).returncode == 0
    with pytest.raises(LabError, match="`sh -c echo one; echo two >&2; exit 3` failed: two"):
        processes.run(["sh", "-c", "echo one; echo two >&2; exit 3"])
    assert processes.run(["false"], check=False).returncode == 1


def test_a_command_runs_in_its_namespace_as_its_user() -> None:
    assert processes.command(["pg_ctl", "start"], netns="gd-region-1", user="postgres") == [
        "ip", "netns", "exec", "gd-region-1", "setpriv", "--reuid=postgres",
        "--regid=postgres", "--init-groups", "pg_ctl", "start"]
    assert processes.command(["true"]) == ["true"]


def with_pid_gone(pid: int) -> None:
    """Collect our own child, so that no test leaves a zombie behind."""
    processes._reap()
    for proc in list(processes._children):
        if proc.pid == pid:
            proc.kill()
            proc.wait(5)
            processes._children.remove(proc)


# --- configuration files ----------------------------------------------------------------


def test_a_sync_primary_waits_for_the_other_region_and_a_standby_follows_through_the_proxy(
        ) -> None:
    primary = configs.pg_node(region="region-1", replication="sync", password="pw",
                              delay_ms=20, standby=False)
    assert "synchronous_standby_names = '\"region-2\"'" in primary
    assert "primary_conninfo = ''" in primary
    standby = configs.pg_node(region="region-2", replication="sync", password="pw",
                              delay_ms=20, standby=True)
    assert "synchronous_standby_names = ''" in standby
    assert (f"host=127.0.0.1 port={topo.PROXY_PORT} user={topo.DB_USER} password=pw "
            "application_name=region-2") in standby
    asynchronous = configs.pg_node(region="region-1", replication="async", password="pw",
                                   delay_ms=20, standby=False)
    assert "synchronous_standby_names = ''" in asynchronous


def test_both_nodes_share_the_settings_the_drill_relies_on() -> None:
    common = configs.pg_common("sync")
    for setting in ("wal_log_hints = 'on'", "wal_retrieve_retry_interval = '200ms'",
                    f"port = {topo.DB_PORT}", "include_if_exists = 'gameday-node.conf'"):
        assert setting in common
    assert "scram-sha-256" in configs.pg_hba() and "trust" not in configs.pg_hba()


def test_the_zone_is_active_passive_over_both_health_checks() -> None:
    zone = configs.zone(ttl_s=1.4)
    assert "$TTL 1" in zone
    shop = next(line for line in zone.splitlines() if line.startswith("shop "))
    assert "ifurlup(" in shop and "{{'198.18.0.11'}, {'198.18.0.12'}}" in shop
    pdns = configs.pdns_conf("/state", health_interval_s=0.2)
    assert "lua-health-checks-interval=1" in pdns and "cache-ttl=0" in pdns
    assert configs.named_conf("/state") == (
        f'zone "{topo.ZONE}" {{ type master; file "/state/dns/{topo.ZONE}.zone"; }};\n')


@pytest.mark.skipif(shutil.which("unbound-checkconf") is None,
                    reason="unbound-checkconf is installed by `make setup`")
def test_unbounds_configuration_passes_its_own_checker(tmp_path: Path) -> None:
    conf = tmp_path / "unbound.conf"
    conf.write_text(configs.unbound_conf(str(tmp_path)))
    proc = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cache-min-ttl: 0" in conf.read_text()


def test_python_m_gameday_is_the_command(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["gameday", "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("gameday", run_name="__main__")
    assert done.value.code == 0 and "recover" in capsys.readouterr().out
