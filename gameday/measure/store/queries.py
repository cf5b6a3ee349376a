"""The runner's questions to a run's timeline while the run goes on: the events so far,
the last global samples (the waits and the stop conditions count them with the RTO rule),
what the canary acknowledged, a hold's new rows, and the live view's tail. Each is asked
here by name, so the SQL and the table's columns stay in the store.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gameday.foundation.events import Kind
from gameday.measure.store import timeline
from gameday.measure.store.timeline import Event


def events(run_dir: Path | str, kind: Kind | None = None) -> list[Event]:
    """The run's events so far (of one kind), in time order."""
    where, args = ("", ()) if kind is None else (" WHERE kind = ?", (str(kind),))
    with contextlib.closing(timeline.connect(run_dir)) as conn:
        return [Event(*row) for row in conn.execute(
            f"SELECT {timeline.select_list('events')} FROM events{where} ORDER BY t", args)]


def canary_trouble(run_dir: Path | str) -> str:
    """What the canary saw while it could not write: its connections and attempts, and its
    last failed connection or write."""
    with contextlib.closing(timeline.connect(run_dir)) as conn:
        row = conn.execute("SELECT error FROM canary_connect WHERE ok = 0 ORDER BY t DESC "
                           "LIMIT 1").fetchone()
        writes = conn.execute("SELECT count(*), max(error) FROM canary").fetchone()
        connected = conn.execute("SELECT count(*) FROM canary_connect WHERE ok = 1").fetchone()
    return (f"{connected[0]} connections, {writes[0]} attempts"
            + (f", last connection error {row[0]}" if row else "")
            + (f", last write error {writes[1]}" if writes[1] else ""))


def app_attempted(run_dir: Path | str) -> int:
    """How many writes the application canary attempted (0: none, or a run without it)."""
    with contextlib.closing(timeline.connect(run_dir)) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'app_canary'").fetchone() \
                is None:
            return 0
        return int(conn.execute("SELECT count(*) FROM app_canary").fetchone()[0])


class Samples:
    """One connection to a run's timeline for a step that asks again and again (a wait, a
    hold, the stop conditions' watcher). Close it (or use it as a context manager)."""

    def __init__(self, run_dir: Path | str) -> None:
        self.conn = timeline.connect(run_dir)

    def __enter__(self) -> Samples:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def last_global(self, since: float, k: int) -> list[tuple[float, int, str | None]]:
        """The last `k` global samples at or after `since`, oldest first: (t, ok, served
        by)."""
        rows = self.conn.execute("SELECT t, ok, region FROM http WHERE target = 'global' AND "
                                 "t >= ? ORDER BY t DESC LIMIT ?", (since, k)).fetchall()
        return list(reversed(rows))

    def last_answer(self, server: str, since: float) -> tuple[int, str | None] | None:
        """The last stored sample of the `server` DNS stream at or after `since`: (ok, the
        region its whole answer is); None before there is one."""
        row = self.conn.execute("SELECT ok, region FROM dns WHERE server = ? AND t >= ? "
                                "ORDER BY rowid DESC LIMIT 1", (server, since)).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def acked(self, *, since: float, server: str | None = None) -> int:
        """How many canary writes were acknowledged at or after `since` (by `server`, a
        database host, when given)."""
        if server is None:
            return int(self.conn.execute("SELECT count(*) FROM canary WHERE outcome = 'ok' "
                                         "AND t_ack >= ?", (since,)).fetchone()[0])
        return int(self.conn.execute("SELECT count(*) FROM canary WHERE outcome = 'ok' AND "
                                     "server = ? AND t_ack >= ?", (server, since)).fetchone()[0])

    def app_acked(self, *, since: float, region: str | None = None) -> int:
        """How many application-canary writes were acknowledged at or after `since` (by
        `region`, the X-Region of the answer, when given); 0 in a run without it."""
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'app_canary'"
                             ).fetchone() is None:
            return 0
        where = "outcome = 'ok' AND t_ack >= ?" + (" AND region = ?" if region else "")
        args: tuple[Any, ...] = (since, region) if region else (since,)
        return int(self.conn.execute(f"SELECT count(*) FROM app_canary WHERE {where}",
                                     args).fetchone()[0])

    def last_rowid(self, table: str) -> int:
        """Where a reader of `table`'s new rows starts: the rows stored so far are read."""
        return int(self.conn.execute(
            f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0])

    def global_since(self, rowid: int, region: str
                     ) -> tuple[int | None, int, int, float | None]:
        """The global samples stored after `rowid`: (the last rowid, how many, how many
        served by `region`, when it last served one)."""
        last, requests, served, served_at = self.conn.execute(
            "SELECT max(rowid), count(*), coalesce(sum(ok AND region = ?), 0), "
            "max(CASE WHEN ok AND region = ? THEN t END) "
            "FROM http WHERE rowid > ? AND target = 'global'",
            (region, region, rowid)).fetchone()
        return last, requests, served, served_at

    def canary_since(self, rowid: int, server: str
                     ) -> tuple[int | None, int, int, float | None]:
        """The canary attempts stored after `rowid`: (the last rowid, how many, how many
        acknowledged by `server`, when it last acknowledged one)."""
        last, attempts, acked, acked_at = self.conn.execute(
            "SELECT max(rowid), count(*), coalesce(sum(outcome = 'ok' AND server = ?), 0), "
            "max(CASE WHEN outcome = 'ok' AND server = ? THEN t_ack END) "
            "FROM canary WHERE rowid > ?",
            (server, server, rowid)).fetchone()
        return last, attempts, acked, acked_at


def size(run_dir: Path) -> int:
    """The timeline's size on disk, its write-ahead log included (what a long drill costs)."""
    return sum(p.stat().st_size for p in Path(run_dir).glob(timeline.FILE + "*") if p.is_file())


# the timeline cannot be read now (busy, or not created yet): a reader tries again later
Unavailable = sqlite3.OperationalError


class Tail:
    """The live view's reader: a read-only connection to a run's timeline (from its own
    thread), each table's new rows read by rowid."""

    def __init__(self, run_dir: Path | str) -> None:
        self.path = Path(run_dir) / timeline.FILE
        self.conn: sqlite3.Connection | None = None
        self.rowid: dict[str, int] = {}

    def _connect(self) -> sqlite3.Connection:
        if self.conn is None:
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1,
                                        check_same_thread=False)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._connect().execute(
            "SELECT key, value FROM meta")}

    def has(self, table: str) -> bool:
        return self._connect().execute("SELECT 1 FROM sqlite_master WHERE name = ?",
                                       (table,)).fetchone() is not None

    def new_rows(self, table: str, columns: Iterable[str]) -> list[tuple[Any, ...]]:
        """`columns` of the rows `table` got since the last call."""
        rows = self._connect().execute(
            f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ? ORDER BY rowid",
            (self.rowid.get(table, 0),)).fetchall()
        if rows:
            self.rowid[table] = rows[-1][0]
        return [r[1:] for r in rows]

