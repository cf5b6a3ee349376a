"""RTO phases, RTO, downtime and write accounting from a stored timeline (docs/design.md, Measurement).

Pure functions over plain rows, so they are tested on hand-made timelines with known
answers. Every instant comes from the sample that shows it, with an error bar equal to the
gap to the previous sample of the same stream (the event happened somewhere in that gap);
what was not observed is None with the reason, never a guess.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import json
import math
import sqlite3
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter, sub
from typing import Any

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


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timeline:
    """Rows as stored, each a row type of gameday.measure.timeline (Event, DnsSample, ...).

    The canary (thousands of rows a second, millions in an hour) is counted in SQLite:
    `store` is the run's own database when the timeline was loaded from one (`db`), else an
    in-memory database holding the rows given here, so hand-made timelines go through the
    same queries."""

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
        return memory_store(canary=self.canary, canary_connect=self.canary_connect)

    @functools.cached_property
    def canary_sends(self) -> list[float]:
        """Every canary attempt's send time, sorted (a float each, not a row: they come
        nearly in order, so sorting is cheap)."""
        sends = [r[0] for r in self.store.execute("SELECT t_send FROM canary")]
        sends.sort()
        return sends

    @functools.cached_property
    def canary_extent(self) -> tuple[int, int, float | None, float | None]:
        """(attempts, attempts not acknowledged, first and last t_send) of the canary."""
        sends = self.canary_sends
        # through the index canary_not_ok when the run has it
        errors = self.store.execute(
            "SELECT count(*) FROM canary WHERE outcome != 'ok'").fetchone()[0]
        return len(sends), errors, (sends[0] if sends else None), (sends[-1] if sends else None)

    def stream(self, table: str, name: str) -> list[Any]:
        """The rows of one sampler stream (`dns` by server, `http` by target, `replication`
        by server) in time order."""
        return self._streams.get((table, name), [])

    @functools.cached_property
    def _streams(self) -> dict[tuple[str, str], list[Any]]:
        out: dict[tuple[str, str], list[Any]] = {}
        streams: tuple[tuple[str, Sequence[tuple[Any, ...]]], ...] = (
            ("dns", self.dns), ("http", self.http), ("replication", self.replication),
            ("ha", self.ha))
        for table, rows in streams:
            # `load` groups each table by stream: a few long runs of one name
            for name, group in itertools.groupby(rows, key=itemgetter(1)):
                out.setdefault((table, name), []).extend(group)
        return out

    def close(self) -> None:
        """Release the run's database (and the snapshot `load` read it in)."""
        if self.db is not None:
            if self.db.in_transaction:
                self.db.rollback()
            self.db.close()


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
                 present: Mapping[int, int] | None = None) -> sqlite3.Connection:
    """An in-memory database with the run's schema holding the rows given."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(timelines.SCHEMA)
    conn.execute("CREATE TABLE final_rows (seq INTEGER, n INTEGER)")
    conn.executemany(timelines.insert_sql("canary"), canary)
    conn.executemany(timelines.insert_sql("canary_connect"), canary_connect)
    if present is not None:
        conn.executemany("INSERT INTO final_rows VALUES (?, ?)", present.items())
    return conn


def load(conn: sqlite3.Connection) -> Timeline:
    """The timeline of a stored run. Reads happen in one snapshot (a read transaction held
    until `Timeline.close`), so a run still being recorded is counted consistently. The
    sampler streams are loaded with the columns the metrics and the report read (the others
    are None), `dns` and `http` grouped by stream (server or target, then time); the canary
    stays in the database."""
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("BEGIN")

    def rows(table: str, row: Any, order: str, read: Collection[str] | None = None) -> list[Any]:
        cur = conn.cursor()
        cur.row_factory = lambda _cursor, values: row(*values)
        return cur.execute(f"SELECT {timelines.select_list(table, read)} FROM {table} "
                           f"ORDER BY {order}").fetchall()

    return Timeline(
        events=rows("events", Event, "t"),
        dns=rows("dns", DnsSample, "server, t", {"t", "server", "ok", "answer"}),
        http=rows("http", HttpSample, "target, t", {"t", "target", "ok", "region"}),
        canary=StoredRows(conn, "canary", "t_send"),
        replication=rows("replication", ReplicationSample, "t",
                         {"t", "server", "ok", "in_recovery", "lag_s", "detail"}),
        meta={k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")},
        canary_connect=rows("canary_connect", CanaryConnect, "t")
        if _has_table(conn, "canary_connect") else (),
        ha=rows("ha", HaSample, "t") if _has_table(conn, "ha") else (),
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


def _first(rows: Sequence[Any], t_fault: float, pred: Callable[[Any], Any], *,
           evidence: str, reason: str) -> Instant:
    prev_t = None
    for row in rows:
        t = row.t
        if t >= t_fault and pred(row):
            gap = t - prev_t if prev_t is not None else None
            return Instant(at_s=t - t_fault, error_s=gap, evidence=evidence)
        prev_t = t
    return missing(reason)


def _stays(rows: Sequence[Any], t_fault: float, good: Callable[[Any], Any], *, evidence: str,
           reason: str) -> Instant:
    """First sample after t_fault from which every later sample is good."""
    after = [(i, r) for i, r in enumerate(rows) if r.t >= t_fault]
    if not after or not good(after[-1][1]):
        return missing(reason)
    start = len(after) - 1
    while start > 0 and good(after[start - 1][1]):
        start -= 1
    idx, row = after[start]
    gap = row.t - rows[idx - 1].t if idx > 0 else None
    return Instant(at_s=row.t - t_fault, error_s=gap, evidence=evidence)


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
    return _first(tl.ha, t_fault, lambda r: r.ok and r.leader != primary,
                  evidence=f"the leader key no longer held by {primary} (DCS sample)",
                  reason=f"the leader key was never seen leaving {primary}"
                  if tl.ha else "the HA manager's leader key was not sampled")


def dns_flip(tl: Timeline, t_fault: float, server: str, address: str) -> Instant:
    rows = tl.stream("dns", server)
    return _stays(rows, t_fault, lambda r: r.ok and r.answer == address,
                  evidence=f"{server} answers {address} from here on",
                  reason=f"the {server} server never settled on {address}")


def _global(tl: Timeline) -> list[HttpSample]:
    return tl.stream("http", "global")


def first_success(tl: Timeline, t_fault: float, secondary: str) -> Instant:
    return _first(_global(tl), t_fault, lambda r: r.ok and r.region == secondary,
                  evidence=f"first global request served by {secondary}",
                  reason=f"no global request was served by {secondary}")


def first_write(tl: Timeline, t_fault: float, secondary_hosts: set[str]) -> Instant:
    """The first canary write acknowledged by the new primary. Its error bar reaches back to
    the last failed attempt (a write or a connection) before it: the new primary began to
    accept writes somewhere in between."""
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
    start = next((i for i, r in enumerate(all_rows) if r.t >= t_fault), len(all_rows))
    streak = Streak(secondary, k, before=all_rows[start - 1].t if start > 0 else None)
    for row in itertools.islice(all_rows, start, None):
        if streak.add(row.t, row.ok, row.region):
            assert streak.start is not None
            gap = streak.start - streak.before if streak.before is not None else None
            return Instant(at_s=streak.start - t_fault, error_s=gap,
                           evidence=f"first of {k} consecutive global successes from {secondary}")
    return missing(f"no {k} consecutive global requests served by {secondary}")


def downtime(tl: Timeline, t_fault: float, until: float | None = None) -> tuple[float, float | None]:
    """Total time with failing global requests after the fault: each failing sample counts
    until the next sample. Returns (seconds, error bar)."""
    rows = [r for r in _global(tl) if r.t >= t_fault and (until is None or r.t <= until)]
    total = 0.0
    for row, nxt in zip(rows, rows[1:], strict=False):
        if not row.ok:
            total += nxt.t - row.t
    gaps = intervals([r.t for r in rows])
    return total, (max(gaps) if gaps else None)


def intervals(ts: Iterable[float]) -> list[float]:
    ts = list(ts)
    return [b - a for a, b in zip(ts, ts[1:], strict=False)]


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    idx = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[idx]


def _percentiles(values: list[float], ps: Sequence[float]) -> list[float | None]:
    """percentile() for several p at once, sorting `values` in place once."""
    if not values:
        return [None for _ in ps]
    values.sort()
    return [values[min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))]
            for p in ps]


def sampler_stats(tl: Timeline) -> dict[str, dict[str, Any]]:
    """Samples, achieved interval p50/p99 and errors per sampler stream."""
    streams = {f"{table}:{name}": rows for (table, name), rows in tl._streams.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, rows in sorted(streams.items()):
        ts = [r.t for r in rows]
        p50, p99 = _percentiles(list(map(sub, ts[1:], ts[:-1])), (50, 99))
        out[name] = {
            "samples": len(rows),
            "errors": sum(1 for r in rows if not r.ok),
            "interval_p50_s": _round(p50),
            "interval_p99_s": _round(p99),
        }
    samples, errors, _, _ = tl.canary_extent
    sends = tl.canary_sends
    p50, p99 = _percentiles(list(map(sub, sends[1:], sends[:-1])), (50, 99))
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
                          live: bool = False) -> WriteAccounting:
    """account_writes() over the tables `canary` and `final_rows` (one row per seq) where
    they are stored. The sequence numbers found are read once, in whatever order they were
    stored, into a `_SeqSet`; the canary is scanned in SQLite against the few numbers
    missing from it, so only the lost writes and the attempts not acknowledged come back as
    rows."""
    settled = "1" if cutoff is None else "coalesce(t_ack, t_send) < :cutoff"
    params: dict[str, Any] = {"cutoff": cutoff, "sync": SYNC_CANCELLED}
    present = _SeqSet([r[0] for r in conn.execute(
        "SELECT seq FROM final_rows WHERE seq IS NOT NULL")])
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
        unexpected += _never_attempted(conn, present, start_seq)
    duplicate = conn.execute(
        "SELECT coalesce(sum(n - 1), 0) FROM final_rows WHERE n > 1").fetchone()[0]
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

    def __init__(self, seqs: list[int]) -> None:
        self.first = min(seqs, default=1)
        self.last = max(seqs, default=0)
        span = self.last - self.first + 1
        self.bits: bytearray | None = None
        self.sorted: list[int] = []
        if span <= max(1 << 20, self.SPARSE * len(seqs)):
            self.bits = bytearray(span)
            first, bits = self.first, self.bits
            for seq in seqs:
                bits[seq - first] = 1
        else:
            self.sorted = sorted(set(seqs))

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


def _never_attempted(conn: sqlite3.Connection, present: _SeqSet, start_seq: int) -> int:
    """How many numbers (>= start_seq) in `present` the canary never attempted: those
    outside the range it attempted and those in the gaps of that range (an attempt still in
    flight at the read counts as attempted)."""
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
    view of its standby (sync state)."""
    lag = None
    for r in tl.replication:
        if r.t > t:
            break
        if r.server == standby and r.ok and r.in_recovery and r.lag_s is not None:
            lag = r.lag_s
    sync_state = None
    for r in tl.replication:
        if r.t > t:
            break
        if r.server == primary and r.ok and not r.in_recovery and r.detail:
            senders = json.loads(r.detail).get("senders") or []
            if senders:
                sync_state = senders[0].get("sync")
    return {"sync_state": sync_state, "lag_at_fault_s": _round(lag)}
