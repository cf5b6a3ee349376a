"""Crash-safe storage of one run's timeline: an SQLite database in the run directory.

Why SQLite: every committed batch survives a SIGKILL of the writer (WAL mode), two
processes (the recorder and the runner, which records events) can write to it, and anyone
can query it afterwards with `sqlite3 reports/<run>/timeline.sqlite`. Times (`t`, `t_send`,
`t_ack`) are seconds on the runner's monotonic clock since the run's anchor; the anchor's
wall-clock UTC is in `meta`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import typing
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from gameday.foundation.events import Payload
from gameday.foundation.poll import poll_within

FILE = "timeline.sqlite"
CHUNK = 8192  # rows per read: a window, never a whole table

class Event(NamedTuple):
    t: float
    kind: str
    region: str | None
    detail: str | None  # JSON


class DnsSample(NamedTuple):
    t: float
    server: str  # "authoritative", "resolver", or "resolver:<name>" (dns.resolvers)
    ok: int
    answer: str | None  # every address of the answer, A and AAAA, sorted, comma-separated
    rcode: str | None
    ttl: int | None  # the smallest TTL in the answer
    latency: float | None
    lateness: float | None
    error: str | None
    # the CNAME targets the answer went through, in order, comma-separated ('' for none);
    # NULL in runs recorded before the chain was (and in failed samples)
    chain: str | None = None
    # the region the whole answer is (foundation.endpoints.classify): a region's name,
    # 'mixed' or 'unknown'; NULL when the query failed or in runs recorded before
    region: str | None = None


class HttpSample(NamedTuple):
    t: float
    target: str  # "global" or a region's name
    ok: int
    status: int | None
    region: str | None  # the region that served it (X-Region)
    address: str | None
    latency: float | None
    lateness: float | None
    error: str | None


class CanaryAttempt(NamedTuple):
    seq: int
    writer: int
    t_send: float
    t_ack: float | None
    outcome: str  # "ok", "failed" or "unknown"
    server: str | None
    error: str | None
    notice: str | None


class AppCanaryAttempt(NamedTuple):
    """One write of the application canary (measure.app_canary): an HTTP request through
    the global name. `outcome` as the database canary's: "ok" (a 2xx answer), "failed"
    (never reached the application, or refused by it with a 4xx: not stored), "unknown"
    (sent, and no answer within the deadline, or a 5xx: maybe stored)."""

    seq: int
    writer: int
    t_send: float
    t_ack: float | None
    outcome: str
    region: str | None  # the region that answered (its X-Region), or DNS's when none
    error: str | None
    status: int | None  # the HTTP status, when an answer came


class CanaryConnect(NamedTuple):
    t: float
    writer: int
    ok: int
    server: str | None
    error: str | None


class ReplicationSample(NamedTuple):
    t: float
    server: str  # the region whose database was asked
    ok: int
    in_recovery: int | None
    lag_s: float | None
    detail: str | None  # JSON: senders, receiver
    error: str | None


class HaSample(NamedTuple):
    t: float
    source: str  # where it was read: "etcd" (the leader key in the DCS)
    ok: int
    leader: str | None  # the member holding the leader key; None when no one does
    detail: str | None  # JSON: the key's mod_revision and lease
    error: str | None


# Each table's columns are defined once, by its row type: the SQL schema, the insert
# statements, the SELECT lists of the metrics and of the live view all come from these.
TABLES: dict[str, type[tuple[Any, ...]]] = {
    "events": Event,
    "dns": DnsSample,
    "http": HttpSample,
    "canary": CanaryAttempt,
    "canary_connect": CanaryConnect,
    "replication": ReplicationSample,
    "ha": HaSample,
    "app_canary": AppCanaryAttempt,
}
_TABLE_OF: dict[type[tuple[Any, ...]], str] = {row: name for name, row in TABLES.items()}
COLUMNS: dict[str, tuple[str, ...]] = {
    name: row._fields for name, row in TABLES.items()}  # type: ignore[attr-defined]  # NamedTuples
_SQL_TYPES = {float: "REAL", int: "INTEGER", str: "TEXT"}


def _ddl(name: str) -> str:
    hints = typing.get_type_hints(TABLES[name])
    cols = []
    for col in COLUMNS[name]:
        args = [a for a in typing.get_args(hints[col]) if a is not type(None)]
        nullable = bool(args)
        sql = _SQL_TYPES[args[0] if args else hints[col]]
        cols.append(f"{col} {sql}" + ("" if nullable else " NOT NULL"))
    return f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(cols)});"


SCHEMA = "\n".join([
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    *(_ddl(name) for name in TABLES),
    # only the attempts that were not acknowledged (a handful per fault), so writes stay
    # cheap while the metrics find them without scanning millions of acknowledged ones
    "CREATE INDEX IF NOT EXISTS canary_not_ok ON canary (t_send) WHERE outcome != 'ok';",
])


def table_of(row: tuple[Any, ...]) -> str:
    """The table a row of one of the row types goes to."""
    return _TABLE_OF[type(row)]


def insert_sql(table: str) -> str:
    cols = COLUMNS[table]
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def select_list(table: str, read: Collection[str] | None = None) -> str:
    """Every column of `table` in its row type's order, NULL for those not in `read`: rows
    keep their shape (and positions) while only what is used is read."""
    return ", ".join(c if read is None or c in read else "NULL" for c in COLUMNS[table])


def connect(run_dir: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(Path(run_dir) / FILE, timeout=10, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def create(run_dir: Path, meta: Mapping[str, Any]) -> None:
    conn = connect(run_dir)
    with conn:
        conn.executescript(SCHEMA)
        conn.executemany(_PUT_META, [(k, json.dumps(v)) for k, v in meta.items()])
    conn.close()


_PUT_META = "INSERT OR REPLACE INTO meta VALUES (?, ?)"


def write_meta(run_dir: Path | str, meta: Mapping[str, Any], *, sort_keys: bool = False) -> None:
    """Record (or replace) `meta`'s keys of a run, each value as JSON."""
    conn = connect(run_dir)
    try:
        with conn:
            conn.executemany(_PUT_META, [(k, json.dumps(v, sort_keys=sort_keys))
                                         for k, v in meta.items()])
    finally:
        conn.close()


# where the numbers read back after the drill are kept: the database canary's rows read from
# the new primary, and the application canary's read back through the application
FINAL_ROWS = "final_rows"
APP_FINAL_ROWS = "app_final_rows"


def write_final_rows(run_dir: Path | str, rows: Iterable[tuple[int, int]], *,
                     meta: Mapping[str, Any], table: str = FINAL_ROWS) -> None:
    """The canary rows read from the new primary (seq, how many rows with it), replacing an
    earlier read, with `meta` saying when and from where, in one transaction. `table`
    APP_FINAL_ROWS: the application canary's numbers as its read-back returned them."""
    if table not in (FINAL_ROWS, APP_FINAL_ROWS):
        raise ValueError(f"no table {table!r} of numbers read back")
    conn = connect(run_dir)
    try:
        conn.execute("BEGIN IMMEDIATE")  # take the write lock now: the recorder writes too
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (seq INTEGER, n INTEGER)")
        conn.execute(f"DELETE FROM {table}")
        conn.executemany(f"INSERT INTO {table} VALUES (?, ?)", rows)
        conn.executemany(_PUT_META, [(k, json.dumps(v)) for k, v in meta.items()])
        conn.execute("COMMIT")
    finally:
        conn.close()


def discard_final_rows(run_dir: Path | str, *, meta: Mapping[str, Any],
                       table: str = FINAL_ROWS) -> None:
    """A read that failed: the numbers of an earlier read removed with `meta` saying why, in
    one transaction. Kept, they would be judged against this read's instant, and every write
    acknowledged since the earlier read would count as lost (seen: a live RPO probe failed on
    writes the final read found)."""
    if table not in (FINAL_ROWS, APP_FINAL_ROWS):
        raise ValueError(f"no table {table!r} of numbers read back")
    conn = connect(run_dir)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.executemany(_PUT_META, [(k, json.dumps(v)) for k, v in meta.items()])
        conn.execute("COMMIT")
    finally:
        conn.close()


def read_meta(run_dir: Path | str) -> dict[str, Any]:
    conn = connect(run_dir)
    try:
        return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    finally:
        conn.close()


class Clock:
    """Seconds since the run's anchor on the monotonic clock (shared by every process on
    the machine: CLOCK_MONOTONIC is system-wide)."""

    def __init__(self, anchor_ns: int) -> None:
        self.anchor_ns = anchor_ns

    def now(self) -> float:
        return (time.monotonic_ns() - self.anchor_ns) / 1e9

    @staticmethod
    def new_anchor() -> tuple[int, str]:
        return time.monotonic_ns(), datetime.now(UTC).isoformat()


# The recorder's flush mark: the monotonic ns at which its last committed batch was cut
# (every row added before that instant is on disk). A probe that reads the samples up to
# the moment it is called waits for a mark past that moment (wait_flushed), not for a
# fixed sleep that must outlast any flush.
FLUSHED = "flushed.ns"


class BatchWriter:
    """Samples go to memory and reach disk in one transaction per flush, so a sampler's hot
    loop never waits on the disk. What was flushed survives a crash. After each flush that
    succeeds (one with nothing pending too) the flush mark (FLUSHED) says when its batch
    was cut.

    `add` may be called from any thread (the canary's writers are threads); `flush` and
    `close` from one. The lock makes taking the pending rows and adding one exclusive, so
    no row is appended to a batch that is already being written."""

    def __init__(self, run_dir: Path) -> None:
        self.conn = connect(run_dir)
        self.mark = Path(run_dir) / FLUSHED
        self.pending: dict[str, list[tuple[Any, ...]]] = {name: [] for name in COLUMNS}
        self._lock = threading.Lock()

    def add(self, row: tuple[Any, ...]) -> None:
        """Queue a row (one of the row types above) for the next flush."""
        table = table_of(row)
        with self._lock:
            self.pending[table].append(row)

    def flush(self) -> int:
        with self._lock:
            cut_ns = time.monotonic_ns()
            batches = {k: v for k, v in self.pending.items() if v}
            if not batches:
                self._mark(cut_ns)
                return 0
            self.pending = {name: [] for name in COLUMNS}
        n = 0
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for table, rows in batches.items():
                self.conn.executemany(insert_sql(table), rows)
                n += len(rows)
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError:
            # the database stayed locked past the busy timeout: keep the samples for the
            # next flush rather than lose them (or the recorder)
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            with self._lock:
                for table, rows in batches.items():
                    self.pending[table][:0] = rows
            return 0
        self._mark(cut_ns)
        return n

    def _mark(self, cut_ns: int) -> None:
        tmp = self.mark.with_suffix(".tmp")
        try:
            tmp.write_text(str(cut_ns))
            tmp.replace(self.mark)
        except OSError:
            pass  # a reader then waits out its bound, as it slept before the mark existed

    def close(self) -> None:
        self.flush()
        self.conn.close()


def flushed_ns(run_dir: Path | str) -> int:
    """The cut of the recorder's last committed batch (monotonic ns), 0 before its first."""
    try:
        return int((Path(run_dir) / FLUSHED).read_text())
    except (OSError, ValueError):
        return 0


def wait_flushed(run_dir: Path | str, timeout_s: float = 1.0) -> bool:
    """Until every sample the recorder was given before this call is committed (a flush
    cut after it), at most `timeout_s`: False when the recorder did not flush in time (it
    died, or the timeline stayed locked), and the caller reads what is there."""
    since = time.monotonic_ns()
    return poll_within(lambda: flushed_ns(run_dir) >= since, timeout_s=timeout_s,
                       interval_s=0.01, interruptible=False)


def record_event(run_dir: Path | str, payload: Payload, t: float) -> None:
    """Events are rare and matter most: each is its own committed transaction."""
    conn = connect(run_dir)
    try:
        conn.execute(insert_sql("events"),
                     Event(t, payload.KIND, payload.region, payload.detail_json()))
    finally:
        conn.close()
