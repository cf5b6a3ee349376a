"""Real Redis servers and a real Sentinel for the unit suite: Debian's redis-server and
redis-sentinel (the netns lab's Redis profile uses the same), started by the test in a
temporary directory, on 127.0.0.1 only at free ports, and stopped by their pids.

A master (region-1), its replica (region-2) and one Sentinel (quorum 1, the `witness`),
which fails over by itself 0.3 s after the master stops answering: the questions
gameday.redis asks, and the Sentinels' view the recorder samples, answered by the servers
they were written for. No netns lab and no lab lock; a few milliseconds to start a Redis,
under a second until the Sentinel knows the replica. Each test gets a fresh set (a
failover changes who is the master).
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

import redis

from gameday.foundation.descriptor import (
    Dns,
    DnsServer,
    Lab,
    RedisNode,
    RedisStore,
    Region,
    SentinelNode,
)

HOST = "127.0.0.1"
PASSWORD = "unit-suite-redis"
SENTINEL_PASSWORD = "unit-suite-sentinel"
MASTER_NAME = "gameday"
DOWN_AFTER_MS = 300
START_TIMEOUT_S = 10.0


def missing() -> str | None:
    for program in ("redis-server", "redis-sentinel"):
        if shutil.which(program) is None:
            return f"`{program}` is missing: run `make setup` (Debian's {program})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Process:
    """One redis-server or redis-sentinel: its configuration file, port and process."""

    def __init__(self, base: Path, name: str, program: str) -> None:
        self.base, self.name, self.program = base, name, program
        self.port = free_port()
        self.conf = base / f"{name}.conf"
        self.log = base / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, lines: list[str], password: str) -> None:
        self.conf.write_text("\n".join([f"bind {HOST}", f"port {self.port}", "daemonize no",
                                        f'logfile "{self.log}"', f"dir {self.base}",
                                        *lines]) + "\n")
        # a session of its own: a Ctrl-C at the terminal reaches pytest, which stops it
        self.proc = subprocess.Popen([self.program, str(self.conf)], cwd=self.base,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError):
                c = redis.Redis(host=HOST, port=self.port, password=password,
                                socket_timeout=0.5, socket_connect_timeout=0.5)
                try:
                    if c.ping():
                        return
                finally:
                    c.close()
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not start: {self.output()[-2000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Set:
    """The master, its replica and the Sentinel of one test."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.master = Process(base, "region-1", "redis-server")
        self.replica = Process(base, "region-2", "redis-server")
        self.sentinel = Process(base, "sentinel", "redis-sentinel")

    def start(self) -> None:
        common = [f"requirepass {PASSWORD}", f"masterauth {PASSWORD}", 'save ""',
                  "appendonly no", "repl-diskless-sync yes", "repl-diskless-sync-delay 0",
                  "repl-ping-replica-period 1", "repl-timeout 5"]
        self.master.start(common, PASSWORD)
        self.replica.start([*common, f"replicaof {HOST} {self.master.port}"], PASSWORD)
        self.wait(lambda: self.info(self.replica).get("master_link_status") == "up",
                  "the replica streams")
        self.sentinel.start([
            f"requirepass {SENTINEL_PASSWORD}",
            f"sentinel monitor {MASTER_NAME} {HOST} {self.master.port} 1",
            f"sentinel auth-pass {MASTER_NAME} {PASSWORD}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} 3000",
            "sentinel deny-scripts-reconfig yes"], SENTINEL_PASSWORD)
        self.wait(self._sentinel_knows_replica, "the Sentinel knows the replica")

    def _sentinel_knows_replica(self) -> bool:
        c = self.sentinel_client()
        try:
            replicas = c.sentinel_slaves(MASTER_NAME)
        finally:
            c.close()
        return any(r.get("master-link-status") == "ok" for r in replicas)

    def client(self, node: Process) -> redis.Redis:
        return redis.Redis(host=HOST, port=node.port, password=PASSWORD, socket_timeout=1,
                           socket_connect_timeout=1)

    def sentinel_client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.sentinel.port, password=SENTINEL_PASSWORD,
                           socket_timeout=1, socket_connect_timeout=1)

    def info(self, node: Process) -> dict[str, object]:
        c = self.client(node)
        try:
            return dict(c.info("replication"))
        finally:
            c.close()

    def wait(self, done: object, what: str, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            try:
                if done():  # type: ignore[operator]
                    return
            except (redis.RedisError, OSError) as exc:
                last = exc
            time.sleep(0.02)
        raise AssertionError(f"not within {timeout:g} s: {what} ({last})")

    def lab(self) -> Lab:
        """A descriptor of these servers as a redis-sentinel lab: region-1 the master,
        region-2 its replica, the Sentinel the witness."""
        regions = tuple(
            Region(name=name, role=role, driver="fake", address=address,
                   storefront_url="http://127.0.0.1:9", db_host=HOST, db_port=node.port)
            for name, role, address, node in (
                ("region-1", "primary", "198.18.0.11", self.master),
                ("region-2", "secondary", "198.18.0.12", self.replica)))
        store = RedisStore(
            master_name=MASTER_NAME, password=PASSWORD,
            nodes=(RedisNode(region="region-1", address=HOST, port=self.master.port),
                   RedisNode(region="region-2", address=HOST, port=self.replica.port)),
            sentinels=(SentinelNode(site="witness", address=HOST, port=self.sentinel.port),),
            quorum=1, canary_key="storefront:canary", sentinel_password=SENTINEL_PASSWORD,
            down_after_ms=DOWN_AFTER_MS)
        return Lab(lab="fake", regions=regions,
                   dns=Dns(name="shop.gameday.test", authoritative=DnsServer(address=HOST, port=9),
                           resolver=DnsServer(address=HOST, port=9)),
                   redis=store)

    def close(self) -> None:
        for process in (self.sentinel, self.replica, self.master):
            process.stop()


@contextlib.contextmanager
def servers() -> Iterator[Set]:
    """A started set, stopped by its pids and its directory removed, also on failure."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="gameday-unit-redis-",
                                 dir=str(shm) if shm.is_dir() and os.access(shm, os.W_OK)
                                 else None))
    made = Set(base)
    try:
        made.start()
        yield made
    finally:
        made.close()
        shutil.rmtree(base, ignore_errors=True)
