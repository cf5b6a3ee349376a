"""One drill per lab: the lab's lock, held by a real second process (flock is per process,
so the holder must be one). A second run, `gameday recover` and `gameday lab down` refuse
with one line naming the holder's pid; the lock goes with its holder however it dies;
`--force` passes over a holder that is dead, and never over a live one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaoslib.exceptions import ActivityFailed, InterruptExecution
from click.testing import CliRunner

from gameday import cli, control
from gameday.actions import region as region_actions
from gameday.drill import context as drills
from gameday.drill import recovery
from gameday.foundation import lock
from gameday.foundation.ledger import Ledger
from tests.unit import fakes

ROOT = Path(__file__).resolve().parents[2]

HOLD = """
import os, sys
from gameday.foundation import lock
lock.acquire(sys.argv[1])
if sys.argv[2] == "fork":
    # a worker forked without exec keeps the lock after its parent dies
    child = os.fork()
    if child == 0:
        sys.stdin.read()
        os._exit(0)
    print(child, flush=True)
    os._exit(0)
print(os.getpid(), flush=True)
sys.stdin.read()
"""


class Holder:
    """Another process holding the lab's lock until `stop()`."""

    def __init__(self, lab_file: Path, mode: str = "hold") -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lab_file), mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=ROOT)
        assert self.proc.stdout is not None
        self.pid = int(self.proc.stdout.readline())  # the pid that holds the lock now

    def stop(self) -> None:
        if self.pid != self.proc.pid:  # the forked worker, started by this test's child
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while lock._alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def lab_file(tmp_path: Path) -> Iterator[Path]:
    path = fakes.write_lab(tmp_path)
    yield path
    lock.release(path)


@pytest.fixture
def holder(lab_file: Path) -> Iterator[Holder]:
    h = Holder(lab_file)
    yield h
    h.stop()


def test_a_second_holder_is_refused_naming_the_pid(lab_file: Path, holder: Holder) -> None:
    with pytest.raises(lock.LabBusy, match=f"in use by another drill \\(pid {holder.proc.pid} "
                                           "holds .*drill.lock\\)") as err:
        lock.acquire(lab_file, what="a second drill")
    assert err.value.pid == holder.proc.pid and err.value.alive
    assert lock.holder(lab_file) == holder.proc.pid
    # --force never passes over a live holder
    with pytest.raises(lock.LabBusy):
        lock.acquire(lab_file, force=True)
    holder.stop()
    # the kernel drops the lock with its holder
    assert lock.holder(lab_file) is None
    assert lock.acquire(lab_file) is True and lock.holds(lab_file)
    assert lock.path(lab_file).read_text().strip() == str(os.getpid())


def test_a_second_chaos_run_is_refused_and_changes_nothing(lab_file: Path,
                                                           holder: Holder) -> None:
    ledger = Ledger(lab_file)
    fault_id = ledger.plan("region-1", "block-egress", {"applicable": True})
    ledger.mark(fault_id, "applied")  # the first drill's fault
    cfg = {"lab_file": str(lab_file), "reports_dir": str(lab_file.parent / "r")}
    try:
        with pytest.raises(InterruptExecution, match=f"pid {holder.proc.pid}") as err:
            control.before_experiment_control({"title": "t"}, configuration=cfg)
        assert "\n" not in str(err.value)
        # Chaos Toolkit plays the rollbacks of an interrupted run: they undo nothing, the
        # fault is the first drill's
        out = region_actions.restore_region("region-1", configuration=cfg)
        assert out["skipped"] == "restore_region" and "pid" in out["reason"]
    finally:
        state: dict = {"status": "interrupted"}
        control.after_experiment_control({"title": "t"}, state, configuration=cfg)
    assert state["status"] == "failed" and drills.standdown() is None
    assert fakes.world(lab_file).calls == [] and len(ledger.open_faults()) == 1
    assert not (lab_file.parent / "r").exists()
    # a step called outside any run (no control) is refused too
    with pytest.raises(ActivityFailed, match=f"pid {holder.proc.pid}"):
        region_actions.restore_region("region-1", configuration=cfg)
    assert fakes.world(lab_file).calls == [] and len(ledger.open_faults()) == 1


def test_recover_and_lab_down_refuse_while_a_drill_runs(
        lab_file: Path, holder: Holder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = fakes.FakeDatabases({"region-1": "primary", "region-2": "standby"})
    monkeypatch.setattr(recovery, "_databases", lambda: db)
    ledger = Ledger(lab_file)
    ledger.mark(ledger.plan("region-1", "block-egress", {"applicable": True}), "applied")
    runner = CliRunner()
    for args in (["recover", "--lab-file", str(lab_file)],
                 ["recover", "--lab-file", str(lab_file), "--force"]):
        result = runner.invoke(cli.main, args)
        assert result.exit_code == cli.EXIT_LAB, result.output
        assert f"in use by another drill (pid {holder.proc.pid}" in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert fakes.world(lab_file).calls == [] and len(ledger.open_faults()) == 1
    # `lab down` finds the lock beside the netns lab's descriptor ($GAMEDAY_HOME)
    down = runner.invoke(cli.main, ["lab", "down"], env={"GAMEDAY_HOME": str(lab_file.parent)})
    assert down.exit_code == cli.EXIT_LAB and f"(pid {holder.proc.pid}" in down.output, down.output
    assert lab_file.exists()
    holder.stop()
    done = runner.invoke(cli.main, ["recover", "--lab-file", str(lab_file)])
    assert done.exit_code == 0 and done.stdout == "recover: reverted block-egress on region-1\n"


def test_force_passes_over_a_dead_holder_only(lab_file: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    orphan = Holder(lab_file, "fork")  # its parent (pid in the file) is dead, the worker holds
    try:
        assert orphan.pid != orphan.proc.pid
        with pytest.raises(lock.LabBusy, match=f"its holder \\(pid {orphan.proc.pid}\\) is "
                                               "dead.*pass --force") as err:
            lock.acquire(lab_file)
        assert not err.value.alive
        db = fakes.FakeDatabases({"region-1": "primary", "region-2": "standby"})
        monkeypatch.setattr(recovery, "_databases", lambda: db)
        runner = CliRunner()
        refused = runner.invoke(cli.main, ["recover", "--lab-file", str(lab_file)])
        assert refused.exit_code == cli.EXIT_LAB and "--force" in refused.output
        forced = runner.invoke(cli.main, ["recover", "--lab-file", str(lab_file), "--force"])
        assert forced.exit_code == 0 and "nothing to undo" in forced.output, forced.output
    finally:
        orphan.stop()
    assert lock.holder(lab_file) is None


def test_a_drill_holds_the_lab_from_start_to_report(lab_file: Path) -> None:
    """The control takes the lock before anything starts and gives it back at the end,
    also when the run is refused."""
    cfg = {"lab_file": str(lab_file), "reports_dir": str(lab_file.parent / "r")}
    with pytest.raises(InterruptExecution, match="cannot reach the writable database"):
        control.before_experiment_control({"title": "t"}, configuration=cfg)
    # refused after the lock was taken (the fake database does not answer): given back
    assert not lock.holds(lab_file)
    assert lock.path(lab_file).read_text() == ""
