"""Fixtures for tests on the real netns lab: root, real PostgreSQL, PowerDNS, unbound and
nftables. Without root these tests fail with the reason instead of skipping, so CI can never
pass without them."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import pytest

from gameday.labs.netns.configs import UNBOUND_DIR
from gameday.labs.netns.resolvers import dnsmasq_files

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAMESPACES = ("gd-region-1", "gd-region-2", "gd-dns", "gd-witness")
# The lab's names are fixed (gd-region-1, ...), so two test sessions on one machine (a CI
# run beside a developer's) must take turns: each holds this lock for its whole session.
LAB_LOCK = Path("/run/gameday-lab.lock")
LAB_LOCK_WAIT_S = 1500


def checkout(env: dict[str, str]) -> Path:
    """The checkout a test runs gameday from: this one, or the copy its env names
    (GAMEDAY_TEST_CHECKOUT, e.g. one inside a 0700 directory)."""
    return Path(env.get("GAMEDAY_TEST_CHECKOUT") or ROOT)


def gameday(*args: str, env: dict[str, str], check: bool = True,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / "gameday"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=checkout(env))
    if check and proc.returncode != 0:
        raise AssertionError(f"gameday {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def chaos(experiment: str, *, env: dict[str, str], timeout: float = 600,
          extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "chaos"), "--no-version-check", "run", *extra,
         "--journal-path", str(Path(env["GAMEDAY_REPORTS"]) / "journal.json"),
         experiment if experiment.startswith("/")
         else str(checkout(env) / "experiments" / experiment)],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=checkout(env))


def lab_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines()
            if line.strip() and line.split()[0] in NAMESPACES]


def residue(env: dict[str, str], pids: list[int]) -> list[str]:
    """What a lab left behind: namespaces, live processes, links, files."""
    left = [f"namespace {ns}" for ns in lab_namespaces()]
    left += [f"process {pid}" for pid in pids if Path(f"/proc/{pid}").exists()
             and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    left += [f"link {name}" for name in ("gd-br0", "gdv-region-1", "gdv-region-2", "gdv-dns",
                                         "gdv-witness")
             if f" {name}:" in links or f" {name}@" in links]
    left += [f"dir /etc/netns/{ns}" for ns in NAMESPACES if Path(f"/etc/netns/{ns}").exists()]
    if UNBOUND_DIR.exists():  # the resolver's files, where AppArmor lets unbound read them
        left.append(f"dir {UNBOUND_DIR}")
    # dnsmasq's (lab up --resolvers dnsmasq), where AppArmor lets it read them
    left += [f"file {path}" for path in dnsmasq_files().values() if path.exists()]
    if Path(env["GAMEDAY_HOME"]).exists():
        left.append(f"state dir {env['GAMEDAY_HOME']}")
    return left


@pytest.fixture(scope="session")
def lab_env() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.fail("the netns lab tests need root: run `sudo make test`")
    lock = _take_lab_lock()
    if lab_namespaces():
        pytest.fail(f"a netns lab is already up ({', '.join(lab_namespaces())}): "
                    "run `make lab-down` before the tests")
    base = Path(tempfile.mkdtemp(prefix="gameday-it-"))
    os.chmod(base, 0o755)
    env = {
        **os.environ,
        "GAMEDAY_HOME": str(base / "state"),
        "GAMEDAY_LAB": str(base / "state" / "lab.json"),
        "GAMEDAY_REPORTS": str(base / "reports"),
    }
    try:
        yield env
    finally:
        gameday("lab", "down", env=env, check=False)
        shutil.rmtree(base, ignore_errors=True)
        lock.close()


def _take_lab_lock() -> TextIO:
    """Wait for another test session on this machine to finish with the lab. A lab that is
    up while nobody holds the lock is someone's own lab: that still fails, below."""
    handle = LAB_LOCK.open("a")
    deadline = time.monotonic() + LAB_LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                pytest.fail(f"another test session held {LAB_LOCK} for {LAB_LOCK_WAIT_S} s")
            time.sleep(1)


@contextmanager
def lab_up(env: dict[str, str], *args: str) -> Iterator[None]:
    """A lab for one test, taken down whatever the test does, so the next starts clean."""
    gameday("lab", "up", *args, env=env)
    try:
        yield
    finally:
        gameday("lab", "down", env=env, check=False)


def lab_pids(env: dict[str, str]) -> list[int]:
    status = json.loads(gameday("lab", "status", env=env).stdout)
    return [pid for pid in status["processes"].values() if pid]
