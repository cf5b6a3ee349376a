"""Reading a stored run for the measures: its events in memory, every sampler stream and
the canary left in SQLite and read a window at a time, so the report's memory does not
grow with the drill's length (bench/bench_metrics.py `--hours 8`).

The measures ask the store their questions by name (a stream, an instant's sample, an
aggregate): the SQL stays here, in the store.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, overload

from gameday.foundation.events import Kind
from gameday.measure.store import timeline as timelines
from gameday.measure.store.seqsets import SeqSet
from gameday.measure.store.timeline import (
    AppCanaryAttempt,
    CanaryAttempt,
    CanaryConnect,
    DnsSample,
    Event,
    HaSample,
    HttpSample,
    ReplicationSample,
)

# The columns the metrics and the report read from each sampler table (the others are read
# as None), and the column that names a table's streams.
READ: dict[str, Collection[str] | None] = {
    "dns": {"t", "server", "ok", "answer", "chain", "region"},
    "http": {"t", "target", "ok", "region"},
    "replication": {"t", "server", "ok", "in_recovery", "lag_s", "detail"},
    "ha": None,
}
STREAM_KEY = {"dns": "server", "http": "target", "replication": "server", "ha": "source"}


class Stream(Sequence[Any]):
    """One sampler stream (a table's rows of one server or target, or a whole table) in time
    order, copied once into a temporary table numbered by rowid (1..n) and read from there
    per window: by index (`__getitem__`, so `bisect` finds an instant in ~20 reads), by
    range (`rows`) or times only (`times`). Nothing holds the stream in Python objects, so
    memory does not grow with the drill's length; the temporary table lies in SQLite's
    temporary file, behind a bounded page cache."""

    def __init__(self, conn: sqlite3.Connection | None, name: str, row: Any, select: str,
                 n: int) -> None:
        self.conn, self.name, self.row, self.select, self.n = conn, name, row, select, n

    @classmethod
    def empty(cls, row: Any) -> Stream:
        return cls(None, "", row, "", 0)

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            start, stop, step = i.indices(self.n)
            if step != 1:
                raise ValueError("a stream is read by contiguous windows")
            return list(self.rows(start, stop))
        if i < 0:
            i += self.n
        if not 0 <= i < self.n or self.conn is None:
            raise IndexError(i)
        values = self.conn.execute(f"SELECT {self.select} FROM {self.name} WHERE rowid = ?",
                                   (i + 1,)).fetchone()
        return self.row._make(values)

    def __iter__(self) -> Iterator[Any]:
        return self.rows()

    def _windows(self, select: str, start: int, stop: int | None) -> Iterator[list[Any]]:
        stop = self.n if stop is None else min(stop, self.n)
        i = max(start, 0)
        while i < stop and self.conn is not None:
            j = min(stop, i + timelines.CHUNK)
            yield self.conn.execute(f"SELECT {select} FROM {self.name} WHERE rowid > ? AND "
                                    "rowid <= ? ORDER BY rowid", (i, j)).fetchall()
            i = j

    def rows(self, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        """Rows start..stop-1, read a window at a time."""
        make = self.row._make
        for window in self._windows(self.select, start, stop):
            yield from map(make, window)

    def rows_back(self, stop: int) -> Iterator[Any]:
        """Rows stop-1 down to 0, read a window at a time (walking back to a run's start)."""
        make = self.row._make
        while stop > 0:
            start = max(0, stop - timelines.CHUNK)
            yield from map(make, reversed(next(self._windows(self.select, start, stop))))
            stop = start

    def times(self) -> Iterator[list[float]]:
        """Every sample's time, in order, a window (a list) at a time."""
        for window in self._windows("t", 0, None):
            yield [r[0] for r in window]

    def errors(self) -> int:
        """How many of the stream's samples failed."""
        if self.conn is None:
            return 0
        return int(self.conn.execute(f"SELECT count(*) FROM {self.name} "
                                     "WHERE NOT coalesce(ok, 0)").fetchone()[0])

    def run_ends(self, first: int, last: int, state_sql: str, opening: Any, closing: Any
                 ) -> tuple[int, int]:
        """The run of rows in state `opening` that row `first` ends, and the run in state
        `closing` that row `last` starts, stretched to their ends: (the index where the
        first run starts, the index of the first row after the second run, or len). The
        state is `state_sql`, an SQL expression over the stream's columns: an hour-long run
        of one state is one scan in C, not a walk through its rows."""
        if self.conn is None:
            return first, self.n
        # rowid = index + 1: the last row before `first` in another state, and the first
        # row after `last` in another state
        differs = f"SELECT {{}}(rowid) FROM {self.name} WHERE rowid {{}} ? AND ({state_sql}) IS NOT ?"
        before = self.conn.execute(differs.format("max", "<="), (first, opening)).fetchone()[0]
        after = self.conn.execute(differs.format("min", ">"), (last + 1, closing)).fetchone()[0]
        return (before if before is not None else 0, after - 1 if after is not None else self.n)

    def at(self, t: float) -> int:
        """The index of the first sample at or after `t` (len when none)."""
        return bisect.bisect_left(self, t, key=attrgetter("t"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timeline:
    """A run's rows, each a row type of gameday.measure.store.timeline (Event, DnsSample, ...).

    Everything but the events is read from SQLite (`_store`): the run's own database when
    the timeline was loaded from one (`_db`; `load` leaves the row fields below empty), else
    an in-memory database holding the rows given here, so hand-made timelines go through
    the same queries. A sampler stream is read per window (`stream`), the canary (thousands
    of rows a second, millions in an hour) counted in SQL: memory stays flat however long
    the drill ran."""

    events: Sequence[Event]
    dns: Sequence[DnsSample]
    http: Sequence[HttpSample]
    canary: Collection[CanaryAttempt]
    replication: Sequence[ReplicationSample]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    canary_connect: Sequence[CanaryConnect] = ()
    ha: Sequence[HaSample] = ()
    # the application canary's attempts and what its read-back returned (seq -> times), of
    # a hand-made timeline; a stored run keeps both in its database
    app_canary: Sequence[AppCanaryAttempt] = ()
    app_read: Mapping[int, int] | None = None
    _db: sqlite3.Connection | None = dataclasses.field(default=None, repr=False, compare=False)

    def events_of(self, kind: Kind) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    @functools.cached_property
    def _store(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        return memory_store(canary=self.canary, canary_connect=self.canary_connect,
                            samples={"dns": self.dns, "http": self.http,
                                     "replication": self.replication, "ha": self.ha,
                                     "app_canary": self.app_canary})

    def app_attempts(self) -> list[CanaryAttempt]:
        """The application canary's attempts in the database canary's row shape (the region
        that answered as its `server`), so one accounting classifies both; send order."""
        if not has_table(self._store, "app_canary"):
            return []  # a run recorded before the application canary existed
        return [CanaryAttempt(seq, writer, t_send, t_ack, outcome, region, error, None)
                for seq, writer, t_send, t_ack, outcome, region, error in self._store.execute(
                    "SELECT seq, writer, t_send, t_ack, outcome, region, error "
                    "FROM app_canary ORDER BY t_send")]

    def app_read_back(self) -> dict[int, int] | None:
        """seq -> how many times the application's read-back returned it; None when it was
        not read back (no application canary, or its read-back failed)."""
        if self._db is None:
            return None if self.app_read is None else dict(self.app_read)
        if not has_table(self._db, timelines.APP_FINAL_ROWS):
            return None
        return {int(seq): int(n) for seq, n in self._db.execute(
            f"SELECT seq, n FROM {timelines.APP_FINAL_ROWS}")}

    def first_app_ack(self, since: float, region: str) -> tuple[float | None, float | None]:
        """(the first application-canary write acknowledged by `region` at or after
        `since`, the last attempt before it that was not acknowledged, after `since`)."""
        if not has_table(self._store, "app_canary"):
            return None, None
        t_ack = self._store.execute(
            "SELECT min(t_ack) FROM app_canary WHERE outcome = 'ok' AND t_ack >= ? "
            "AND region = ?", (since, region)).fetchone()[0]
        if t_ack is None:
            return None, None
        last_fail = self._store.execute(
            "SELECT max(t_send) FROM app_canary WHERE outcome != 'ok' AND t_send >= ? "
            "AND t_send < ?", (since, t_ack)).fetchone()[0]
        return float(t_ack), None if last_fail is None else float(last_fail)

    @functools.cached_property
    def canary_extent(self) -> tuple[int, int, float | None, float | None]:
        """(attempts, attempts not acknowledged, first and last t_send) of the canary."""
        attempts, first, last = self._canary_aggregate
        # through the index canary_not_ok when the run has it
        errors = self._store.execute(
            "SELECT count(*) FROM canary WHERE outcome != 'ok'").fetchone()[0]
        return attempts, errors, first, last

    SEND_LAG = 1 << 17

    @functools.cached_property
    def canary_attempted(self) -> SeqSet:
        """The numbers the canary attempted (the write accounting's never-attempted rows),
        found per window of the canary as stored by SQL aggregates (`SeqSet.stored`): the
        canary numbers its writes in the order it records them, so millions of numbers are
        a few hundred ranges and never Python objects."""
        return self._canary_windows[0]

    def canary_sends_as_stored(self) -> Iterator[list[float]]:
        """Every canary send time in order, a window at a time, from one read of the canary
        as stored. The sends are stored nearly in order (each writer records its attempts
        in turn; one stuck for seconds is recorded late), so they are sorted in a sliding
        buffer of the last SEND_LAG sends. A send earlier than one already given (disorder
        wider than the buffer) raises `Disordered`: the windows given are then not the
        first sends, and the caller starts again from SQLite's sort (`canary_sends_sorted`)."""
        buffer: list[float] = []
        given: float | None = None
        cur = self._store.execute("SELECT t_send FROM canary")
        while window := cur.fetchmany(timelines.CHUNK * 8):
            sends = list(map(itemgetter(0), window))
            if given is not None and min(sends) < given:
                raise Disordered
            buffer.extend(sends)
            buffer.sort()  # two sorted runs, mostly: merged in linear time
            if len(buffer) > self.SEND_LAG:
                out = buffer[:-self.SEND_LAG]
                del buffer[:-self.SEND_LAG]
                given = out[-1]
                yield out
        if buffer:
            yield buffer

    def canary_sends_sorted(self) -> Iterator[list[float]]:
        cur = self._store.execute("SELECT t_send FROM canary ORDER BY t_send")
        while window := cur.fetchmany(timelines.CHUNK * 8):
            yield list(map(itemgetter(0), window))

    @functools.cached_property
    def _canary_windows(self) -> tuple[SeqSet, list[tuple[Any, ...]]]:
        """The numbers attempted, and (attempts, first t_send, last t_send) per window of
        the canary: one scan for both (each full scan of millions of rows costs seconds)."""
        return SeqSet.stored(self._store, "canary", ", count(*), min(t_send), max(t_send)")

    @functools.cached_property
    def _canary_aggregate(self) -> tuple[int, float | None, float | None]:
        """(attempts, first t_send, last t_send), from the windows of `_canary_windows`."""
        windows = self._canary_windows[1]
        return (sum(w[0] for w in windows),
                min((w[1] for w in windows if w[1] is not None), default=None),
                max((w[2] for w in windows if w[2] is not None), default=None))

    def first_ack(self, since: float, servers: Collection[str]) -> float | None:
        """The first acknowledgement at or after `since` of a canary write by one of
        `servers` (database hosts)."""
        hosts = sorted(servers)
        found = self._store.execute(
            "SELECT min(t_ack) FROM canary WHERE outcome = 'ok' AND t_ack >= ? "
            f"AND server IN ({', '.join('?' * len(hosts))})", (since, *hosts)).fetchone()[0]
        return None if found is None else float(found)

    def last_failure_before(self, t: float) -> float | None:
        """The last failed canary attempt (a write, or a connection) before `t`."""
        failures = [self._store.execute("SELECT max(t_send) FROM canary WHERE outcome != 'ok' "
                                       "AND t_send < ?", (t,)).fetchone()[0]]
        if has_table(self._store, "canary_connect"):
            failures.append(self._store.execute("SELECT max(t) FROM canary_connect WHERE NOT ok "
                                               "AND t < ?", (t,)).fetchone()[0])
        return max((float(f) for f in failures if f is not None), default=None)

    def has(self, table: str) -> bool:
        """Whether the run's timeline has `table` (runs recorded before it existed do not)."""
        return has_table(self._store, table)

    def span(self, table: str) -> tuple[float, float] | None:
        """The first and last sample time of a sampler table, None when it is empty."""
        lo, hi = self._store.execute(f"SELECT min(t), max(t) FROM {table}").fetchone()
        return None if lo is None else (float(lo), float(hi))

    def hold_counts(self, region: str | None, start: float, end: float
                    ) -> tuple[int, int, int, int, int]:
        """From `start` to `end`: (global requests, successful ones, served by `region`,
        canary attempts, canary attempts not acknowledged)."""
        requests, ok, served = self._store.execute(
            "SELECT count(*), coalesce(sum(CASE WHEN ok THEN 1 ELSE 0 END), 0), "
            "coalesce(sum(CASE WHEN ok AND region = ? THEN 1 ELSE 0 END), 0) "
            "FROM http WHERE target = 'global' AND t >= ? AND t <= ?",
            (region, start, end)).fetchone()
        attempts, errors = self._store.execute(
            "SELECT count(*), coalesce(sum(outcome != 'ok'), 0) FROM canary "
            "WHERE t_send >= ? AND t_send <= ?", (start, end)).fetchone()
        return requests, ok, served, attempts, errors

    def last_global(self) -> float | None:
        """The time of the last global request sampled."""
        found = self._store.execute(
            "SELECT max(t) FROM http WHERE target = 'global'").fetchone()[0]
        return None if found is None else float(found)

    def canary_bins(self, *, origin: float, t0: float, t1: float, width: float, bins: int
                    ) -> Iterator[tuple[int, bool, str | None, int]]:
        """The canary's attempts from t0 to t1 (seconds after `origin`, by acknowledgement
        or else send time) counted per bin of `width`: (bin, acknowledged, by which server
        when it was, count). Binned in SQLite with the same double arithmetic as Python,
        truncated like int() (t >= t0)."""
        for b, ok, server, n in self._store.execute(
                """SELECT b, ok, server, count(*) FROM (
                       SELECT min(:last, CAST((t - :t0) / :width AS INTEGER)) AS b,
                              outcome = 'ok' AS ok,
                              CASE WHEN outcome = 'ok' THEN server END AS server
                       FROM (SELECT coalesce(t_ack, t_send) - :origin AS t, outcome, server
                             FROM canary)
                       WHERE NOT (t < :t0 OR t > :t1))
                   GROUP BY b, ok, server""",
                {"origin": origin, "t0": t0, "t1": t1, "width": width, "last": bins - 1}):
            yield b, bool(ok), server, n

    def stream(self, table: str, name: str | None) -> Stream:
        """The rows of one sampler stream (`dns` by server, `http` by target, `replication`
        by server; None: the whole table) in time order."""
        key = (table, name)
        if key not in self._streams:
            self._streams[key] = self._copy(table, name)
        return self._streams[key]

    def names(self, table: str) -> list[str]:
        """The streams a sampler table holds (servers or targets), sorted."""
        col = STREAM_KEY[table]
        return sorted(r[0] for r in self._store.execute(
            f"SELECT DISTINCT {col} FROM {table} WHERE {col} IS NOT NULL"))

    @functools.cached_property
    def _streams(self) -> dict[tuple[str, str | None], Stream]:
        return {}

    @functools.cached_property
    def _answers(self) -> dict[tuple[Any, ...], Any]:
        """Answers of whole-canary scans asked more than once (see `first_write`)."""
        return {}

    def _copy(self, table: str, name: str | None) -> Stream:
        row = timelines.TABLES[table]
        conn = self._store
        if not has_table(conn, table):
            return Stream.empty(row)
        # a column the run's table does not have (recorded before it existed) reads as None
        stored = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        read = READ.get(table)
        cols = [c if c in stored else f"NULL AS {c}" for c in timelines.COLUMNS[table]
                if read is None or c in read]
        tmp = f"temp.gameday_stream_{len(self._streams)}"
        where, args = ("", ()) if name is None else (f"WHERE {STREAM_KEY[table]} = ?", (name,))
        conn.execute(f"DROP TABLE IF EXISTS {tmp}")
        conn.execute(f"CREATE TEMP TABLE {tmp.split('.')[1]} AS SELECT {', '.join(cols)} "
                     f"FROM {table} {where} ORDER BY t", args)
        n = conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {tmp}").fetchone()[0]
        return Stream(conn, tmp, row, timelines.select_list(table, read), n)

    def close(self) -> None:
        """Release the run's database (and the snapshot `load` read it in)."""
        if self._db is not None:
            if self._db.in_transaction:
                self._db.rollback()
            self._db.close()


class Disordered(Exception):
    """The canary's sends are stored further out of order than the sliding buffer sorts."""


class StoredRows(Collection[CanaryAttempt]):
    """Rows of a stored table, read only when iterated (the canary of a loaded run)."""

    def __init__(self, conn: sqlite3.Connection, table: str, order: str) -> None:
        self.conn, self.table = conn, table
        self.sql = f"SELECT {timelines.select_list(table)} FROM {table} ORDER BY {order}"

    def __iter__(self) -> Iterator[CanaryAttempt]:
        return map(CanaryAttempt._make, self.conn.execute(self.sql))

    def __len__(self) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0])

    def __contains__(self, row: object) -> bool:
        return any(r == row for r in self)


class FinalRows(Mapping[int, int]):
    """seq -> number of rows, as read from the new primary: the stored `final_rows` table
    (one row per seq), queried where it lies."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __getitem__(self, seq: int) -> int:
        row = self.conn.execute("SELECT n FROM final_rows WHERE seq = ? ORDER BY rowid DESC "
                                "LIMIT 1", (seq,)).fetchone()
        if row is None:
            raise KeyError(seq)
        return int(row[0])

    def __iter__(self) -> Iterator[int]:
        return (r[0] for r in self.conn.execute("SELECT DISTINCT seq FROM final_rows"))

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT count(DISTINCT seq) FROM final_rows").fetchone()[0])


def memory_store(*, canary: Iterable[tuple[Any, ...]] = (),
                 canary_connect: Iterable[tuple[Any, ...]] = (),
                 present: Mapping[int, int] | None = None,
                 samples: Mapping[str, Iterable[tuple[Any, ...]]] | None = None
                 ) -> sqlite3.Connection:
    """An in-memory database with the run's schema holding the rows given."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(timelines.SCHEMA)
    conn.execute("CREATE TABLE final_rows (seq INTEGER, n INTEGER)")
    conn.executemany(timelines.insert_sql("canary"), canary)
    conn.executemany(timelines.insert_sql("canary_connect"), canary_connect)
    for table, rows in (samples or {}).items():
        conn.executemany(timelines.insert_sql(table), rows)
    if present is not None:
        conn.executemany("INSERT INTO final_rows VALUES (?, ?)", present.items())
    return conn


def load(conn: sqlite3.Connection) -> Timeline:
    """The timeline of a stored run. Reads happen in one snapshot (a read transaction held
    until `Timeline.close`), so a run still being recorded is counted consistently. Only the
    events (a few hundred) and the canary's connection attempts are read here; the sampler
    streams and the canary stay in the database, read per window or counted in SQL.

    Temporary tables and sorts go to SQLite's temporary file behind a page cache of at most
    64 MB: what the report needs in memory is bounded whatever the drill's length."""
    conn.execute("PRAGMA temp_store = FILE")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("BEGIN")

    def rows(table: str, row: Any, order: str) -> list[Any]:
        cur = conn.cursor()
        cur.row_factory = lambda _cursor, values: row(*values)
        return cur.execute(f"SELECT {timelines.select_list(table)} FROM {table} "
                           f"ORDER BY {order}").fetchall()

    return Timeline(
        events=rows("events", Event, "t"),
        dns=(), http=(), replication=(),
        canary=StoredRows(conn, "canary", "t_send"),
        meta={k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")},
        canary_connect=rows("canary_connect", CanaryConnect, "t")
        if has_table(conn, "canary_connect") else (),
        _db=conn,
    )


def open_run(run_dir: Path | str) -> tuple[Timeline, Mapping[int, int] | None]:
    """A stored run's timeline (`load`) and the rows read from its new primary (None when
    they were not read). Both stay in the run's database, open until `tl.close()`."""
    conn = timelines.connect(run_dir)
    try:
        tl = load(conn)
        has_rows = has_table(conn, "final_rows")
    except BaseException:
        conn.close()
        raise
    return tl, (FinalRows(conn) if has_rows else None)


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


# The timeline SVG's lane states as SQL over a stream's columns (`Stream.run_ends`), equal
# to the Python ones in gameday.report.svg.render.
HTTP_STATE = ("CASE WHEN ok THEN (CASE WHEN region IS NULL OR region = '' THEN '?' "
              "ELSE region END) ELSE 'fail' END")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def answer_state(by_address: Mapping[Any, str]) -> str | None:
    """A DNS lane's state in SQL: the region the sampler classified the answer as (a
    region, mixed or unknown), else (a run recorded before samples had one) the region an
    answer's address names, or 'other'; 'fail' when the query failed. None when an address
    is not text (the lane walks its rows instead)."""
    if not all(isinstance(a, str) or a is None for a in by_address):
        return None
    cases = " ".join(f"WHEN answer IS NULL THEN {_quote(name)}" if address is None else
                     f"WHEN answer = {_quote(address)} THEN {_quote(name)}"
                     for address, name in by_address.items())
    inner = f"CASE {cases} ELSE 'other' END" if cases else "'other'"
    return f"CASE WHEN ok THEN coalesce(nullif(region, ''), {inner}) ELSE 'fail' END"
