"""Every question gameday asks a region's PostgreSQL, and every change it makes by SQL, in
one place: is it a writable primary, a standby, read-only or down; has a standby replayed
what its primary wrote; promote and see the first write accepted; put the replication
mode back after a failback.

Why here and not in the actions: the actions, the recovery after a crash, the probes, the
readiness gate and both lab drivers ask the same questions, and they must get the same
answer (a primary made read-only by a switchover is not writable; a fenced standby is in
recovery). Errors cross this module's boundary only as TargetError, with the region named
and never the DSN (it holds the password).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

from gameday import interrupt
from gameday.errors import ConfigError, TargetError
from gameday.labs.descriptor import Lab, Region
from gameday.poll import poll_until

Role = Literal["primary", "read-only", "standby"]

# the storefront's /healthz and the probes agree on what "writable" means
WRITABLE_SQL = ("SELECT NOT pg_is_in_recovery() AND "
                "current_setting('transaction_read_only') = 'off'")
ROLE_SQL = "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')"
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

POLL_S = 0.005

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


def in_recovery(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class Promotion:
    """When a promotion was asked for and when the first write was accepted (run clock),
    with the gap to the attempt before it (the error bar)."""

    region: str
    requested: float
    writable: float
    error_s: float
    timeline: int
    writable_utc: str

    @property
    def took_s(self) -> float:
        return self.writable - self.requested


def promote(lab: Lab, target: Region, timeout_s: float, *, clock: Callable[[], float],
            on_requested: Callable[[float], None] = lambda t: None) -> Promotion:
    """pg_promote() `target` and time the first write it accepts. Timed with a write loop,
    not with the call's return: pg_promote(wait => true) polls every 100 ms, while the
    server accepts writes about 30 ms after the signal. SQLSTATE 25006 (read-only
    transaction) means "not yet". The synchronous standby list is cleared: its old primary
    is gone, and every commit would wait for it forever (the probe's own, txid_current(),
    writes no WAL and never waits for a standby)."""
    if not math.isfinite(timeout_s):
        raise ConfigError(f"the promotion of {target.name} was given a timeout of "
                          f"{timeout_s!r} s: give a finite number of seconds")
    with connect(lab, target, "promote it") as conn:
        if not in_recovery(conn):
            raise TargetError(f"the database of {target.name} is already a primary: nothing to "
                              "promote (did a previous game day not fail back?)")
        t_request = clock()
        conn.execute("SELECT pg_promote(wait => false)")
        on_requested(t_request)
        deadline = time.monotonic() + timeout_s
        prev = t_request
        while True:
            attempt = clock()
            try:
                conn.execute("SELECT txid_current()")
                break
            except psycopg.errors.ReadOnlySqlTransaction:
                pass
            except psycopg.Error as exc:
                raise TargetError(f"promotion of {target.name} failed: {type(exc).__name__}") from None
            if time.monotonic() > deadline:
                raise TargetError(f"the database of {target.name} did not accept writes within "
                                  f"{timeout_s:g} s of pg_promote()")
            prev = attempt
            interrupt.pause(POLL_S)
        t_ready = clock()
        ready_utc = datetime.now(UTC)  # the same instant on the wall clock, for split brain
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
        conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        conn.execute("SELECT pg_reload_conf()")
        row = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
    assert row is not None
    return Promotion(region=target.name, requested=t_request, writable=t_ready,
                     error_s=round(t_ready - prev, 4), timeline=int(row[0]),
                     writable_utc=ready_utc.isoformat())


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
    """Undo make_read_only on a primary; False when `region` is a standby (or down)."""
    try:
        with connect(lab, region, "check it") as conn:
            if in_recovery(conn):
                return False
            conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")
            return True
    except TargetError:
        return False


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


def canary_rows(lab: Lab, region: Region, what: str) -> list[tuple[Any, ...]]:
    """(seq, written_at) of every canary row `region` holds."""
    with connect(lab, region, what, statement_timeout_s=BULK_TIMEOUT_S) as conn:
        return conn.execute(
            f"SELECT seq, written_at FROM {lab.database.canary_table}").fetchall()


def cause(exc: BaseException) -> str:
    """libpq's last line names the cause (e.g. a failed password) and never the password."""
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
