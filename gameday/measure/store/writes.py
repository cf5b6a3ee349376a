"""The write accounting (docs/design.md, Measurement): Jepsen set semantics over the
canary's attempts and the rows found on the new primary, counted in SQLite where both are
stored, so a drill of millions of writes is counted in bounded memory.

    acked and present       survived
    acked and absent        lost (the RPO ends at the last survivor before the first)
    unknown and present     recovered (committed though never acknowledged)
    unknown and absent      never committed
    failed and present      unexpected (an integrity failure), as is a row never attempted
    present twice           duplicate
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gameday.measure.contract import Writes
from gameday.measure.stats import intervals, percentile
from gameday.measure.store.reader import FinalRows, Timeline, memory_store
from gameday.measure.store.seqsets import SeqSet, never_attempted, seq_table

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

    def counts(self) -> Writes:
        """The counts summary.json's `writes` holds, under its keys."""
        return Writes(attempted=self.attempted, acked=self.acked, lost=self.lost,
                      recovered=self.recovered, unknown_absent=self.unknown_absent,
                      unexpected=self.unexpected, duplicate=self.duplicate)


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


def account_run(tl: Timeline, present: Mapping[int, int], *, t_fault: float | None,
                start_seq: int = 1, cutoff: float | None = None, live: bool = False
                ) -> WriteAccounting:
    """account_writes() of a run's timeline: counted in its database when the rows read
    from the new primary lie there too (a stored run), with the numbers attempted found
    once per timeline (`Timeline.canary_attempted`); else over the rows given."""
    if isinstance(present, FinalRows) and present.conn is tl._db:
        return account_stored_writes(tl._db, t_fault=t_fault, start_seq=start_seq,
                                     cutoff=cutoff, live=live,
                                     attempted_seqs=tl.canary_attempted)
    return account_writes(tl.canary, present, t_fault=t_fault, start_seq=start_seq,
                          cutoff=cutoff, live=live)


def account_stored_writes(conn: sqlite3.Connection, *, t_fault: float | None,
                          start_seq: int = 1, cutoff: float | None = None,
                          live: bool = False, attempted_seqs: SeqSet | None = None
                          ) -> WriteAccounting:
    """account_writes() over the tables `canary` and `final_rows` (one row per seq) where
    they are stored. The sequence numbers found are read once, in whatever order they were
    stored, into a `SeqSet`; the canary is scanned in SQLite against the few numbers
    missing from it, so only the lost writes and the attempts not acknowledged come back as
    rows."""
    settled = "1" if cutoff is None else "coalesce(t_ack, t_send) < :cutoff"
    params: dict[str, Any] = {"cutoff": cutoff, "sync": SYNC_CANCELLED}
    # the rows found more than once counted in the same scan (one scan of millions of rows)
    present, extra = SeqSet.stored(conn, "final_rows",
                                    ", sum(CASE WHEN n > 1 THEN n - 1 END)")
    if present.bits is not None:
        seq_table(conn, "gameday_absent", present.absent())
        not_found = "(seq < :first_seq OR seq > :last_seq OR seq IN temp.gameday_absent)"
        params.update(first_seq=present.first, last_seq=present.last)
    else:
        seq_table(conn, "gameday_present", present.sorted)
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
    seq_table(conn, "gameday_lost", sorted(int(i) for i in lost_ids.split(","))
               if lost_ids else ())
    lost = conn.execute("SELECT seq, t_ack, server FROM canary WHERE rowid IN "
                        "temp.gameday_lost ORDER BY t_send").fetchall()
    if not live:
        unexpected += never_attempted(conn, present, start_seq, attempted_seqs)
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


def seq_ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """[1,2,3,7,8] -> [(1,3),(7,8)]: lost writes read as ranges."""
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out
