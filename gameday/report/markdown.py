"""report.md: what a person reads first. Top to bottom: the verdict with its reasons, the
headline numbers against targets, the RTO phases beside their budget (table, Mermaid gantt,
timeline image), the write accounting, the faults, the failback, probe statistics, the
configuration, the trend across runs, and where the raw data is.

Rendering is a pure function of summary.json, the stored events and the trend: no wall
clock, no absolute path, stable ordering, so the same run always renders the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from gameday.foundation.events import Kind
from gameday.measure import phases as registry
from gameday.measure.contract import Verdict, Writes
from gameday.measure.store.timeline import Event
from gameday.report import budget as budgets
from gameday.report import gantt
from gameday.report import trend as trends

TREND_RUNS = 10


def _s(v: float | None, err: float | None = None) -> str:
    if v is None:
        return "not observed"
    text = f"{v:.3f} s"
    if err is not None:
        text += f" ± {err * 1000:.0f} ms"
    return text


def _ok(ok: bool | None) -> str:
    return "—" if ok is None else ("✅" if ok else "❌")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _ranges(ranges: Sequence[Sequence[int]]) -> str:
    return ", ".join(f"{a}–{b}" if a != b else str(a) for a, b in ranges)


# --- pieces shared with the GitHub job summary ------------------------------------------


def title(s: Mapping[str, Any]) -> str:
    # a failback run measures the switchover back: its "fault" is the planned switchover,
    # its primary the region switched away from
    what = "Failback" if s.get("drill") == "failback" else "Game day"
    verdict = s.get("verdict")
    shown = str(verdict).upper() if verdict in (Verdict.PASS, Verdict.ABORTED) else "FAIL"
    return f"# {what} {s.get('run_id')}: {shown}"


def verdict_lines(s: Mapping[str, Any], trend: trends.Trend | None = None) -> list[str]:
    lines = []
    if s.get("verdict") == Verdict.ABORTED:
        lines.append("**Aborted by a stop condition; the drill was rolled back:**")
        lines.extend(f"- {r}" for r in s.get("reasons") or [])
    elif s.get("reasons"):
        lines.append("**Why it failed:**")
        lines.extend(f"- {r}" for r in s["reasons"])
    else:
        lines.append("**Verdict: PASS.** Every target was met and no integrity check failed.")
    if trend is not None and trend.regression:
        lines.append("")
        lines.append("**Regression against the trend:**")
        lines.extend(f"- {f}" for f in trend.flags)
    return lines


def headline(s: Mapping[str, Any]) -> list[str]:
    t = s["targets"]
    w = s.get("writes") or {}
    rto, rpo, lost = s.get("rto_s"), s.get("rpo_s"), w.get("lost")
    return [
        "| Measure | Measured | Target | Met |",
        "|---|---|---|---|",
        f"| RTO (service) | {_s(rto, s.get('rto_error_s'))} | ≤ {t['rto_s']:g} s | "
        f"{_ok(None if rto is None else rto <= t['rto_s'])} |",
        f"| Write RTO | {_s(s.get('write_rto_s'), s.get('write_rto_error_s'))} | — | — |",
        f"| Downtime (failing global requests) | "
        f"{_s(s.get('downtime_s'), s.get('downtime_error_s'))} | — | — |",
        f"| RPO | {_s(rpo, s.get('rpo_error_s'))} | ≤ {t['rpo_s']:g} s | "
        f"{_ok(None if rpo is None else rpo <= t['rpo_s'])} |",
        f"| Lost acknowledged writes{_whose_writes(s)} | "
        f"{'unknown' if lost is None else lost} | ≤ {t['max_lost_writes']} | "
        f"{_ok(None if lost is None else lost <= t['max_lost_writes'])} |",
        *(_app_headline(s) if database_canary(s) else []),
    ]


def database_canary(s: Mapping[str, Any]) -> bool:
    """Whether the run had a database canary (not on a store without SQL: then the
    summary's writes and RPO are the application canary's)."""
    return bool((s.get("configuration") or {}).get("database_canary", True))


def _whose_writes(s: Mapping[str, Any]) -> str:
    if not database_canary(s):
        return " (application canary)"
    return " (database canary)" if s.get("app_writes") else ""


def _app_headline(s: Mapping[str, Any]) -> list[str]:
    """The application canary's lost writes, judged by the same target (when it ran)."""
    app = s.get("app_writes")
    if not app:
        return []
    most = s["targets"]["max_lost_writes"]
    lost = (app.get("writes") or {}).get("lost")
    return [f"| Lost acknowledged writes (application canary) | "
            f"{'unknown' if lost is None else lost} | ≤ {most} | "
            f"{_ok(None if lost is None else lost <= most)} |"]


def mermaid(s: Mapping[str, Any]) -> list[str]:
    chart = gantt.render(s, budgets.derive(s.get("configuration")))
    return [] if chart is None else ["```mermaid", chart, "```"]


# --- the report -------------------------------------------------------------------------


def render(summary: Mapping[str, Any], events: Sequence[Event] | None = None, *,
           trend: trends.Trend | None = None, image: str | None = None) -> str:
    s = summary
    lines: list[str] = [title(s), ""]
    lines.append(f"Experiment *{s.get('experiment')}* on the **{s.get('lab')}** lab, "
                 f"started {s.get('started_at')}.")
    if s.get("incomplete"):
        lines += ["", "> **Incomplete run**: the recorder did not stop cleanly; the numbers "
                  "below come from the samples stored before it ended."]
    lines += ["", *verdict_lines(s, trend), "", *headline(s), ""]
    lines += _phases(s, image)
    if not database_canary(s):
        lines += _app_canary_alone(s, s.get("app_writes") or {})
    else:
        lines += _writes(s)
        if s.get("app_writes"):
            lines += _canaries(s, s["app_writes"])
    lines += _faults(s)
    if s.get("hold"):
        lines += _hold(s["hold"])
    if s.get("failback") is not None and s.get("drill") != "failback":
        lines += _failback(s["failback"])
    if events:
        lines += _events(events)
    lines += _samplers(s)
    lines += _configuration(s)
    lines += _trend(trend)
    lines += _raw(image)
    return "\n".join(lines)


def _phases(s: Mapping[str, Any], image: str | None) -> list[str]:
    budget = budgets.derive(s.get("configuration"))
    at = gantt.instants(s)
    detail = s.get("phase_detail") or {}
    lines = ["## RTO phases", "",
             "Seconds after the fault (`t_fault`), each from the sample that shows it, ± the gap "
             "to the previous sample of that stream. *Took* counts from the phase it waits for; "
             "the *budget* is that phase's deadline plus an allowance derived from the "
             "configuration (see *Configuration* below, and gameday's DR runbook, "
             "`docs/runbook.md` in its source, section *RTO budget by phase*).",
             "",
             "| Phase | At | Took | Budget (deadline) | Overrun | Evidence |",
             "|---|---|---|---|---|---|"]
    overruns = []
    for name, b in budget.items():
        if name == "rto":
            label = registry.RTO.label.format(k=_k(s))
            d = {"at_s": s.get("rto_s"), "error_s": s.get("rto_error_s"),
                 "evidence": f"first of {_k(s)} consecutive successes"}
        else:
            label = registry.by_name(s.get("configuration"))[name].label
            d = detail.get(name) or {"at_s": at.get(name)}
        value = at.get(name)
        if value is None:
            reason = d.get("reason") or (s.get("notes") or {}).get(name) or "not observed"
            shown = f"not observed: {reason}"
        else:
            shown = _s(_num(d.get("at_s", value)), _num(d.get("error_s")))
        prev = at.get(b.after) if b.after else 0.0
        took = "—" if value is None or prev is None else f"{value - prev:.3f} s"
        over = budgets.overrun(value, b)
        if over:
            overruns.append(f"{label.replace('**', '')} overran its budget by {over:.3f} s")
        over_text = "—" if over is None else ("within" if over == 0 else f"**+{over:.3f} s**")
        lines.append(f"| {label} | {shown} | {took} | {b.allowance_s:.3f} s "
                     f"(by {b.deadline_s:.3f} s) | {over_text} | {_cell(d.get('evidence') or '')} |")
    lines.append("")
    lines += _flapping(s.get("flapping"))
    lines += _resolvers((s.get("dns") or {}).get("resolvers") or [])
    lines += _authority((s.get("dns") or {}).get("authority"))
    lines += _promotion(s.get("promotion"))
    if overruns:
        lines += [*(f"- {o}" for o in overruns), ""]
    chart = mermaid(s)
    if chart:
        lines += [*chart, ""]
    if image:
        lines += [f"![Timeline of the run: lanes per stream, phase markers]({image})", "",
                  f"The same timeline as an image: [{image}]({image}).", ""]
    return lines


def _flapping(flapping: Mapping[str, Any] | None) -> list[str]:
    """A DNS server that answered both regions, named next to the phases: it explains a
    resolver that flips before the authority."""
    lines = []
    for server, f in sorted((flapping or {}).items()):
        lines.append(f"Flapping: the {server} DNS server answered both regions "
                     f"{f.get('changes')} times between {f.get('from_s'):+.3f} s and "
                     f"{f.get('to_s'):+.3f} s (PowerDNS's `ifurlup` picks at random among "
                     "the addresses while both regions look down), so a server that reads it "
                     "can flip before it settles.")
        lines.append("")
    return lines


def _resolvers(resolvers: list[Mapping[str, Any]]) -> list[str]:
    """A flip per resolver, when several were sampled (with one, the phase table's
    resolver row is its flip): users sit behind resolvers that clamp a low TTL up or serve
    stale answers, and the slowest is the one the budget's DNS phase waits for."""
    if len(resolvers) < 2:
        return []
    worst = next((r for r in resolvers if r.get("slowest")), None)
    lines = [f"DNS flip per resolver ({len(resolvers)} sampled"
             + (f"; the slowest, **{worst.get('name')}**, is the DNS phase of the RTO "
                "budget above" if worst else "") + "):", "",
             "| Resolver | Kind | Address | Flip | Evidence |", "|---|---|---|---|---|"]
    for r in resolvers:
        flip = r.get("flip_s")
        shown = (_s(_num(flip), _num(r.get("error_s"))) if flip is not None
                 else f"not observed: {r.get('reason') or 'no sample'}")
        name = f"**{r.get('name')}**" if r.get("slowest") else str(r.get("name"))
        lines.append(f"| {_cell(name)} | {_cell(str(r.get('kind') or '—'))} | "
                     f"{_cell(str(r.get('address') or '—'))} | {shown} | "
                     f"{_cell(r.get('evidence') or '')} |")
    lines.append("")
    return lines


def _authority(a: Mapping[str, Any] | None) -> list[str]:
    """The DNS authority's own detection in one line: the detection phase above is
    gameday's first failed health check, while users are sent away only when the authority's
    checks (dns.health) withdraw the region."""
    if not a or not a.get("verdict"):
        return []
    verdict = str(a["verdict"])
    return [f"{verdict[0].upper()}{verdict[1:]}.", ""]


def _promotion(p: Mapping[str, Any] | None) -> list[str]:
    """Who promoted, and how their own account compares with what the recorder saw."""
    if not p:
        return []
    who = {"runner": "gameday promoted the standby by SQL",
           "command": "a promotion command promoted the standby",
           "none": "the system promoted the standby by itself (gameday only observed)",
           "manager": "the HA manager was asked through its own API (Redis's Sentinels: "
                      "SENTINEL FAILOVER); in a failover it promotes by itself"}
    text = f"Promotion: {who.get(str(p.get('strategy')), str(p.get('strategy')))}"
    if p.get("observed_s") is not None:
        text += f"; first writable answer seen at {p['observed_s']:.3f} s"
    if p.get("runner_reported_s") is not None:
        text += (f"; gameday's promote loop saw its first write at "
                 f"{p['runner_reported_s']:.3f} s (cross-check)")
    cmd = p.get("command")
    if cmd:
        argv = " ".join(str(a) for a in (cmd.get("argv") or [])[:4])
        text += f"; `{argv}` exited {cmd.get('returncode')} after {cmd.get('took_s')} s"
    return [text + ".", ""]


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) else None


def _k(s: Mapping[str, Any]) -> int:
    return int((s.get("configuration") or {}).get("k_consecutive", 5))


def _writes(s: Mapping[str, Any]) -> list[str]:
    w = s.get("writes") or {}
    wd = s.get("writes_detail") or {}
    repl = s.get("replication") or {}
    lines = ["## Writes", "",
             f"Replication at the fault: **{repl.get('mode') or 'unknown'}** (standby sync state "
             f"`{repl.get('sync_state')}`), standby replay lag {_s(repl.get('lag_at_fault_s'))}.",
             "",
             "| attempted | acknowledged | lost | recovered | unknown, absent | unexpected | "
             "duplicate | not durable |",
             "|---|---|---|---|---|---|---|---|",
             "| " + " | ".join(str(w.get(k)) for k in Writes.__annotations__)
             + f" | {wd.get('not_durable')} |",
             "",
             "*Lost*: acknowledged but absent. *Recovered*: outcome unknown but present. "
             "*Unknown, absent*: no acknowledgement and absent (not a loss). *Unexpected* and "
             "*duplicate* rows are integrity failures. *Not durable*: acknowledged with a "
             "cancelled synchronous-replication wait.",
             ""]
    if w.get("lost") is None:
        lines.append("The canary table was not read: lost writes are unknown.")
    elif wd.get("lost_ranges"):
        by_server = ", ".join(f"{srv}: {n}" for srv, n in sorted(
            (wd.get("lost_by_server") or {}).items()))
        window = wd.get("loss_window_s")
        lines.append(f"Lost sequence numbers: {_ranges(wd['lost_ranges'])}.")
        lines.append("")
        lines.append(f"- acknowledged by: {by_server or 'unknown'}")
        if window:
            lines.append(f"- loss window: acknowledged from {window[0]:+.3f} s to "
                         f"{window[1]:+.3f} s after the fault")
        lines.append(f"- acknowledged after the fault: {wd.get('lost_after_fault')}")
        lines.append(f"- table read from: {wd.get('read_from') or 'unknown'}")
    else:
        lines.append(f"No acknowledged write was lost (table read from "
                     f"{wd.get('read_from') or 'the writable primary'}).")
    lines.append("")
    return lines


def _canaries(s: Mapping[str, Any], app: Mapping[str, Any]) -> list[str]:
    """The database canary and the application canary side by side, and what differs:
    what the database lost and what users lost are different questions."""
    w, aw = s.get("writes") or {}, app.get("writes") or {}

    def count(v: object) -> str:
        return "unknown" if v is None else str(v)

    # the counts by their keys in `Writes`' order: attempted, acked, lost, recovered, ...
    keys = tuple(Writes.__annotations__)
    rows = [("Writes through", "the database (multi-host DSN)",
             "the application (the global name)"),
            *((label, count(w.get(key)), count(aw.get(key))) for label, key in zip(
                ("Attempted", "Acknowledged", "Lost", "Recovered", "Unknown, absent"),
                keys[:5], strict=True)),
            ("Unexpected / duplicate", f"{count(w.get('unexpected'))} / "
             f"{count(w.get('duplicate'))}", f"{count(aw.get('unexpected'))} / "
             f"{count(aw.get('duplicate'))}"),
            ("Write RTO", _s(s.get("write_rto_s"), s.get("write_rto_error_s")),
             _s(app.get("write_rto_s"), app.get("write_rto_error_s"))),
            ("RPO", _s(s.get("rpo_s"), s.get("rpo_error_s")),
             _s(app.get("rpo_s"), app.get("rpo_error_s")))]
    lines = ["## Both canaries", "",
             "The database canary writes to the database itself; the application canary "
             "writes through the global name, as a user does, and is read back through the "
             "application. A write the application acknowledged and cannot read back is lost, "
             "whatever the database says.", "",
             "| | Database canary | Application canary |", "|---|---|---|",
             *(f"| {a} | {_cell(b)} | {_cell(c)} |" for a, b, c in rows), ""]
    if app.get("read_error"):
        lines += [f"Application read-back: {_cell(app['read_error'])}.", ""]
    elif app.get("lost_ranges"):
        by_region = ", ".join(f"{r}: {n}" for r, n in sorted(
            (app.get("lost_by_region") or {}).items()))
        lines += [f"Application canary's lost numbers: {_ranges(app['lost_ranges'])} "
                  f"(acknowledged by {by_region or 'unknown'}; read back from "
                  f"{app.get('read_from') or 'the global name'}).", ""]
    if w.get("lost") and aw.get("lost"):
        lines += ["Both canaries lost acknowledged writes. Their counts differ with each "
                  "canary's write rate: where each one's data ends (the RPO) is what compares.",
                  ""]
    differences = app.get("differences") or []
    if differences:
        lines += ["**Where they differ:**", *(f"- {d}" for d in differences), ""]
    else:
        lines += ["The two canaries agree.", ""]
    return lines


def _app_canary_alone(s: Mapping[str, Any], app: Mapping[str, Any]) -> list[str]:
    """A run on a store without SQL (Redis with Sentinel): no database canary ran, and the
    application canary's writes are the run's."""
    aw = app.get("writes") or {}
    repl = s.get("replication") or {}
    configuration = s.get("configuration") or {}
    lines = ["## Writes (the application canary)", "",
             f"No database canary: this lab's store ({configuration.get('store') or 'unknown'}) "
             "has no SQL. The application canary writes through the global name, as a user "
             "does, and is read back through the application: it is the run's RPO measure. "
             f"Replication: **{repl.get('mode') or 'unknown'}**.", "",
             "| attempted | acknowledged | lost | recovered | unknown, absent | unexpected | "
             "duplicate |", "|---|---|---|---|---|---|---|",
             "| " + " | ".join(str(aw.get(k)) for k in Writes.__annotations__) + " |", ""]
    if app.get("read_error"):
        lines.append(f"Application read-back: {_cell(app['read_error'])}.")
    elif app.get("lost_ranges"):
        by_region = ", ".join(f"{r}: {n}" for r, n in sorted(
            (app.get("lost_by_region") or {}).items()))
        window = app.get("loss_window_s")
        lines.append(f"Lost numbers: {_ranges(app['lost_ranges'])} (acknowledged by "
                     f"{by_region or 'unknown'}; read back from "
                     f"{app.get('read_from') or 'the global name'}).")
        if window:
            lines.append(f"Loss window: acknowledged from {window[0]:+.3f} s to "
                         f"{window[1]:+.3f} s after the fault.")
    else:
        lines.append(f"No acknowledged write was lost (read back from "
                     f"{app.get('read_from') or 'the global name'}).")
    lines.append("")
    differences = app.get("differences") or []
    if differences:
        lines += [*(f"- {d}" for d in differences), ""]
    return lines


def _faults(s: Mapping[str, Any]) -> list[str]:
    lines = ["## Faults", "",
             "*Requested*: the fault started to apply; *in effect*: it was seen in effect. "
             "Seconds after the first fault.", "",
             "| Region | Fault | Requested | In effect |", "|---|---|---|---|"]
    faults = s.get("faults") or []
    for f in faults:
        if f.get("not_applicable"):
            lines.append(f"| {f['region']} | {f['fault']} | not applicable: "
                         f"{_cell(f['not_applicable'])} | — |")
        else:
            lines.append(f"| {f['region']} | {f['fault']} | {_s(f.get('applied_s'))} | "
                         f"{_s(f.get('effective_s'))} |")
    if not faults:
        lines.append("| — | no fault was injected | — | — |")
    lines.append("")
    external = [f for f in faults if f.get("external")]
    if external:
        names = ", ".join(f"{f['fault']} ({f.get('provider') or 'another extension'})"
                          for f in external)
        lines += [f"Injected by another Chaos Toolkit extension: {names}. gameday timed it from "
                  "the start of its action and saw it in effect at the region's first failed "
                  "health check; rolling it back and recovering from it are that extension's "
                  "job (its rollbacks), not gameday's.", ""]
    return lines


def _hold(h: Mapping[str, Any]) -> list[str]:
    """The long drill's hold: availability in the secondary region, before the failback."""
    ratio = h.get("success_ratio")
    mb = h.get("timeline_mb_per_hour")
    planned = h.get("planned_s")
    rows = [
        ("Held in", f"{h.get('region')}: {h.get('held_s'):.1f} s"
         + (f" of {planned:g} s planned" if planned is not None else "")
         + ("" if h.get("ended") else " (the run stopped during the hold)")),
        ("Global requests succeeded", f"{h.get('global_ok')} of {h.get('global_requests')}"
         + (f" ({ratio * 100:.3f}%)" if ratio is not None else "")
         + f"; {h.get('served_by_region')} served by {h.get('region')}"),
        ("Canary errors", f"{h.get('canary_errors')} of {h.get('canary_attempts')} attempts"),
        ("Steady-state checks failed", f"{h.get('checks_failed')} of {h.get('checks')}"),
        ("Timeline growth", "not measured" if mb is None else f"{mb:.2f} MB per hour"),
    ]
    return ["## Hold in the secondary region", "", "| What | Value |", "|---|---|",
            *[f"| {k} | {_cell(v)} |" for k, v in rows], ""]


def failback_headline(fb: Mapping[str, Any]) -> list[str]:
    """The failback's numbers as a table (the report's Failback section, the JUnit suite's
    output)."""
    lost = fb.get("lost")
    split = fb.get("split_brain_writes")
    by_others = fb.get("strategy") in ("command", "none", "manager")
    split_text = "not counted (rewound by the HA manager)" if by_others and split is None \
        else ("unknown" if split is None else str(split))
    return ["| Measure | Measured | Expected | Met |", "|---|---|---|---|",
            f"| Failback RTO (service) | {_s(fb.get('rto_s'), fb.get('rto_error_s'))} | — | — |",
             f"| Failback write RTO | {_s(fb.get('write_rto_s'))} | — | — |",
             f"| Downtime (failing global requests) | {_s(fb.get('downtime_s'))} | — | — |",
             f"| Resync of the old primary | {_s(fb.get('resync_s'))}"
             f"{' (' + str(fb['resync_method']) + ')' if fb.get('resync_method') else ''} "
             f"| — | — |",
             f"| Catch-up of the old primary | {_s(fb.get('catch_up_s'))} | — | — |",
             f"| Lost acknowledged writes | {'unknown' if lost is None else lost} | 0 | "
             f"{_ok(None if lost is None else lost == 0)} |",
             f"| Split-brain writes | {split_text} | 0 | "
             f"{_ok(None if split is None else split == 0)} |"]


def _failback(fb: dict[str, Any]) -> list[str]:
    window = fb.get("split_brain_window_s")
    by_others = fb.get("strategy") in ("command", "none", "manager")
    how = ("Planned switchover back to the original primary by the HA manager"
           + (f" (`{' '.join(str(a) for a in (fb.get('command') or {}).get('argv') or [])}`)"
              if fb.get("command") else "")
           + ": the old primary had rejoined as its replica by itself (the manager rewinds it "
             "as it starts, so its split-brain writes cannot be counted here; any it had are "
             "lost and counted by the game day), then the switchover, DNS back."
           if by_others else
           "Planned switchover back to the original primary (docs/design.md, Failover and "
           "failback protocol): split-brain writes read from the old primary before it was "
           "resynced, then writes paused, replay caught up, promotion, DNS back.")
    lines = ["## Failback", "", how, "", *failback_headline(fb), ""]
    window_utc = fb.get("split_brain_window_utc")
    if window:
        lines += [f"Split-brain writes were acknowledged by the old primary from "
                  f"{window[0]:+.3f} s to {window[1]:+.3f} s; they are counted as lost.", ""]
    elif window_utc:
        lines += [f"Split-brain writes were acknowledged by the old primary from "
                  f"{window_utc[0]} to {window_utc[1]} (UTC); they are counted as lost.", ""]
    if fb.get("unreplicated_writes"):
        lines += [f"Writes acknowledged by the old primary but never replicated: "
                  f"{fb['unreplicated_writes']}.", ""]
    if fb.get("reasons"):
        lines += ["**Failback reasons:**", *(f"- {r}" for r in fb["reasons"]), ""]
    fb_phases = fb.get("phases") or {}
    if fb_phases:
        lines += ["| Failback phase | At |", "|---|---|"]
        for name in [*registry.NAMES, *sorted(set(fb_phases) - set(registry.NAMES))]:
            if name in fb_phases:
                label = registry.BY_NAME[name].label if name in registry.BY_NAME else name
                lines.append(f"| {label} | {_s(fb_phases[name])} |")
        lines.append("")
    return lines


def _events(events: Sequence[Event]) -> list[str]:
    lines = ["## Sequence of actions", "",
             "| t (s from fault) | Event | Region | Detail |", "|---|---|---|---|"]
    t0 = next((e.t for e in events if e.kind == Kind.FAULT_APPLIED), 0.0)
    for t_, kind, region, detail in events:
        d = json.loads(detail or "{}")
        text = ", ".join(f"{k}={v}" for k, v in sorted(d.items()))
        lines.append(f"| {t_ - t0:+.3f} | {kind} | {region or ''} | {_cell(text)} |")
    lines.append("")
    return lines


def _samplers(s: Mapping[str, Any]) -> list[str]:
    lines = ["## Probe statistics", "",
             "Achieved intervals between samples of each stream, and samples that failed "
             "(a failure is data: the target did not answer).", "",
             "| Stream | Samples | Errors | Error % | Interval p50 | Interval p99 |",
             "|---|---|---|---|---|---|"]
    for name, st in (s.get("samplers") or {}).items():
        p50, p99 = st.get("interval_p50_s"), st.get("interval_p99_s")
        n, errors = st.get("samples") or 0, st.get("errors") or 0
        pct = f"{errors / n * 100:.1f}" if n else "—"
        lines.append(f"| {name} | {n} | {errors} | {pct} | "
                     f"{'—' if p50 is None else f'{p50 * 1000:.1f} ms'} | "
                     f"{'—' if p99 is None else f'{p99 * 1000:.1f} ms'} |")
    lines.append("")
    return lines


CONFIG_LABELS = {
    "dns_ttl_s": "DNS TTL (s)",
    "health_interval_s": "DNS health-check interval (s)",
    "health_failures": "Failed checks to mark a region down",
    "health_timeout_s": "Health-check timeout (s)",
    "replication": "Replication mode",
    "inter_region_delay_ms": "Inter-region delay, one way (ms)",
    "canary_writers": "Canary writers",
    "canary_max_rate": "Canary rate cap (writes/s, all writers)",
    "k_consecutive": "K (consecutive successes for RTO)",
    "promotion": "Who promotes",
    "promotion_budget_s": "Promotion allowance (s)",
    "http_interval_s": "Global request interval (s)",
    "dns_interval_s": "DNS sample interval (s)",
    "replication_interval_s": "Replication sample interval (s)",
    "write_reconnect_s": "Canary reconnect allowance (s)",
    "regression_factor": "Regression factor (× the median of comparable runs)",
    "ha_manager": "HA manager",
    "ha_ttl_s": "HA leader key TTL (s)",
    "ha_loop_wait_s": "HA loop interval (s)",
    "ha_retry_timeout_s": "HA retry timeout (s)",
    "sentinel_down_after_s": "Sentinel down-after (s)",
    "store": "Datastore",
    "database_canary": "Database canary (off: the store has no SQL)",
}


def label(key: str) -> str:
    """The Configuration table's label of a key; a key recorded by a newer gameday than
    this table knows reads as words, never as the raw key."""
    if key in CONFIG_LABELS:
        return CONFIG_LABELS[key]
    words, unit = key, ""
    for suffix, name in (("_ms", "ms"), ("_s", "s")):
        if key.endswith(suffix):
            words, unit = key[: -len(suffix)], f" ({name})"
    text = words.replace("_", " ")
    return text[:1].upper() + text[1:] + unit


def _configuration(s: Mapping[str, Any]) -> list[str]:
    config = dict(s.get("configuration") or {})
    params = budgets.parameters(config)
    lines = ["## Configuration", "",
             "| Setting | Value |", "|---|---|",
             f"| Lab | {s.get('lab')} |"]
    keys = [*CONFIG_LABELS, *sorted(set(config) - set(CONFIG_LABELS))]
    for key in keys:
        if key in config:
            value = config[key]
            shown = f"{value:g}" if isinstance(value, float) else str(value)
        elif key in params and (not key.startswith("ha_") or registry.autonomous(config)) \
                and (not key.startswith("sentinel_") or registry.by_sentinels(config)):
            shown = f"{params[key]:g} (default, not recorded in the run)"
        else:
            continue
        lines.append(f"| {label(key)} | {_cell(shown)} |")
    t = s.get("targets") or {}
    lines.append(f"| Targets | RTO ≤ {t.get('rto_s', 0):g} s, RPO ≤ {t.get('rpo_s', 0):g} s, "
                 f"lost writes ≤ {t.get('max_lost_writes')} |")
    lines.append("")
    return lines


def _trend(trend: trends.Trend | None) -> list[str]:
    lines = ["## Trend", ""]
    if trend is None:
        return [*lines, "No run history was available.", ""]
    runs = trend.last(TREND_RUNS)
    rto = [r.get("rto_s") for r in runs]
    rpo = [r.get("rpo_s") for r in runs]
    lines += [f"Compared with {trend.against}. The last {len(runs)} runs, this one last "
              "(history: `history.jsonl` in the reports directory):", "",
              "```text",
              f"RTO  {trends.sparkline(rto)}  {_range(rto)}",
              f"RPO  {trends.sparkline(rpo)}  {_range(rpo)}",
              "```", "",
              "| Run | Started | Verdict | RTO | Write RTO | RPO | Lost | Failback RTO |",
              "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        mark = " (this run)" if r is trend.current else ""
        lines.append(f"| {_cell(r.get('run_id'))}{mark} | {r.get('started_at')} | "
                     f"{r.get('verdict')} | {_s(r.get('rto_s'))} | {_s(r.get('write_rto_s'))} | "
                     f"{_s(r.get('rpo_s'))} | {'—' if r.get('lost') is None else r['lost']} | "
                     f"{_s(r.get('failback_rto_s')) if r.get('failback_rto_s') is not None else '—'} |")
    lines.append("")
    med = ", ".join(f"{label} {_s(trend.medians.get(key))}" for key, label in trends.METRICS)
    lines.append(f"Regression rule: RTO or RPO above its target, or above {trend.factor:g} × the "
                 f"median of the previous {trend.window} comparable runs (same drill, "
                 f"experiment and lab profile; compared from {trend.min_runs} runs on). "
                 f"Medians of the previous runs: {med}.")
    lines.append("")
    lines.append("**Regression flagged.**" if trend.regression else "No regression.")
    lines.append("")
    return lines


def _range(values: Sequence[float | None]) -> str:
    seen = [v for v in values if v is not None]
    return f"{min(seen):.3f} s .. {max(seen):.3f} s" if seen else "not observed"


def _raw(image: str | None) -> list[str]:
    files = ["`summary.json` (the numbers above, schema `gameday.summary/v1`)",
             "`timeline.sqlite` (every sample and event)", "`journal.json` (the Chaos Toolkit "
             "journal)"]
    if image:
        files.append(f"`{image}` (the timeline image)")
    return ["## Raw data", "",
            "Next to this report: " + ", ".join(files) + ". Times in `timeline.sqlite` are "
            "seconds on the runner's monotonic clock; `meta.anchor_utc` is t = 0 and the first "
            "`fault-applied` event is `t_fault`. Tables: `events`, `dns`, `http`, `canary`, "
            "`replication`, `final_rows`, `meta`. For example:",
            "",
            "```sh",
            "sqlite3 timeline.sqlite \"SELECT t, server, answer FROM dns WHERE server = "
            "'resolver' ORDER BY t\"",
            "sqlite3 timeline.sqlite \"SELECT seq, t_ack, server FROM canary WHERE outcome = "
            "'ok' ORDER BY t_ack DESC LIMIT 5\"",
            "sqlite3 timeline.sqlite \"SELECT outcome, count(*) FROM canary GROUP BY outcome\"",
            "```",
            "",
            "Regenerate this report with no lab running: `gameday report <run-dir>`.",
            ""]
