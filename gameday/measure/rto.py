"""The RTO rule, in one place (K consecutive successful global requests served by the
secondary), the RTO it measures, and the downtime before it."""

from __future__ import annotations

from typing import Any

from gameday.measure.instants import Instant, global_requests, missing
from gameday.measure.store.reader import Timeline

K_CONSECUTIVE = 5


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
    all_rows = global_requests(tl)
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
    rows = global_requests(tl)
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
