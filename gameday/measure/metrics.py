"""RTO phases, RTO, downtime and write accounting from a stored timeline (DESIGN section 4).

Pure functions over plain rows, so they are tested on hand-made timelines with known
answers. Every instant comes from the sample that shows it, with an error bar equal to the
gap to the previous sample of the same stream (the event happened somewhere in that gap);
what was not observed is None with the reason, never a guess.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

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
    """Rows as stored (see gameday.measure.timeline.COLUMNS for the column order)."""

    events: Sequence[tuple]  # (t, kind, region, detail_json)
    dns: Sequence[tuple]
    http: Sequence[tuple]
    canary: Sequence[tuple]
    replication: Sequence[tuple]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    canary_connect: Sequence[tuple] = ()  # (t, writer, ok, server, error)

    def events_of(self, kind: str) -> list[tuple]:
        return [e for e in self.events if e[1] == kind]


def load(conn) -> Timeline:
    def rows(sql: str) -> list[tuple]:
        return conn.execute(sql).fetchall()

    return Timeline(
        events=rows("SELECT t, kind, region, detail FROM events ORDER BY t"),
        dns=rows("SELECT t, server, ok, answer, rcode, ttl, latency, lateness, error "
                 "FROM dns ORDER BY t"),
        http=rows("SELECT t, target, ok, status, region, address, latency, lateness, error "
                  "FROM http ORDER BY t"),
        canary=rows("SELECT seq, writer, t_send, t_ack, outcome, server, error, notice "
                    "FROM canary ORDER BY t_send"),
        replication=rows("SELECT t, server, ok, in_recovery, lag_s, detail, error "
                         "FROM replication ORDER BY t"),
        meta={k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")},
        canary_connect=rows("SELECT t, writer, ok, server, error FROM canary_connect ORDER BY t")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'canary_connect'").fetchone()
        else (),
    )


# --- instants ---------------------------------------------------------------------------


def fault_time(tl: Timeline) -> tuple[float | None, float | None]:
    """(t_fault, t_effective): the first fault's start and the instant it was seen in effect."""
    applied = tl.events_of("fault-applied")
    if not applied:
        return None, None
    t_fault = applied[0][0]
    effective = [e[0] for e in tl.events_of("fault-effective")]
    return t_fault, (min(effective) if effective else None)


def _first(rows: Sequence[tuple], t_fault: float, pred, *, time_index: int = 0,
           evidence: str, reason: str) -> Instant:
    prev_t = None
    for row in rows:
        t = row[time_index]
        if t >= t_fault and pred(row):
            gap = t - prev_t if prev_t is not None else None
            return Instant(at_s=t - t_fault, error_s=gap, evidence=evidence)
        prev_t = t
    return missing(reason)


def _stays(rows: Sequence[tuple], t_fault: float, good, *, evidence: str, reason: str) -> Instant:
    """First sample after t_fault from which every later sample is good."""
    after = [(i, r) for i, r in enumerate(rows) if r[0] >= t_fault]
    if not after or not good(after[-1][1]):
        return missing(reason)
    start = len(after) - 1
    while start > 0 and good(after[start - 1][1]):
        start -= 1
    idx, row = after[start]
    gap = row[0] - rows[idx - 1][0] if idx > 0 else None
    return Instant(at_s=row[0] - t_fault, error_s=gap, evidence=evidence)


def detection(tl: Timeline, t_fault: float, primary: str) -> Instant:
    rows = [r for r in tl.http if r[1] == primary]
    return _first(rows, t_fault, lambda r: not r[2],
                  evidence=f"first failed /healthz of {primary}",
                  reason=f"no failed health check of {primary} after the fault")


def promotion(tl: Timeline, t_fault: float, secondary: str) -> Instant:
    for t, _kind, region, detail in tl.events_of("promoted"):
        if region == secondary and t >= t_fault:
            d = json.loads(detail or "{}")
            return Instant(at_s=t - t_fault, error_s=d.get("error_s"),
                           evidence=f"first write accepted by {secondary} in the promote loop")
    return missing(f"{secondary} was not promoted after the fault")


def dns_flip(tl: Timeline, t_fault: float, server: str, address: str) -> Instant:
    rows = [r for r in tl.dns if r[1] == server]
    return _stays(rows, t_fault, lambda r: r[2] and r[3] == address,
                  evidence=f"{server} answers {address} from here on",
                  reason=f"the {server} server never settled on {address}")


def _global(tl: Timeline) -> list[tuple]:
    return [r for r in tl.http if r[1] == "global"]


def first_success(tl: Timeline, t_fault: float, secondary: str) -> Instant:
    return _first(_global(tl), t_fault, lambda r: r[2] and r[4] == secondary,
                  evidence=f"first global request served by {secondary}",
                  reason=f"no global request was served by {secondary}")


def first_write(tl: Timeline, t_fault: float, secondary_hosts: set[str]) -> Instant:
    """The first canary write acknowledged by the new primary. Its error bar reaches back to
    the last failed attempt (a write or a connection) before it: the new primary began to
    accept writes somewhere in between."""
    first = None
    for row in tl.canary:
        seq, writer, t_send, t_ack, outcome, server, *_ = row
        if outcome == "ok" and t_ack >= t_fault and server in secondary_hosts and (
                first is None or t_ack < first[3]):
            first = row
    if first is None:
        return missing("no canary write was acknowledged by the new primary")
    t_ack = first[3]
    failures = [r[2] for r in tl.canary if r[4] != "ok" and r[2] < t_ack]
    failures += [r[0] for r in tl.canary_connect if not r[2] and r[0] < t_ack]
    last_fail = max(failures) if failures else None
    error = t_ack - last_fail if last_fail is not None and last_fail >= t_fault else None
    return Instant(at_s=t_ack - t_fault, error_s=error,
                   evidence="first canary write acknowledged by the new primary")


def rto(tl: Timeline, t_fault: float, secondary: str, k: int = K_CONSECUTIVE) -> Instant:
    """Start of the first run of k consecutive successful global requests served by the
    secondary."""
    all_rows = _global(tl)
    start = next((i for i, r in enumerate(all_rows) if r[0] >= t_fault), len(all_rows))
    run = 0
    for i in range(start, len(all_rows)):
        row = all_rows[i]
        if row[2] and row[4] == secondary:
            run += 1
            if run == k:
                idx = i - k + 1
                first = all_rows[idx]
                gap = first[0] - all_rows[idx - 1][0] if idx > 0 else None
                return Instant(at_s=first[0] - t_fault, error_s=gap,
                               evidence=f"first of {k} consecutive global successes from {secondary}")
        else:
            run = 0
    return missing(f"no {k} consecutive global requests served by {secondary}")


def downtime(tl: Timeline, t_fault: float, until: float | None = None) -> tuple[float, float | None]:
    """Total time with failing global requests after the fault: each failing sample counts
    until the next sample. Returns (seconds, error bar)."""
    rows = [r for r in _global(tl) if r[0] >= t_fault and (until is None or r[0] <= until)]
    total = 0.0
    for row, nxt in zip(rows, rows[1:], strict=False):
        if not row[2]:
            total += nxt[0] - row[0]
    gaps = intervals([r[0] for r in rows])
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


def sampler_stats(tl: Timeline) -> dict[str, dict[str, Any]]:
    """Samples, achieved interval p50/p99 and errors per sampler stream."""
    streams: dict[str, list[tuple[float, bool]]] = {}
    for r in tl.dns:
        streams.setdefault(f"dns:{r[1]}", []).append((r[0], bool(r[2])))
    for r in tl.http:
        streams.setdefault(f"http:{r[1]}", []).append((r[0], bool(r[2])))
    for r in tl.replication:
        streams.setdefault(f"replication:{r[1]}", []).append((r[0], bool(r[2])))
    out: dict[str, dict[str, Any]] = {}
    for name, rows in sorted(streams.items()):
        gaps = intervals(t for t, _ in rows)
        out[name] = {
            "samples": len(rows),
            "errors": sum(1 for _, ok in rows if not ok),
            "interval_p50_s": _round(percentile(gaps, 50)),
            "interval_p99_s": _round(percentile(gaps, 99)),
        }
    sends = sorted(r[2] for r in tl.canary)
    gaps = intervals(sends)
    out["canary"] = {
        "samples": len(tl.canary),
        "errors": sum(1 for r in tl.canary if r[4] != "ok"),
        "interval_p50_s": _round(percentile(gaps, 50)),
        "interval_p99_s": _round(percentile(gaps, 99)),
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


def account_writes(canary: Sequence[tuple], present: dict[int, int], *, t_fault: float | None,
                   start_seq: int = 1, cutoff: float | None = None,
                   live: bool = False) -> WriteAccounting:
    """Jepsen set semantics over the canary's attempts and the rows found on the new primary.

    `present` maps seq -> number of rows with that seq (seq >= start_seq). Attempts still in
    flight at `cutoff` (the instant the table was read) are left out. `live` means the
    canary was still writing when the table was read: a row whose attempt the recorder had
    not yet flushed is then not evidence of anything, so rows never attempted are not
    judged (the final read, after the canary stopped, judges them)."""
    def settled(r: tuple) -> bool:
        return cutoff is None or (r[3] if r[3] is not None else r[2]) < cutoff

    attempts = [r for r in canary if settled(r)]
    inflight = {r[0] for r in canary if not settled(r)}
    attempted_seqs = {r[0] for r in canary}
    acked = [r for r in attempts if r[4] == "ok"]
    lost = [r for r in acked if r[0] not in present]
    unknown = [r for r in attempts if r[4] == "unknown"]
    recovered = sum(1 for r in unknown if r[0] in present)
    failed_present = sum(1 for r in attempts if r[4] == "failed" and r[0] in present)
    unexpected = failed_present + (0 if live else sum(
        1 for seq in present if seq >= start_seq and seq not in attempted_seqs
        and seq not in inflight))
    duplicate = sum(n - 1 for n in present.values() if n > 1)
    not_durable = sum(1 for r in acked if r[7] and SYNC_CANCELLED in r[7])
    rpo_s, rpo_err, window = 0.0, None, None
    lost_after = 0
    if lost:
        lost_t = sorted(r[3] for r in lost)
        window = (lost_t[0], lost_t[-1])
        survivors = [r[3] for r in acked if r[0] in present and r[3] < lost_t[0]]
        last_survivor = max(survivors) if survivors else None
        if t_fault is not None and last_survivor is not None:
            rpo_s = max(0.0, t_fault - last_survivor)
        elif t_fault is not None:
            rpo_s = max(0.0, t_fault - lost_t[0])
        lost_after = sum(1 for t in lost_t if t_fault is not None and t > t_fault)
    ack_times = sorted(r[3] for r in acked)
    if lost:
        # the data ends between the last survivor and the first lost write
        first_lost = window[0] if window else None
        before = [t for t in ack_times if first_lost is not None and t < first_lost]
        rpo_err = first_lost - before[-1] if before and first_lost is not None else None
    else:
        # no loss: resolved to the canary's inter-write gap just before the fault
        near = [t for t in ack_times if t_fault is not None and t_fault - 1.0 <= t <= t_fault]
        rpo_err = percentile(intervals(near), 50) if len(near) > 1 else None
    return WriteAccounting(
        attempted=len(attempts), acked=len(acked), lost=len(lost), recovered=recovered,
        unknown_absent=len(unknown) - recovered, unexpected=unexpected, duplicate=duplicate,
        not_durable=not_durable, lost_seqs=tuple(sorted(r[0] for r in lost)),
        lost_after_fault=lost_after, loss_window=window, rpo_s=rpo_s, rpo_error_s=rpo_err,
        lost_by_server=dict(Counter(r[5] or "?" for r in lost)),
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


# --- replication ------------------------------------------------------------------------


def replication_at(tl: Timeline, t: float, *, primary: str, standby: str) -> dict[str, Any]:
    """Mode and lag as last sampled before `t`: the standby's replay lag and the primary's
    view of its standby (sync state)."""
    lag = None
    for r in tl.replication:
        if r[0] > t:
            break
        if r[1] == standby and r[2] and r[3] and r[4] is not None:
            lag = r[4]
    sync_state = None
    for r in tl.replication:
        if r[0] > t:
            break
        if r[1] == primary and r[2] and not r[3] and r[5]:
            senders = json.loads(r[5]).get("senders") or []
            if senders:
                sync_state = senders[0].get("sync")
    return {"sync_state": sync_state, "lag_at_fault_s": _round(lag)}
