"""The store: the datastore behind the storefronts, asked the same questions whatever it
runs. A drill asks whether a region is the writable primary, whether the other streams
from it and how far behind, waits for it to catch up, and (outside an HA manager's labs)
promotes or makes it read-only; `gameday.postgres` answers for PostgreSQL and
`gameday.redis` for Redis with Sentinel (a master is the primary, a replica the standby).

Why here and not in each caller: the gate, the waits, the promotion step, the switchover,
the failback's precondition and the recovery after a crash ask the same questions, and an
`if redis` in each would drift apart. What only one engine can answer stays in its package
(PostgreSQL's canary table, rewind; the Sentinels' own view, their SENTINEL FAILOVER).
"""

from __future__ import annotations

from typing import Any, Protocol

from gameday import postgres, redis
from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.errors import ConfigError


class Store(Protocol):
    """A datastore's role, replication and promotion questions (the modules
    gameday.postgres and gameday.redis implement it)."""

    def role(self, lab: Lab, region: Region) -> postgres.Role | None: ...

    def is_writable(self, lab: Lab, region: Region) -> bool | None: ...

    def standby_streams(self, lab: Lab, region: Region) -> bool: ...

    def streams_from(self, lab: Lab, primary: Region, standby: Region, *,
                     synchronous: bool = ...) -> bool: ...

    def replay_lag(self, lab: Lab, primary: Region,
                   standby: Region) -> tuple[float, float | None] | None: ...

    def wait_replayed(self, lab: Lab, standby: Region, primary: Region, timeout_s: float,
                      what: str, *, interruptible: bool = ...) -> float: ...

    def restore_replication_mode(self, lab: Lab, primary: Region) -> None: ...

    def make_writable_again(self, lab: Lab, region: Region) -> bool: ...

    def promote(self, lab: Lab, target: Region, timeout_s: float, *, clock: Any,
                on_requested: Any = ...) -> postgres.Promotion: ...


def for_lab(lab: Lab) -> Store:
    """The store of `lab`'s descriptor: Redis with Sentinel (store kind redis-sentinel),
    else PostgreSQL."""
    if lab.redis is not None:
        return redis  # the module implements the protocol
    return postgres


def switch_over_by_manager(lab: Lab, target: Region, timeout_s: float) -> dict[str, Any]:
    """Promotion 'manager' in a switchover: the lab's HA manager asked through its own API
    to make `target` the primary (Redis's Sentinels: SENTINEL FAILOVER, once `target` is a
    replica in sync). Only a redis-sentinel store's manager is asked so; the preflight
    refuses the strategy elsewhere."""
    if lab.redis is None:
        raise ConfigError(MANAGER_ONLY_SENTINEL)
    return redis.switch_over(lab, target, timeout_s)


MANAGER_ONLY_SENTINEL = ("configuration 'promotion' is 'manager', which asks the lab's HA "
                         "manager through its own API: only Redis's Sentinels are asked so "
                         "(SENTINEL FAILOVER); for Patroni use 'command' (patronictl "
                         "switchover, experiments/failback-autonomous.json)")


def has_sql_canary(lab: Lab) -> bool:
    """Whether the database canary can run: it writes SQL. On a store without SQL the
    application canary is the drill's RPO measure."""
    return lab.sql_database is not None
