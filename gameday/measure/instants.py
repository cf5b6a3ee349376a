"""The instants of a drill after t_fault, each from the sample that shows it, with an
error bar equal to the gap to the previous sample of the same stream (the event happened
somewhere in that gap); what was not observed is None with the reason, never a guess.
(docs/design.md, Measurement)"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any

from gameday.foundation import endpoints
from gameday.foundation.endpoints import Endpoints
from gameday.foundation.events import Kind
from gameday.measure.contract import InstantDetail
from gameday.measure.store.reader import Stream, Timeline


@dataclasses.dataclass(frozen=True, kw_only=True)
class Instant:
    """An instant relative to t_fault, with its error bar, or the reason it is missing."""

    at_s: float | None
    error_s: float | None = None
    reason: str | None = None
    evidence: str | None = None

    def to_dict(self) -> InstantDetail:
        return InstantDetail(at_s=self.at_s, error_s=self.error_s, reason=self.reason,
                             evidence=self.evidence)


def missing(reason: str) -> Instant:
    return Instant(at_s=None, reason=reason)


# --- instants ---------------------------------------------------------------------------


def fault_time(tl: Timeline) -> tuple[float | None, float | None]:
    """(t_fault, t_effective): the first fault's start and the instant it was seen in effect."""
    applied = tl.events_of(Kind.FAULT_APPLIED)
    if not applied:
        return None, None
    t_fault = applied[0].t
    effective = [e.t for e in tl.events_of(Kind.FAULT_EFFECTIVE)]
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
    for t, _kind, region, detail in tl.events_of(Kind.PROMOTED):
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


def sentinel_odown(tl: Timeline, t_fault: float, primary: str) -> Instant:
    """The Sentinels' detection: the first row after the fault in which a Sentinel holds
    the master objectively down (its +odown announcement, subscribed to, or the `o_down`
    flag in a sample: a quorum agreed) or already names another master (+switch-master,
    when nothing of the odown was seen)."""
    ha = tl.stream("ha", None)
    return _first(ha, t_fault, lambda r: bool(r.ok) and (r.leader != primary or _odown(r)),
                  evidence=f"a Sentinel held {primary}'s Redis objectively down (+odown)",
                  reason=f"no Sentinel was seen holding {primary}'s Redis down"
                  if ha else "the Sentinels were not sampled")


def _odown(row: Any) -> bool:
    try:
        return bool(json.loads(row.detail or "{}").get("odown"))
    except ValueError:
        return False


def answer_class(regions: Mapping[str, Endpoints]) -> Callable[[Any], str | None]:
    """The region a DNS sample's answer is (endpoints.classify), None for a sample with no
    answer. The class the sampler recorded is the one used; a run recorded before samples
    had one is classified here, by the same rule, from its addresses (and its chain, when
    recorded), once per distinct answer."""
    seen: dict[tuple[str, str], str] = {}

    def of(row: Any) -> str | None:
        if row.region:
            return str(row.region)
        if not row.answer:
            return None
        key = (row.answer, row.chain or "")
        if key not in seen:
            seen[key] = endpoints.classify(row.answer.split(","),
                                           [n for n in key[1].split(",") if n], regions)
        return seen[key]

    return of


def dns_flip(tl: Timeline, t_fault: float, server: str, secondary: str,
             regions: Mapping[str, Endpoints], *, label: str | None = None) -> Instant:
    """The first sample from which every answer of `server` (a dns stream) is `secondary`'s
    alone (endpoints.classify: a mixed or unknown answer is not the secondary's). `label`
    names the server in the evidence (a resolver's name), else the stream does."""
    of = answer_class(regions)
    return _stays(tl.stream("dns", server), t_fault, lambda r: r.ok and of(r) == secondary,
                  evidence=f"{label or server} answers with {secondary}'s endpoints only "
                           "from here on",
                  reason=f"{label} never settled on {secondary}" if label
                  else f"the {server} server never settled on {secondary}")


def global_requests(tl: Timeline) -> Stream:
    """The global request sampler's stream: what a client of the global name saw."""
    return tl.stream("http", "global")


def first_success(tl: Timeline, t_fault: float, secondary: str) -> Instant:
    return _first(global_requests(tl), t_fault, lambda r: r.ok and r.region == secondary,
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
    t_ack = tl.first_ack(t_fault, secondary_hosts)
    if t_ack is None:
        return missing("no canary write was acknowledged by the new primary")
    last_fail = tl.last_failure_before(t_ack)
    error = t_ack - last_fail if last_fail is not None and last_fail >= t_fault else None
    return Instant(at_s=t_ack - t_fault, error_s=error,
                   evidence="first canary write acknowledged by the new primary")


def first_app_write(tl: Timeline, t_fault: float, secondary: str) -> Instant:
    """The first application-canary write the secondary region acknowledged (its X-Region)
    after the fault: the write RTO of a store without SQL, where no database canary runs.
    Its error bar reaches back to the last attempt before it that was not acknowledged."""
    t_ack, last_fail = tl.first_app_ack(t_fault, secondary)
    if t_ack is None:
        return missing(f"no application-canary write was acknowledged by {secondary}")
    return Instant(at_s=t_ack - t_fault,
                   error_s=t_ack - last_fail if last_fail is not None else None,
                   evidence=f"first application-canary write acknowledged by {secondary}")


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
    return {"sync_state": sync_state, "lag_at_fault_s": None if lag is None else round(lag, 4)}
