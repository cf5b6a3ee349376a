"""The canary table on the lab's database (`lab.database.canary_table`, gameday_canary in
both labs): one row per acknowledged canary write, numbered by `seq`. What gameday writes
there, reads back and keeps.

Numbering: each run's writes continue after the highest number stored (`next_seq`), so a
run's rows are told apart from earlier runs'; the split-brain writer of the netns lab's
blackhole writes negative numbers, which never collide with the canary's.

Retention: the rows of the run starting and of the run before it stay (a failback reads its
game day's rows); older runs' rows go once a run is over (`prune`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.errors import LabError, TargetError
from gameday.postgres.connection import BULK_TIMEOUT_S, STATEMENT_TIMEOUT_S, bounds, cause, connect

# Canary rows kept in the lab's database: those of the run starting and of the run before
# it (a failback reads its game day's rows, the split-brain count among them). Older runs
# are no longer measured; without a bound an 8-hour drill's millions of rows would stay
# forever, and every failback reads the whole table from the old primary.
KEEP_RUNS = 2


def insert_sql(table: str) -> str:
    """One canary write: the recorder's writers and the split-brain writer alike (the row's
    time and server are the table's defaults, set by the server that commits it)."""
    return f"INSERT INTO {table} (seq, writer) VALUES (%s, %s)"


def canary_rows(lab: Lab, region: Region, what: str) -> list[tuple[int, datetime]]:
    """(seq, written_at) of every canary row `region` holds."""
    with connect(lab, region, what, statement_timeout_s=BULK_TIMEOUT_S) as conn:
        return conn.execute(
            f"SELECT seq, written_at FROM {lab.database.canary_table}").fetchall()


def next_seq(lab: Lab) -> int:
    """Canary numbers continue after the highest one already stored, so every run's
    writes are told apart from earlier runs' writes. Only a read: nothing is committed
    before the readiness gate (a commit on a synchronous primary whose standby does not
    stream would wait for it)."""
    try:
        with psycopg.connect(**lab.writer_params(), autocommit=True, **bounds()) as conn:
            row = conn.execute(
                f"SELECT coalesce(max(seq), 0) + 1 FROM {lab.database.canary_table}").fetchone()
            return int(row[0]) if row else 1
    except psycopg.errors.QueryCanceled:
        raise LabError(f"the writable database did not read its canary table "
                       f"{lab.database.canary_table} within {STATEMENT_TIMEOUT_S:g} s: "
                       "is the table locked (pg_locks) or the server overloaded?") from None
    except psycopg.Error as exc:
        raise LabError(f"cannot reach the writable database through the lab descriptor "
                       f"({cause(exc)}): check its database password and hosts, and that "
                       "the lab is up (`gameday lab status`)") from None


def stored_since(lab: Lab, start_seq: int) -> tuple[list[tuple[int, int]], str | None]:
    """(seq, rows with that seq) of every canary number >= `start_seq` the writable primary
    holds, in seq order, and the address of the server that answered: what the write
    accounting compares the canary's acknowledgements with."""
    try:
        with psycopg.connect(**lab.writer_params(), autocommit=True,
                             **bounds(statement_timeout_s=BULK_TIMEOUT_S)) as conn:
            rows = conn.execute(
                f"SELECT seq, count(*) FROM {lab.database.canary_table} WHERE seq >= %s "
                # in order (the primary key's index gives it): the report then marks
                # whole ranges of numbers at once instead of one number at a time
                "GROUP BY seq ORDER BY seq", (start_seq,)).fetchall()
            server = conn.info.hostaddr
    except psycopg.Error as exc:
        raise TargetError(f"cannot read the canary table from the writable primary "
                          f"({type(exc).__name__})") from None
    return rows, server


def prune(lab: Lab, *, start_seq: int, run_id: str, keep_runs: int = KEEP_RUNS) -> int:
    """`prune_canary` on the writable primary, its commit local (housekeeping needs no
    standby). psycopg.Error when the database refuses it."""
    with psycopg.connect(**lab.writer_params(), autocommit=True,
                         **bounds(statement_timeout_s=BULK_TIMEOUT_S)) as conn:
        conn.execute("SET synchronous_commit = local")
        return prune_canary(conn, lab.database.canary_table, start_seq=start_seq,
                            run_id=run_id, keep_runs=keep_runs)


def prune_canary(conn: psycopg.Connection[Any], table: str, *, start_seq: int, run_id: str,
                 keep_runs: int = KEEP_RUNS) -> int:
    """Register the run starting at `start_seq` in `<table>_runs` and delete the canary rows
    of every run but the newest `keep_runs` (this one included); returns the rows deleted.

    The canary table is keyed by seq alone and each run writes numbers from its start_seq
    up, so a run's rows are those from its start_seq to the next run's. Only rows below the
    oldest kept run's start_seq go: never a row of the run starting, nor of the run before
    it, which a failback is still measuring. Rows from before the first registered run
    (tables older than this rule) go once `keep_runs` runs are registered."""
    if keep_runs < 1:
        raise ValueError("keep_runs must be at least 1: the run starting is being measured")
    runs = f"{table}_runs"
    with conn.transaction():
        conn.execute(f"CREATE TABLE IF NOT EXISTS {runs} (start_seq bigint PRIMARY KEY, "
                     "run_id text NOT NULL, started_at timestamptz NOT NULL "
                     "DEFAULT clock_timestamp())")
        # a run that wrote nothing leaves the next one the same start_seq: it holds no row
        conn.execute(f"INSERT INTO {runs} (start_seq, run_id) VALUES (%s, %s) "
                     "ON CONFLICT (start_seq) DO UPDATE SET run_id = EXCLUDED.run_id, "
                     "started_at = clock_timestamp()", (start_seq, run_id))
        row = conn.execute(f"SELECT start_seq FROM {runs} WHERE start_seq <= %s "
                           "ORDER BY start_seq DESC OFFSET %s LIMIT 1",
                           (start_seq, keep_runs - 1)).fetchone()
        if row is None:
            return 0
        keep_from = min(int(row[0]), start_seq)
        deleted = conn.execute(f"DELETE FROM {table} WHERE seq < %s", (keep_from,)).rowcount
        conn.execute(f"DELETE FROM {runs} WHERE start_seq < %s", (keep_from,))
    return max(deleted, 0)
