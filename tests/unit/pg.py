"""A real PostgreSQL 15 for the unit suite: this machine's (Debian's, /usr/lib/postgresql/15/bin),
started by the suite itself in a temporary directory, listening only on 127.0.0.1 at a free
port, and stopped by its pid. No netns lab, no lab lock: the SQL of gameday/postgres/ and the
canary's writers run against the server they were written for, instead of a fake that would
answer what we think PostgreSQL answers.

PostgreSQL refuses to run as root, and `make test` runs as root: then every server program
runs as the postgres user (`setpriv`, as the kind lab's entrypoint test does) and owns its
data directory; otherwise as the current user.

Cheap on purpose, for a suite that must stay under a minute on 2 cores: one initdb per
session (per xdist worker), in memory (/dev/shm), fsync off, small shared buffers, no
autovacuum; a standby is a pg_basebackup -R of the primary (0.1-0.2 s), made by the first
test that needs one and shared by those that only read it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gameday.foundation.descriptor import Database, Dns, DnsServer, Lab, Region

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCHEMA = Path(__file__).resolve().parents[2] / "gameday" / "labs" / "storefront.sql"
USER, PASSWORD, DBNAME = "gameday", "unit-suite", "storefront"
HOST = "127.0.0.1"
# cheap and quick to start and stop; not a tuning advice for anything real
SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",  # only TCP on loopback: nothing else can reach it
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "8MB",
    "max_connections": "40",
    "autovacuum": "off",
    "wal_level": "replica",
    "max_wal_senders": "4",
    "logging_collector": "off",
    "log_min_messages": "warning",
}
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def missing() -> str | None:
    """Why the suite cannot start its PostgreSQL here, or None."""
    for tool in ("initdb", "postgres", "pg_basebackup"):
        if not (PG_BIN / tool).is_file():
            return f"{PG_BIN / tool} is missing: run `make setup` (Debian's postgresql-15)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "running as root needs setpriv (util-linux) to run PostgreSQL as postgres"
    return None


def _memory_dir() -> str | None:
    """/dev/shm (tmpfs) when it is there: a cluster is some 1,300 small files, and this
    machine's disk creates them at about a millisecond each (initdb 1.0-1.6 s, each
    pg_basebackup 1.0-1.8 s; in memory 0.4-0.6 s and 0.1-0.2 s). Else the usual temp dir."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def _as_server_user() -> list[str]:
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    return []


def _own(path: Path) -> None:
    """A path the server's user owns (only changes anything as root)."""
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def free_port() -> int:
    """A port nothing listens on now (the server binds it a moment later; a race with
    another process taking it makes the start fail, and it is retried on another)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run([*_as_server_user(), *argv], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PGPASSWORD": PASSWORD, "LC_ALL": "C"},
                          timeout=120, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr[-2000:]}")


class Server:
    """One postmaster: its data directory, port and process (stopped by its pid)."""

    def __init__(self, base: Path, name: str) -> None:
        self.base, self.name = base, name
        self.data = base / name
        self.log = base / f"{name}.log"
        self.port = 0
        self.cluster_name = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def new_data_dir(self) -> None:
        self.data.mkdir(mode=0o700)
        _own(self.data)

    def start(self, *settings: str) -> None:
        """Start on a free port and wait until it accepts connections; `settings` are
        extra name=value pairs (`cluster_name=region-2`)."""
        for attempt in range(3):
            self.port = free_port()
            argv = [str(PG_BIN / "postgres"), "-D", str(self.data), "-c", f"port={self.port}"]
            for setting in settings:
                argv += ["-c", setting]
            self.log.touch()
            _own(self.log)
            with open(self.log, "ab") as out:
                # a session of its own: a Ctrl-C at the terminal reaches pytest, which stops
                # the server in order, not the server behind its back
                self.proc = subprocess.Popen([*_as_server_user(), *argv], cwd=self.base,
                                             stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True,
                                             env={**os.environ, "LC_ALL": "C"})
            if self._wait_ready():
                return
            if "could not bind" not in self.output() or attempt == 2:
                raise RuntimeError(f"PostgreSQL {self.name} did not start:\n"
                                   f"{self.output()[-3000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                with psycopg.connect(**self.params(dbname="postgres", connect_timeout=1)):
                    return True
            except psycopg.Error:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"PostgreSQL {self.name} not ready in {START_TIMEOUT_S:g} s:\n"
                           f"{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"host": HOST, "port": self.port, "dbname": DBNAME, "user": USER,
                "password": PASSWORD, "connect_timeout": 2, **extra}

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(**self.params(), autocommit=True)

    def sql(self, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cur = conn.execute(query, args)
            return cur.fetchall() if cur.description else []

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by the postmaster's pid; its whole process group by that
        pid if it does not end in time."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class Cluster:
    """The session's primary, and the standbys tests make of it (see `reset` for which
    outlive their test)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.primary = Server(base, "primary")
        self.standbys: list[Server] = []
        self._made = 0

    def init(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        pwfile.chmod(0o644)
        self.primary.new_data_dir()
        _run([str(PG_BIN / "initdb"), "-D", str(self.primary.data), "-U", USER,
              f"--pwfile={pwfile}", "--auth=scram-sha-256", "--locale=C", "-E", "UTF8",
              "--no-sync", "--no-instructions"], self.base, "initdb")
        with open(self.primary.data / "postgresql.conf", "a") as conf:
            conf.write("".join(f"{k} = '{v}'\n" for k, v in SETTINGS.items()))
        self.primary.start()
        with psycopg.connect(**self.primary.params(dbname="postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DBNAME}")
        with self.primary.connect() as conn:
            conn.execute(SCHEMA.read_text())

    def standby(self, name: str = "region-2", *, fresh: bool = False) -> Server:
        """A streaming standby of the primary whose WAL receiver is named `name` (the
        primary's pg_stat_replication.application_name), as the labs name them: the one an
        earlier test left streaming when there is one, else (or when `fresh`, a copy of
        the primary as it is now) a new one."""
        for server in self.standbys:
            if not fresh and server.cluster_name == name and self._streams(server):
                return server
        self._made += 1
        server = Server(self.base, f"standby-{self._made}")
        server.cluster_name = name
        server.new_data_dir()
        _run([str(PG_BIN / "pg_basebackup"), "-D", str(server.data), "-R", "-X", "stream",
              "--no-sync", "-c", "fast", "-h", HOST, "-p", str(self.primary.port), "-U", USER],
             self.base, "pg_basebackup")
        self.standbys.append(server)
        server.start(f"cluster_name={name}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._streams(server):
            if time.monotonic() > deadline:
                raise RuntimeError(f"standby {server.name} does not stream:\n"
                                   f"{server.output()[-3000:]}")
            time.sleep(0.02)
        return server

    @staticmethod
    def _streams(server: Server) -> bool:
        """Running, in recovery, replaying, and its WAL receiver streaming."""
        if not server.running:
            return False
        try:
            return server.sql("SELECT pg_is_in_recovery() AND NOT pg_is_wal_replay_paused(), "
                              "(SELECT status FROM pg_stat_wal_receiver)") == [(True, "streaming")]
        except psycopg.Error:
            return False

    def reset(self) -> None:
        """What a test may change, put back: the primary's settings and canary tables as
        initdb and the schema left them, and every standby but one still streaming (its
        replay resumed) stopped and removed: tests that only read a standby share one."""
        kept: list[Server] = []
        for server in self.standbys:
            if server.running and not kept:
                with contextlib.suppress(psycopg.Error):
                    server.sql("SELECT pg_wal_replay_resume() WHERE pg_is_in_recovery()")
                if self._streams(server):
                    kept.append(server)
                    continue
            server.stop()
            shutil.rmtree(server.data, ignore_errors=True)
        self.standbys[:] = kept
        with self.primary.connect() as conn:
            conn.execute("ALTER SYSTEM RESET ALL")
            conn.execute("SELECT pg_reload_conf()")
        # a new session sees the reloaded settings (a commit waiting for a synchronous
        # standby that is gone must not wait here)
        with self.primary.connect() as conn:
            conn.execute("SET synchronous_commit = local")
            conn.execute("DROP TABLE IF EXISTS gameday_canary_runs")
            conn.execute("TRUNCATE gameday_canary")

    def lab(self, standby: Server | None = None, *, replication: str = "sync") -> Lab:
        """A descriptor of a two-region lab: region-1 is the primary, region-2 the standby
        (or, without one, a port nothing listens on: a region that is down)."""
        port2 = standby.port if standby is not None else free_port()
        regions = tuple(
            Region(name=name, role=role, driver="fake", address=address,
                   storefront_url="http://127.0.0.1:9", db_host=HOST, db_port=port)
            for name, role, address, port in (
                ("region-1", "primary", "198.18.0.11", self.primary.port),
                ("region-2", "secondary", "198.18.0.12", port2)))
        return Lab(lab="fake", regions=regions,
                   dns=Dns(name="shop.gameday.test", authoritative=DnsServer(address=HOST, port=9),
                           resolver=DnsServer(address=HOST, port=9)),
                   database=Database(name=DBNAME, user=USER, password=PASSWORD,
                                     replication=replication))

    def close(self) -> None:
        for server in [*self.standbys, self.primary]:
            server.stop()


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """The session's cluster: everything stopped by pid and the directory removed, whatever
    happens (a failed start, a failed test, Ctrl-C)."""
    why = missing()
    if why:
        pytest.fail(why)
    base = Path(tempfile.mkdtemp(prefix="gameday-unit-pg-", dir=_memory_dir()))
    base.chmod(0o755)  # the postgres user reaches its data directories through it
    made = Cluster(base)
    try:
        made.init()
        yield made
    finally:
        made.close()
        shutil.rmtree(base, ignore_errors=True)
