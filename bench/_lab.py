"""A netns lab of the benchmark's own: up in a temporary state directory, down at the end.
Benchmarks need root, like the lab; they refuse to run next to a lab that is already up.

The lab's names are fixed, so a benchmark takes /run/gameday-lab.lock for as long as its
lab is up, as the integration tests do for their session (tests/integration/conftest.py):
a benchmark started during a test run waits for it instead of colliding with it. The
benchmarks take the lock themselves; do not wrap them in `flock` on the same file (they
would wait for their own parent).

GAMEDAY_BENCH_AFTER_UP, when set, is a shell command run once each lab is up, with the
lab's writer DSN in GAMEDAY_WRITER_DSN and its descriptor in GAMEDAY_LAB: a way to check
that a benchmark fails when it gets no data, e.g. the canary table made unwritable:

    GAMEDAY_BENCH_AFTER_UP='psql "$GAMEDAY_WRITER_DSN" -c "ALTER TABLE gameday_canary
        ADD CONSTRAINT bench_unwritable CHECK (false) NOT VALID"' make bench
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO

import psycopg.conninfo

from gameday.foundation import descriptor
from gameday.foundation.descriptor import Lab

BIN = Path(sys.executable).parent
LAB_LOCK = Path("/run/gameday-lab.lock")
# an integration test session holds the lock for up to ~10 minutes; a soak for longer
LAB_LOCK_WAIT_S = 1800


@contextlib.contextmanager
def lab_lock() -> Iterator[None]:
    """Hold /run/gameday-lab.lock, waiting for whoever holds it (a test session, another
    benchmark) for up to LAB_LOCK_WAIT_S. The wait is a blocking flock, so a benchmark
    queues with the others that wait (a test session's flock): one that polled lost the
    lock to them every time it came free."""
    with LAB_LOCK.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {LAB_LOCK} (another lab is up: a test run or a benchmark)",
                  flush=True)
            _wait_for(handle)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_for(handle: IO[str]) -> None:
    """A blocking flock on `handle`, given up after LAB_LOCK_WAIT_S (an alarm interrupts
    it: benchmarks take the lock in their main thread)."""

    def give_up(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError

    before = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(LAB_LOCK_WAIT_S)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
    except TimeoutError:
        sys.exit(f"{LAB_LOCK} held by someone else for {LAB_LOCK_WAIT_S} s: "
                 "wait for their lab to go down, then run the benchmark again")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


@contextlib.contextmanager
def lab(replication: str) -> Iterator[tuple[Lab, Path]]:
    if os.geteuid() != 0:
        sys.exit("benchmarks bring the netns lab up: run them as root (sudo make bench)")
    with lab_lock():
        base = Path(tempfile.mkdtemp(prefix="gameday-bench-"))
        base.chmod(0o755)
        env = {**os.environ, "GAMEDAY_HOME": str(base / "state")}
        up = subprocess.run([str(BIN / "gameday"), "lab", "up", "--replication", replication],
                            env=env, capture_output=True, text=True)
        try:
            if up.returncode != 0:
                sys.exit(f"lab up failed: {up.stderr.strip().splitlines()[-1]}")
            the_lab = descriptor.load(base / "state" / "lab.json")
            after_up(the_lab)
            yield the_lab, base
        finally:
            subprocess.run([str(BIN / "gameday"), "lab", "down"], env=env, capture_output=True)
            shutil.rmtree(base, ignore_errors=True)


def after_up(the_lab: Lab) -> None:
    """Run GAMEDAY_BENCH_AFTER_UP, if set (see the module's docstring)."""
    command = os.environ.get("GAMEDAY_BENCH_AFTER_UP")
    if not command:
        return
    # a conninfo string for psql: make_conninfo quotes every value for libpq
    dsn = psycopg.conninfo.make_conninfo(**the_lab.writer_params())
    env = {**os.environ, "GAMEDAY_WRITER_DSN": dsn, "GAMEDAY_LAB": the_lab.path}
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True,
                          timeout=60)
    print(f"GAMEDAY_BENCH_AFTER_UP ran (exit {done.returncode}): "
          f"{(done.stdout + done.stderr).strip()}", flush=True)
