"""Build summary.json (DESIGN section 4) from a stored run, with no lab needed.

Reading the new primary's canary table is the only step that needs the lab; it is stored
in the timeline (`final_rows`) by `snapshot_rows`, so a report can be regenerated later
from the run directory alone and gives the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

from gameday.errors import TargetError
from gameday.labs.descriptor import Lab
from gameday.measure import metrics, timeline

SCHEMA = "gameday.summary/v1"


def snapshot_rows(run_dir: Path, lab: Lab, t_read: float, *, live: bool) -> int:
    """Read the canary rows of this run from the writable primary into the timeline."""
    meta = timeline.read_meta(run_dir)
    start_seq = int(meta.get("start_seq", 1))
    try:
        with psycopg.connect(lab.writer_dsn(), autocommit=True) as conn:
            rows = conn.execute(
                f"SELECT seq, count(*) FROM {lab.database.canary_table} WHERE seq >= %s "
                "GROUP BY seq", (start_seq,)).fetchall()
            server = conn.info.hostaddr
    except psycopg.Error as exc:
        raise TargetError(f"cannot read the canary table from the writable primary "
                          f"({type(exc).__name__})") from None
    conn2 = timeline.connect(run_dir)
    try:
        conn2.execute("BEGIN IMMEDIATE")  # take the write lock now: the recorder writes too
        conn2.execute("CREATE TABLE IF NOT EXISTS final_rows (seq INTEGER, n INTEGER)")
        conn2.execute("DELETE FROM final_rows")
        conn2.executemany("INSERT INTO final_rows VALUES (?, ?)", rows)
        conn2.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
            ("final_read_t", json.dumps(t_read)),
            ("final_read_server", json.dumps(server)),
            ("final_read_live", json.dumps(live)),
        ])
        conn2.execute("COMMIT")
    finally:
        conn2.close()
    return len(rows)


def load(run_dir: Path) -> tuple[metrics.Timeline, Mapping[int, int] | None]:
    """The stored timeline and the rows read from the new primary (None when not read).
    Both stay in the run's database, open until `tl.close()`."""
    conn = timeline.connect(run_dir)
    try:
        tl = metrics.load(conn)
        has_rows = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'final_rows'").fetchone()
    except BaseException:
        conn.close()
        raise
    return tl, (metrics.FinalRows(conn) if has_rows else None)


def build(run_dir: Path) -> dict[str, Any]:
    tl, present = load(run_dir)
    try:
        return compute(tl, present)
    finally:
        tl.close()


def compute(tl: metrics.Timeline, present: Mapping[int, int] | None) -> dict[str, Any]:
    meta = tl.meta
    targets = meta.get("targets", {"rto_s": 30.0, "rpo_s": 0.0, "max_lost_writes": 0})
    k = int(meta.get("k_consecutive", metrics.K_CONSECUTIVE))
    primary, secondary = meta["regions"]["primary"], meta["regions"]["secondary"]
    t_fault, t_effective = metrics.fault_time(tl)
    reasons: list[str] = []
    notes: dict[str, str] = {}
    phases: dict[str, Any] = {}
    rto_i = write_i = None
    downtime = downtime_err = None
    if t_fault is None:
        reasons.append("no fault was injected (the steady state before the fault was not met "
                       "or the run stopped early)")
        phase_names = ("detection_s", "promotion_s", "dns_authoritative_s", "dns_resolver_s",
                       "first_success_s", "first_write_s")
        phases = dict.fromkeys(phase_names)
        phase_detail = {n: metrics.missing("no fault").to_dict() for n in phase_names}
    else:
        instants = {
            "detection_s": metrics.detection(tl, t_fault, primary["name"]),
            "promotion_s": metrics.promotion(tl, t_fault, secondary["name"]),
            "dns_authoritative_s": metrics.dns_flip(tl, t_fault, "authoritative",
                                                    secondary["address"]),
            "dns_resolver_s": metrics.dns_flip(tl, t_fault, "resolver", secondary["address"]),
            "first_success_s": metrics.first_success(tl, t_fault, secondary["name"]),
            "first_write_s": metrics.first_write(tl, t_fault, {secondary["db_host"]}),
        }
        phases = {n: _r(i.at_s) for n, i in instants.items()}
        phase_detail = {n: i.to_dict() for n, i in instants.items()}
        rto_i = metrics.rto(tl, t_fault, secondary["name"], k)
        write_i = instants["first_write_s"]
        until = (t_fault + rto_i.at_s) if rto_i.at_s is not None else None
        downtime, downtime_err = metrics.downtime(tl, t_fault, until)
        for name, inst in instants.items():
            if inst.at_s is None:
                notes[name] = inst.reason or "not observed"

    writes: dict[str, Any]
    accounting = None
    if present is None:
        writes = dict.fromkeys(("attempted", "acked", "lost", "recovered", "unknown_absent",
                                "unexpected", "duplicate"))
        reasons.append("the canary table was not read, so lost writes are unknown")
    else:
        start_seq = int(meta.get("start_seq", 1))
        cutoff, live = meta.get("final_read_t"), bool(meta.get("final_read_live"))
        if isinstance(present, metrics.FinalRows) and present.conn is tl.store:
            # a stored run: counted in its database, where the rows lie
            accounting = metrics.account_stored_writes(
                tl.store, t_fault=t_fault, start_seq=start_seq, cutoff=cutoff, live=live)
        else:
            accounting = metrics.account_writes(
                tl.canary, present, t_fault=t_fault, start_seq=start_seq, cutoff=cutoff,
                live=live)
        writes = accounting.counts()

    rto_s = _r(rto_i.at_s) if rto_i else None
    rpo_s = _r(accounting.rpo_s) if accounting else None
    if t_fault is not None:
        if rto_s is None:
            reasons.append(f"RTO not observed: {rto_i.reason if rto_i else 'no fault'}")
        elif rto_s > targets["rto_s"]:
            reasons.append(f"RTO {rto_s:.3f} s exceeds the target {targets['rto_s']:g} s")
    if accounting is not None:
        if rpo_s is not None and rpo_s > targets["rpo_s"]:
            reasons.append(f"RPO {rpo_s:.3f} s exceeds the target {targets['rpo_s']:g} s")
        if accounting.lost > targets["max_lost_writes"]:
            reasons.append(f"{accounting.lost} acknowledged writes lost "
                           f"(at most {targets['max_lost_writes']} allowed)")
        if accounting.unexpected or accounting.duplicate:
            reasons.append(f"integrity failure: {accounting.unexpected} unexpected and "
                           f"{accounting.duplicate} duplicate canary rows")
    for when in ("before", "after"):
        for _t, _kind, _region, detail in tl.events_of(f"steady-state-{when}-not-met"):
            probes = ", ".join(json.loads(detail or "{}").get("probes") or []) or "unknown"
            reasons.append(f"steady state {when} the method not met (probes: {probes})")
    if tl.events_of("interrupted"):
        reasons.append("interrupted by a signal (Ctrl-C or SIGTERM): the rollbacks ran")
    for _t, _kind, _region, detail in tl.events_of("step-failed"):
        d = json.loads(detail or "{}")
        reasons.append(f"step {d.get('step')} failed: {d.get('error')}")
    for _t, _kind, _region, detail in tl.events_of("gate-failed"):
        reasons.append("not ready for a fault: " +
                       "; ".join(json.loads(detail or "{}").get("reasons") or []))
    repl = metrics.replication_at(tl, t_fault if t_fault is not None else float("inf"),
                                  primary=primary["name"], standby=secondary["name"])
    faults = []
    applied = tl.events_of("fault-applied")
    effective = {(e[2], json.loads(e[3] or "{}").get("fault")): e[0]
                 for e in tl.events_of("fault-effective")}
    for t, _k, region, detail in applied:
        d = json.loads(detail or "{}")
        eff = effective.get((region, d.get("fault")))
        faults.append({
            "region": region, "fault": d.get("fault"),
            "applied_s": _r(t - t_fault) if t_fault is not None else None,
            "effective_s": _r(eff - t_fault) if eff is not None and t_fault is not None else None,
        })
    for _t, _k, region, detail in tl.events_of("fault-not-applicable"):
        d = json.loads(detail or "{}")
        faults.append({"region": region, "fault": d.get("fault"), "applied_s": None,
                       "effective_s": None, "not_applicable": d.get("reason")})
    if meta.get("drill") == "failback":
        split = _last_detail(tl, "split-brain-counted")
        resynced = _last_detail(tl, "resynced")
        split_n = split.get("split_brain_writes")
        if split_n and split_n > targets["max_lost_writes"]:
            reasons.append(f"{split_n} split-brain writes acknowledged by the old primary "
                           "after the promotion are lost")
    # the control records experiment-ended only when it finishes the run; a runner killed
    # mid-run leaves the samples it stored (the recorder flushes every 250 ms) without it
    incomplete = not tl.events_of("experiment-ended")
    if incomplete:
        reasons.append("incomplete run: the runner stopped before the end (killed or crashed); "
                       "the numbers come from the samples stored until then")
    summary = {
        "schema": SCHEMA,
        "experiment": meta.get("experiment"),
        "drill": meta.get("drill", "failover"),
        "run_id": meta.get("run_id"),
        "started_at": meta.get("anchor_utc"),
        "lab": meta.get("lab"),
        "verdict": "fail" if reasons else "pass",
        "reasons": reasons,
        "targets": targets,
        "rto_s": rto_s,
        "rto_error_s": _r(rto_i.error_s) if rto_i else None,
        "write_rto_s": _r(write_i.at_s) if write_i else None,
        "write_rto_error_s": _r(write_i.error_s) if write_i else None,
        "downtime_s": _r(downtime),
        "downtime_error_s": _r(downtime_err),
        "rpo_s": rpo_s,
        "rpo_error_s": _r(accounting.rpo_error_s) if accounting else None,
        "phases": phases,
        "phase_detail": phase_detail,
        "writes": writes,
        "writes_detail": None if accounting is None else {
            "not_durable": accounting.not_durable,
            "lost_ranges": metrics.seq_ranges(accounting.lost_seqs),
            "lost_after_fault": accounting.lost_after_fault,
            "loss_window_s": None if accounting.loss_window is None or t_fault is None else
            [_r(accounting.loss_window[0] - t_fault), _r(accounting.loss_window[1] - t_fault)],
            "lost_by_server": accounting.lost_by_server,
            "read_from": meta.get("final_read_server"),
        },
        # the mode as observed at the fault (the primary's view of its standby), which is
        # what decided the loss; the lab's configured mode beside it
        "replication": {"mode": _observed_mode(repl.get("sync_state")) or meta.get("replication"),
                        "configured": meta.get("replication"), **repl},
        "faults": faults,
        "failback": None,
        "t_fault_effective_s": _r(t_effective - t_fault) if t_effective is not None and
        t_fault is not None else None,
        "samplers": metrics.sampler_stats(tl),
        "configuration": meta.get("configuration", {}),
        "incomplete": incomplete,
        "notes": notes,
    }
    if meta.get("drill") == "failback":
        summary["failback"] = failback_block(summary, split, resynced)
    elif meta.get("failback"):
        # a game day whose failback ran: one report covers both (the failback run stored
        # its block here, so this run renders alone, with no other directory needed)
        fb = meta["failback"]
        summary["failback"] = fb
        if fb.get("verdict") == "fail":
            summary["reasons"] = [*reasons, *[f"failback: {r}" for r in fb.get("reasons", [])]]
            summary["verdict"] = "fail"
    return summary


def failback_block(s: dict[str, Any], split: dict[str, Any], resynced: dict[str, Any]) -> dict[str, Any]:
    """The `failback` block of summary.json (DESIGN section 4), from a failback run."""
    return {
        "rto_s": s["rto_s"], "rto_error_s": s["rto_error_s"],
        "write_rto_s": s["write_rto_s"], "downtime_s": s["downtime_s"],
        "lost": s["writes"].get("lost"),
        "split_brain_writes": split.get("split_brain_writes"),
        "unreplicated_writes": split.get("unreplicated_writes"),
        "split_brain_window_utc": split.get("window_utc"),
        "resync_method": resynced.get("method"), "resync_s": resynced.get("resync_s"),
        "catch_up_s": resynced.get("catch_up_s"),
        "phases": s["phases"], "verdict": s["verdict"], "reasons": s["reasons"],
        "run_id": s["run_id"],
    }


def _observed_mode(sync_state: str | None) -> str | None:
    return {"sync": "sync", "quorum": "sync", "async": "async", "potential": "async"}.get(
        sync_state or "")


def _last_detail(tl: metrics.Timeline, kind: str) -> dict[str, Any]:
    found = tl.events_of(kind)
    return json.loads(found[-1][3] or "{}") if found else {}


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(v, nd)
