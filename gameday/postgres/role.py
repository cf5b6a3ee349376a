"""What a region's database is now (a writable primary, a primary left read-only, a standby,
or down), and the switchover's change of it: read-only, and writable again."""

from __future__ import annotations

from typing import Any, Literal

import psycopg

from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.errors import TargetError
from gameday.postgres.connection import bounds, connect

Role = Literal["primary", "read-only", "standby"]

# what "writable" means, to gameday and to the storefront's /healthz alike
WRITABLE_SQL = ("SELECT NOT pg_is_in_recovery() AND "
                "current_setting('transaction_read_only') = 'off'")
ROLE_SQL = "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')"


def role(lab: Lab, region: Region) -> Role | None:
    """What `region`'s database is now; None when it does not answer within a second."""
    try:
        with psycopg.connect(**lab.database.params(region.db_host, region.db_port,
                                                   connect_timeout=1),
                             autocommit=True, **bounds()) as conn:
            row = conn.execute(ROLE_SQL).fetchone()
    except psycopg.Error:
        return None
    assert row is not None
    in_recovery, read_only = row
    if in_recovery:
        return "standby"
    return "read-only" if read_only == "on" else "primary"


def is_writable(lab: Lab, region: Region) -> bool | None:
    """True for a writable primary, False for a standby or read-only one, None when down."""
    found = role(lab, region)
    return None if found is None else found == "primary"


def is_primary(lab: Lab, region: Region) -> bool | None:
    """True when `region`'s database answers at its db_host and is not in recovery (a
    writable primary, or one a switchover left read-only: either way a second primary must
    not appear next to it); False in recovery (a standby, or fenced); None when it does not
    answer."""
    try:
        with psycopg.connect(**lab.database.params(region.db_host, region.db_port,
                                                   application_name="gameday-drill"),
                             autocommit=True, **bounds()) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except psycopg.Error:
        return None
    return row is not None and not row[0]


def in_recovery(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def make_read_only(lab: Lab, region: Region) -> None:
    """The first step of a planned switchover: no transaction may commit on `region` after
    we read its WAL position, so its clients are cut off too (sessions pick the setting up
    only at their next statement)."""
    with connect(lab, region, "make it read-only") as conn:
        conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")


def make_writable_again(lab: Lab, region: Region) -> bool:
    """Undo make_read_only on a primary; False when there is nothing to undo: `region` is
    a standby, down, or a primary that is not read-only (a recovery that only started a
    database must not say it finished a switchover)."""
    try:
        with connect(lab, region, "check it") as conn:
            row = conn.execute(ROLE_SQL).fetchone()
            if row is None or row[0]:
                return False
            # reset even when it is off now: a switchover interrupted between its ALTER
            # SYSTEM and its reload left it in postgresql.auto.conf for the next start
            conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")
            return bool(row[1] == "on")
    except TargetError:
        return False
