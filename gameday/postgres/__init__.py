"""Every question gameday asks a region's PostgreSQL, and every change it makes by SQL, in
one package, split by concern as Patroni's `postgresql/` is:

    connection    how a connection is made and bounded; a libpq error's cause
    role          primary, read-only, standby or down; read-only and back
    replication   streaming, replay and its lag, the replication mode, the sampler's query
    promotion     promote and see the first write accepted
    canary        the canary table: its rows, numbering, retention, the split-brain writer
    dcs           the HA manager's keys in its DCS (etcd), read from outside

Why one place: the actions, the recovery after a crash, the probes, the readiness gate, the
recorder and both lab drivers ask the same questions, and they must get the same answer (a
primary made read-only by a switchover is not writable; a fenced standby is in recovery).
Errors cross this package's boundary only as TargetError, with the region named and never
the DSN (it holds the password).

The names below are the package's vocabulary (`postgres.is_writable(lab, region)`); each
lives in the module of its concern.
"""

from gameday.postgres.canary import canary_rows
from gameday.postgres.connection import (
    BULK_TIMEOUT_S,
    KEEPALIVES,
    STATEMENT_TIMEOUT_S,
    TCP_USER_TIMEOUT_MS,
    bounds,
    cause,
    connect,
)
from gameday.postgres.promotion import Promotion, promote
from gameday.postgres.replication import (
    checkpoint,
    replay_lag,
    restore_replication_mode,
    standby_streams,
    streams_from,
    wait_replayed,
)
from gameday.postgres.role import (
    Role,
    in_recovery,
    is_primary,
    is_writable,
    make_read_only,
    make_writable_again,
    role,
)

__all__ = [
    "BULK_TIMEOUT_S", "KEEPALIVES", "STATEMENT_TIMEOUT_S", "TCP_USER_TIMEOUT_MS", "Promotion",
    "Role", "bounds", "canary_rows", "cause", "checkpoint", "connect", "in_recovery",
    "is_primary", "is_writable", "make_read_only", "make_writable_again", "promote",
    "replay_lag", "restore_replication_mode", "role", "standby_streams", "streams_from",
    "wait_replayed",
]
