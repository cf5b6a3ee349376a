"""A region's Redis: what it is (master, replica, down), whether it streams from its master
and how far behind it is. The same questions gameday.postgres answers for PostgreSQL, with
the same signatures (gameday.drill.stores.Store): a master is the writable primary, a
replica a standby, `master_link_status: up` streaming.

Every call is bounded (a second to connect and to answer) and opens its own connection:
these are the drill's and the recovery's questions, a few a second at most; the recorder
keeps its own connections (gameday.measure.samplers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, NoReturn

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gameday.foundation.descriptor import Lab, RedisNode, RedisStore, Region
from gameday.foundation.errors import ConfigError, LabError, TargetError
from gameday.foundation.poll import poll_until

Role = Literal["primary", "standby"]

TIMEOUT_S = 1.0
# everything redis-py raises for a server that is down, cut off or refuses us
ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
NOT_BEHIND_ITS_BACK = ("gameday never promotes a Redis, nor makes one writable or read-only, "
                       "behind its Sentinels' back")


def store(lab: Lab) -> RedisStore:
    if lab.redis is None:
        raise ConfigError(f"{lab.path or 'this lab'} keeps its data in PostgreSQL, not in "
                          "Redis with Sentinel")
    return lab.redis


def client(password: str | None, host: str, port: int,
           timeout: float = TIMEOUT_S) -> redis.Redis:
    """A client that answers within `timeout` or raises. Never retries on its own:
    redis-py's default (3 retries, exponential backoff with jitter up to 10 s) made one
    question to a Redis that is down take seconds (measured: a 0.2 s wait took 20 s)."""
    return redis.Redis(host=host, port=port, password=password, socket_timeout=timeout,
                       socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


@contextmanager
def _connected(lab: Lab, region: Region, timeout: float = TIMEOUT_S) -> Iterator[redis.Redis]:
    s = store(lab)
    node: RedisNode = s.node(region.name)
    c = client(s.password, node.address, node.port, timeout)
    try:
        yield c
    finally:
        c.close()


def replication(lab: Lab, region: Region, timeout: float = TIMEOUT_S) -> dict[str, Any] | None:
    """`region`'s INFO replication; None when it does not answer within `timeout`."""
    try:
        with _connected(lab, region, timeout) as c:
            info: dict[str, Any] = c.info("replication")
    except ERRORS:
        return None
    return info


def replicas(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The replicas a master's INFO replication lists (slave0, slave1, ...), as redis-py
    parses them: ip, port, state, offset, lag (seconds since its last acknowledgement)."""
    return [v for k, v in sorted(info.items())
            if k.startswith("slave") and k[5:].isdigit() and isinstance(v, dict)]


def sample(info: dict[str, Any]) -> tuple[int, float | None, dict[str, Any]]:
    """What the recorder keeps of one INFO replication: (in recovery: 1 for a replica, 0
    for the master; lag in seconds: the master's most lagging replica's time since its last
    acknowledgement, none for a replica, which does not know it; the detail), in the shape
    of PostgreSQL's sample (`senders` on the master, `receiver` on a replica)."""
    if info.get("role") == "master":
        senders = [{"address": f"{r.get('ip')}:{r.get('port')}", "state": r.get("state"),
                    "offset": r.get("offset"), "lag": r.get("lag")} for r in replicas(info)]
        lags = [float(r["lag"]) for r in replicas(info) if r.get("lag") is not None]
        return 0, (max(lags) if lags else None), {
            "senders": senders, "master_repl_offset": info.get("master_repl_offset")}
    receiver = {"master": f"{info.get('master_host')}:{info.get('master_port')}",
                "link": info.get("master_link_status"),
                "offset": info.get("slave_repl_offset")}
    return 1, None, {"receiver": receiver}


def role(lab: Lab, region: Region) -> Role | None:
    """"primary" for the master, "standby" for a replica, None when it does not answer."""
    info = replication(lab, region)
    if info is None:
        return None
    return "primary" if info.get("role") == "master" else "standby"


def is_writable(lab: Lab, region: Region) -> bool | None:
    """True for the master (under `wait` durability it still refuses a write it cannot
    have a replica acknowledge: that is its durability, not its role), False for a
    replica, None when it does not answer."""
    found = role(lab, region)
    return None if found is None else found == "primary"


def is_primary(lab: Lab, region: Region) -> bool | None:
    """A Redis master cannot be left read-only: the same answer as is_writable."""
    return is_writable(lab, region)


def _streams(info: dict[str, Any] | None, upstream: RedisNode | None = None) -> bool:
    if info is None or info.get("role") != "slave" or info.get("master_link_status") != "up":
        return False
    return upstream is None or (str(info.get("master_host")) == upstream.address and
                                int(info.get("master_port", 0)) == upstream.port)


def standby_streams(lab: Lab, region: Region) -> bool:
    """True when `region`'s Redis is a replica whose link to its master is up."""
    info = replication(lab, region)
    if info is None:
        raise TargetError(f"the Redis in {region.name} does not answer")
    return _streams(info)


def streams_from(lab: Lab, primary: Region, standby: Region, *,
                 synchronous: bool = False) -> bool:
    """True when `standby`'s Redis is a replica of `primary`'s with its link up. Redis
    replication has no synchronous standby (WAIT is per write): `synchronous` asks nothing
    more."""
    return _streams(replication(lab, standby), store(lab).node(primary.name))


def replay_lag(lab: Lab, primary: Region, standby: Region) -> tuple[float, float | None] | None:
    """(bytes of the master's replication stream `standby` has not acknowledged, seconds
    since it last acknowledged), as `primary` sees it; None when `primary` does not answer
    or has no such replica."""
    info = replication(lab, primary)
    if info is None or info.get("role") != "master":
        return None
    node = store(lab).node(standby.name)
    for value in replicas(info):
        if str(value.get("ip")) == node.address and int(value.get("port", 0)) == node.port:
            behind = int(info.get("master_repl_offset", 0)) - int(value.get("offset", 0))
            return float(max(behind, 0)), float(value.get("lag", 0))
    return None


def wait_replayed(lab: Lab, standby: Region, primary: Region, timeout_s: float, what: str,
                  *, interruptible: bool = True) -> float:
    """Until `standby` streams from `primary` and has acknowledged everything `primary` had
    written when the wait began; the seconds it took."""
    started = time.monotonic()
    master = replication(lab, primary)
    if master is None or master.get("role") != "master":
        raise TargetError(f"the Redis in {primary.name} is not the master: {standby.name} "
                          f"cannot {what}")
    target = int(master.get("master_repl_offset", 0))
    upstream = store(lab).node(primary.name)

    def caught_up() -> bool:
        info = replication(lab, standby)
        return _streams(info, upstream) and info is not None and \
            int(info.get("slave_repl_offset", -1)) >= target

    poll_until(caught_up, timeout_s=timeout_s, interval_s=0.05, interruptible=interruptible,
               error=lambda _: TargetError(f"the Redis in {standby.name} did not {what} "
                                           f"within {timeout_s:g} s"))
    return time.monotonic() - started


def restore_replication_mode(lab: Lab, primary: Region) -> None:
    """Nothing to restore: a Redis lab's durability (min-replicas-to-write, WAIT) is its
    configuration, which no drill changes."""


def make_writable_again(lab: Lab, region: Region) -> bool:
    """Never: which Redis is the master is the Sentinels' decision."""
    return False


def make_read_only(lab: Lab, region: Region) -> NoReturn:
    raise LabError(f"{NOT_BEHIND_ITS_BACK}: a switchover of {region.name} goes through them "
                   "(promotion 'manager': SENTINEL FAILOVER)")


def promote(lab: Lab, target: Region, timeout_s: float, *, clock: Callable[[], float],
            on_requested: Callable[[float], None] | None = None) -> NoReturn:
    raise LabError(f"{NOT_BEHIND_ITS_BACK}: they promote {target.name} by themselves "
                   "(promotion 'none', experiments/game-day-redis.json)")
