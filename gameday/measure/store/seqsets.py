"""Sets of canary sequence numbers over a stored table, found by SQL aggregates where they
can be: a run's canary numbers its writes consecutively, so millions of numbers are a few
hundred ranges, held as one byte per number and never as Python objects."""

from __future__ import annotations

import bisect
import collections
import sqlite3
from collections.abc import Iterable, Iterator
from itertools import repeat
from operator import itemgetter, sub
from typing import Any

from gameday.measure.store import timeline as timelines


class SeqSet:
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
    def filling(cls, first: int | None, last: int | None, count: int) -> SeqSet:
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
               ) -> tuple[SeqSet, list[tuple[Any, ...]]]:
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
        step = timelines.CHUNK * 8
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
            while rows := cur.fetchmany(timelines.CHUNK * 8):
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


def never_attempted(conn: sqlite3.Connection, present: SeqSet, start_seq: int,
                     attempted: SeqSet | None = None) -> int:
    """How many numbers (>= start_seq) in `present` the canary never attempted: those
    outside the range it attempted and those in the gaps of that range (an attempt still in
    flight at the read counts as attempted)."""
    if attempted is None:
        attempted, _ = SeqSet.stored(conn, "canary")
    if attempted.bits is not None and attempted.last >= attempted.first:
        # the attempted numbers as bytes: the gaps of their range are the zero bytes
        first, last = attempted.first, attempted.last
        never = present.count(start_seq, first - 1) + present.count(max(start_seq, last + 1))
        never += sum(1 for seq in attempted.absent() if seq >= start_seq and seq in present)
        return int(never)
    seq_table(conn, "gameday_attempted", "SELECT seq FROM canary")
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


def seq_table(conn: sqlite3.Connection, name: str, rows: str | Iterable[int]) -> None:
    """A temporary table of distinct sequence numbers (from a SELECT or given in order)
    keyed by rowid: a membership test against it is one B-tree lookup, and filling it in
    (nearly) ascending order appends."""
    conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
    conn.execute(f"CREATE TEMP TABLE {name} (seq INTEGER PRIMARY KEY)")
    if isinstance(rows, str):
        conn.execute(f"INSERT OR IGNORE INTO temp.{name} {rows}")
    else:
        conn.executemany(f"INSERT OR IGNORE INTO temp.{name} VALUES (?)", ((s,) for s in rows))
