"""kind-lab's PostgreSQL role entrypoint (kind-lab/base/postgres/entrypoint.sh) run for real
on this machine's PostgreSQL 15, through a failover and a failback: primary, standby from a
base backup, fenced start, resync by rewind, by base backup and none, and the switchover
rewind.

Stand-ins, each for what only the pod has:
- the postgres image's docker-entrypoint.sh: a shim (written below) doing what the image's
  does for this entrypoint (docker-library/postgres, 15/bookworm/docker-entrypoint.sh):
  as root, own PGDATA and re-exec as postgres through gosu; on an empty PGDATA, initdb with
  POSTGRES_USER/POSTGRES_PASSWORD, `host all all all scram-sha-256`, POSTGRES_DB and the
  initdb.d scripts (kind-lab's initdb.sh) on a socket-only server; then exec the command;
- gosu: setpriv, which also execs;
- the pod's network namespace: each region listens on its own loopback address (127.0.0.x,
  port 5432 as in the pod), with its own socket directory, both appended to the command
  line by the shim (the last -c wins);
- the ConfigMap gameday-db: a directory named by GAMEDAY_DB_CONFIG.

Root (PostgreSQL runs as the postgres user, as in the image); no lab, so no lab lock. Every
process is stopped by its pid and the data directories are removed, whatever happens.
Budget: well under a minute (it prints its time).
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

import psycopg
import pytest

from gameday.labs.kubernetes.readiness import FENCED_EMPTY_LINE
from tests.integration.conftest import ROOT

# root and this machine's PostgreSQL, no netns lab: `make test-host` runs it beside the lab's
# suite (pyproject's `no_lab` marker)
pytestmark = pytest.mark.no_lab

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ENTRYPOINT = ROOT / "kind-lab" / "base" / "postgres" / "entrypoint.sh"
INITDB_SH = ROOT / "kind-lab" / "base" / "postgres" / "initdb.sh"
PASSWORD = "entrypoint-test"
ADDRESS = {"region-1": "127.0.0.2", "region-2": "127.0.0.3", "region-3": "127.0.0.4"}

GOSU = """#!/bin/bash
# gosu USER COMMAND...: COMMAND as USER, exec'd (the image's gosu does the same)
set -e
user=$1
shift
HOME=$(getent passwd "$user" | cut -d: -f6)
export HOME
exec setpriv --reuid="$user" --regid="$user" --init-groups "$@"
"""

DOCKER_ENTRYPOINT = r"""#!/bin/bash
# Stands in for the postgres image's docker-entrypoint.sh (15/bookworm): see the test's doc.
set -Eeo pipefail
: "${PGDATA:?}" "${POSTGRES_USER:?}" "${SHIM_LISTEN:?}" "${SHIM_SOCKET_DIR:?}"
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
if [ "$1" = postgres ]; then
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA" || :
    if [ "$(id -u)" = 0 ]; then
        find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
        install -d -o postgres -g postgres -m 3775 "$SHIM_SOCKET_DIR"
        exec gosu postgres "$BASH_SOURCE" "$@"
    fi
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD")
        auth=$(postgres -C password_encryption "${@:2}")
        printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
        export PGPASSWORD=$POSTGRES_PASSWORD PGHOST=$SHIM_SOCKET_DIR
        pg_ctl -D "$PGDATA" -w start \
            -o "$(printf '%q ' "${@:2}" -c listen_addresses='' -c "unix_socket_directories=$SHIM_SOCKET_DIR")"
        if [ "$POSTGRES_DB" != postgres ]; then
            psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc \
                --dbname postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
        fi
        for f in "$SHIM_INITDB_D"/*; do
            case "$f" in *.sh) echo "$0: sourcing $f"; . "$f" ;; esac
        done
        pg_ctl -D "$PGDATA" -m fast -w stop
        unset PGPASSWORD PGHOST
    fi
fi
exec "$@" -c "listen_addresses=$SHIM_LISTEN" -c "unix_socket_directories=$SHIM_SOCKET_DIR"
"""


class Pod:
    """One region's postgres container: its volume, role, output and process."""

    def __init__(self, base: Path, region: str) -> None:
        self.region = region
        self.address = ADDRESS[region]
        self.volume = base / region / "data"
        self.pgdata = self.volume / "pgdata"
        self.role_dir = base / region / "role"
        self.sockets = base / region / "run"
        self.log = base / region / "output.log"
        self.proc: subprocess.Popen[bytes] | None = None
        for d in (self.volume, self.role_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        self.output_seen = 0

    def start(self, base: Path, role: str, primary_host: str = "") -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.region} runs already"
        (self.role_dir / "role").write_text(role)
        (self.role_dir / "primary_host").write_text(primary_host)
        env = {
            "PATH": f"{base / 'bin'}:{PG_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LC_ALL": "C.UTF-8",
            "PGDATA": str(self.pgdata),
            "POSTGRES_USER": "gameday",
            "POSTGRES_PASSWORD": PASSWORD,
            "POSTGRES_DB": "storefront",
            "GAMEDAY_REGION": self.region,
            "GAMEDAY_DB_CONFIG": str(self.role_dir),
            "SHIM_LISTEN": self.address,
            "SHIM_SOCKET_DIR": str(self.sockets),
            "SHIM_INITDB_D": str(base / "initdb.d"),
        }
        self.output_seen = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(["bash", str(base / "bin" / "entrypoint.sh")],
                                         env=env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def output(self) -> str:
        """What this start printed so far."""
        return self.log.read_bytes()[self.output_seen:].decode(errors="replace")

    def connect(self, dbname: str = "storefront") -> psycopg.Connection:
        return psycopg.connect(host=self.address, port=5432, user="gameday", password=PASSWORD,
                               dbname=dbname, autocommit=True, connect_timeout=2)

    def wait_ready(self, timeout: float = 60) -> None:
        """Until it accepts a connection; fails at once if its process ended."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"{self.region} exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                with self.connect():
                    return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    pytest.fail(f"{self.region} not ready in {timeout:g} s:\n{self.output()[-3000:]}")
                time.sleep(0.1)

    def sql(self, query: str) -> list[tuple[object, ...]]:
        with self.connect() as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        """Stop by its pid (SIGINT: PostgreSQL's fast shutdown, as the pod's preStop hook)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                pytest.fail(f"{self.region} did not stop within {timeout:g} s")
        return self.proc.returncode

    def kill(self) -> None:
        """The whole container gone at once (a node lost, a pod killed past its grace period):
        SIGKILL to the process group, the postmaster and its children."""
        assert self.proc is not None and self.proc.poll() is None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def resync(self) -> str:
        lines = [ln for ln in self.output().splitlines() if ln.startswith("gameday-postgres: resync=")]
        assert len(lines) == 1, self.output()[-3000:]
        return lines[0].split("=", 1)[1]


def wait_until(what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except psycopg.Error:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)


def streaming_from(pod: Pod, upstream: Pod) -> bool:
    rows = pod.sql("SELECT status, sender_host FROM pg_stat_wal_receiver")
    return rows == [("streaming", upstream.address)]


def seqs(pod: Pod) -> set[int]:
    return {int(r[0]) for r in pod.sql("SELECT seq FROM gameday_canary")}  # type: ignore[call-overload]


def in_recovery(pod: Pod) -> bool:
    return bool(pod.sql("SELECT pg_is_in_recovery()")[0][0])


def listens(address: str) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, 5432), timeout=0.5):
        return True
    return False


@pytest.fixture
def pods() -> Iterator[tuple[Path, dict[str, Pod]]]:
    if os.geteuid() != 0:
        pytest.fail("the entrypoint test runs PostgreSQL as the postgres user: run it as root "
                    "(`sudo make test`)")
    for tool in ("postgres", "initdb", "pg_basebackup", "pg_rewind", "pg_ctl", "psql",
                 "pg_isready"):
        if not (PG_BIN / tool).exists():
            pytest.fail(f"{PG_BIN / tool} is missing: run `make setup` (PostgreSQL 15)")
    taken = [a for a in ADDRESS.values() if listens(a)]
    if taken:
        pytest.fail(f"something already listens on {', '.join(taken)} port 5432: stop it first")
    base = Path(tempfile.mkdtemp(prefix="gameday-entrypoint-"))
    base.chmod(0o755)
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for name, text in (("gosu", GOSU), ("docker-entrypoint.sh", DOCKER_ENTRYPOINT)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (base / "initdb.d").mkdir()
    # copied, not linked: the image's files are the postgres user's to read, and a checkout
    # may sit where that user cannot enter (a 0700 home, as `mktemp -d` makes)
    shutil.copyfile(INITDB_SH, base / "initdb.d" / "gameday-initdb.sh")
    (base / "initdb.d" / "gameday-initdb.sh").chmod(0o755)
    shutil.copyfile(ENTRYPOINT, bin_dir / "entrypoint.sh")
    (bin_dir / "entrypoint.sh").chmod(0o755)
    running = {region: Pod(base, region) for region in ADDRESS}
    try:
        yield base, running
    finally:
        for pod in running.values():
            if pod.proc is not None and pod.proc.poll() is None:
                pod.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_entrypoint_through_a_failover_and_a_failback(pods: tuple[Path, dict[str, Pod]]):
    base, pod = pods
    r1, r2, r3 = pod["region-1"], pod["region-2"], pod["region-3"]
    started = time.monotonic()

    # primary: the image initialises the empty volume; the lab loads the schema (up.sh)
    r1.start(base, "primary")
    r1.wait_ready()
    assert "resync=" not in r1.output()
    with r1.connect() as conn:
        conn.execute((ROOT / "gameday" / "labs" / "storefront.sql").read_text())
        conn.execute("INSERT INTO gameday_canary (seq) VALUES (1)")
    assert not in_recovery(r1)

    # standby from a base backup of the primary (initdb.sh let replication in)
    r2.start(base, "standby", r1.address)
    r2.wait_ready()
    assert r2.resync() == "basebackup"
    assert in_recovery(r2)
    wait_until("region-2 streams from region-1", lambda: streaming_from(r2, r1))
    wait_until("row 1 replicated", lambda: seqs(r2) == {1})

    # failover: region-2 promoted while region-1 still takes a write (split brain), then
    # region-1 is lost without a shutdown
    r2.sql("SELECT pg_promote()")
    wait_until("region-2 writable", lambda: not in_recovery(r2))
    r2.sql("INSERT INTO gameday_canary (seq) VALUES (2)")
    r1.sql("INSERT INTO gameday_canary (seq) VALUES (100)")
    r1.kill()

    # fenced: read-only, no upstream (crash recovery in standby mode), its rows readable for
    # the split-brain count
    r1.start(base, "fenced")
    r1.wait_ready()
    assert "gameday-postgres: fenced: read-only standby with no upstream" in r1.output()
    assert in_recovery(r1) and r1.sql("SELECT count(*) FROM pg_stat_wal_receiver") == [(0,)]
    assert seqs(r1) == {1, 100}
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        r1.sql("INSERT INTO gameday_canary (seq) VALUES (101)")
    assert r1.stop() == 0  # shut down in recovery

    # fenced with an empty volume: no PostgreSQL at all, and it stops when told
    r3.start(base, "fenced")
    wait_until("the fenced-empty line", lambda: FENCED_EMPTY_LINE in r3.output(), timeout=10)
    time.sleep(0.5)
    assert r3.proc is not None and r3.proc.poll() is None and not listens(r3.address)
    assert r3.stop(signal.SIGTERM, timeout=10) == 0
    assert not r3.pgdata.exists() or not any(r3.pgdata.iterdir())

    # failback, 1: the fenced old primary (shut down in recovery) rewound onto region-2
    r1.start(base, "standby", r2.address)
    r1.wait_ready()
    assert r1.resync() == "rewind"
    assert in_recovery(r1)
    wait_until("region-1 streams from region-2", lambda: streaming_from(r1, r2))
    wait_until("region-1 has region-2's row", lambda: seqs(r1) == {1, 2})  # 100 is gone
    assert not (r1.pgdata / "gameday.fenced").exists()

    # failback, 2: switchover. region-2 stops cleanly, region-1 replays its last record and
    # is promoted; region-2 then follows region-1: pg_rewind finds no rewind needed, and
    # region-2 must still come back a standby (--write-recovery-conf in that case too)
    checkpoint = r2.sql("SELECT pg_current_wal_lsn()")[0][0]
    assert r2.stop() == 0
    wait_until("region-1 replayed region-2's shutdown", lambda: r1.sql(
        f"SELECT pg_last_wal_replay_lsn() > '{checkpoint}'::pg_lsn")[0][0])
    r1.sql("SELECT pg_promote()")
    wait_until("region-1 writable", lambda: not in_recovery(r1))
    r1.sql("INSERT INTO gameday_canary (seq) VALUES (3)")
    r2.start(base, "standby", r1.address)
    r2.wait_ready()
    assert r2.resync() == "rewind" and "pg_rewind: no rewind required" in r2.output()
    assert in_recovery(r2), "region-2 came back writable beside region-1's primary"
    wait_until("region-2 streams from region-1", lambda: streaming_from(r2, r1))
    wait_until("region-2 has row 3", lambda: seqs(r2) == {1, 2, 3})

    # a standby restarted as a standby: nothing to resync
    assert r2.stop() == 0
    r2.start(base, "standby", r1.address)
    r2.wait_ready()
    assert r2.resync() == "none"
    wait_until("region-2 streams again", lambda: streaming_from(r2, r1))

    # rewind impossible (another cluster on the volume): a fresh base backup instead
    r3.start(base, "primary")
    r3.wait_ready()
    assert r3.stop() == 0
    r3.start(base, "standby", r1.address)
    r3.wait_ready()
    assert "pg_rewind failed: fresh base backup instead" in r3.output()
    assert r3.resync() == "basebackup"
    wait_until("region-3 streams from region-1", lambda: streaming_from(r3, r1))
    assert seqs(r3) == {1, 2, 3}

    took = time.monotonic() - started
    print(f"entrypoint failover and failback on PostgreSQL 15: {took:.1f} s")
