"""A long drill's hold in one region (`hold-start` to `hold-end`): how available the
service was there, counted in the store whatever the hold's length."""

from __future__ import annotations

import dataclasses

from gameday.foundation import events
from gameday.foundation.events import Kind
from gameday.measure.store.reader import Timeline


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
    starts = tl.events_of(Kind.HOLD_START)
    if not starts:
        return None
    start = starts[0]
    detail = events.detail(start.detail)
    ends = [e for e in tl.events_of(Kind.HOLD_END) if e.t >= start.t]
    end_detail = events.detail(ends[0].detail) if ends else {}
    if ends:
        end = ends[0].t
    else:
        last = tl.last_global()
        end = max(start.t, last if last is not None else start.t)
    requests, ok, served, attempts, errors = tl.hold_counts(start.region, start.t, end)
    return Hold(region=start.region, planned_s=detail.get("hold_s"), start=start.t, end=end,
                ended=bool(ends), global_requests=requests, global_ok=ok,
                served_by_region=served, canary_attempts=attempts, canary_errors=errors,
                checks=end_detail.get("checks"), checks_failed=end_detail.get("checks_failed"),
                timeline_bytes=(detail.get("timeline_bytes"), end_detail.get("timeline_bytes")))
