"""How gameday connects to a region's PostgreSQL: every connection bounded, and a libpq
error told by its cause, never by its DSN (which holds the password)."""

from __future__ import annotations

from typing import Any

import psycopg

from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.errors import TargetError

# Every SQL the runner sends is bounded, each bound against its own way of hanging (the
# connect timeout is the DSN's, 2 s a host unless a caller gives less):
# - statement_timeout: the server gives a statement up, e.g. a commit waiting for a
#   synchronous standby that is gone (its wait is cancelled: committed locally, with a
#   warning). 10 s is far above any question the drill asks (milliseconds on the lab).
#   Statements whose work grows with the drill's length get 120 s: CHECKPOINT, and reading
#   or deleting every canary row (an 8-hour drill at 200 writes/s leaves 5.8 million).
STATEMENT_TIMEOUT_S = 10.0
BULK_TIMEOUT_S = 120.0
# - tcp_user_timeout: a connection whose data goes unacknowledged for 5 s fails, instead of
#   retransmitting for the kernel's ~15 minutes: a region cut off mid-statement (dropped
#   packets), where the server's own timeout can never reach us.
TCP_USER_TIMEOUT_MS = 5000
# - keepalives: a reply that never comes over a connection whose data was all acknowledged
#   (the server's host vanished after taking the statement) is noticed by the probes, 2 s
#   idle then 3 unanswered a second apart. A live host answers them, so a long statement
#   on a healthy server is never cut by these.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1,
              "keepalives_count": 3}


def bounds(*, statement_timeout_s: float = STATEMENT_TIMEOUT_S) -> dict[str, Any]:
    """libpq keywords that bound every statement and socket of a connection, for
    `psycopg.connect(**params, **bounds())`. Through a
    connection pooler, the pooler must pass the `options` startup parameter on."""
    return {"options": f"-c statement_timeout={round(statement_timeout_s * 1000)}",
            "tcp_user_timeout": TCP_USER_TIMEOUT_MS, **KEEPALIVES}


def connect(lab: Lab, region: Region, what: str, *, timeout_s: float = 2.0,
            application_name: str = "gameday-drill",
            statement_timeout_s: float = STATEMENT_TIMEOUT_S) -> psycopg.Connection[Any]:
    """An autocommit connection to `region`'s database, or TargetError saying what for."""
    try:
        return psycopg.connect(**lab.database.params(region.db_host, region.db_port,
                                                     connect_timeout=max(1, round(timeout_s)),
                                                     application_name=application_name),
                               autocommit=True, **bounds(statement_timeout_s=statement_timeout_s))
    except psycopg.Error as exc:
        raise TargetError(f"cannot reach the database of {region.name} to {what} "
                          f"({type(exc).__name__})") from None


def cause(exc: object) -> str:
    """libpq's last line names the cause (e.g. a failed password) and never the password."""
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
