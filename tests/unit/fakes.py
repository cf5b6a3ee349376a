"""Fakes at the seams, for unit tests of the actions, probes, control and recovery without
root or a lab: a lab driver registered under the name `fake`, and the SQL side of recovery
(`gameday.recovery.Databases`). Both keep what happened in plain lists a test can assert.

These stand in for what only a real lab can do (nftables, processes, PostgreSQL). The same
code paths run against the real netns lab in tests/integration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from gameday import postgres
from gameday.drill.context import Drill
from gameday.foundation import lab_kinds
from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.faults import Fault, not_applicable
from gameday.foundation.settings import GamedaySettings
from gameday.measure.run import Run


@dataclasses.dataclass
class World:
    """What the fake driver changed, shared by every FakeDriver of one lab file."""

    calls: list[tuple[str, ...]] = dataclasses.field(default_factory=list)
    active: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    effective_after: int = 0  # is_effective says False this many times first
    never_effective: bool = False
    fail_inject: str | None = None  # a fault whose inject raises
    fail_revert: set[str] = dataclasses.field(default_factory=set)  # faults whose revert raises
    databases_down: set[str] = dataclasses.field(default_factory=set)
    failback_unsupported: str | None = None
    rejoined: str | None = None  # what rejoin_standby says it did


WORLDS: dict[str, World] = {}


def world(lab_path: str | Path) -> World:
    return WORLDS.setdefault(str(Path(lab_path).absolute()), World())


class FakeDriver:
    """The Driver + DatabaseOps protocols over a World; cordon is not applicable, like the
    netns lab, so the not-applicable path is exercised too."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.world = world(lab.path)

    @classmethod
    def for_lab(cls, lab: Lab, settings: GamedaySettings | None = None) -> FakeDriver:
        return cls(lab)

    def plan(self, fault: Fault, region: Region) -> dict[str, Any]:
        if fault == Fault.CORDON:
            return not_applicable("the fake lab has no nodes")
        return {"applicable": True, "region": region.name, "fault": fault}

    def inject(self, fault: Fault, region: Region, undo: dict[str, Any]) -> None:
        self.world.calls.append(("inject", fault, region.name))
        if self.world.fail_inject == fault:
            from gameday.foundation.errors import TargetError

            raise TargetError(f"{fault} refused by the fake lab")
        self.world.active.add((region.name, fault))

    def is_effective(self, fault: Fault, region: Region, undo: dict[str, Any]) -> bool:
        if self.world.never_effective:
            return False
        if self.world.effective_after > 0:
            self.world.effective_after -= 1
            return False
        return (region.name, fault) in self.world.active

    def revert(self, fault: Fault, region: Region, undo: dict[str, Any]) -> None:
        self.world.calls.append(("revert", fault, region.name))
        if fault in self.world.fail_revert:
            from gameday.foundation.errors import LabError

            raise LabError(f"{fault} on {region.name} cannot be undone by the fake lab")
        self.world.active.discard((region.name, fault))

    def stop_database(self, region: Region) -> None:
        self.world.calls.append(("stop_database", region.name))
        self.world.databases_down.add(region.name)

    def resync_database(self, region: Region, source: Region) -> str:
        self.world.calls.append(("resync_database", region.name, source.name))
        return "rewind"

    def start_standby(self, region: Region, upstream: Region) -> None:
        self.world.calls.append(("start_standby", region.name, upstream.name))
        self.world.databases_down.discard(region.name)

    def failback_unsupported(self, region: Region) -> str | None:
        return self.world.failback_unsupported

    def rejoin_standby(self, primary: Region) -> str | None:
        self.world.calls.append(("rejoin_standby", primary.name))
        return self.world.rejoined

    def start_database(self, region: Region) -> bool:
        if region.name not in self.world.databases_down:
            return False
        self.world.calls.append(("start_database", region.name))
        self.world.databases_down.discard(region.name)
        return True


lab_kinds.register("fake", "tests.unit.fakes:FakeDriver.for_lab")


class FakeDatabases:
    """recovery.Databases over a dict of roles: region -> "primary", "read-only",
    "standby" or None (down). Promotion turns a standby into a primary. `install` also
    puts it in place of the `gameday.postgres` functions the database actions call, with
    each region's canary rows in `rows` (seq, written_at)."""

    def __init__(self, roles: dict[str, postgres.Role | None], *,
                 driver_world: World | None = None) -> None:
        self.roles = roles
        self.calls: list[tuple[str, ...]] = []
        self.driver_world = driver_world
        self.rows: dict[str, list[tuple[int, Any]]] = {}
        self.streams: set[tuple[str, str]] = set()  # (standby, primary) pairs streaming

    def install(self, monkeypatch: Any) -> FakeDatabases:
        for name in ("is_writable", "promote", "wait_replayed", "restore_replication_mode",
                     "make_read_only", "checkpoint", "canary_rows", "streams_from"):
            monkeypatch.setattr(postgres, name, getattr(self, name))
        return self

    def make_read_only(self, lab: Lab, region: Region) -> None:
        self.calls.append(("make_read_only", region.name))
        self.roles[region.name] = "read-only"

    def checkpoint(self, lab: Lab, region: Region) -> None:
        self.calls.append(("checkpoint", region.name))

    def canary_rows(self, lab: Lab, region: Region, what: str) -> list[tuple[int, Any]]:
        return list(self.rows.get(region.name, []))

    def streams_from(self, lab: Lab, primary: Region, standby: Region, *,
                     synchronous: bool = False) -> bool:
        return (standby.name, primary.name) in self.streams

    def _sync_with_driver(self) -> None:
        # a database the fake driver started comes back as a standby (fenced or following)
        if self.driver_world is not None:
            for name, role in self.roles.items():
                if role is None and name not in self.driver_world.databases_down:
                    self.roles[name] = "standby"

    def snapshot(self) -> dict[str, postgres.Role | None]:
        """The roles now, as the databases would answer."""
        self._sync_with_driver()
        return dict(self.roles)

    def role(self, lab: Lab, region: Region) -> postgres.Role | None:
        self._sync_with_driver()
        return self.roles[region.name]

    def is_writable(self, lab: Lab, region: Region) -> bool | None:
        role = self.role(lab, region)
        return None if role is None else role == "primary"

    def wait_replayed(self, lab: Lab, standby: Region, primary: Region, timeout_s: float,
                      what: str, *, interruptible: bool = True) -> float:
        self.calls.append(("wait_replayed", standby.name, primary.name))
        return 0.0

    def restore_replication_mode(self, lab: Lab, primary: Region) -> None:
        self.calls.append(("restore_replication_mode", primary.name))

    def make_writable_again(self, lab: Lab, region: Region) -> bool:
        if self.roles[region.name] != "read-only":
            return False
        self.calls.append(("make_writable_again", region.name))
        self.roles[region.name] = "primary"
        return True

    def promote(self, lab: Lab, target: Region, timeout_s: float, *, clock: Any,
                on_requested: Any = None) -> postgres.Promotion:
        self.calls.append(("promote", target.name))
        assert self.roles[target.name] == "standby"
        if on_requested is not None:
            on_requested(0.0)
        self.roles[target.name] = "primary"
        return postgres.Promotion(region=target.name, requested=0.0, writable=0.03,
                                  error_s=0.005, timeline=2, writable_utc="")


def descriptor_dict(*, storefront: tuple[str, str] = ("http://127.0.0.1:9", "http://127.0.0.1:9"),
                    dns_port: int = 9) -> dict[str, Any]:
    """A valid descriptor of a `fake` lab on loopback (nothing listens on port 9)."""
    return {
        "schema": "gameday.lab/v1",
        "lab": "fake",
        "regions": [
            {"name": "region-1", "role": "primary", "driver": "fake",
             "address": "198.18.0.11", "storefront_url": storefront[0], "db_host": "127.0.0.1",
             "db_port": 9},
            {"name": "region-2", "role": "secondary", "driver": "fake",
             "address": "198.18.0.12", "storefront_url": storefront[1], "db_host": "127.0.0.1",
             "db_port": 9},
        ],
        "dns": {"name": "shop.gameday.test",
                "authoritative": {"address": "127.0.0.1", "port": dns_port},
                "resolver": {"address": "127.0.0.1", "port": dns_port}},
        "database": {"name": "storefront", "user": "gameday", "password": "not-used",
                     "port": 9, "replication": "sync"},
    }


def write_lab(tmp_path: Path, **kw: Any) -> Path:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(descriptor_dict(**kw)))
    WORLDS.pop(str(path.absolute()), None)
    return path


def drill(lab_file: Path | str, run: Run | None = None,
          configuration: Mapping[str, Any] | None = None) -> Drill:
    """The drill context of a test on the fake lab at `lab_file` (with `run` recording)."""
    settings = GamedaySettings.from_chaos({**(configuration or {}), "lab_file": str(lab_file)})
    return Drill(settings=settings, lab=settings.load_lab(), run=run)


@contextlib.contextmanager
def udp_responder(reply: Callable[[bytes], bytes | None]) -> Iterator[int]:
    """A UDP server on loopback answering each datagram with `reply(datagram)` (None: no
    answer, a lost datagram), in a thread of its own, until the block ends: yields its
    port (the fake lab's DNS servers)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            answer = reply(data)
            if answer is not None:
                sock.sendto(answer, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        sock.close()
