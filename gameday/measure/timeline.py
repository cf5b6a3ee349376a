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
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE = "timeline.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    t REAL NOT NULL, kind TEXT NOT NULL, region TEXT, detail TEXT);
CREATE TABLE IF NOT EXISTS dns (
    t REAL NOT NULL, server TEXT NOT NULL, ok INTEGER NOT NULL, answer TEXT, rcode TEXT,
    ttl INTEGER, latency REAL, lateness REAL, error TEXT);
CREATE TABLE IF NOT EXISTS http (
    t REAL NOT NULL, target TEXT NOT NULL, ok INTEGER NOT NULL, status INTEGER, region TEXT,
    address TEXT, latency REAL, lateness REAL, error TEXT);
CREATE TABLE IF NOT EXISTS canary (
    seq INTEGER NOT NULL, writer INTEGER NOT NULL, t_send REAL NOT NULL, t_ack REAL,
    outcome TEXT NOT NULL, server TEXT, error TEXT, notice TEXT);
-- only the attempts that were not acknowledged (a handful per fault), so writes stay cheap
-- while the metrics find them without scanning millions of acknowledged ones
CREATE INDEX IF NOT EXISTS canary_not_ok ON canary (t_send) WHERE outcome != 'ok';
CREATE TABLE IF NOT EXISTS canary_connect (
    t REAL NOT NULL, writer INTEGER NOT NULL, ok INTEGER NOT NULL, server TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS replication (
    t REAL NOT NULL, server TEXT NOT NULL, ok INTEGER NOT NULL, in_recovery INTEGER,
    lag_s REAL, detail TEXT, error TEXT);
"""

COLUMNS = {
    "dns": ("t", "server", "ok", "answer", "rcode", "ttl", "latency", "lateness", "error"),
    "http": ("t", "target", "ok", "status", "region", "address", "latency", "lateness", "error"),
    "canary": ("seq", "writer", "t_send", "t_ack", "outcome", "server", "error", "notice"),
    "replication": ("t", "server", "ok", "in_recovery", "lag_s", "detail", "error"),
    "canary_connect": ("t", "writer", "ok", "server", "error"),
}


def connect(run_dir: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(Path(run_dir) / FILE, timeout=10, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def create(run_dir: Path, meta: dict[str, Any]) -> None:
    conn = connect(run_dir)
    with conn:
        conn.executescript(SCHEMA)
        conn.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [(k, json.dumps(v)) for k, v in meta.items()],
        )
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


class BatchWriter:
    """Samples go to memory and reach disk in one transaction per flush, so a sampler's hot
    loop never waits on the disk. What was flushed survives a crash."""

    def __init__(self, run_dir: Path) -> None:
        self.conn = connect(run_dir)
        self.pending: dict[str, list[tuple]] = {name: [] for name in COLUMNS}

    def add(self, table: str, row: tuple) -> None:
        self.pending[table].append(row)

    def flush(self) -> int:
        batches = {k: v for k, v in self.pending.items() if v}
        if not batches:
            return 0
        self.pending = {name: [] for name in COLUMNS}
        n = 0
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for table, rows in batches.items():
                cols = COLUMNS[table]
                self.conn.executemany(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    rows,
                )
                n += len(rows)
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError:
            # the database stayed locked past the busy timeout: keep the samples for the
            # next flush rather than lose them (or the recorder)
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            for table, rows in batches.items():
                self.pending[table][:0] = rows
            return 0
        return n

    def close(self) -> None:
        self.flush()
        self.conn.close()


def record_event(run_dir: Path | str, t: float, kind: str, region: str | None = None,
                 **detail: Any) -> None:
    """Events are rare and matter most: each is its own committed transaction."""
    conn = connect(run_dir)
    try:
        conn.execute(
            "INSERT INTO events (t, kind, region, detail) VALUES (?, ?, ?, ?)",
            (t, kind, region, json.dumps(detail, sort_keys=True, default=str)),
        )
    finally:
        conn.close()
