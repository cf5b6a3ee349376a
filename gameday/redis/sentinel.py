"""What the Sentinels say, and the one thing gameday asks of them.

A Sentinel's view of the master: the address clients are given (SENTINEL
GET-MASTER-ADDR-BY-NAME, which moves at +switch-master) and its flags for that master
(SENTINEL MASTER: `s_down` at +sdown, `o_down` once a quorum agrees, +odown). Those are the
Sentinels' own detection and promotion, observed from outside, as Patroni's leader key is
in its DCS.

The switchover is theirs too: SENTINEL FAILOVER, asked only once the target is a replica
the Sentinels know as healthy and holds everything the master has (a forced failover to a
replica behind would lose what it lacks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from gameday.foundation.descriptor import Lab, Region, SentinelNode
from gameday.foundation.errors import LabError
from gameday.foundation.poll import poll_until
from gameday.redis.node import ERRORS, client, replication, role, store


@dataclasses.dataclass(frozen=True, kw_only=True)
class SentinelView:
    """One Sentinel's answer about the master it monitors."""

    site: str
    master: str | None  # the region whose Redis it hands clients as the master
    address: str | None  # host:port it hands them
    flags: tuple[str, ...] = ()  # its flags for the master: master, s_down, o_down, ...
    failover_state: str | None = None

    @property
    def odown(self) -> bool:
        return "o_down" in self.flags

    def detail(self) -> dict[str, Any]:
        return {"site": self.site, "address": self.address, "flags": list(self.flags),
                "odown": self.odown, "failover_state": self.failover_state}


def view_of(lab: Lab, site: str, master: Mapping[str, Any] | None,
            address: Any) -> SentinelView:
    """A view from the answers to SENTINEL MASTER (`master`, as redis-py parses it) and
    SENTINEL GET-MASTER-ADDR-BY-NAME (`address`: [host, port] or None)."""
    host = port = None
    if address:
        host, port = text(address[0]), int(text(address[1]))
    region = next((n.region for n in store(lab).nodes
                   if n.address == host and n.port == port), None)
    flags = tuple(sorted(str((master or {}).get("flags", "")).split(","))) if master else ()
    state = (master or {}).get("failover-state")
    return SentinelView(site=site, master=region,
                        address=f"{host}:{port}" if host is not None else None,
                        flags=tuple(f for f in flags if f),
                        failover_state=str(state) if state and state != "none" else None)


def view(lab: Lab, sentinel: SentinelNode, timeout: float = 0.5) -> SentinelView | None:
    """`sentinel`'s view; None when it does not answer within `timeout`."""
    s = store(lab)
    c = client(s.sentinel_password, sentinel.address, sentinel.port, timeout)
    try:
        master = c.sentinel_master(s.master_name)
        address = c.sentinel_get_master_addr_by_name(s.master_name)
        if not isinstance(master, dict):
            return None
    except ERRORS:
        return None
    finally:
        c.close()
    return view_of(lab, sentinel.site, master, address)


def views(lab: Lab, timeout: float = 0.5) -> dict[str, SentinelView | None]:
    return {n.site: view(lab, n, timeout) for n in store(lab).sentinels}


def masters_named(lab: Lab) -> dict[str, str | None]:
    """The region each Sentinel names as the master (None: it does not answer, or names an
    address that is no region's Redis)."""
    return {site: (v.master if v else None) for site, v in views(lab).items()}


def agreed_master(lab: Lab) -> str | None:
    """The region a quorum of the Sentinels names as the master, or None."""
    named = [m for m in masters_named(lab).values() if m]
    quorum = store(lab).quorum
    return next((m for m in set(named) if named.count(m) >= quorum), None)


def switch_over(lab: Lab, target: Region, timeout_s: float) -> dict[str, Any]:
    """Have the Sentinels make `target`'s Redis the master (SENTINEL FAILOVER), once they
    know it as a healthy replica that holds everything the master has; wait until a quorum
    of them names it and it answers as the master. Returns what was done.

    The old master follows later, when the Sentinels reconfigure it: they wait 8 s after
    seeing it still claim to be the master, at their next INFO of it (10 s apart), so
    10-20 s on Redis 7.0 (measured here). A caller that needs it streaming waits for that
    (the switchover step does)."""
    s = store(lab)
    started = time.monotonic()
    current = agreed_master(lab)
    if current == target.name:
        return {"switched": False, "master": target.name}
    if current is None:
        raise LabError(f"the Sentinels do not agree on a Redis master (they name "
                       f"{masters_named(lab)}): no switchover to {target.name}")
    node, master = s.node(target.name), s.node(current)
    asker = _naming(lab, current)

    def remaining() -> float:
        return max(0.1, timeout_s - (time.monotonic() - started))

    def promotable() -> bool:
        c = client(s.sentinel_password, asker.address, asker.port)
        try:
            replicas = c.sentinel_slaves(s.master_name)
        finally:
            c.close()
        known = [r for r in replicas
                 if str(r.get("ip")) == node.address and int(r.get("port", 0)) == node.port]
        if not known or known[0].get("master-link-status") != "ok" or \
                any(f in str(known[0].get("flags", "")) for f in ("s_down", "disconnected")):
            return False
        ours = replication(lab, target)
        theirs = replication(lab, lab.region(current))
        return bool(ours and theirs and ours.get("master_link_status") == "up" and
                    int(ours.get("slave_repl_offset", -1)) >=
                    int(theirs.get("master_repl_offset", 0)))

    poll_until(promotable, timeout_s=remaining(), interval_s=0.1, retry_on=ERRORS,
               error=lambda _: LabError(f"the Redis in {target.name} is not a replica in sync "
                                        f"that the Sentinels may promote, after "
                                        f"{timeout_s:g} s"))
    # the old master's writes held (CLIENT PAUSE WRITE, bounded: it ends by itself if
    # gameday dies) from before the promotion until it follows the new master: a write it
    # acknowledged after the replica stopped following it would be lost when it does
    old = client(s.password, master.address, master.port)
    asked = time.monotonic()
    try:
        # redis-py's execute_command is untyped
        old.execute_command("CLIENT", "PAUSE",  # type: ignore[no-untyped-call]
                            str(int(remaining() * 1000)), "WRITE")
        poll_until(promotable, timeout_s=remaining(), interval_s=0.02, retry_on=ERRORS,
                   error=lambda _: LabError(f"the Redis in {target.name} did not catch up "
                                            "with the paused master"))
        asked = time.monotonic()
        _failover(s.master_name, s.sentinel_password, asker)

        def switched() -> bool:
            return agreed_master(lab) == target.name and role(lab, target) == "primary"

        poll_until(switched, timeout_s=remaining(), interval_s=0.05,
                   error=lambda _: LabError(f"the Sentinels did not make {target.name} the "
                                            f"Redis master within {timeout_s:g} s (they "
                                            f"name {masters_named(lab)})"))
        # what the Sentinels do themselves 10-20 s later (8 s after they see the old master
        # still claiming to be one): meanwhile it would acknowledge the writes of clients
        # still connected to it, and lose them when it follows
        old.execute_command("REPLICAOF", node.address,  # type: ignore[no-untyped-call]
                            str(node.port))
        old.execute_command("CONFIG", "REWRITE")  # type: ignore[no-untyped-call]
    finally:
        with contextlib.suppress(*ERRORS):  # else the pause ends by itself at its timeout
            old.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
        old.close()
    return {"switched": True, "master": target.name, "from": master.region,
            "asked": asker.site, "switch_s": round(time.monotonic() - asked, 3)}


def _failover(name: str, password: str | None, asker: SentinelNode) -> None:
    c = client(password, asker.address, asker.port)
    try:
        c.execute_command("SENTINEL", "FAILOVER", name)  # type: ignore[no-untyped-call]
    except ERRORS as exc:
        raise LabError(f"the Sentinel at {asker.site} refused SENTINEL FAILOVER: "
                       f"{str(exc)[:200]}") from None
    finally:
        c.close()


def _naming(lab: Lab, master: str) -> SentinelNode:
    """The first Sentinel that names `master` (the agreed one): the switchover is asked of
    one, and never of a Sentinel still on an older view (one that restarted on the
    configuration it had before a failover names the old master until it hears the others'
    hello messages, every 2 s)."""
    for sentinel in store(lab).sentinels:
        found = view(lab, sentinel)
        if found is not None and found.master == master:
            return sentinel
    raise LabError(f"no Sentinel answers naming {master} the master: no switchover can be "
                   "asked")


def text(value: object) -> str:
    """A reply as text: redis-py answers bytes (these clients do not decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)
