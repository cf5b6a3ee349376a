"""Build summary.json (docs/design.md, The summary) from a stored run, with no lab needed.

Reading the new primary's canary table is the only step that needs the lab; it is stored
in the timeline (`final_rows`) by `snapshot_rows`, so a report can be regenerated later
from the run directory alone and gives the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gameday.foundation import events
from gameday.foundation.descriptor import Lab
from gameday.foundation.events import Kind
from gameday.measure import app_canary, instants, phases, stats
from gameday.measure import hold as holds
from gameday.measure import rto as rtos
from gameday.measure.contract import (
    SCHEMA_ID,
    AppWrites,
    AuthorityDetection,
    Failback,
    FaultRecord,
    Flapping,
    Hold,
    PromotionRecord,
    ResolverFlip,
    Summary,
    Targets,
    Verdict,
    Writes,
    WritesDetail,
)
from gameday.measure.instants import Instant
from gameday.measure.store import reader, timeline, writes
from gameday.postgres import canary as postgres_canary

SCHEMA = SCHEMA_ID
WRITE_COUNTS: tuple[str, ...] = tuple(Writes.__annotations__)
# the steady state not met, before and after the method
STEADY_STATE_NOT_MET = {"before": Kind.STEADY_STATE_BEFORE_NOT_MET,
                        "after": Kind.STEADY_STATE_AFTER_NOT_MET}


def snapshot_rows(run_dir: Path, lab: Lab, t_read: float, *, live: bool) -> int:
    """Read the canary rows of this run from the writable primary into the timeline (none
    when the run had no database canary: a store without SQL)."""
    meta = timeline.read_meta(run_dir)
    if not database_canary(meta):
        return 0
    start_seq = int(meta.get("start_seq", 1))
    rows, server = postgres_canary.stored_since(lab, start_seq)
    timeline.write_final_rows(run_dir, rows, meta={"final_read_t": t_read,
                                                   "final_read_server": server,
                                                   "final_read_live": live})
    return len(rows)


def database_canary(meta: Mapping[str, Any]) -> bool:
    """Whether the run's database canary ran (not on a store without SQL: redis-sentinel)."""
    return bool((meta.get("configuration") or {}).get("database_canary", True))


def build(run_dir: Path) -> Summary:
    tl, present = reader.open_run(run_dir)
    try:
        return compute(tl, present)
    finally:
        tl.close()


def compute(tl: reader.Timeline, present: Mapping[int, int] | None) -> Summary:
    """summary.json of a stored run, section by section."""
    meta = tl.meta
    targets: Targets = meta.get("targets", {"rto_s": 30.0, "rpo_s": 0.0, "max_lost_writes": 0})
    t_fault, t_effective = instants.fault_time(tl)
    failover = _failover(tl, t_fault)
    writes, accounting = _writes(tl, present, t_fault)
    # a store without SQL runs no database canary: the application canary's writes are
    # the run's writes, and its RPO the run's (what the verdict probes judge)
    db_canary = database_canary(meta)
    reasons = _reasons(tl, targets, failover, accounting, present is not None or not db_canary)
    roles = phases.Roles.from_meta(meta)
    app = _app_writes(tl, t_fault, roles.secondary["name"], failover, accounting)
    if app is not None:
        reasons = _app_reasons(reasons, app, targets)
        rpo = app["rpo_s"]
        if not db_canary and rpo is not None and rpo > targets["rpo_s"]:
            reasons.append(f"application canary: RPO {rpo:.3f} s exceeds the target "
                           f"{targets['rpo_s']:g} s")
    elif not db_canary:
        reasons.append("no canary measured the writes: this store has no SQL, and the run "
                       "had no application canary (configuration app_canary)")
    split: dict[str, Any] = {}
    resynced: dict[str, Any] = {}
    if meta.get("drill") == "failback":
        split = _last_detail(tl, Kind.SPLIT_BRAIN_COUNTED)
        resynced = _last_detail(tl, Kind.RESYNCED)
        split_n = split.get("split_brain_writes")
        if split_n and split_n > targets["max_lost_writes"]:
            reasons.append(f"{split_n} split-brain writes acknowledged by the old primary "
                           "after the promotion are lost")
    # the control records experiment-ended only when it finishes the run; a runner killed
    # mid-run leaves the samples it stored (the recorder flushes every 250 ms) without it
    lost = _recorder_lost(tl)
    incomplete = not tl.events_of(Kind.EXPERIMENT_ENDED) or bool(lost)
    if not tl.events_of(Kind.EXPERIMENT_ENDED):
        reasons.append("incomplete run: the runner stopped before the end (killed or crashed); "
                       "the numbers come from the samples stored until then")
    reasons += lost
    repl = instants.replication_at(tl, t_fault if t_fault is not None else float("inf"),
                                  primary=roles.primary["name"], standby=roles.secondary["name"])
    rto_i, write_i = failover.rto, failover.instants.get("first_write_s")
    summary: Summary = {
        "schema": SCHEMA,
        "experiment": meta.get("experiment"),
        "experiment_id": meta.get("experiment_id"),
        "drill": meta.get("drill", "failover"),
        "run_id": meta.get("run_id"),
        "started_at": meta.get("anchor_utc"),
        "duration_s": _duration(tl),
        "lab": meta.get("lab"),
        "verdict": Verdict.ABORTED if tl.events_of(Kind.ABORTED) else Verdict.FAIL if reasons
        else Verdict.PASS,
        "reasons": reasons,
        "targets": targets,
        "rto_s": _r(rto_i.at_s) if rto_i else None,
        "rto_error_s": _r(rto_i.error_s) if rto_i else None,
        "write_rto_s": _r(write_i.at_s) if write_i else None,
        "write_rto_error_s": _r(write_i.error_s) if write_i else None,
        "downtime_s": _r(failover.downtime),
        "downtime_error_s": _r(failover.downtime_error),
        "rpo_s": _r(accounting.rpo_s) if accounting else
        (app["rpo_s"] if app is not None and not db_canary else None),
        "rpo_error_s": _r(accounting.rpo_error_s) if accounting else
        (app["rpo_error_s"] if app is not None and not db_canary else None),
        "phases": {n: _r(i.at_s) for n, i in failover.instants.items()},
        "phase_detail": {n: i.to_dict() for n, i in failover.instants.items()},
        "writes": writes if db_canary or app is None else app["writes"],
        "writes_detail": _writes_detail(accounting, t_fault, meta),
        # the mode as observed at the fault (the primary's view of its standby), which is
        # what decided the loss; the lab's configured mode beside it
        "replication": {"mode": _observed_mode(repl.get("sync_state")) or meta.get("replication"),
                        "configured": meta.get("replication"),
                        "sync_state": repl.get("sync_state"),
                        "lag_at_fault_s": repl.get("lag_at_fault_s")},
        "faults": _faults(tl, t_fault),
        "promotion": _promotion(tl, t_fault, roles, failover),
        "failback": None,
        "t_fault_effective_s": _r(t_effective - t_fault) if t_effective is not None and
        t_fault is not None else None,
        "samplers": stats.sampler_stats(tl),
        "configuration": meta.get("configuration", {}),
        "incomplete": incomplete,
        "notes": failover.notes,
    }
    summary["dns"] = {
        "resolvers": _resolvers(tl, t_fault, roles),
        "authority": authority_detection(failover.instants.get("dns_authoritative_s"),
                                         roles.primary["name"], meta.get("configuration")),
    }
    flaps = _flapping(tl, t_fault, roles, failover)
    if flaps:
        summary["flapping"] = flaps
    if app is not None:
        summary["app_writes"] = app
    held = _hold(tl, t_fault)
    if held is not None:
        summary["hold"] = held
    if meta.get("drill") == "failback":
        summary["failback"] = failback_block(summary, split, resynced)
    elif meta.get("failback"):
        # a game day whose failback ran: one report covers both (the failback run stored
        # its block here, so this run renders alone, with no other directory needed)
        fb = meta["failback"]
        summary["failback"] = fb
        if fb.get("verdict") in (Verdict.FAIL, Verdict.ABORTED):
            summary["reasons"] = [*reasons, *[f"failback: {r}" for r in fb.get("reasons", [])]]
            if summary["verdict"] == Verdict.PASS:
                summary["verdict"] = Verdict.FAIL
    return summary


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Failover:
    """The instants of one drill: every phase of the registry, RTO and downtime."""

    instants: dict[str, Instant]
    rto: Instant | None
    downtime: float | None
    downtime_error: float | None
    notes: dict[str, str]


def _failover(tl: reader.Timeline, t_fault: float | None) -> _Failover:
    if t_fault is None:
        return _Failover(instants={n: instants.missing("no fault") for n in phases.NAMES},
                         rto=None, downtime=None, downtime_error=None, notes={})
    meta = tl.meta
    roles = phases.Roles.from_meta(meta)
    k = int(meta.get("k_consecutive", rtos.K_CONSECUTIVE))
    found = phases.measure_all(tl, t_fault, roles)
    rto_i = rtos.rto(tl, t_fault, roles.secondary["name"], k)
    until = (t_fault + rto_i.at_s) if rto_i.at_s is not None else None
    downtime, downtime_err = rtos.downtime(tl, t_fault, until)
    notes = {name: inst.reason or "not observed" for name, inst in found.items()
             if inst.at_s is None}
    return _Failover(instants=found, rto=rto_i, downtime=downtime,
                     downtime_error=downtime_err, notes=notes)


def _writes(tl: reader.Timeline, present: Mapping[int, int] | None, t_fault: float | None
            ) -> tuple[Writes, writes.WriteAccounting | None]:
    """Jepsen set accounting of the canary against the rows read from the new primary."""
    if present is None:
        return Writes(attempted=None, acked=None, lost=None, recovered=None,
                      unknown_absent=None, unexpected=None, duplicate=None), None
    meta = tl.meta
    start_seq = int(meta.get("start_seq", 1))
    cutoff, live = meta.get("final_read_t"), bool(meta.get("final_read_live"))
    accounting = writes.account_run(tl, present, t_fault=t_fault, start_seq=start_seq,
                                    cutoff=cutoff, live=live)
    return accounting.counts(), accounting


# how many numbers the application returned that its canary never sent are listed by name
NEVER_SENT_SHOWN = 10
# a write RTO of the application this much longer than the database's is named
WRITE_RTO_GAP_S = 1.0
# where both lost writes, RPOs further apart than this (and than their error bars) are named
RPO_GAP_S = 0.1


def _app_writes(tl: reader.Timeline, t_fault: float | None, secondary: str,
                failover: _Failover, db: writes.WriteAccounting | None) -> AppWrites | None:
    """The application canary's block (None: the run had none): its attempts classified by
    the database canary's accounting against what the application's read-back returned."""
    meta = tl.meta
    if "app_start_seq" not in meta:
        return None
    start = int(meta["app_start_seq"])
    attempts = tl.app_attempts()
    read = tl.app_read_back()
    live = bool(meta.get("app_read_live"))
    found = None if read is None else app_canary.classify(
        attempts, read, t_fault=t_fault, start=start,
        cutoff=meta.get("app_read_t") if live else None, live=live)
    acc = found.accounting if found is not None else None
    if acc is not None:
        counts = acc.counts()
    else:
        counts = Writes(attempted=len(attempts),
                        acked=sum(1 for a in attempts if a.outcome == "ok"), lost=None,
                        recovered=None, unknown_absent=None, unexpected=None, duplicate=None)
    rto_at = rto_err = None
    if t_fault is not None:
        t_ack, last_fail = tl.first_app_ack(t_fault, secondary)
        if t_ack is not None:
            rto_at = t_ack - t_fault
            rto_err = t_ack - last_fail if last_fail is not None else None
    window = acc.loss_window if acc is not None else None
    block: AppWrites = {
        "writes": counts,
        "read_back": found.read_back if found is not None else None,
        "never_sent": list(found.never_sent[:NEVER_SENT_SHOWN]) if found is not None else [],
        "lost_ranges": writes.seq_ranges(acc.lost_seqs) if acc is not None else [],
        "lost_after_fault": acc.lost_after_fault if acc is not None else None,
        "loss_window_s": None if window is None or t_fault is None else
        [_r(window[0] - t_fault), _r(window[1] - t_fault)],
        "lost_by_region": acc.lost_by_server if acc is not None else {},
        "write_rto_s": _r(rto_at),
        "write_rto_error_s": _r(rto_err),
        "rpo_s": _r(acc.rpo_s) if acc is not None else None,
        "rpo_error_s": _r(acc.rpo_error_s) if acc is not None else None,
        "read_from": meta.get("app_read_from") if read is not None else None,
        "read_error": meta.get("app_read_error") if read is None else None,
        "differences": [],
    }
    if read is None and not block["read_error"]:
        block["read_error"] = "the application canary's numbers were not read back (the " \
                              "run stopped before its end)"
    block["differences"] = _differences(block, found, db, failover)
    return block


def _differences(app: AppWrites, found: app_canary.AppWrites | None,
                 db: writes.WriteAccounting | None, failover: _Failover) -> list[str]:
    """What the two canaries disagree on, in words a post-mortem can use."""
    out: list[str] = []
    if found is not None:
        out += found.notes()
    # The counts are not compared with each other: each canary writes at its own rate (the
    # database's thousands a second, the application's as fast as it answers), so the same
    # loss window costs them different counts. Whether each lost, and where its data ends
    # (the RPO, a time), are what they can disagree on.
    app_lost = app["writes"]["lost"]
    if app_lost is not None and db is not None:
        if app_lost and not db.lost:
            out.append(f"the application acknowledged {app_lost} writes it cannot read back "
                       "while the database canary lost none: users lost writes the database "
                       "canary did not see (lost between the application and the database "
                       "it watches: the application's buffer or cache, or a datastore of "
                       "its own)")
        elif db.lost and not app_lost:
            out.append(f"the database canary lost {db.lost} acknowledged writes and the "
                       "application canary none: the application's writes survived the loss "
                       "(it waits for more durability, or writes elsewhere), or it wrote too "
                       "few in the loss window to lose one")
        elif app_lost and db.lost and app["rpo_s"] is not None:
            gap = app["rpo_s"] - db.rpo_s
            bars = (app["rpo_error_s"] or 0.0) + (db.rpo_error_s or 0.0)
            if abs(gap) > max(RPO_GAP_S, bars):
                out.append(f"the application's data ends {abs(gap):.3f} s "
                           f"{'earlier' if gap > 0 else 'later'} than the database's (RPO "
                           f"{app['rpo_s']:.3f} s against {db.rpo_s:.3f} s): "
                           + ("the application lost writes the database kept (its buffer "
                              "or cache, or a datastore of its own)" if gap > 0 else
                              "the application's own writes reached the standby sooner "
                              "than the database canary's"))
    first_write = failover.instants.get("first_write_s")
    db_rto = first_write.at_s if first_write is not None else None
    app_rto = app["write_rto_s"]
    if app_rto is not None and db_rto is not None and app_rto - db_rto > WRITE_RTO_GAP_S:
        out.append(f"the application took its first write {app_rto - db_rto:.3f} s after the "
                   f"database took the canary's ({app_rto:.3f} s against {db_rto:.3f} s "
                   "after the fault): the time users waited on the application itself "
                   "(its DNS, connection pool or health checks)")
    elif app_rto is None and db_rto is not None:
        out.append("the database took writes again after the fault, but no application "
                   "canary write was acknowledged by the secondary region")
    return out


def _database_canary_s(reason: str) -> bool:
    """A reason of the database canary's accounting (`_reasons`), named as such once the
    application canary's stand beside it."""
    return (" acknowledged writes lost (at most " in reason
            or reason.startswith("integrity failure:"))


def _app_reasons(reasons: list[str], app: AppWrites, targets: Targets) -> list[str]:
    """The verdict with the application canary: `max_lost_writes` applies to each canary,
    and each reason names the canary that missed."""
    named = [f"database canary: {r}" if _database_canary_s(r) else r for r in reasons]
    w = app["writes"]
    if w["lost"] is None:
        named.append(f"application canary: {app['read_error']}; its lost writes are unknown")
        return named
    if w["lost"] > targets["max_lost_writes"]:
        named.append(f"application canary: {w['lost']} acknowledged writes lost (at most "
                     f"{targets['max_lost_writes']} allowed)")
    if w["unexpected"] or w["duplicate"]:
        named.append(f"application canary: integrity failure: {w['unexpected']} unexpected "
                     f"and {w['duplicate']} duplicate numbers read back")
    return named


def _writes_detail(accounting: writes.WriteAccounting | None, t_fault: float | None,
                   meta: Mapping[str, Any]) -> WritesDetail | None:
    if accounting is None:
        return None
    window = accounting.loss_window
    return {
        "not_durable": accounting.not_durable,
        "lost_ranges": writes.seq_ranges(accounting.lost_seqs),
        "lost_after_fault": accounting.lost_after_fault,
        "loss_window_s": None if window is None or t_fault is None else
        [_r(window[0] - t_fault), _r(window[1] - t_fault)],
        "lost_by_server": accounting.lost_by_server,
        "read_from": meta.get("final_read_server"),
    }


def _reasons(tl: reader.Timeline, targets: Targets, failover: _Failover,
             accounting: writes.WriteAccounting | None, rows_read: bool) -> list[str]:
    """Why the verdict is fail, in the order a reader needs them; empty when it passes."""
    reasons: list[str] = []
    for _t, _kind, _region, detail in tl.events_of(Kind.FAULT_LEFT_BEHIND):
        reasons.append("fault left behind: " + "; ".join(
            events.detail(detail).get("faults") or ["unknown"]) + "; run `gameday recover`")
    if failover.rto is None:
        reasons.append("no fault was injected (the steady state before the fault was not met "
                       "or the run stopped early)")
    if not rows_read:
        reasons.append("the canary table was not read, so lost writes are unknown")
    if failover.rto is not None:
        rto_s = _r(failover.rto.at_s)
        if rto_s is None:
            reasons.append(f"RTO not observed: {failover.rto.reason}")
        elif rto_s > targets["rto_s"]:
            reasons.append(f"RTO {rto_s:.3f} s exceeds the target {targets['rto_s']:g} s")
    if accounting is not None:
        rpo_s = _r(accounting.rpo_s)
        if rpo_s is not None and rpo_s > targets["rpo_s"]:
            reasons.append(f"RPO {rpo_s:.3f} s exceeds the target {targets['rpo_s']:g} s")
        if accounting.lost > targets["max_lost_writes"]:
            reasons.append(f"{accounting.lost} acknowledged writes lost "
                           f"(at most {targets['max_lost_writes']} allowed)")
        if accounting.unexpected or accounting.duplicate:
            reasons.append(f"integrity failure: {accounting.unexpected} unexpected and "
                           f"{accounting.duplicate} duplicate canary rows")
    for when in STEADY_STATE_NOT_MET:
        for _t, _kind, _region, detail in tl.events_of(STEADY_STATE_NOT_MET[when]):
            probes = ", ".join(events.detail(detail).get("probes") or []) or "unknown"
            reasons.append(f"steady state {when} the method not met (probes: {probes})")
    aborted = tl.events_of(Kind.ABORTED)
    for _t, _kind, _region, detail in aborted[:1]:
        reasons.insert(0, f"aborted: {events.detail(detail).get('reason')}; the "
                          "rollbacks ran")
    if tl.events_of(Kind.INTERRUPTED) and not aborted:
        reasons.append("interrupted by a signal (Ctrl-C or SIGTERM): the rollbacks ran")
    for _t, _kind, _region, detail in tl.events_of(Kind.STEP_FAILED):
        d = events.detail(detail)
        reasons.append(f"step {d.get('step')} failed: {d.get('error')}")
    for _t, _kind, _region, detail in tl.events_of(Kind.GATE_FAILED):
        reasons.append("not ready for a fault: " +
                       "; ".join(events.detail(detail).get("reasons") or []))
    return reasons


def _promotion(tl: reader.Timeline, t_fault: float | None, roles: phases.Roles,
               failover: _Failover) -> PromotionRecord:
    """Who promoted, what they said, and what the recorder saw: the measured instant is the
    observed one; the promoter's own report is a cross-check beside it."""
    meta = tl.meta
    observed = failover.instants.get("promotion_s")
    runner = (instants.runner_promotion(tl, t_fault, roles.secondary["name"])
              if t_fault is not None else None)
    commands = tl.events_of(Kind.PROMOTION_COMMAND)
    command = None
    if commands:
        d = events.detail(commands[-1].detail)
        command = {"argv": d.get("argv"), "returncode": d.get("returncode"),
                   "took_s": d.get("took_s"),
                   "at_s": _r(commands[-1].t - t_fault) if t_fault is not None else None}
    return {
        "strategy": str((meta.get("promotion") or {}).get("strategy") or "runner"),
        "observed_s": _r(observed.at_s) if observed else None,
        "observed_by": observed.evidence if observed and observed.at_s is not None else None,
        "runner_reported_s": _r(runner.at_s) if runner else None,
        "command": command,
    }


def _faults(tl: reader.Timeline, t_fault: float | None) -> list[FaultRecord]:
    """Each fault with when it started to apply and when it was seen in effect."""
    faults: list[FaultRecord] = []
    effective = {(e.region, events.detail(e.detail).get("fault")): e.t
                 for e in tl.events_of(Kind.FAULT_EFFECTIVE)}
    for t, _k, region, detail in tl.events_of(Kind.FAULT_APPLIED):
        d = events.detail(detail)
        eff = effective.get((region, d.get("fault")))
        record: FaultRecord = {
            "region": region, "fault": d.get("fault"),
            "applied_s": _r(t - t_fault) if t_fault is not None else None,
            "effective_s": _r(eff - t_fault) if eff is not None and t_fault is not None else None,
        }
        if d.get("external"):
            # another extension's fault: in effect when the region first fails its health
            # check, the recorder's own evidence
            seen = instants.detection(tl, t, region) if region else None
            record["external"] = True
            record["provider"] = d.get("provider")
            record["effective_s"] = (_r(t - (t_fault or t) + seen.at_s)
                                     if seen and seen.at_s is not None else None)
        faults.append(record)
    for _t, _k, region, detail in tl.events_of(Kind.FAULT_NOT_APPLICABLE):
        d = events.detail(detail)
        faults.append({"region": region, "fault": d.get("fault"), "applied_s": None,
                       "effective_s": None, "not_applicable": d.get("reason")})
    return faults


def _resolvers(tl: reader.Timeline, t_fault: float | None,
               roles: phases.Roles) -> list[ResolverFlip]:
    """Each resolver's flip, the slowest marked (the DNS phase of the budget)."""
    if t_fault is None:
        flips = [(r, instants.missing("no fault")) for r in roles.resolvers]
    else:
        flips = phases.resolver_flips(tl, t_fault, roles)
    worst = phases.slowest(flips) if t_fault is not None else None
    return [{"name": str(r.get("name")), "stream": str(r.get("stream")),
             "kind": r.get("kind"), "address": r.get("address"),
             "flip_s": _r(flip.at_s), "error_s": _r(flip.error_s),
             "evidence": flip.evidence, "reason": flip.reason,
             "slowest": worst is not None and worst[0] is r}
            for r, flip in flips]


def authority_detection(flip: Instant | None, region: str,
                        configuration: Mapping[str, Any] | None) -> AuthorityDetection:
    """The DNS authority's own detection, beside gameday's (the detection phase is gameday's
    first failed health check, which a Route 53-like authority with 30 s checks and three
    failures reaches a minute and a half later): the authoritative flip against the
    authority's health-check budget, interval × failures + timeout, from the same
    parameters as the detection phase's budget (dns.health). The flip's true instant lies
    within its error bar before it, so it is within the budget when the flip is, beyond it
    only when the bar's start is, and undecided between."""
    p = phases.parameters(configuration)
    interval, failures, timeout = (p["health_interval_s"], p["health_failures"],
                                   p["health_timeout_s"])
    budget = round(interval * failures + timeout, 4)
    basis = (f"its health-check budget of {budget:g} s ({interval:g} s × {failures:g} + "
             f"{timeout:g} s)")
    at = flip.at_s if flip is not None else None
    err = flip.error_s if flip is not None else None
    within: bool | None = None
    if at is None:
        reason = (flip.reason if flip is not None else None) or "no authoritative flip"
        verdict = (f"the DNS authority was not seen withdrawing {region} ({reason}); "
                   f"{basis}")
    else:
        seen = f"{at:.3f} s" + (f" ± {err:.3f} s" if err is not None else "")
        where, note = "at the edge of", " (the budget falls inside the error bar)"
        if at <= budget:
            within, where, note = True, "within", ""
        elif at - (err or 0.0) > budget:
            within, where, note = False, f"{at - budget:.3f} s beyond", ""
        verdict = f"the DNS authority withdrew {region} after {seen}, {where} {basis}{note}"
    return {"region": region, "withdrawn_s": _r(at), "error_s": _r(err), "budget_s": budget,
            "interval_s": interval, "failures": failures, "timeout_s": timeout,
            "within": within, "verdict": verdict}


FLAP_WINDOW_S = 120.0


def _flapping(tl: reader.Timeline, t_fault: float | None, roles: phases.Roles,
              failover: _Failover) -> dict[str, Flapping]:
    """DNS servers that answered both regions, back and forth, after the fault: PowerDNS's
    `ifurlup` picks at random among the addresses while both look down, so the resolver
    can flip before the authority. Read from the fault to the RTO (or FLAP_WINDOW_S), so
    an 8-hour run reads only the minutes that matter."""
    if t_fault is None:
        return {}
    names = {roles.primary["name"], roles.secondary["name"]}
    region_of = instants.answer_class(roles.endpoints())
    rto_at = failover.rto.at_s if failover.rto is not None else None
    until = t_fault + (rto_at if rto_at is not None else FLAP_WINDOW_S)
    out: dict[str, Flapping] = {}
    for server in tl.names("dns"):
        stream = tl.stream("dns", server)
        last: str | None = None
        changes: list[float] = []
        for row in stream.rows(stream.at(t_fault)):
            if row.t > until:
                break
            region = region_of(row) if row.ok else None
            if region not in names:
                continue  # a failed query, or a mixed or unknown answer: neither region
            if last is not None and region != last:
                changes.append(row.t - t_fault)
            last = region
        if len(changes) >= 2:  # flipped, and flipped back at least once
            out[server] = {"changes": len(changes), "from_s": _r(changes[0]),
                           "to_s": _r(changes[-1])}
    return out


def _hold(tl: reader.Timeline, t_fault: float | None) -> Hold | None:
    """The hold's availability, when the run held the service in a region (a long drill)."""
    h = holds.hold(tl)
    if h is None:
        return None
    held_s = h.end - h.start
    before, after = h.timeline_bytes
    per_hour = (round((after - before) / 1e6 * 3600 / held_s, 2)
                if before is not None and after is not None and held_s > 0 else None)
    return {
        "region": h.region, "planned_s": h.planned_s, "held_s": round(held_s, 3),
        "start_s": _r(h.start - t_fault) if t_fault is not None else None,
        "ended": h.ended, "global_requests": h.global_requests, "global_ok": h.global_ok,
        "success_ratio": (round(h.global_ok / h.global_requests, 6)
                          if h.global_requests else None),
        "served_by_region": h.served_by_region, "canary_attempts": h.canary_attempts,
        "canary_errors": h.canary_errors, "checks": h.checks, "checks_failed": h.checks_failed,
        "timeline_mb_per_hour": per_hour,
    }


def _duration(tl: reader.Timeline) -> float | None:
    """The drill's duration on the run's clock: from its start to its end (or to the last
    event of a run whose runner stopped before the end)."""
    started = tl.events_of(Kind.EXPERIMENT_STARTED)
    if not started:
        return None
    ended = tl.events_of(Kind.EXPERIMENT_ENDED) or tl.events
    return round(max(0.0, ended[-1].t - started[0].t), 3)


def failback_block(s: Summary, split: Mapping[str, Any], resynced: Mapping[str, Any]) -> Failback:
    """The `failback` block of summary.json (docs/design.md, The summary), from a failback run:
    it carries what the game day's report, JUnit and metrics need of the failback, so they
    are built from the game day's summary.json alone."""
    return {
        "experiment": s["experiment"], "experiment_id": s.get("experiment_id"),
        "started_at": s["started_at"], "duration_s": s.get("duration_s"),
        "rto_s": s["rto_s"], "rto_error_s": s["rto_error_s"],
        "write_rto_s": s["write_rto_s"], "downtime_s": s["downtime_s"],
        "lost": s["writes"].get("lost"),
        "split_brain_writes": split.get("split_brain_writes"),
        "unreplicated_writes": split.get("unreplicated_writes"),
        "split_brain_window_utc": split.get("window_utc"),
        "resync_method": resynced.get("method"), "resync_s": resynced.get("resync_s"),
        "catch_up_s": resynced.get("catch_up_s"),
        "phases": s["phases"], "verdict": s["verdict"], "reasons": s["reasons"],
        "run_id": s["run_id"], "strategy": s["promotion"]["strategy"],
        "command": s["promotion"]["command"],
    }


def _observed_mode(sync_state: str | None) -> str | None:
    return {"sync": "sync", "quorum": "sync", "async": "async", "potential": "async"}.get(
        sync_state or "")


def _recorder_lost(tl: reader.Timeline) -> list[str]:
    """Why part of the run went unrecorded: the recorder died (the runner saw it exit
    unbidden), was killed before its last records, or stopped with canary writes still
    unanswered (their outcome missing: a committed one would read as unexpected)."""
    reasons = []
    for e in tl.events_of(Kind.RECORDER_DIED):
        d = events.detail(e.detail)
        reasons.append(f"incomplete run: the recorder died {e.t:.1f} s into the run (exit "
                       f"code {d.get('exit_code')}: {d.get('last_line')}); nothing was "
                       "measured after that")
    for e in tl.events_of(Kind.RECORDER_KILLED):
        d = events.detail(e.detail)
        reasons.append(f"incomplete run: the recorder did not write its last records within "
                       f"{d.get('waited_s')} s of the stop and was killed; what it held "
                       "then is missing")
    for e in tl.events_of(Kind.RECORDER_STOPPED):
        n = events.detail(e.detail).get("unanswered")
        if n:
            reasons.append(f"incomplete run: {n} canary writes were still unanswered when the "
                           "recorder stopped; their outcome is missing")
    return reasons


def _last_detail(tl: reader.Timeline, kind: Kind) -> dict[str, Any]:
    found = tl.events_of(kind)
    return events.detail(found[-1].detail) if found else {}


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(v, nd)
