"""The RTO phases as a Mermaid gantt chart (renders on GitHub, in the job summary too).

Times are integer milliseconds after the fault (`dateFormat x`, each task with an explicit
start and end), so no duration units are involved. A phase's bar runs from the phase it
waits for (its budget's `after`) to its own instant; bars past their budget are `crit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gameday.measure import phases
from gameday.report import budget as budgets


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _name(text: str) -> str:
    # a task name ends at ':'; '#' and ';' start comments and statements
    return text.replace(":", " ").replace("#", " ").replace(";", ",")


def instants(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """Phase instants plus "rto", keyed like the budget."""
    out: dict[str, float | None] = dict(summary.get("phases") or {})
    out["rto"] = summary.get("rto_s")
    return out


def render(summary: Mapping[str, Any], budget: dict[str, budgets.PhaseBudget]) -> str | None:
    """The chart's source (without the ``` fence), or None when nothing was observed."""
    at = instants(summary)
    if all(at.get(n) is None for n in budget):
        return None
    span = max(v for v in at.values() if v is not None)
    lines = [
        "gantt",
        "    title Failover phases, seconds after the fault",
        "    dateFormat x",
        "    axisFormat %S.%L" if span < 60 else "    axisFormat %M:%S",
        "    todayMarker off",
    ]
    faults = [f for f in summary.get("faults") or [] if f.get("applied_s") is not None]
    if faults:
        lines.append("    section Fault")
        for n, f in enumerate(faults, 1):
            start = f["applied_s"]
            end = f["effective_s"] if f.get("effective_s") is not None else start
            label = _name(f"{f.get('fault')} on {f.get('region')}")
            lines.append(f"    {label} : fault{n}, {_ms(start)}, {_ms(max(start, end))}")
    lines.append("    section Failover")
    for n, (name, b) in enumerate(budget.items(), 1):
        value = at.get(name)
        if value is None or name == "rto":
            continue
        start = 0.0
        anc = b.after
        while anc is not None:
            if at.get(anc) is not None:
                start = at[anc] or 0.0
                break
            anc = budget[anc].after
        start = min(start, value)
        label = _name(f"{phases.by_name(summary.get('configuration'))[name].short} "
                      f"{value:.3f} s")
        tags = "crit, " if budgets.overrun(value, b) else ""
        lines.append(f"    {label} : {tags}p{n}, {_ms(start)}, {_ms(value)}")
    rto = at.get("rto")
    if rto is not None:
        rto_ms = _ms(rto)
        tags = "crit, " if budgets.overrun(rto, budget["rto"]) else ""
        lines.append(f"    RTO {rto:.3f} s : {tags}milestone, rto, {rto_ms}, {rto_ms}")
    return "\n".join(lines)
