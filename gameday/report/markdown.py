"""report.md: what a person reads first. Verdict, headline numbers against targets, RTO
phases, lost writes, the sequence of actions, then the details and where the raw data is.

Rendering is a pure function of summary.json and the stored events, so the same run always
renders to the same file.
"""

from __future__ import annotations

import json
from typing import Any

PHASE_LABELS = {
    "detection_s": "Detection (first failed health check of the primary)",
    "promotion_s": "Promotion (standby accepts writes)",
    "dns_authoritative_s": "DNS flip at the authoritative server",
    "dns_resolver_s": "DNS flip through the caching resolver",
    "first_success_s": "First global request served by the secondary",
    "first_write_s": "First canary write acknowledged by the new primary",
}


def _s(v: float | None, err: float | None = None) -> str:
    if v is None:
        return "not observed"
    text = f"{v:.3f} s"
    if err is not None:
        text += f" ± {err * 1000:.0f} ms"
    return text


def _ok(ok: bool | None) -> str:
    return "—" if ok is None else ("✅" if ok else "❌")


def render(summary: dict[str, Any], events: list[tuple] | None = None) -> str:
    s = summary
    t = s["targets"]
    w = s["writes"]
    lines: list[str] = []
    verdict = "PASS" if s["verdict"] == "pass" else "FAIL"
    lines.append(f"# Game day {s.get('run_id')}: {verdict}")
    lines.append("")
    lines.append(f"Experiment *{s.get('experiment')}* on the **{s.get('lab')}** lab, "
                 f"started {s.get('started_at')}.")
    if s.get("incomplete"):
        lines.append("")
        lines.append("> **Incomplete run**: the recorder did not stop cleanly; the numbers "
                     "below come from the samples stored before it ended.")
    lines.append("")
    if s["reasons"]:
        lines.append("**Why it failed:**")
        lines.extend(f"- {r}" for r in s["reasons"])
    else:
        lines.append("Every target was met and no integrity check failed.")
    lines.append("")
    lines.append("| Measure | Measured | Target | Met |")
    lines.append("|---|---|---|---|")
    rto = s["rto_s"]
    lines.append(f"| RTO (service) | {_s(rto, s.get('rto_error_s'))} | ≤ {t['rto_s']:g} s | "
                 f"{_ok(None if rto is None else rto <= t['rto_s'])} |")
    lines.append(f"| Write RTO | {_s(s['write_rto_s'], s.get('write_rto_error_s'))} | — | — |")
    lines.append(f"| Downtime (failing global requests) | "
                 f"{_s(s['downtime_s'], s.get('downtime_error_s'))} | — | — |")
    rpo = s["rpo_s"]
    lines.append(f"| RPO | {_s(rpo, s.get('rpo_error_s'))} | ≤ {t['rpo_s']:g} s | "
                 f"{_ok(None if rpo is None else rpo <= t['rpo_s'])} |")
    lost = w.get("lost")
    lines.append(f"| Lost acknowledged writes | {'unknown' if lost is None else lost} | "
                 f"≤ {t['max_lost_writes']} | "
                 f"{_ok(None if lost is None else lost <= t['max_lost_writes'])} |")
    lines.append("")
    lines.append("## RTO phases")
    lines.append("")
    lines.append("Seconds after the fault (`t_fault`); each from the sample that shows it, "
                 "± the gap to the previous sample of that stream.")
    lines.append("")
    lines.append("| Phase | At | Evidence |")
    lines.append("|---|---|---|")
    detail = s.get("phase_detail", {})
    for key, label in PHASE_LABELS.items():
        d = detail.get(key, {})
        at = _s(d.get("at_s"), d.get("error_s")) if d.get("at_s") is not None else \
            f"not observed: {d.get('reason')}"
        lines.append(f"| {label} | {at} | {d.get('evidence') or ''} |")
    lines.append("")
    lines.append("## Writes")
    lines.append("")
    wd = s.get("writes_detail") or {}
    repl = s.get("replication", {})
    lines.append(f"Replication at the fault: **{repl.get('mode') or 'unknown'}** "
                 f"(standby sync state `{repl.get('sync_state')}`), standby replay lag "
                 f"{_s(repl.get('lag_at_fault_s'))}.")
    lines.append("")
    lines.append("| attempted | acknowledged | lost | recovered | unknown, absent | unexpected | "
                 "duplicate | not durable |")
    lines.append("|---|---|---|---|---|---|---|---|")
    lines.append("| " + " | ".join(str(w.get(k)) for k in (
        "attempted", "acked", "lost", "recovered", "unknown_absent", "unexpected", "duplicate"))
        + f" | {wd.get('not_durable')} |")
    lines.append("")
    if wd.get("lost_ranges"):
        ranges = ", ".join(f"{a}–{b}" if a != b else str(a) for a, b in wd["lost_ranges"])
        lines.append(f"Lost sequence numbers: {ranges}; acknowledged by "
                     f"{json.dumps(wd.get('lost_by_server'))}; loss window "
                     f"{wd.get('loss_window_s')} s after the fault, "
                     f"{wd.get('lost_after_fault')} acknowledged after it.")
    else:
        lines.append(f"No acknowledged write was lost (table read from "
                     f"{wd.get('read_from') or 'the writable primary'}).")
    lines.append("")
    lines.append("## Faults")
    lines.append("")
    lines.append("| Region | Fault | Applied | In effect |")
    lines.append("|---|---|---|---|")
    for f in s.get("faults", []):
        if f.get("not_applicable"):
            lines.append(f"| {f['region']} | {f['fault']} | not applicable: "
                         f"{f['not_applicable']} | — |")
        else:
            lines.append(f"| {f['region']} | {f['fault']} | {_s(f['applied_s'])} | "
                         f"{_s(f['effective_s'])} |")
    lines.append("")
    if events:
        lines.append("## Sequence of actions")
        lines.append("")
        lines.append("| t (s from fault) | Event | Region | Detail |")
        lines.append("|---|---|---|---|")
        t0 = next((e[0] for e in events if e[1] == "fault-applied"), 0.0)
        for t_, kind, region, detail in events:
            d = json.loads(detail or "{}")
            text = ", ".join(f"{k}={v}" for k, v in sorted(d.items()))
            lines.append(f"| {t_ - t0:+.3f} | {kind} | {region or ''} | {text} |")
        lines.append("")
    lines.append("## Samplers")
    lines.append("")
    lines.append("| Stream | Samples | Errors | Interval p50 | Interval p99 |")
    lines.append("|---|---|---|---|---|")
    for name, st in s.get("samplers", {}).items():
        p50 = st["interval_p50_s"]
        p99 = st["interval_p99_s"]
        lines.append(f"| {name} | {st['samples']} | {st['errors']} | "
                     f"{'—' if p50 is None else f'{p50 * 1000:.1f} ms'} | "
                     f"{'—' if p99 is None else f'{p99 * 1000:.1f} ms'} |")
    lines.append("")
    lines.append("## Raw data")
    lines.append("")
    lines.append("Every sample is in `timeline.sqlite` next to this report (times in seconds "
                 "on the runner's monotonic clock; `meta.anchor_utc` is t = 0). For example:")
    lines.append("")
    lines.append("```sh")
    lines.append("sqlite3 timeline.sqlite \"SELECT t, server, answer FROM dns WHERE server = "
                 "'resolver' ORDER BY t\"")
    lines.append("sqlite3 timeline.sqlite \"SELECT seq, t_ack, server FROM canary WHERE outcome = "
                 "'ok' ORDER BY t_ack DESC LIMIT 5\"")
    lines.append("```")
    lines.append("")
    return "\n".join(lines)
