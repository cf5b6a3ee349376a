"""The autonomous-HA profile of the netns lab (`gameday lab up --ha patroni`): Patroni
runs one member per region and promotes by itself; a single-member etcd in a third
namespace (`gd-witness`) is its DCS.

Why these choices:
- Both regions reach the witness through a delay proxy in their own namespace
  (127.0.0.1:12379), the same kind of path as the cross-region replication: the witness is
  another site.
- Each member advertises `127.0.0.1:15432` as its PostgreSQL connect address. Inside a
  region that is the delay proxy to the *other* region's database, so whichever member
  follows the other streams (and pg_rewinds) over the delayed path, as in the scripted lab.
- Patroni restarts PostgreSQL by itself: every stop goes to Patroni first (by pid), and the
  postmaster it leaves behind (after a SIGKILL of Patroni) is found by its postmaster.pid
  and stopped by that pid.
- `synchronous_mode` when the lab is `sync`; `maximum_lag_on_failover` bounds what an
  asynchronous failover may lose (Patroni refuses to promote a replica further behind).
- The witness's etcd and the members' REST APIs are reachable from the host (gameday samples
  the leader key there, and `patronictl` runs there), so both ask for a password: etcd for
  every request (Patroni and patronictl as etcd's root user, gameday as a user that may
  only read Patroni's keys), the REST API for every request that changes something.
- Each member's configuration lives in the lab's data root (dataroot.py), where the
  postgres user, which runs Patroni, can read it wherever the checkout is.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

from gameday.foundation.errors import ConfigError, LabError
from gameday.foundation.poll import poll_until, poll_within
from gameday.labs.netns import configs
from gameday.labs.netns import topology as topo
from gameday.labs.netns.dataroot import DataRoot
from gameday.labs.netns.processes import Processes, is_zombie, run

ETCD_ROOT = "root"  # etcd's own name for its administrator: Patroni and patronictl use it
ETCD_READER = "gameday-reader"  # may only read Patroni's keys: the descriptor's DCS user
RESTAPI_USER = "gameday"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PatroniOptions:
    ttl_s: int = 10
    loop_wait_s: int = 1
    retry_timeout_s: int = 3
    maximum_lag_on_failover: int = 1048576  # bytes; Patroni's default

    def check(self) -> None:
        if not (self.ttl_s > 0 and self.loop_wait_s > 0 and self.retry_timeout_s > 0):
            raise ConfigError("Patroni ttl, loop_wait and retry_timeout must be positive")
        # Patroni's own rule: the leader must be able to refresh its key, retrying, in time
        if self.loop_wait_s + 2 * self.retry_timeout_s > self.ttl_s:
            raise ConfigError(f"Patroni needs loop_wait + 2 × retry_timeout <= ttl, got "
                              f"{self.loop_wait_s} + 2 × {self.retry_timeout_s} > {self.ttl_s}: "
                              "raise --patroni-ttl or lower the others")
        if self.maximum_lag_on_failover < 0:
            raise ConfigError("--patroni-max-lag must be >= 0 bytes")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Credentials:
    """The profile's passwords, new for each `lab up`."""

    etcd_root: str = dataclasses.field(repr=False)
    etcd_reader: str = dataclasses.field(repr=False)
    restapi: str = dataclasses.field(repr=False)

    @classmethod
    def new(cls) -> Credentials:
        return cls(etcd_root=secrets.token_urlsafe(18), etcd_reader=secrets.token_urlsafe(18),
                   restapi=secrets.token_urlsafe(18))


def directory(state: Path) -> Path:
    return state / "patroni"


def member_config_name(region: str) -> str:
    """The member's configuration file, in the data root."""
    return f"patroni-{region}.yml"


def member_config(*, data_root: Path, region: str, replication: str, password: str,
                  bindir: Path, options: PatroniOptions,
                  credentials: Credentials) -> dict[str, Any]:
    """Patroni's YAML (written as JSON, which YAML reads) for the member in `region`."""
    address = topo.address(region)
    return {
        "scope": topo.PATRONI_SCOPE,
        "namespace": topo.PATRONI_NAMESPACE,
        "name": region,
        "log": {"level": "INFO"},
        "restapi": {"listen": f"{address}:{topo.PATRONI_PORT}",
                    "connect_address": f"{address}:{topo.PATRONI_PORT}",
                    "authentication": {"username": RESTAPI_USER,
                                       "password": credentials.restapi}},
        "etcd3": {"hosts": [f"127.0.0.1:{topo.ETCD_PROXY_PORT}"],
                  "username": ETCD_ROOT, "password": credentials.etcd_root},
        "bootstrap": {
            "dcs": {
                "ttl": options.ttl_s,
                "loop_wait": options.loop_wait_s,
                "retry_timeout": options.retry_timeout_s,
                "maximum_lag_on_failover": options.maximum_lag_on_failover,
                "synchronous_mode": replication == "sync",
                "postgresql": {"use_pg_rewind": True,
                               "parameters": configs.pg_parameters()},
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"},
                       {"auth": "scram-sha-256"}],
        },
        "postgresql": {
            # a base backup waits for a spread checkpoint (up to checkpoint_timeout, 60 s
            # here) unless told otherwise: seen making the replica's bootstrap take 50 s
            "basebackup": [{"checkpoint": "fast"}],
            "listen": f"0.0.0.0:{topo.DB_PORT}",
            # the delay proxy to the other region, seen from wherever the follower runs
            "connect_address": f"127.0.0.1:{topo.PROXY_PORT}",
            "data_dir": str(data_root / region),
            "bin_dir": str(bindir),
            "pgpass": str(data_root / f".pgpass-{region}"),
            "authentication": {
                "superuser": {"username": topo.DB_USER, "password": password},
                "replication": {"username": topo.DB_USER, "password": password},
            },
            "parameters": {"unix_socket_directories": str(data_root / f"sockets-{region}"),
                           "cluster_name": region},
            "pg_hba": [line for line in configs.pg_hba().splitlines()
                       if line and not line.startswith("#")],
        },
        "watchdog": {"mode": "off"},
    }


def ctl_config(state: Path) -> Path:
    """patronictl's configuration, for a person or a `promotion: command` step on the
    machine (it reaches the witness over the bridge, and the members' REST APIs). It holds
    etcd's root password: root's alone (0600)."""
    return directory(state) / "patronictl.yml"


def write_configs(*, state: Path, root: DataRoot, replication: str, password: str,
                  bindir: Path, options: PatroniOptions, credentials: Credentials) -> None:
    for region in topo.REGIONS:
        root.write(member_config_name(region), json.dumps(member_config(
            data_root=root.path, region=region, replication=replication, password=password,
            bindir=bindir, options=options, credentials=credentials), indent=2))
        root.mkdir(f"sockets-{region}")
    d = directory(state)
    d.mkdir(mode=0o700, exist_ok=True)
    ctl = ctl_config(state)
    fd = os.open(ctl, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({
            "scope": topo.PATRONI_SCOPE, "namespace": topo.PATRONI_NAMESPACE,
            "etcd3": {"hosts": [f"{topo.WITNESS.addresses[0]}:{topo.ETCD_PORT}"],
                      "username": ETCD_ROOT, "password": credentials.etcd_root},
            "ctl": {"auth": f"{RESTAPI_USER}:{credentials.restapi}"},
        }, f, indent=2)


def restart(state: Path, region: str, *, timeout_s: float = 60.0) -> None:
    """Ask Patroni to restart `region`'s PostgreSQL (`patronictl restart`)."""
    run(["patronictl", "-c", str(ctl_config(state)), "restart", "--force",
         topo.PATRONI_SCOPE, region], timeout=timeout_s)


def reinit(state: Path, region: str, *, timeout_s: float = 120.0) -> None:
    """Ask Patroni to re-clone `region`'s member from the leader (`patronictl reinit`):
    Patroni's own way to bring back a replica that cannot follow, rather than stopping and
    copying its PostgreSQL behind the manager's back."""
    run(["patronictl", "-c", str(ctl_config(state)), "reinit", "--force", "--wait",
         topo.PATRONI_SCOPE, region], timeout=timeout_s)


def enable_etcd_auth(credentials: Credentials, *, timeout_s: float = 5.0) -> None:
    """etcd's root user for Patroni, a reader of Patroni's keys for gameday, then
    authentication on: from here on nobody without a password reads or changes the DCS."""
    import httpx

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    prefix = topo.PATRONI_NAMESPACE
    # the end of the key range `prefix`*: its last byte plus one ("/service/" -> "/service0")
    range_end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    steps = [
        ("user/add", {"name": ETCD_ROOT, "password": credentials.etcd_root}),
        ("user/grant", {"user": ETCD_ROOT, "role": "root"}),
        ("role/add", {"name": ETCD_READER}),
        ("role/grant", {"name": ETCD_READER, "perm": {"permType": "READ", "key": b64(prefix),
                                                      "range_end": b64(range_end)}}),
        ("user/add", {"name": ETCD_READER, "password": credentials.etcd_reader}),
        ("user/grant", {"user": ETCD_READER, "role": ETCD_READER}),
        ("enable", {}),
    ]
    base = f"http://{topo.WITNESS.addresses[0]}:{topo.ETCD_PORT}/v3/auth/"
    with httpx.Client(timeout=timeout_s, trust_env=False) as client:
        for path, body in steps:
            try:
                resp = client.post(base + path, json=body)
            except httpx.HTTPError as exc:
                raise LabError(f"etcd in the witness did not answer auth/{path} "
                               f"({type(exc).__name__})") from None
            if resp.status_code != 200:
                raise LabError(f"etcd in the witness refused auth/{path}: HTTP "
                               f"{resp.status_code} {resp.text[:200]!r}")


def start_etcd(state: Path) -> None:
    data = state / "etcd"
    data.mkdir(parents=True, exist_ok=True)
    address = topo.WITNESS.addresses[0]
    Processes(state).start("etcd-witness", [
        "etcd", "--name", "witness", "--data-dir", str(data),
        "--listen-client-urls", f"http://{address}:{topo.ETCD_PORT}",
        "--advertise-client-urls", f"http://{address}:{topo.ETCD_PORT}",
        "--listen-peer-urls", "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
        "--initial-cluster", "witness=http://127.0.0.1:2380",
        "--log-level", "warn",
    ], netns=topo.WITNESS.name)


def start_member(state: Path, data_root: Path, region: str, user: str) -> None:
    Processes(state).start(f"patroni-{region}",
                           ["patroni", str(data_root / member_config_name(region))],
                           netns=topo.REGIONS[region].name, user=user)


def postmaster_pid(data: Path) -> int | None:
    """The running postmaster of a data directory, from its postmaster.pid, or None."""
    try:
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    if not Path(f"/proc/{pid}").exists() or is_zombie(pid):
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if comm.startswith("postgres") else None


def kill_postmaster(data: Path, sig: int) -> int | None:
    pid = postmaster_pid(data)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pid


def stop_member(state: Path, data: Path, region: str, *, timeout: float = 30.0) -> bool:
    """Patroni first (it shuts its PostgreSQL down and gives up the leader key), then any
    postmaster it left, by pid. True when something was running."""
    return bool(stop_members(state, {region: data}, timeout=timeout))


def stop_members(state: Path, data: dict[str, Path], *, timeout: float = 30.0) -> list[str]:
    """`stop_member` for the regions in `data` (region -> its data directory) side by side:
    every Patroni signalled, then waited for, then the postmasters they left likewise (`lab
    down` waits for the slower member, not for both in turn, and a replica stopped at the
    same time as the leader has no leader key to race for). The regions where something
    was running."""
    stopped = {name.removeprefix("patroni-") for name in Processes(state).stop_all(
        [f"patroni-{region}" for region in data], sig=signal.SIGTERM, timeout=timeout)}
    left = {region: pid for region, path in data.items()
            if (pid := postmaster_pid(path)) is not None}
    for pid in left.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # fast shutdown
    deadline = time.monotonic() + 15
    for region, pid in left.items():
        stopped.add(region)
        if not _postmaster_gone(data[region], pid, max(0.0, deadline - time.monotonic())):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return [region for region in data if region in stopped]


def _postmaster_gone(data: Path, pid: int, timeout: float) -> bool:
    return poll_within(lambda: postmaster_pid(data) != pid, timeout_s=timeout,
                       interruptible=False)


def wait_role(state: Path, region: str, role: str, timeout: float) -> None:
    """Until the member's REST API answers `role` ('primary' or 'replica') with 200: what
    Patroni itself believes, as a readiness check of the lab (the drill measures the
    databases, never this). A member that exits fails the wait at once, quoting its log."""
    import urllib.error
    import urllib.request

    address = topo.address(region)
    url = f"http://{address}:{topo.PATRONI_PORT}/{role}"
    procs = Processes(state)
    log = procs.log_dir / f"patroni-{region}.log"
    last = "no answer"

    def ready() -> bool:
        nonlocal last
        if not procs.alive(f"patroni-{region}"):
            raise LabError(f"Patroni in {region} exited before it reported {role}"
                           + _last_error(log))
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (lab address)
                return bool(resp.status == 200)
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = type(exc).__name__
        return False

    poll_until(ready, timeout_s=timeout, interval_s=0.2, interruptible=False,
               error=lambda _: LabError(f"Patroni at {address} did not report {role} within "
                                        f"{timeout:.0f} s ({last})" + _last_error(log)))


# what a member's log says when it fails, most telling first: PostgreSQL's own FATAL or PANIC
# (the cause: a bad setting, a port taken), Patroni's CRITICAL or ERROR, then the last line
# of a traceback (Patroni's own exit, "Failed to bootstrap cluster", comes last and says less)
ERROR_MARKS = (("FATAL:", "PANIC:"), ("CRITICAL:", "ERROR:"), ("Error:", "Exception:"))


def last_error(log: Path, *, tail_bytes: int = 65536) -> str | None:
    """The most telling recent error line of a member's log (its PostgreSQL's stderr is in
    it), for the one-line error of a member that did not come up."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for marks in ERROR_MARKS:
        for line in reversed(lines):
            if any(mark in line for mark in marks):
                text = " ".join(line.split())
                return text if len(text) <= 300 else text[:297] + "..."
    return None


def _last_error(log: Path) -> str:
    line = last_error(log)
    return f"; its last error: {line}" if line else ""
