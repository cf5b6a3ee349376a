"""Every question gameday asks a lab's Redis and its Sentinels (store kind redis-sentinel),
in one package, as gameday.postgres holds every SQL question:

    node        a region's Redis: its role (master or replica), whether it streams from
                its master, how far behind it is
    sentinel    what the Sentinels say: the master each names, whether they hold it down
                (+sdown, +odown), and the switchover gameday may ask of them (SENTINEL
                FAILOVER)

The names below answer the same questions as gameday.postgres's, with the same
signatures, so a drill asks "the store" (gameday.drill.stores) and never which engine it
runs: a master is a writable primary, a replica a standby, its replication link
`master_link_status: up` streaming. What Redis cannot be asked is refused in one line:
gameday never promotes a Redis, nor makes one writable, behind the Sentinels' back.

Errors cross this package's boundary only as TargetError or LabError, with the region
named and never a password.
"""

from gameday.redis.node import (
    Role,
    is_primary,
    is_writable,
    make_read_only,
    make_writable_again,
    promote,
    replay_lag,
    replication,
    restore_replication_mode,
    role,
    standby_streams,
    streams_from,
    wait_replayed,
)
from gameday.redis.sentinel import SentinelView, masters_named, switch_over, views

__all__ = [
    "Role", "SentinelView", "is_primary", "is_writable", "make_read_only",
    "make_writable_again", "masters_named", "promote", "replay_lag", "replication",
    "restore_replication_mode", "role", "standby_streams", "streams_from", "switch_over",
    "views", "wait_replayed",
]
