"""scale-to-zero's revert on the netns lab, on real processes: a database whose crash takes
a moment to end. No lab here: the driver's database start and its standby's check are
recorded instead of run (the lab suite runs them)."""

from __future__ import annotations

import copy
import signal
import sys
import time
from pathlib import Path

import pytest

from gameday.foundation import descriptor
from gameday.foundation.errors import LabError
from gameday.labs.netns import driver
from tests.unit.test_descriptor import GOOD

# a "postgres" that takes half a second to end its immediate shutdown, as a postmaster
# waiting for its backends does; it says when its handler is in place
SLOW_CRASH = """
import signal, sys, time
signal.signal(signal.SIGQUIT, lambda *_: (time.sleep(0.5), sys.exit(3)))
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""
# one that does not end at all
NO_END = SLOW_CRASH.replace("time.sleep(0.5), sys.exit(3)", "None")


def _driver(tmp_path: Path) -> driver.NetnsDriver:
    data = copy.deepcopy(GOOD)
    data["state_dir"] = str(tmp_path / "state")
    return driver.NetnsDriver(descriptor.from_dict(data, path=str(tmp_path / "lab.json")))


def _started(d: driver.NetnsDriver, name: str, code: str) -> None:
    d.procs.start(name, [sys.executable, "-c", code])
    log = d.procs.log_dir / f"{name}.log"
    deadline = time.monotonic() + 10
    while "ready" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the stand-in did not start"
        time.sleep(0.01)


def _recording(d: driver.NetnsDriver, monkeypatch: pytest.MonkeyPatch, *,
               serves: bool = False) -> list[str]:
    """The driver's steps that need the lab's database recorded instead of run; `serves`:
    whether the region's database answers a query (the stand-in process is not one)."""
    calls: list[str] = []
    monkeypatch.setattr(d, "_serves", lambda region: serves)
    monkeypatch.setattr(d, "_other_serves_or_was_promoted", lambda region: False)
    monkeypatch.setattr(d, "_start_postgres", lambda region: calls.append("start"))
    monkeypatch.setattr(d, "_standby_follows", lambda region: calls.append("follows"))
    return calls


def test_the_revert_starts_the_database_once_its_crash_has_ended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop condition can fire while the drill waits for the fault to take effect: the
    revert then runs while the postmaster is still ending. It must wait for it, then start
    the database; looking at once, it found it alive and started nothing."""
    d = _driver(tmp_path)
    region = d.lab.primary
    _started(d, f"postgres-{region.name}", SLOW_CRASH)
    try:
        undo = d._plan_stop(region)
        assert undo["stopped"] == [f"postgres-{region.name}"]
        calls = _recording(d, monkeypatch)
        d._stop_processes(region, undo)  # SIGQUIT: the crash begins
        d._restart_processes(region, undo)  # at once, as an abort's rollback does
        assert calls == ["start", "follows"]
        assert not d.procs.alive(f"postgres-{region.name}")
    finally:
        d.procs.stop(f"postgres-{region.name}", sig=signal.SIGKILL)


def test_a_crash_that_never_ends_fails_the_revert_and_names_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _driver(tmp_path)
    region = d.lab.primary
    _started(d, f"postgres-{region.name}", NO_END)
    try:
        undo = d._plan_stop(region)
        calls = _recording(d, monkeypatch)
        monkeypatch.setattr(driver, "CRASH_ENDS_S", 0.3)
        d._stop_processes(region, undo)
        with pytest.raises(LabError, match=r"postgres-region-1 \(pid \d+\) still runs 0.3 s "
                                           r"after scale-to-zero stopped it, and answers no "
                                           r"query: stop it, then run `gameday recover`"):
            d._restart_processes(region, undo)
        assert calls == []  # no second postmaster next to the one still running
    finally:
        d.procs.stop(f"postgres-{region.name}", sig=signal.SIGKILL)


def test_a_fault_planned_but_never_injected_is_reverted_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A drill interrupted between recording its plan and sending the signal (seen in CI:
    SIGINT while the ledger line was written): the database still runs and answers, so
    the revert waits for nothing and starts nothing."""
    d = _driver(tmp_path)
    region = d.lab.primary
    _started(d, f"postgres-{region.name}", NO_END)
    try:
        undo = d._plan_stop(region)
        calls = _recording(d, monkeypatch, serves=True)
        started = time.monotonic()
        d._restart_processes(region, undo)  # no _stop_processes: the signal was never sent
        took = time.monotonic() - started
        assert calls == []
        assert took < 2, took  # not CRASH_ENDS_S
        assert d.procs.alive(f"postgres-{region.name}")
    finally:
        d.procs.stop(f"postgres-{region.name}", sig=signal.SIGKILL)


def test_a_ledger_line_without_pids_is_reverted_as_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault recorded by an older gameday (no pids in its undo) is still reverted."""
    d = _driver(tmp_path)
    calls = _recording(d, monkeypatch)
    d._restart_processes(d.lab.primary, {"applicable": True,
                                         "stopped": ["postgres-region-1"]})
    assert calls == ["start", "follows"]


def test_the_lab_s_own_checks_reach_each_database_at_its_address_not_its_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --db-hostnames, db_host is a name only the lab's DNS knows, and `gameday
    recover` may run without it: a check through the name would read "down" (a
    scale-to-zero taken as done, a fence left out). The hosts dialled are recorded."""
    data = copy.deepcopy(GOOD)
    data["state_dir"] = str(tmp_path / "state")
    for region in data["regions"]:
        region["db_host"] = f"db.{region['name']}.gameday.test"
    d = driver.NetnsDriver(descriptor.from_dict(data, path=str(tmp_path / "lab.json")))
    dialled: list[str] = []
    monkeypatch.setattr(driver, "connects",
                        lambda host, port, timeout: dialled.append(host) is not None)
    assert d._stopped(d.lab.primary, {"stopped": []}) is True
    monkeypatch.setattr(driver.postgres, "role",
                        lambda lab, region: dialled.append(region.db_host))
    assert d._other_is_writable(d.lab.primary) is False
    assert dialled == ["198.18.0.11", "198.18.0.11", "198.18.0.12"], dialled
