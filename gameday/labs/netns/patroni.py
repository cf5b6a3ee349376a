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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from gameday.errors import ConfigError, LabError
from gameday.labs.netns import configs
from gameday.labs.netns import topology as topo
from gameday.labs.netns.processes import Processes, is_zombie
from gameday.poll import poll_until


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


def directory(state: Path) -> Path:
    return state / "patroni"


def member_config(*, state: Path, data_root: Path, region: str, replication: str,
                  password: str, bindir: Path, options: PatroniOptions) -> dict[str, Any]:
    """Patroni's YAML (written as JSON, which YAML reads) for the member in `region`."""
    address = topo.address(region)
    return {
        "scope": topo.PATRONI_SCOPE,
        "namespace": topo.PATRONI_NAMESPACE,
        "name": region,
        "log": {"level": "INFO"},
        "restapi": {"listen": f"{address}:{topo.PATRONI_PORT}",
                    "connect_address": f"{address}:{topo.PATRONI_PORT}"},
        "etcd3": {"hosts": [f"127.0.0.1:{topo.ETCD_PROXY_PORT}"]},
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
    machine (it reaches the witness over the bridge, and the members' REST APIs)."""
    return directory(state) / "patronictl.yml"


def write_configs(*, state: Path, data_root: Path, replication: str, password: str,
                  bindir: Path, options: PatroniOptions, owner: tuple[int, int]) -> None:
    d = directory(state)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    for region in topo.REGIONS:
        path = d / f"{region}.yml"
        path.write_text(json.dumps(member_config(
            state=state, data_root=data_root, region=region, replication=replication,
            password=password, bindir=bindir, options=options), indent=2))
        os.chmod(path, 0o600)
        os.chown(path, *owner)
        sockets = data_root / f"sockets-{region}"
        sockets.mkdir(parents=True, exist_ok=True)
        os.chown(sockets, *owner)
    ctl = ctl_config(state)
    ctl.write_text(json.dumps({
        "scope": topo.PATRONI_SCOPE, "namespace": topo.PATRONI_NAMESPACE,
        "etcd3": {"hosts": [f"{topo.WITNESS.addresses[0]}:{topo.ETCD_PORT}"]},
    }, indent=2))
    os.chmod(ctl, 0o644)


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


def start_member(state: Path, region: str, user: str) -> None:
    Processes(state).start(f"patroni-{region}",
                           ["patroni", str(directory(state) / f"{region}.yml")],
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
    procs = Processes(state)
    stopped = procs.stop(f"patroni-{region}", sig=signal.SIGTERM, timeout=timeout)
    pid = postmaster_pid(data)
    if pid is not None:
        stopped = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # fast shutdown
        deadline = time.monotonic() + 15
        while postmaster_pid(data) == pid and time.monotonic() < deadline:
            time.sleep(0.05)
        if postmaster_pid(data) == pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return stopped


def wait_role(address: str, role: str, timeout: float) -> None:
    """Until the member's REST API answers `role` ('primary' or 'replica') with 200: what
    Patroni itself believes, as a readiness check of the lab (the drill measures the
    databases, never this)."""
    import urllib.error
    import urllib.request

    url = f"http://{address}:{topo.PATRONI_PORT}/{role}"
    last = "no answer"

    def ready() -> bool:
        nonlocal last
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
                                        f"{timeout:.0f} s ({last}; see .gameday/logs/)"))
