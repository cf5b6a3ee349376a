"""Route 53-like health checks in front of the lab's PowerDNS: the production-shaped profile's
failover record (docs/design.md, The netns lab).

Why a gate. Route 53 checks an endpoint every 10 or 30 s and calls it unhealthy after a
failure threshold (3 by default) of checks in a row, healthy again after as many passing
ones. The PowerDNS the lab runs (4.7 on Debian 12, 4.8 on Ubuntu 24.04) cannot say that:
`ifurlup` checks every `lua-health-checks-interval` seconds and marks an address down at its
first failed check (the option `minimumFailures` came in a later release). `ifurlextup`
could read a verdict served by someone else, but PowerDNS would poll that verdict on its own
interval and add up to another second to every flip. So this process decides, as Route 53's
checkers and its failover record do, and writes the answer into the zone, which PowerDNS
reloads at once (`pdns_control bind-reload-now`):

- every `interval_s`, every endpoint (each address of each region, IPv4 and IPv6) gets an
  HTTP GET of `path` with the global name as Host; it passes on a 2xx or 3xx status with the
  match string in the first 5120 bytes of the body, within `timeout_s`;
- an endpoint's first check sets its state; after that it turns unhealthy after `failures`
  failed checks in a row and healthy after `failures` passing ones;
- a region is healthy while one of its endpoints is (a calculated health check with a
  threshold of 1: the load balancer still has a node);
- the global name answers the primary region (region-1) unless it is unhealthy and the
  secondary is healthy; when both are unhealthy, Route 53 answers the primary, and so does
  the gate. With `cname`, the global name is a CNAME to the region's own name
  (region-1.shop.gameday.test), whose A and AAAA records are all its addresses, always.

One checker, not Route 53's fleet of them in several places; each round's checks run side by
side. Its state, and every change of answer with the time it was made, is in `status_file`.

Run: python -m gameday.labs.netns.healthgate --config <state>/dns/healthgate.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(f"chaostoolkit.{__name__}")

BODY_LIMIT = 5120  # Route 53 searches the first 5120 bytes of the body for the string


@dataclasses.dataclass(frozen=True, kw_only=True)
class GateConfig:
    """Everything the gate needs, written by `lab up` as JSON."""

    zone: str
    name: str  # the global name, also the Host of every check
    ttl_s: int
    interval_s: float
    failures: int
    timeout_s: float
    port: int
    path: str
    match: str
    regions: dict[str, list[str]]  # region -> its addresses; the first region is the primary
    cname: bool
    static_records: list[str]  # the zone's other records (NS host, resolver, region names)
    authority: str  # the SOA's name server
    zone_file: str
    pdns_config_dir: str
    status_file: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateConfig:
        return cls(**data)

    @property
    def primary(self) -> str:
        return next(iter(self.regions))

    @property
    def secondary(self) -> str:
        return list(self.regions)[1]

    def region_name(self, region: str) -> str:
        return f"{region}.{self.name}"


# -- one endpoint's state --------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class EndpointHealth:
    """Route 53's rule for one endpoint: the first check decides, then `threshold` checks in
    a row are needed to change its mind."""

    healthy: bool | None = None  # None until the first check
    failed_in_a_row: int = 0
    passed_in_a_row: int = 0
    last: str = ""

    def record(self, ok: bool, reason: str, *, threshold: int) -> bool:
        """Count one check; True when the endpoint's state changed."""
        self.last = reason
        if ok:
            self.passed_in_a_row += 1
            self.failed_in_a_row = 0
        else:
            self.failed_in_a_row += 1
            self.passed_in_a_row = 0
        before = self.healthy
        if before is None:
            self.healthy = ok
        elif before and self.failed_in_a_row >= threshold:
            self.healthy = False
        elif not before and self.passed_in_a_row >= threshold:
            self.healthy = True
        return self.healthy != before


def region_healthy(endpoints: list[EndpointHealth]) -> bool:
    return any(e.healthy for e in endpoints)


def active_region(healthy: Mapping[str, bool], *, primary: str, secondary: str) -> str:
    """Route 53 failover: the secondary only while the primary is unhealthy and the
    secondary healthy; the primary otherwise, also when both are unhealthy."""
    if not healthy[primary] and healthy[secondary]:
        return secondary
    return primary


# -- one check -------------------------------------------------------------------------------


def check(address: str, *, port: int, path: str, host: str, match: str,
          timeout_s: float) -> tuple[bool, str]:
    """One HTTP health check of `address`, all of it (connect, request, response) within
    `timeout_s`. Returns (passed, what was seen)."""
    deadline = time.monotonic() + timeout_s

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        return left

    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: gameday-healthgate"
               f"\r\nConnection: close\r\n\r\n").encode()
    data = b""
    try:
        with socket.create_connection((address, port), timeout=remaining()) as sock:
            sock.settimeout(remaining())
            sock.sendall(request)
            while True:
                sock.settimeout(remaining())
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep and _complete(head, body):
                    break
    except OSError as exc:  # TimeoutError and ConnectionRefusedError are OSErrors
        return False, f"{type(exc).__name__}: {exc.strerror or exc}"
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f"no HTTP status ({status_line[:40]!r})"
    status = int(parts[1])
    if not 200 <= status < 400:
        return False, f"HTTP {status}"
    if match and match.encode() not in body[:BODY_LIMIT]:
        return False, f"HTTP {status} without {match!r}"
    return True, f"HTTP {status}"


def _complete(head: bytes, body: bytes) -> bool:
    """The whole response has come (its Content-Length), or enough of it to judge."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= min(int(value.strip()), BODY_LIMIT)
    return len(body) >= BODY_LIMIT


# -- the zone --------------------------------------------------------------------------------


def render_zone(config: GateConfig, *, active: str, serial: int) -> str:
    """The zone with the global name answering `active`: its addresses, or a CNAME to its
    own name when `config.cname`."""
    ttl = config.ttl_s
    lines = [
        f"$ORIGIN {config.zone}.",
        f"$TTL {ttl}",
        f"@ IN SOA {config.authority}. hostmaster.{config.zone}. {serial} 3600 600 86400 {ttl}",
        f"@ IN NS {config.authority}.",
        *config.static_records,
    ]

    def records(owner: str, addresses: list[str]) -> list[str]:
        return [f"{owner}. {ttl} IN {'AAAA' if ':' in a else 'A'} {a}" for a in addresses]

    if config.cname:
        for region, addresses in config.regions.items():
            lines += records(config.region_name(region), addresses)
        lines.append(f"{config.name}. {ttl} IN CNAME {config.region_name(active)}.")
    else:
        lines += records(config.name, config.regions[active])
    return "\n".join(lines) + "\n"


def write_zone(config: GateConfig, *, active: str, serial: int) -> None:
    path = Path(config.zone_file)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_zone(config, active=active, serial=serial))
    os.replace(tmp, path)


def reload_zone(config: GateConfig) -> str | None:
    """Have PowerDNS read the zone file now; None when it did, else why not."""
    try:
        proc = subprocess.run(["pdns_control", f"--config-dir={config.pdns_config_dir}",
                               "bind-reload-now", config.zone],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "error" in out.lower():
        return out or f"exit {proc.returncode}"
    return None


# -- the gate --------------------------------------------------------------------------------


class Gate:
    """Rounds of checks every `interval_s` on the monotonic clock, the answer rewritten when
    the failover record's choice changes."""

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self.endpoints = {(region, address): EndpointHealth()
                          for region, addresses in config.regions.items()
                          for address in addresses}
        self.active = config.primary  # what `lab up` wrote into the zone
        self.serial = 1
        self.reload_pending = False
        self.round = 0
        self.changes: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(self.endpoints),
                                                          thread_name_prefix="check")

    def run(self) -> None:
        tick = time.monotonic()
        while not self.stopping.is_set():
            self.check_round()
            tick += self.config.interval_s
            self.stopping.wait(max(0.0, tick - time.monotonic()))
        self.pool.shutdown(wait=False, cancel_futures=True)

    def check_round(self) -> None:
        c = self.config
        started = time.monotonic()
        futures = {key: self.pool.submit(check, key[1], port=c.port, path=c.path,
                                         host=c.name, match=c.match, timeout_s=c.timeout_s)
                   for key in self.endpoints}
        self.round += 1
        for (region, address), future in futures.items():
            try:
                ok, reason = future.result()
            except Exception as exc:  # a check that broke is a failed check, said in the log
                ok, reason = False, f"{type(exc).__name__}: {exc}"
            health = self.endpoints[(region, address)]
            if health.record(ok, reason, threshold=c.failures):
                logger.info("round %d: %s %s is %s (%s)", self.round, region, address,
                            "healthy" if health.healthy else "unhealthy", reason)
        healthy = {region: region_healthy([h for (r, _), h in self.endpoints.items()
                                           if r == region]) for region in c.regions}
        chosen = active_region(healthy, primary=c.primary, secondary=c.secondary)
        if chosen != self.active:
            self.active = chosen
            self.serial += 1
            write_zone(c, active=chosen, serial=self.serial)
            self.reload_pending = True
            self.changes.append({"active": chosen, "round": self.round,
                                 "monotonic": time.monotonic(),
                                 "round_started_monotonic": started,
                                 "at": datetime.now(UTC).isoformat()})
            logger.info("round %d: the global name now answers %s", self.round, chosen)
        if self.reload_pending:
            why = reload_zone(c)
            if why is None:
                self.reload_pending = False
                if self.changes:
                    self.changes[-1].setdefault("reloaded_monotonic", time.monotonic())
            else:
                logger.warning("PowerDNS did not reload %s (%s): trying again next round",
                               c.zone, why)
        self.write_status(healthy)

    def write_status(self, healthy: Mapping[str, bool]) -> None:
        status = {
            "round": self.round,
            "monotonic": time.monotonic(),
            "active": self.active,
            "reload_pending": self.reload_pending,
            "interval_s": self.config.interval_s,
            "failures": self.config.failures,
            "timeout_s": self.config.timeout_s,
            "regions": dict(healthy),
            "endpoints": {address: {"region": region, **dataclasses.asdict(h)}
                          for (region, address), h in self.endpoints.items()},
            "changes": self.changes,
        }
        path = Path(self.config.status_file)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(status, indent=1))
        os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any] | None:
    """The gate's last status, None before its first round."""
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        data: Any = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    config = GateConfig.from_dict(json.loads(args.config.read_text()))
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    gate = Gate(config)
    signal.signal(signal.SIGTERM, lambda *_: gate.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: gate.stopping.set())
    logger.info("checking %d endpoints every %g s (unhealthy after %d failures, timeout %g s)",
                len(gate.endpoints), config.interval_s, config.failures, config.timeout_s)
    gate.run()


if __name__ == "__main__":
    main()
