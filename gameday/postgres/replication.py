"""Replication, as both ends see it: a standby streaming and from whom, what it has not
replayed yet, waiting until it has, the mode (synchronous or not) put back after a
failback, and the query the recorder's replication sampler asks every interval."""

from __future__ import annotations

import time

import psycopg

from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.errors import TargetError
from gameday.foundation.poll import poll_until
from gameday.postgres.connection import BULK_TIMEOUT_S, bounds, connect

RECEIVER_SQL = "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)"
# What the replication sampler reads each interval: lag as the standby sees it (replay
# timestamp) and the primary's view of its standbys (docs/design.md, Samplers).
REPLICATION_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery()
            THEN extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) END,
       (SELECT json_agg(json_build_object(
            'name', application_name, 'state', state, 'sync', sync_state,
            'replay_lag', extract(epoch FROM replay_lag),
            'behind_bytes', pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)))
        FROM pg_stat_replication WHERE NOT pg_is_in_recovery()),
       (SELECT status FROM pg_stat_wal_receiver)
"""


def standby_streams(lab: Lab, region: Region) -> bool:
    """True when `region` is a standby whose WAL receiver is streaming: the only evidence
    that it holds what its primary acknowledges (a restarted standby answers long before)."""
    with connect(lab, region, "check its replication") as conn:
        row = conn.execute(RECEIVER_SQL).fetchone()
    return row is not None and bool(row[0]) and row[1] == "streaming"


def streams_from(lab: Lab, primary: Region, standby: Region, *,
                 synchronous: bool = False) -> bool:
    """True when `primary` sees `standby` streaming from it (by its application name), and,
    when `synchronous`, as its synchronous standby."""
    try:
        with psycopg.connect(**lab.database.params(primary.db_host, primary.db_port),
                             autocommit=True, **bounds()) as conn:
            rows = conn.execute("SELECT sync_state FROM pg_stat_replication WHERE "
                                "application_name = %s AND state = 'streaming'",
                                (standby.name,)).fetchall()
    except psycopg.Error:
        return False
    if synchronous:
        return any(r[0] in ("sync", "quorum") for r in rows)
    return bool(rows)


def replay_lag(lab: Lab, primary: Region, standby: Region) -> tuple[float, float | None] | None:
    """(bytes not replayed, replay lag in seconds) of `standby` as `primary` sees it; None
    when the primary has no such standby."""
    try:
        with psycopg.connect(**lab.database.params(primary.db_host, primary.db_port),
                             autocommit=True, **bounds()) as conn:
            rows = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), "
                "extract(epoch FROM replay_lag) FROM pg_stat_replication "
                "WHERE application_name = %s", (standby.name,)).fetchall()
    except psycopg.Error as exc:
        raise TargetError(f"cannot reach the primary database in {primary.name} "
                          f"({type(exc).__name__})") from None
    if not rows:
        return None
    behind, lag = rows[0]
    return float(behind or 0), (None if lag is None else float(lag))


def wait_replayed(lab: Lab, standby: Region, primary: Region, timeout_s: float,
                  what: str, *, interruptible: bool = True) -> float:
    """Wait until `standby` has replayed everything `primary` had written when we started
    waiting; returns the seconds it took."""
    started = time.monotonic()
    with connect(lab, primary, "read its WAL position") as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    target = row[0]
    params = lab.database.params(standby.db_host, standby.db_port, connect_timeout=1)

    receiver = "not asked yet"

    def replayed() -> bool:
        nonlocal receiver
        try:
            with psycopg.connect(**params, autocommit=True, **bounds()) as c:
                got = c.execute("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn), "
                                "(SELECT status FROM pg_stat_wal_receiver)", (target,)).fetchone()
        except psycopg.Error as exc:
            receiver = type(exc).__name__
            return False
        assert got is not None
        receiver = str(got[1])
        return got[0] is not None and got[0] >= 0

    poll_until(replayed, timeout_s=timeout_s, interval_s=0.02, interruptible=interruptible,
               error=lambda _: TargetError(f"{standby.name} did not {what} within "
                                           f"{timeout_s:g} s (receiver: {receiver})"))
    return time.monotonic() - started


def restore_replication_mode(lab: Lab, primary: Region) -> None:
    """Once the other region streams again from `primary`, make it the synchronous standby
    again in a sync lab (found by the name it streams under), or leave replication
    asynchronous. Seen in a 20-drill soak: leaving this to the node's configuration files
    made the lab silently asynchronous after the first failback (a rewound node carries
    standby settings), and the next game day lost acknowledged writes."""
    with connect(lab, primary, "restore its settings") as conn:
        conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        names = [r[0] for r in conn.execute(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")]
        if lab.database.replication == "sync" and names:
            quoted = ", ".join('"' + n.replace('"', "") + '"' for n in names)
            conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{quoted}'")
        else:
            conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("SELECT pg_reload_conf()")


def checkpoint(lab: Lab, region: Region) -> None:
    """Without a checkpoint right after promotion, pg_rewind can answer "no rewind
    required" and leave the target looping on "new timeline forked off"."""
    with connect(lab, region, "checkpoint it", statement_timeout_s=BULK_TIMEOUT_S) as conn:
        conn.execute("CHECKPOINT")
