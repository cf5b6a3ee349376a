"""RTO phases, RTO, downtime and write accounting from a stored timeline (docs/design.md, Measurement).

Pure functions over plain rows, so they are tested on hand-made timelines with known
answers. Every instant comes from the sample that shows it, with an error bar equal to the
gap to the previous sample of the same stream (the event happened somewhere in that gap);
what was not observed is None with the reason, never a guess.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import functools
import json
import math
import sqlite3
import tempfile
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from operator import attrgetter, itemgetter, mul, sub
from typing import Any, overload

from gameday.measure import timeline as timelines
from gameday.measure.timeline import (
    CanaryAttempt,
    CanaryConnect,
    DnsSample,
    Event,
    HaSample,
    HttpSample,
    ReplicationSample,
)

K_CONSECUTIVE = 5


@dataclasses.dataclass(frozen=True, kw_only=True)
class Instant:
    """An instant relative to t_fault, with its error bar, or the reason it is missing."""

    at_s: float | None
    error_s: float | None = None
    reason: str | None = None
    evidence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def missing(reason: str) -> Instant:
    return Instant(at_s=None, reason=reason)


# The columns the metrics and the report read from each sampler table (the others are read
# as None), and the column that names a table's streams.
READ: dict[str, Collection[str] | None] = {
    "dns": {"t", "server", "ok", "answer"},
    "http": {"t", "target", "ok", "region"},
    "replication": {"t", "server", "ok", "in_recovery", "lag_s", "detail"},
    "ha": None,
}
STREAM_KEY = {"dns": "server", "http": "target", "replication": "server", "ha": "source"}
CHUNK = 8192  # rows per read: a window, never a whole stream


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
            j = min(stop, i + CHUNK)
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
            start = max(0, stop - CHUNK)
            yield from map(make, reversed(next(self._windows(self.select, start, stop))))
            stop = start

    def times(self) -> Iterator[list[float]]:
        """Every sample's time, in order, a window (a list) at a time."""
        for window in self._windows("t", 0, None):
            yield [r[0] for r in window]

    def at(self, t: float) -> int:
        """The index of the first sample at or after `t` (len when none)."""
        return bisect.bisect_left(self, t, key=attrgetter("t"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timeline:
    """A run's rows, each a row type of gameday.measure.timeline (Event, DnsSample, ...).

    Everything but the events is read from SQLite (`store`): the run's own database when
    the timeline was loaded from one (`db`; `load` leaves the row fields below empty), else
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
    db: sqlite3.Connection | None = dataclasses.field(default=None, repr=False, compare=False)

    def events_of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    @functools.cached_property
    def store(self) -> sqlite3.Connection:
        if self.db is not None:
            return self.db
        return memory_store(canary=self.canary, canary_connect=self.canary_connect,
                            samples={"dns": self.dns, "http": self.http,
                                     "replication": self.replication, "ha": self.ha})

    @functools.cached_property
    def canary_extent(self) -> tuple[int, int, float | None, float | None]:
        """(attempts, attempts not acknowledged, first and last t_send) of the canary."""
        attempts, first, last = self._canary_aggregate
        # through the index canary_not_ok when the run has it
        errors = self.store.execute(
            "SELECT count(*) FROM canary WHERE outcome != 'ok'").fetchone()[0]
        return attempts, errors, first, last

    SEND_LAG = 1 << 17

    @functools.cached_property
    def canary_attempted(self) -> _SeqSet:
        """The numbers the canary attempted (the write accounting's never-attempted rows),
        found per window of the canary as stored by SQL aggregates (`_SeqSet.stored`): the
        canary numbers its writes in the order it records them, so millions of numbers are
        a few hundred ranges and never Python objects."""
        return self._canary_windows[0]

    def canary_gap_percentiles(self, ps: Sequence[float]) -> tuple[int, list[float | None]]:
        """`gap_percentiles` of the canary's sends in time order: from the canary read as
        stored (one column, sorted in a sliding buffer, `canary_sends_as_stored`) when that
        finds them in order, else from SQLite's sort (which spills to its temporary file,
        and costs more than the read as stored)."""
        try:
            return gap_percentiles(self.canary_sends_as_stored(), ps)
        except _Disordered:
            return gap_percentiles(self._canary_sends_sorted(), ps)

    def canary_sends_as_stored(self) -> Iterator[list[float]]:
        """Every canary send time in order, a window at a time, from one read of the canary
        as stored. The sends are stored nearly in order (each writer records its attempts
        in turn; one stuck for seconds is recorded late), so they are sorted in a sliding
        buffer of the last SEND_LAG sends. A send earlier than one already given (disorder
        wider than the buffer) raises `_Disordered`: the windows given are then not the
        first sends, and the caller starts again from SQLite's sort."""
        buffer: list[float] = []
        given: float | None = None
        cur = self.store.execute("SELECT t_send FROM canary")
        while window := cur.fetchmany(CHUNK * 8):
            sends = list(map(itemgetter(0), window))
            if given is not None and min(sends) < given:
                raise _Disordered
            buffer.extend(sends)
            buffer.sort()  # two sorted runs, mostly: merged in linear time
            if len(buffer) > self.SEND_LAG:
                out = buffer[:-self.SEND_LAG]
                del buffer[:-self.SEND_LAG]
                given = out[-1]
                yield out
        if buffer:
            yield buffer

    def _canary_sends_sorted(self) -> Iterator[list[float]]:
        cur = self.store.execute("SELECT t_send FROM canary ORDER BY t_send")
        while window := cur.fetchmany(CHUNK * 8):
            yield list(map(itemgetter(0), window))

    @functools.cached_property
    def _canary_windows(self) -> tuple[_SeqSet, list[tuple[Any, ...]]]:
        """The numbers attempted, and (attempts, first t_send, last t_send) per window of
        the canary: one scan for both (each full scan of millions of rows costs seconds)."""
        return _SeqSet.stored(self.store, "canary", ", count(*), min(t_send), max(t_send)")

    @functools.cached_property
    def _canary_aggregate(self) -> tuple[int, float | None, float | None]:
        """(attempts, first t_send, last t_send), from the windows of `_canary_windows`."""
        windows = self._canary_windows[1]
        return (sum(w[0] for w in windows),
                min((w[1] for w in windows if w[1] is not None), default=None),
                max((w[2] for w in windows if w[2] is not None), default=None))

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
        return sorted(r[0] for r in self.store.execute(
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
        conn = self.store
        if not _has_table(conn, table):
            return Stream.empty(row)
        read = READ.get(table)
        cols = [c for c in timelines.COLUMNS[table] if read is None or c in read]
        tmp = f"temp.gameday_stream_{len(self._streams)}"
        where, args = ("", ()) if name is None else (f"WHERE {STREAM_KEY[table]} = ?", (name,))
        conn.execute(f"DROP TABLE IF EXISTS {tmp}")
        conn.execute(f"CREATE TEMP TABLE {tmp.split('.')[1]} AS SELECT {', '.join(cols)} "
                     f"FROM {table} {where} ORDER BY t", args)
        n = conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {tmp}").fetchone()[0]
        return Stream(conn, tmp, row, timelines.select_list(table, read), n)

    def close(self) -> None:
        """Release the run's database (and the snapshot `load` read it in)."""
        if self.db is not None:
            if self.db.in_transaction:
                self.db.rollback()
            self.db.close()


class _Disordered(Exception):
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
        if _has_table(conn, "canary_connect") else (),
        db=conn,
    )


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


# --- instants ---------------------------------------------------------------------------


def fault_time(tl: Timeline) -> tuple[float | None, float | None]:
    """(t_fault, t_effective): the first fault's start and the instant it was seen in effect."""
    applied = tl.events_of("fault-applied")
    if not applied:
        return None, None
    t_fault = applied[0].t
    effective = [e.t for e in tl.events_of("fault-effective")]
    return t_fault, (min(effective) if effective else None)


def _first(rows: Stream, t_fault: float, pred: Callable[[Any], Any], *,
           evidence: str, reason: str) -> Instant:
    """The first sample at or after t_fault that shows `pred`, read from t_fault on."""
    start = rows.at(t_fault)
    prev_t = rows[start - 1].t if start > 0 else None
    for row in rows.rows(start):
        t = row.t
        if pred(row):
            gap = t - prev_t if prev_t is not None else None
            return Instant(at_s=t - t_fault, error_s=gap, evidence=evidence)
        prev_t = t
    return missing(reason)


def _stays(rows: Stream, t_fault: float, good: Callable[[Any], Any], *, evidence: str,
           reason: str) -> Instant:
    """First sample after t_fault from which every later sample is good: the start of the
    run of good samples the stream ends with, found in one pass from t_fault on."""
    start = rows.at(t_fault)
    run_start: int | None = None
    for i, row in enumerate(rows.rows(start), start):
        if good(row):
            if run_start is None:
                run_start = i
        else:
            run_start = None
    if run_start is None:
        return missing(reason)
    t = rows[run_start].t
    gap = t - rows[run_start - 1].t if run_start > 0 else None
    return Instant(at_s=t - t_fault, error_s=gap, evidence=evidence)


def detection(tl: Timeline, t_fault: float, primary: str) -> Instant:
    rows = tl.stream("http", primary)
    return _first(rows, t_fault, lambda r: not r.ok,
                  evidence=f"first failed /healthz of {primary}",
                  reason=f"no failed health check of {primary} after the fault")


def promotion(tl: Timeline, t_fault: float, secondary: str,
              secondary_hosts: set[str]) -> Instant:
    """The first writable answer the recorder saw from the secondary's database, whoever
    promoted it: its replication sample out of recovery, or a canary write it acknowledged,
    whichever came first. Never the promoter's own report (see `runner_promotion`)."""
    sampled = _first(tl.stream("replication", secondary), t_fault,
                     lambda r: r.ok and r.in_recovery == 0,
                     evidence=f"{secondary}'s database answered out of recovery "
                              "(replication sampler)",
                     reason=f"{secondary}'s database never answered out of recovery")
    written = first_write(tl, t_fault, secondary_hosts)
    seen = [i for i in (sampled, written) if i.at_s is not None]
    if not seen:
        return missing(f"{secondary} was not seen writable after the fault")
    first = min(seen, key=lambda i: i.at_s if i.at_s is not None else math.inf)
    if first is written:
        return dataclasses.replace(first, evidence=f"first canary write acknowledged by "
                                                   f"{secondary}'s database")
    return first


def runner_promotion(tl: Timeline, t_fault: float, secondary: str) -> Instant:
    """When gameday's own promote loop saw the first write accepted: a cross-check of the
    observed promotion when gameday promoted (promotion 'runner')."""
    for t, _kind, region, detail in tl.events_of("promoted"):
        if region == secondary and t >= t_fault:
            d = json.loads(detail or "{}")
            return Instant(at_s=t - t_fault, error_s=d.get("error_s"),
                           evidence=f"first write accepted by {secondary} in the promote loop")
    return missing("gameday did not promote (promotion by a command or by the system)")


def leader_key_lost(tl: Timeline, t_fault: float, primary: str) -> Instant:
    """The HA manager's detection: the first sample of its leader key after the fault in
    which the old primary no longer holds it (expired, or taken over)."""
    ha = tl.stream("ha", None)
    return _first(ha, t_fault, lambda r: r.ok and r.leader != primary,
                  evidence=f"the leader key no longer held by {primary} (DCS sample)",
                  reason=f"the leader key was never seen leaving {primary}"
                  if ha else "the HA manager's leader key was not sampled")


def dns_flip(tl: Timeline, t_fault: float, server: str, address: str) -> Instant:
    rows = tl.stream("dns", server)
    return _stays(rows, t_fault, lambda r: r.ok and r.answer == address,
                  evidence=f"{server} answers {address} from here on",
                  reason=f"the {server} server never settled on {address}")


def _global(tl: Timeline) -> Stream:
    return tl.stream("http", "global")


def first_success(tl: Timeline, t_fault: float, secondary: str) -> Instant:
    return _first(_global(tl), t_fault, lambda r: r.ok and r.region == secondary,
                  evidence=f"first global request served by {secondary}",
                  reason=f"no global request was served by {secondary}")


def first_write(tl: Timeline, t_fault: float, secondary_hosts: set[str]) -> Instant:
    """The first canary write acknowledged by the new primary. Its error bar reaches back to
    the last failed attempt (a write or a connection) before it: the new primary began to
    accept writes somewhere in between. Asked twice per run (the promotion and the phase
    of its own), each a scan of the canary: the timeline keeps the answer."""
    key = ("first_write", t_fault, tuple(sorted(secondary_hosts)))
    if key not in tl._answers:
        tl._answers[key] = _first_write(tl, t_fault, secondary_hosts)
    answer: Instant = tl._answers[key]
    return answer


def _first_write(tl: Timeline, t_fault: float, secondary_hosts: set[str]) -> Instant:
    conn = tl.store
    hosts = sorted(secondary_hosts)
    t_ack = conn.execute(
        "SELECT min(t_ack) FROM canary WHERE outcome = 'ok' AND t_ack >= ? "
        f"AND server IN ({', '.join('?' * len(hosts))})", (t_fault, *hosts)).fetchone()[0]
    if t_ack is None:
        return missing("no canary write was acknowledged by the new primary")
    failures = [conn.execute("SELECT max(t_send) FROM canary WHERE outcome != 'ok' "
                             "AND t_send < ?", (t_ack,)).fetchone()[0]]
    if _has_table(conn, "canary_connect"):
        failures.append(conn.execute("SELECT max(t) FROM canary_connect WHERE NOT ok "
                                     "AND t < ?", (t_ack,)).fetchone()[0])
    last_fail = max((t for t in failures if t is not None), default=None)
    error = t_ack - last_fail if last_fail is not None and last_fail >= t_fault else None
    return Instant(at_s=t_ack - t_fault, error_s=error,
                   evidence="first canary write acknowledged by the new primary")


class Streak:
    """The RTO rule, in one place: K consecutive successful global requests served by
    `region`. Fed samples in time order (`add`), it says when the K-th arrives; `start` is
    the first sample of that run and `before` the sample before it (the error bar's other
    end). The summary, the wait for recovery and the live view all count with it."""

    def __init__(self, region: str, k: int = K_CONSECUTIVE, *, before: float | None = None) -> None:
        self.region, self.k = region, k
        self.run = 0
        self.start: float | None = None
        self.before: float | None = None
        self._last = before

    def add(self, t: float, ok: Any, served_by: str | None) -> bool:
        """Count one sample; True once the run of K is reached (and while it lasts)."""
        if ok and served_by == self.region:
            if self.run == 0:
                self.start, self.before = t, self._last
            self.run += 1
        else:
            self.run = 0
        self._last = t
        return self.run >= self.k

    @property
    def reached(self) -> bool:
        return self.run >= self.k


def rto(tl: Timeline, t_fault: float, secondary: str, k: int = K_CONSECUTIVE) -> Instant:
    """Start of the first run of k consecutive successful global requests served by the
    secondary."""
    all_rows = _global(tl)
    start = all_rows.at(t_fault)
    streak = Streak(secondary, k, before=all_rows[start - 1].t if start > 0 else None)
    for row in all_rows.rows(start):
        if streak.add(row.t, row.ok, row.region):
            assert streak.start is not None
            gap = streak.start - streak.before if streak.before is not None else None
            return Instant(at_s=streak.start - t_fault, error_s=gap,
                           evidence=f"first of {k} consecutive global successes from {secondary}")
    return missing(f"no {k} consecutive global requests served by {secondary}")


def downtime(tl: Timeline, t_fault: float, until: float | None = None) -> tuple[float, float | None]:
    """Total time with failing global requests after the fault: each failing sample counts
    until the next sample. Returns (seconds, error bar)."""
    rows = _global(tl)
    total = 0.0
    widest: float | None = None
    prev: Any = None
    for row in rows.rows(rows.at(t_fault)):
        if until is not None and row.t > until:
            break
        if prev is not None:
            gap = row.t - prev.t
            if not prev.ok:
                total += gap
            widest = gap if widest is None else max(widest, gap)
        prev = row
    return total, widest


def intervals(ts: Iterable[float]) -> list[float]:
    ts = list(ts)
    return [b - a for a, b in zip(ts, ts[1:], strict=False)]


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    idx = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[idx]


def gap_percentiles(windows: Iterable[Sequence[float]], ps: Sequence[float]
                    ) -> tuple[int, list[float | None]]:
    """(samples, percentile() of the gaps between consecutive times for each p), exactly as
    sorting every gap would give them, in bounded memory: the times come a window at a time
    (in order); the gaps are counted per bin of 2**-20 s (about a microsecond) and spooled
    to a temporary file as doubles; then only the gaps in the bins that hold the wanted
    ranks are read back and sorted. A bin's edges are exact (a power of two scales a float
    exactly), so a gap falls in the bin its value says."""
    scale = float(1 << 20)
    bins: Counter[int] = Counter()
    samples = 0
    prev: float | None = None
    sizes: list[int] = []
    with tempfile.TemporaryFile() as spool:
        for ts in windows:
            if not ts:
                continue
            samples += len(ts)
            gaps = array("d", [] if prev is None else [ts[0] - prev])
            gaps.extend(map(sub, ts[1:], ts[:-1]))
            prev = ts[-1]
            bins.update(map(math.floor, map(mul, gaps, repeat(scale))))
            gaps.tofile(spool)
            sizes.append(len(gaps))
        n = sum(sizes)
        if n == 0:
            return samples, [None for _ in ps]
        ranks = [min(n - 1, max(0, round(p / 100 * (n - 1)))) for p in ps]
        # the bin of each rank, and the rank within it
        where: dict[int, tuple[int, int]] = {}
        seen = 0
        pending = sorted(set(ranks))
        for b in sorted(bins):
            count = bins[b]
            while pending and pending[0] < seen + count:
                rank = pending.pop(0)
                where[rank] = (b, rank - seen)
            seen += count
            if not pending:
                break
        wanted = {b for b, _ in where.values()}
        members: dict[int, list[float]] = {b: [] for b in wanted}
        spool.seek(0)
        for size in sizes:
            gaps = array("d")
            gaps.fromfile(spool, size)
            for b in wanted:
                lo, hi = b / scale, (b + 1) / scale
                members[b].extend(g for g in gaps if lo <= g < hi)
    for values in members.values():
        values.sort()
    return samples, [members[where[r][0]][where[r][1]] for r in ranks]


def sampler_stats(tl: Timeline) -> dict[str, dict[str, Any]]:
    """Samples, achieved interval p50/p99 and errors per sampler stream, each read a window
    at a time (the canary's sends sorted by SQLite)."""
    out: dict[str, dict[str, Any]] = {}
    streams = sorted((f"{table}:{name}", table, name)
                     for table in ("dns", "http", "replication", "ha")
                     if _has_table(tl.store, table) for name in tl.names(table))
    for label, table, name in streams:
        rows = tl.stream(table, name)
        samples, (p50, p99) = gap_percentiles(rows.times(), (50, 99))
        out[label] = {
            "samples": samples,
            "errors": tl.store.execute(f"SELECT count(*) FROM {rows.name} "
                                       "WHERE NOT coalesce(ok, 0)").fetchone()[0],
            "interval_p50_s": _round(p50),
            "interval_p99_s": _round(p99),
        }
    samples, errors, _, _ = tl.canary_extent
    _, (p50, p99) = tl.canary_gap_percentiles((50, 99))
    out["canary"] = {
        "samples": samples,
        "errors": errors,
        "interval_p50_s": _round(p50),
        "interval_p99_s": _round(p99),
    }
    return out


def _round(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(v, nd)


# --- writes -----------------------------------------------------------------------------

SYNC_CANCELLED = "canceling wait for synchronous replication"


@dataclasses.dataclass(frozen=True, kw_only=True)
class WriteAccounting:
    attempted: int
    acked: int
    lost: int
    recovered: int
    unknown_absent: int
    unexpected: int
    duplicate: int
    not_durable: int
    lost_seqs: tuple[int, ...]
    lost_after_fault: int
    loss_window: tuple[float, float] | None
    rpo_s: float
    rpo_error_s: float | None
    lost_by_server: dict[str, int]

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in
                ("attempted", "acked", "lost", "recovered", "unknown_absent", "unexpected",
                 "duplicate")}


def account_writes(canary: Iterable[tuple[Any, ...]], present: Mapping[int, int], *,
                   t_fault: float | None, start_seq: int = 1, cutoff: float | None = None,
                   live: bool = False) -> WriteAccounting:
    """Jepsen set semantics over the canary's attempts and the rows found on the new primary.

    `present` maps seq -> number of rows with that seq (seq >= start_seq). Attempts still in
    flight at `cutoff` (the instant the table was read) are left out. `live` means the
    canary was still writing when the table was read: a row whose attempt the recorder had
    not yet flushed is then not evidence of anything, so rows never attempted are not
    judged (the final read, after the canary stopped, judges them)."""
    conn = memory_store(canary=canary, present=present)
    try:
        return account_stored_writes(conn, t_fault=t_fault, start_seq=start_seq,
                                     cutoff=cutoff, live=live)
    finally:
        conn.close()


def account_stored_writes(conn: sqlite3.Connection, *, t_fault: float | None,
                          start_seq: int = 1, cutoff: float | None = None,
                          live: bool = False, attempted_seqs: _SeqSet | None = None
                          ) -> WriteAccounting:
    """account_writes() over the tables `canary` and `final_rows` (one row per seq) where
    they are stored. The sequence numbers found are read once, in whatever order they were
    stored, into a `_SeqSet`; the canary is scanned in SQLite against the few numbers
    missing from it, so only the lost writes and the attempts not acknowledged come back as
    rows."""
    settled = "1" if cutoff is None else "coalesce(t_ack, t_send) < :cutoff"
    params: dict[str, Any] = {"cutoff": cutoff, "sync": SYNC_CANCELLED}
    # the rows found more than once counted in the same scan (one scan of millions of rows)
    present, extra = _SeqSet.stored(conn, "final_rows",
                                    ", sum(CASE WHEN n > 1 THEN n - 1 END)")
    if present.bits is not None:
        _seq_table(conn, "gameday_absent", present.absent())
        not_found = "(seq < :first_seq OR seq > :last_seq OR seq IN temp.gameday_absent)"
        params.update(first_seq=present.first, last_seq=present.last)
    else:
        _seq_table(conn, "gameday_present", present.sorted)
        not_found = "seq NOT IN temp.gameday_present"
    # one scan counts the attempts and finds the lost writes (their rowids, exact as text)
    attempted, not_durable, lost_ids = conn.execute(
        "SELECT count(*), coalesce(sum(outcome = 'ok' AND instr(notice, :sync) > 0), 0), "
        f"group_concat(CASE WHEN outcome = 'ok' AND {not_found} THEN rowid END) "
        f"FROM canary WHERE {settled}", params).fetchone()
    # the attempts not acknowledged, through the index canary_not_ok when the run has it
    failures = conn.execute(f"SELECT seq, outcome FROM canary WHERE outcome != 'ok' "
                            f"AND {settled}", params).fetchall()
    acked = attempted - len(failures)
    unknown = sum(1 for _, outcome in failures if outcome == "unknown")
    recovered = sum(1 for seq, outcome in failures if outcome == "unknown" and seq in present)
    unexpected = sum(1 for seq, outcome in failures if outcome == "failed" and seq in present)
    _seq_table(conn, "gameday_lost", sorted(int(i) for i in lost_ids.split(","))
               if lost_ids else ())
    lost = conn.execute("SELECT seq, t_ack, server FROM canary WHERE rowid IN "
                        "temp.gameday_lost ORDER BY t_send").fetchall()
    if not live:
        unexpected += _never_attempted(conn, present, start_seq, attempted_seqs)
    duplicate = sum(w[0] or 0 for w in extra)
    rpo_s, rpo_err, window = 0.0, None, None
    lost_after = 0
    if lost:
        lost_t = sorted(r[1] for r in lost)
        window = (lost_t[0], lost_t[-1])
        # every acknowledged write before the first lost one survived: the last of them is
        # where the surviving data ends
        last_survivor = conn.execute(
            f"SELECT max(t_ack) FROM canary WHERE {settled} AND outcome = 'ok' "
            "AND t_ack < :first", {**params, "first": lost_t[0]}).fetchone()[0]
        if t_fault is not None and last_survivor is not None:
            rpo_s = max(0.0, t_fault - last_survivor)
        elif t_fault is not None:
            rpo_s = max(0.0, t_fault - lost_t[0])
        lost_after = sum(1 for t in lost_t if t_fault is not None and t > t_fault)
        # the data ends between the last survivor and the first lost write
        rpo_err = lost_t[0] - last_survivor if last_survivor is not None else None
    elif t_fault is not None:
        # no loss: resolved to the canary's inter-write gap just before the fault
        near = [r[0] for r in conn.execute(
            f"SELECT t_ack FROM canary WHERE {settled} AND outcome = 'ok' "
            "AND t_ack >= :lo AND t_ack <= :t_fault ORDER BY t_ack",
            {**params, "lo": t_fault - 1.0, "t_fault": t_fault})]
        rpo_err = percentile(intervals(near), 50) if len(near) > 1 else None
    for table in ("gameday_absent", "gameday_present", "gameday_attempted", "gameday_lost"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
    return WriteAccounting(
        attempted=attempted, acked=acked, lost=len(lost), recovered=recovered,
        unknown_absent=unknown - recovered, unexpected=unexpected, duplicate=duplicate,
        not_durable=not_durable, lost_seqs=tuple(sorted(r[0] for r in lost)),
        lost_after_fault=lost_after, loss_window=window, rpo_s=rpo_s, rpo_error_s=rpo_err,
        lost_by_server=dict(Counter(r[2] or "?" for r in lost)),
    )


class _SeqSet:
    """Distinct sequence numbers, as one byte per number over their range (a run's canary
    numbers its writes consecutively, so the range is dense), or a set when they are too
    sparse for that."""

    SPARSE = 16  # at most this many numbers in the range per number held
    _pending: set[int] | None  # while filling a sparse set

    def __init__(self, seqs: list[int]) -> None:
        self.first = min(seqs, default=1)
        self.last = max(seqs, default=0)
        self.bits: bytearray | None = None
        self.sorted: list[int] = []
        self._pending: set[int] | None = None
        if self._dense(len(seqs)):
            self.bits = bytearray(self.last - self.first + 1)
            self._mark(seqs)
        else:
            self.sorted = sorted(set(seqs))

    @classmethod
    def filling(cls, first: int | None, last: int | None, count: int) -> _SeqSet:
        """An empty set for numbers from `first` to `last` (`count` of them, as a query's
        min, max and count said), filled by `add` a window at a time, then `finish`."""
        out = cls.__new__(cls)
        out.first, out.last = (1, 0) if first is None or last is None else (first, last)
        out.bits, out.sorted = None, []
        out._pending = None
        if out._dense(count):
            out.bits = bytearray(out.last - out.first + 1)
        else:
            out._pending = set()
        return out

    def add(self, seqs: Iterable[int], *, in_order: bool = False) -> None:
        if self.bits is not None:
            self._mark(seqs, in_order=in_order)
        elif self._pending is not None:
            self._pending.update(seqs)

    def finish(self) -> None:
        if self._pending is not None:
            self.sorted, self._pending = sorted(self._pending), None

    STORED_MIN = 4096  # rows: a window this small that is not one range is read as rows

    @classmethod
    def stored(cls, conn: sqlite3.Connection, table: str, also: str = ""
               ) -> tuple[_SeqSet, list[tuple[Any, ...]]]:
        """The numbers in `table`'s column seq, found per window of rowids by SQL aggregates
        alone where they can be: in a window where seq - rowid is one constant, the numbers
        are distinct (rowids are), and when as many as their extent they are exactly that
        range, one slice of the bytes. Only the windows that are not (a gap, numbers stored
        out of order) are halved, down to STORED_MIN rows, and then read into Python. A table
        stored in seq order (the canary as written, `final_rows` as `snapshot_rows` stores
        it) is then read once, in C, without one Python object per row.

        `also`: more aggregates (SQL, each after a comma) computed in the same scan, one
        tuple of them per window (a table of millions of rows is scanned once, not again
        for its extent)."""
        # separate queries: each is then one step down the B-tree's edge
        bottom = (conn.execute(f"SELECT min(rowid) FROM {table}").fetchone()[0] or 1) - 1
        top = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
        step = CHUNK * 8
        aggregate = (f"SELECT min(seq), max(seq), count(seq), min(seq - rowid), "
                     f"max(seq - rowid){also} FROM {table} WHERE rowid > ? AND rowid <= ?")
        windows: list[tuple[tuple[int, int], tuple[Any, ...]]] = []
        for lo in range(bottom, top, step):
            hi = min(lo + step, top)
            windows.append(((lo, hi), tuple(conn.execute(aggregate, (lo, hi)).fetchone())))
        held = [w for _, w in windows if w[2]]  # the windows holding numbers
        out = cls.filling(min((w[0] for w in held), default=None),
                          max((w[1] for w in held), default=None), sum(w[2] for w in held))
        extra = [w[5:] for _, w in windows]
        if out.bits is None:
            # too sparse for bytes: every number read (a set)
            cur = conn.execute(f"SELECT seq FROM {table} WHERE seq IS NOT NULL")
            while rows := cur.fetchmany(CHUNK * 8):
                out.add(map(itemgetter(0), rows))
            out.finish()
            return out, extra
        bits = out.bits
        pending = [(lo_hi, w[:5]) for lo_hi, w in reversed(windows)]
        while pending:
            (lo, hi), (low, high, n, dmin, dmax) = pending.pop()  # in rowid order
            if not n:
                continue
            if dmin == dmax and high - low + 1 == n:
                bits[low - out.first:high - out.first + 1] = b"\x01" * n
            elif hi - lo <= cls.STORED_MIN:
                out._mark([r[0] for r in conn.execute(
                    f"SELECT seq FROM {table} WHERE rowid > ? AND rowid <= ? AND seq IS NOT "
                    "NULL", (lo, hi))], in_order=True)
            else:
                mid = (lo + hi) // 2
                for half in ((mid, hi), (lo, mid)):
                    pending.append((half, tuple(conn.execute(aggregate, half).fetchone()[:5])))
        return out, extra

    def _dense(self, count: int) -> bool:
        return self.last - self.first + 1 <= max(1 << 20, self.SPARSE * count)

    def _mark(self, seqs: Iterable[int], *, in_order: bool = False) -> None:
        """One byte set per number, the loop run by map() in C (millions of numbers). A
        window stored nearly `in_order` (the canary's) that holds exactly the numbers of a
        range is one slice assignment instead."""
        assert self.bits is not None
        window = list(seqs)
        # a window holding every number of a range, in any order: its extent matches its
        # length, and sorting it (cheap: nearly in order) shows them distinct
        low = min(window) if in_order and window else 0
        if in_order and window and max(window) - low + 1 == len(window) and \
                sorted(window) == list(range(low, low + len(window))):
            lo = low - self.first
            self.bits[lo:lo + len(window)] = b"\x01" * len(window)
            return
        collections.deque(map(self.bits.__setitem__, map(sub, window, repeat(self.first)),
                              repeat(1)), maxlen=0)

    def __contains__(self, seq: int) -> bool:
        if self.bits is None:
            i = bisect.bisect_left(self.sorted, seq)
            return i < len(self.sorted) and self.sorted[i] == seq
        return self.first <= seq <= self.last and self.bits[seq - self.first] == 1

    def count(self, lo: int, hi: int | None = None) -> int:
        """How many numbers in [lo, hi] (hi None: no upper bound) are held."""
        hi = self.last if hi is None else min(hi, self.last)
        lo = max(lo, self.first)
        if lo > hi:
            return 0
        if self.bits is None:
            return bisect.bisect_right(self.sorted, hi) - bisect.bisect_left(self.sorted, lo)
        return self.bits.count(1, lo - self.first, hi - self.first + 1)

    def absent(self) -> Iterator[int]:
        """The numbers between the first and the last that are not held, in order."""
        assert self.bits is not None
        i = self.bits.find(0)
        while i != -1:
            yield self.first + i
            i = self.bits.find(0, i + 1)


def _never_attempted(conn: sqlite3.Connection, present: _SeqSet, start_seq: int,
                     attempted: _SeqSet | None = None) -> int:
    """How many numbers (>= start_seq) in `present` the canary never attempted: those
    outside the range it attempted and those in the gaps of that range (an attempt still in
    flight at the read counts as attempted)."""
    if attempted is None:
        attempted, _ = _SeqSet.stored(conn, "canary")
    if attempted.bits is not None and attempted.last >= attempted.first:
        # the attempted numbers as bytes: the gaps of their range are the zero bytes
        first, last = attempted.first, attempted.last
        never = present.count(start_seq, first - 1) + present.count(max(start_seq, last + 1))
        never += sum(1 for seq in attempted.absent() if seq >= start_seq and seq in present)
        return int(never)
    _seq_table(conn, "gameday_attempted", "SELECT seq FROM canary")
    # separate queries: each is then one step down the B-tree's edge
    first = conn.execute("SELECT min(seq) FROM temp.gameday_attempted").fetchone()[0]
    last = conn.execute("SELECT max(seq) FROM temp.gameday_attempted").fetchone()[0]
    if first is None:
        return present.count(start_seq)
    never = present.count(start_seq, first - 1) + present.count(max(start_seq, last + 1))
    for before, after in conn.execute(
            "SELECT a.seq, (SELECT min(b.seq) FROM temp.gameday_attempted b WHERE b.seq > a.seq) "
            "FROM temp.gameday_attempted a WHERE a.seq < :last "
            "AND a.seq + 1 NOT IN temp.gameday_attempted", {"last": last}):
        never += present.count(max(start_seq, before + 1), after - 1)
    return int(never)


def _seq_table(conn: sqlite3.Connection, name: str, rows: str | Iterable[int]) -> None:
    """A temporary table of distinct sequence numbers (from a SELECT or given in order)
    keyed by rowid: a membership test against it is one B-tree lookup, and filling it in
    (nearly) ascending order appends."""
    conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
    conn.execute(f"CREATE TEMP TABLE {name} (seq INTEGER PRIMARY KEY)")
    if isinstance(rows, str):
        conn.execute(f"INSERT OR IGNORE INTO temp.{name} {rows}")
    else:
        conn.executemany(f"INSERT OR IGNORE INTO temp.{name} VALUES (?)", ((s,) for s in rows))


def seq_ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """[1,2,3,7,8] -> [(1,3),(7,8)]: lost writes read as ranges."""
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


# --- a hold in the secondary ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hold:
    """A long drill's hold in one region (`hold-start` to `hold-end`): how available the
    service was there, counted in SQLite whatever the hold's length."""

    region: str | None
    planned_s: float | None
    start: float
    end: float
    ended: bool
    global_requests: int
    global_ok: int
    served_by_region: int
    canary_attempts: int
    canary_errors: int
    checks: int | None
    checks_failed: int | None
    timeline_bytes: tuple[int | None, int | None]


def hold(tl: Timeline) -> Hold | None:
    """The first hold of the run, or None when it held nowhere. A hold whose end was not
    recorded (the runner was killed) runs to the last global sample."""
    starts = tl.events_of("hold-start")
    if not starts:
        return None
    start = starts[0]
    detail = json.loads(start.detail or "{}")
    ends = [e for e in tl.events_of("hold-end") if e.t >= start.t]
    end_detail = json.loads(ends[0].detail or "{}") if ends else {}
    conn = tl.store
    if ends:
        end = ends[0].t
    else:
        last = conn.execute("SELECT max(t) FROM http WHERE target = 'global'").fetchone()[0]
        end = max(start.t, last if last is not None else start.t)
    requests, ok, served = conn.execute(
        "SELECT count(*), coalesce(sum(CASE WHEN ok THEN 1 ELSE 0 END), 0), "
        "coalesce(sum(CASE WHEN ok AND region = ? THEN 1 ELSE 0 END), 0) "
        "FROM http WHERE target = 'global' AND t >= ? AND t <= ?",
        (start.region, start.t, end)).fetchone()
    attempts, errors = conn.execute(
        "SELECT count(*), coalesce(sum(outcome != 'ok'), 0) FROM canary "
        "WHERE t_send >= ? AND t_send <= ?", (start.t, end)).fetchone()
    return Hold(region=start.region, planned_s=detail.get("hold_s"), start=start.t, end=end,
                ended=bool(ends), global_requests=requests, global_ok=ok,
                served_by_region=served, canary_attempts=attempts, canary_errors=errors,
                checks=end_detail.get("checks"), checks_failed=end_detail.get("checks_failed"),
                timeline_bytes=(detail.get("timeline_bytes"), end_detail.get("timeline_bytes")))


# --- replication ------------------------------------------------------------------------


def replication_at(tl: Timeline, t: float, *, primary: str, standby: str) -> dict[str, Any]:
    """Mode and lag as last sampled before `t`: the standby's replay lag and the primary's
    view of its standby (sync state). Each stream is walked back from `t` a window at a
    time, to the last sample that says it."""
    lag = None
    rows = tl.stream("replication", standby)
    for r in rows.rows_back(bisect.bisect_right(rows, t, key=attrgetter("t"))):
        if r.ok and r.in_recovery and r.lag_s is not None:
            lag = r.lag_s
            break
    sync_state = None
    rows = tl.stream("replication", primary)
    for r in rows.rows_back(bisect.bisect_right(rows, t, key=attrgetter("t"))):
        if r.ok and not r.in_recovery and r.detail:
            senders = json.loads(r.detail).get("senders") or []
            if senders:
                sync_state = senders[0].get("sync")
                break
    return {"sync_state": sync_state, "lag_at_fault_s": _round(lag)}
