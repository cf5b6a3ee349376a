"""The netns lab on a shared host, where `lab up` refuses or fails before a whole lab runs
(so each check is cheap): issue 25 and issue 18's local-host hardening.

- `lab down` removes only a state directory that `lab up` marked as its own, and `lab up`
  does not take a directory that holds other files;
- `lab up` refuses at once, in one line naming the directory and the fix, when the
  postgres user cannot reach the PostgreSQL programs it would run;
- a Patroni member that cannot start fails `lab up` at once, and the one-line error names
  where the processes' logs are kept (they outlive the teardown) and quotes the member's
  last error; the empty GAMEDAY_HOME it was given is left empty, not removed.

The Patroni lab brought up from a 0700 checkout, its fresh data root, and its etcd and REST
API refusing requests without a password are checked on test_autonomous.py's labs.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gameday import cli
from gameday.labs.netns.lab import pg_bindir
from tests.integration.conftest import gameday, lab_namespaces


@pytest.fixture
def scratch() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="gameday-host-test-"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _error_lines(stderr: str) -> list[str]:
    """click prints the one-line error as `Error: ...`; the rest is `lab:` progress."""
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def test_lab_down_keeps_a_directory_that_is_not_the_labs(lab_env: dict[str, str],
                                                         scratch: Path) -> None:
    home = scratch / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work\n")
    env = {**lab_env, "GAMEDAY_HOME": str(home), "GAMEDAY_LAB": str(home / "lab.json")}
    try:
        down = gameday("lab", "down", env=env)
        assert (home / "thesis.tex").read_text() == "years of work\n"
        assert f"left {home} in place" in down.stderr, down.stderr

        up = gameday("lab", "up", env=env, check=False, timeout=240)
        assert up.returncode == cli.EXIT_LAB, up.stderr  # a lab error: exit 4
        (error,) = _error_lines(up.stderr)
        assert f"{home} already holds files that are not the lab's" in error, error
        assert "GAMEDAY_HOME" in error
        assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"]
        assert not lab_namespaces()
    finally:
        gameday("lab", "down", env=env, check=False)


def test_programs_the_postgres_user_cannot_reach_are_refused_up_front(
        lab_env: dict[str, str], scratch: Path) -> None:
    private = scratch / "private"
    private.mkdir(mode=0o700)
    os.chmod(scratch, 0o755)
    (private / "bin").symlink_to(pg_bindir())
    env = {**lab_env, "GAMEDAY_PG_BINDIR": str(private / "bin")}
    started = time.monotonic()
    try:
        up = gameday("lab", "up", "--ha", "patroni", env=env, check=False, timeout=240)
        took = time.monotonic() - started
        assert up.returncode == cli.EXIT_LAB, up.stderr  # a lab error: exit 4
        (error,) = _error_lines(up.stderr)
        assert f"{private} is mode 0700" in error and "chmod o+x" in error, error
        assert "GAMEDAY_PG_BINDIR" in error
        assert took < 15, f"refused after {took:.1f} s: not up front"
        assert not lab_namespaces() and not Path(env["GAMEDAY_HOME"]).exists()
    finally:
        gameday("lab", "down", env=env, check=False)


# PostgreSQL that cannot start a server: Patroni's `bin_dir/postgres -D ...` fails the way a
# broken installation or a bad setting would; everything else (initdb, --version) works
BROKEN_POSTGRES = """#!/bin/sh
for arg in "$@"; do
    if [ "$arg" = "-D" ]; then
        echo "FATAL:  could not start the server: made to fail by test_lab_host" >&2
        exit 1
    fi
done
exec {real} "$@"
"""


def test_a_member_that_cannot_start_names_its_kept_logs(lab_env: dict[str, str],
                                                        scratch: Path) -> None:
    os.chmod(scratch, 0o755)
    bindir = scratch / "bin"
    bindir.mkdir(mode=0o755)
    real = pg_bindir()
    for program in real.iterdir():
        (bindir / program.name).symlink_to(program)
    (bindir / "postgres").unlink()
    (bindir / "postgres").write_text(BROKEN_POSTGRES.format(real=real / "postgres"))
    os.chmod(bindir / "postgres", 0o755)
    # a GAMEDAY_HOME given empty: the lab adopts it, and leaves it empty
    home = scratch / "home"
    home.mkdir()
    env = {**lab_env, "GAMEDAY_PG_BINDIR": str(bindir), "GAMEDAY_HOME": str(home),
           "GAMEDAY_LAB": str(home / "lab.json")}
    kept: Path | None = None
    started = time.monotonic()
    try:
        up = gameday("lab", "up", "--ha", "patroni", env=env, check=False, timeout=240)
        took = time.monotonic() - started
        assert up.returncode == cli.EXIT_LAB, up.stderr  # a lab error: exit 4
        (error,) = _error_lines(up.stderr)
        assert "Patroni in region-1" in error, error
        found = re.search(r"the lab's logs are kept in (\S+)", error)
        assert found, error
        kept = Path(found.group(1))
        # after the teardown: the state directory is empty again, the copy of its logs
        # is still there
        assert home.is_dir() and not list(home.iterdir()) and not lab_namespaces()
        log = (kept / "patroni-region-1.log").read_text()
        assert "made to fail by test_lab_host" in log
        assert "its last error: FATAL: could not start the server: made to fail by " \
            "test_lab_host" in error, error
        # the member exited: no 60 s wait for a primary that will never come
        assert took < 45, f"lab up failed after {took:.1f} s"
    finally:
        gameday("lab", "down", env=env, check=False)
        if kept is not None:
            shutil.rmtree(kept, ignore_errors=True)
