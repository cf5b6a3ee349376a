"""The run's timeline as an SVG image, for viewers without Mermaid. Pure Python, no
dependency; a pure function of the stored timeline and the summary, with every coordinate
rounded, so the same run draws the same bytes.

One lane per stream (faults, global requests, each region's health endpoint, each DNS
server's answer, canary acknowledgements), coloured by the region that answered, red
where it failed; a vertical marker at every RTO phase.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

from gameday.foundation.events import Kind
from gameday.measure import instants, stats
from gameday.measure import phases as registry
from gameday.measure.store import reader

FILE = "timeline.svg"

WIDTH = 960
LEFT = 170
RIGHT = 20
TOP = 46
LANE_H = 22
LANE_GAP = 8
PLOT_W = WIDTH - LEFT - RIGHT
CHAR_W = 6.2
FAIL = "#d62728"
OTHER = "#9e9e9e"
PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b")


def _f(v: float) -> str:
    text = f"{v:.1f}"
    return "0.0" if text == "-0.0" else text


class _Scale:
    def __init__(self, t0: float, t1: float) -> None:
        self.t0, self.t1 = t0, max(t1, t0 + 1e-3)

    def x(self, rel: float) -> float:
        rel = min(max(rel, self.t0), self.t1)
        return LEFT + (rel - self.t0) / (self.t1 - self.t0) * PLOT_W


def _step(span: float) -> float:
    for step in (0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if span / step <= 10:
            return float(step)
    return 1200.0


def _segments(samples: Sequence[tuple[float, str]], end: float, *,
              tail: float | None = None) -> list[tuple[float, float, str]]:
    """[(t, state)] sorted -> merged runs [(start, stop, state)]; a sample holds until the
    next one (the last for one typical interval: `tail`, by default the median gap)."""
    if not samples:
        return []
    if tail is None:
        tail = stats.percentile(stats.intervals(t for t, _ in samples), 50) or 0.0
    out: list[tuple[float, float, str]] = []
    for i, (t, state) in enumerate(samples):
        stop = samples[i + 1][0] if i + 1 < len(samples) else min(end, t + tail)
        if out and out[-1][2] == state and abs(out[-1][1] - t) < 1e-9:
            out[-1] = (out[-1][0], stop, state)
        else:
            out.append((t, stop, state))
    return out


def _lane(rows: reader.Stream, state: Callable[[Any], str], origin: float, t0: float,
          t1: float, sql_state: str | None = None) -> list[tuple[float, float, str]]:
    """`_segments` of [(r[0] - origin, state(r))] for every row (in time order), but only the
    runs that can be drawn, from t0 to t1: a stream holds tens of thousands of samples an
    hour, the plot a few seconds around the fault. A run's samples merge into one segment,
    so only its first sample and the one after it count: the rows read are those in the
    window, then, a window at a time, back to the first of the run it opens with and on to
    the end of the run it closes with. `sql_state`, the same state as an SQL expression
    over the stream's columns, finds those two ends in SQLite instead (an hour-long run
    of one state is one scan in C, not a walk through its rows)."""
    if not rows:
        return []
    n = len(rows)
    lo = bisect.bisect_left(rows, t0, key=lambda r: r.t - origin)
    hi = bisect.bisect_right(rows, t1, key=lambda r: r.t - origin)
    first = max(0, lo - 1)  # the sample before the window holds into it
    opening_row = rows[first]
    opening = state(opening_row)
    last = max(hi - 1, first)
    closing = state(rows[last])
    after = n
    if sql_state is not None:
        first, after = rows.run_ends(first, last, sql_state, opening, closing)
        opening_row = rows[first]
    else:
        for row in rows.rows_back(first):
            if state(row) != opening:
                break
            opening_row = row
            first -= 1
        for i, row in enumerate(rows.rows(last + 1), last + 1):
            if state(row) != closing:
                after = i
                break
    picked = [opening_row, *rows[max(first + 1, lo):last + 1]]
    tail = 0.0
    if after < n:
        picked.append(rows[after])  # ends the closing run; starts after t1, never drawn
    else:
        if last < n - 1:
            picked.append(rows[n - 1])  # the closing run holds on from the stream's last sample
        if rows[n - 1].t - origin < t1:  # ... for the median gap, when that ends before t1
            # the gaps of t - origin, one window at a time
            _, (tail_p50,) = stats.gap_percentiles(
                ([t - origin for t in ts] for ts in rows.times()), (50,))
            tail = tail_p50 or 0.0
    return _segments([(r.t - origin, state(r)) for r in picked], t1, tail=tail)


def render(summary: Mapping[str, Any], tl: reader.Timeline) -> str:
    meta = tl.meta
    regions = meta.get("regions") or {}
    names = [regions[r]["name"] for r in ("primary", "secondary") if r in regions]
    colour = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    by_address: dict[str, str] = {}
    for r in regions.values():
        by_address[r.get("address")] = r["name"]
        by_address[r.get("db_host")] = r["name"]

    t_fault, _ = instants.fault_time(tl)
    # the span of every sample (t - origin is monotonic in t, so its extremes are those of t)
    _, _, first, last = tl.canary_extent
    times = [t for t in (first, last) if t is not None]
    for table in ("http", "dns"):
        span = tl.span(table)
        if span is not None:
            times += list(span)
    origin = t_fault if t_fault is not None else (min(times) if times else 0.0)
    rel_times = [t - origin for t in times]
    marks: list[tuple[float, str]] = []
    phases = dict(summary.get("phases") or {})
    phases["rto"] = summary.get("rto_s")
    for phase in registry.chain(summary.get("configuration")):
        if phases.get(phase.name) is not None:
            marks.append((float(phases[phase.name]), phase.marker))
    known = [v for v, _ in marks] + [f["effective_s"] for f in summary.get("faults") or []
                                     if f.get("effective_s") is not None]
    lo = min(rel_times, default=0.0)
    hi = max(rel_times, default=1.0)
    t0 = max(lo, -1.0) if t_fault is not None else lo
    t1 = min(hi, max(known, default=hi) + 1.0) if t_fault is not None else hi
    scale = _Scale(t0, t1)

    lanes: list[tuple[str, list[tuple[float, float, str]]]] = []
    # faults: applied (light) -> in effect (dark) -> reverted
    fault_samples: list[tuple[float, str]] = []
    for t, kind, _region, _detail in tl.events:
        if kind in (Kind.FAULT_APPLIED, Kind.FAULT_EFFECTIVE, Kind.FAULT_REVERTED):
            fault_samples.append((t - origin, kind))
    lanes.append(("faults", _fault_segments(fault_samples, t1)))
    http_targets = ["global", *names]
    for target in http_targets:
        label = "global requests" if target == "global" else f"{target} /healthz"
        lanes.append((label, _lane(tl.stream("http", target),
                                   lambda r: (r.region or "?") if r.ok else "fail", origin,
                                   t0, t1, sql_state=reader.HTTP_STATE)))
    answer_state = reader.answer_state(by_address)
    # each DNS server sampled: the authority, the resolver, then every other resolver
    servers = ["authoritative", "resolver"]
    servers += [s for s in tl.names("dns") if s not in servers]
    for server in servers:
        lanes.append((f"DNS {server}", _lane(
            tl.stream("dns", server),
            lambda r: (r.region or by_address.get(r.answer, "other")) if r.ok else "fail",
            origin, t0, t1, sql_state=answer_state)))

    n_lanes = len(lanes) + 1  # + canary
    plot_bottom = TOP + n_lanes * (LANE_H + LANE_GAP)
    out: list[str] = []
    title = (f"{summary.get('run_id') or 'run'}: {str(summary.get('verdict') or '?').upper()}"
             f", RTO {_sec(summary.get('rto_s'))}, RPO {_sec(summary.get('rpo_s'))}, "
             f"lost writes {(summary.get('writes') or {}).get('lost')}")

    # lanes
    y = TOP
    body: list[str] = []
    for label, segs in lanes:
        body.append(f'<text x="{LEFT - 8}" y="{_f(y + LANE_H / 2 + 4)}" text-anchor="end">'
                    f'{escape(label)}</text>')
        body.append(f'<rect x="{LEFT}" y="{y}" width="{PLOT_W}" height="{LANE_H}" '
                    f'fill="#f4f4f4"/>')
        for a, b, state in segs:
            if b < t0 or a > t1:
                continue
            fill = _fill(state, colour)
            x0, x1 = scale.x(a), scale.x(b)
            body.append(f'<rect x="{_f(x0)}" y="{y + 2}" width="{_f(max(x1 - x0, 0.5))}" '
                        f'height="{LANE_H - 4}" fill="{fill}"><title>{escape(label)}: '
                        f'{escape(state)} {a:.3f}..{b:.3f} s</title></rect>')
        y += LANE_H + LANE_GAP
    body.extend(_canary_lane(tl, origin, scale, y, colour, by_address))

    # axis
    step = _step(t1 - t0)
    axis = [f'<line x1="{LEFT}" y1="{plot_bottom}" x2="{LEFT + PLOT_W}" y2="{plot_bottom}" '
            f'stroke="#333"/>']
    k = int(t0 // step)
    while k * step <= t1 + 1e-9:
        tick = k * step
        if tick >= t0 - 1e-9:
            tx = _f(scale.x(tick))
            axis.append(f'<line x1="{tx}" y1="{TOP}" x2="{tx}" y2="{plot_bottom + 4}" '
                        f'stroke="#ddd"/>')
            axis.append(f'<text x="{tx}" y="{plot_bottom + 16}" text-anchor="middle">'
                        f'{_tick(tick, step)}</text>')
        k += 1
    axis.append(f'<text x="{LEFT + PLOT_W}" y="{plot_bottom + 30}" text-anchor="end">'
                f'seconds after the fault</text>')

    # phase markers, labels staggered in rows so they never overlap
    rows_end: list[float] = []
    markers: list[str] = []
    label_top = plot_bottom + 48
    if t_fault is not None:
        fx = _f(scale.x(0.0))
        markers.append(f'<line x1="{fx}" y1="{TOP - 6}" x2="{fx}" y2="{plot_bottom}" '
                       f'stroke="{FAIL}" stroke-width="2"/>')
        markers.append(f'<text x="{fx}" y="{TOP - 10}" text-anchor="middle" fill="{FAIL}">'
                       f'fault</text>')
    for value, label in sorted(marks):
        x = scale.x(value)
        text = f"{label} {value:.3f} s"
        width = len(text) * CHAR_W
        free = next((i for i, end in enumerate(rows_end) if x > end + 6), None)
        if free is None:
            rows_end.append(x + width)
            free = len(rows_end) - 1
        else:
            rows_end[free] = x + width
        ly = label_top + free * 15
        dash = "" if label == "RTO" else ' stroke-dasharray="4 3"'
        markers.append(f'<line x1="{_f(x)}" y1="{TOP}" x2="{_f(x)}" y2="{_f(ly - 10)}" '
                       f'stroke="#222"{dash}/>')
        markers.append(f'<text x="{_f(x + 2)}" y="{_f(ly)}">{escape(text)}</text>')
    height = label_top + max(len(rows_end), 1) * 15 + 36

    legend_y = height - 14
    legend = []
    lx = float(LEFT)
    for name, fill in [*colour.items(), ("failed", FAIL), ("fault applied", "#f7b6b6"),
                       ("fault in effect", "#8b0000")]:
        legend.append(f'<rect x="{_f(lx)}" y="{legend_y - 9}" width="10" height="10" '
                      f'fill="{fill}"/>')
        legend.append(f'<text x="{_f(lx + 14)}" y="{legend_y}">{escape(name)}</text>')
        lx += 14 + len(name) * CHAR_W + 16

    out.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
               f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">')
    out.append(f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>')
    out.append(f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">'
               f'{escape(title)}</text>')
    out.extend(body)
    out.extend(axis)
    out.extend(markers)
    out.extend(legend)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _fault_segments(samples: list[tuple[float, str]], end: float) -> list[tuple[float, float, str]]:
    """Depth of faults applied / in effect over time -> 'fault applied' or 'fault in effect'."""
    applied = effective = 0
    out: list[tuple[float, float, str]] = []
    state_at: list[tuple[float, str]] = []
    for t, kind in sorted(samples):
        if kind == Kind.FAULT_APPLIED:
            applied += 1
        elif kind == Kind.FAULT_EFFECTIVE:
            effective += 1
        else:
            applied = max(0, applied - 1)
            effective = min(effective, applied)
        state = "fault in effect" if effective else ("fault applied" if applied else "none")
        state_at.append((t, state))
    for i, (t, state) in enumerate(state_at):
        stop = state_at[i + 1][0] if i + 1 < len(state_at) else end
        if state != "none" and stop > t:
            out.append((t, stop, state))
    return out


def _canary_lane(tl: reader.Timeline, origin: float, scale: _Scale, y: float,
                 colour: dict[str, str], by_address: dict[str, str]) -> list[str]:
    """Acknowledged writes per bin as bars (log scale) coloured by the acknowledging region;
    failed or unknown attempts as red ticks on top."""
    label = "canary writes"
    out = [f'<text x="{LEFT - 8}" y="{_f(y + LANE_H / 2 + 4)}" text-anchor="end">{label}</text>',
           f'<rect x="{LEFT}" y="{y}" width="{PLOT_W}" height="{LANE_H}" fill="#f4f4f4"/>']
    bins = 160
    width = (scale.t1 - scale.t0) / bins
    acks: dict[tuple[int, str], int] = {}
    errors: dict[int, int] = {}
    for b, ok, server, n in tl.canary_bins(origin=origin, t0=scale.t0, t1=scale.t1,
                                            width=width, bins=bins):
        if ok:
            key = (b, by_address.get(server, "other") if server is not None else "other")
            acks[key] = acks.get(key, 0) + n
        else:
            errors[b] = errors.get(b, 0) + n
    per_bin: dict[int, int] = {}
    for (b, _region), n in acks.items():
        per_bin[b] = per_bin.get(b, 0) + n
    top = max(per_bin.values(), default=0)
    bar_w = PLOT_W / bins
    for (b, region), n in sorted(acks.items()):
        # log scale: a synchronous primary's trickle and an unblocked one's flood both show
        h = (LANE_H - 4) * math.log1p(n) / math.log1p(top) if top else 0
        out.append(f'<rect x="{_f(LEFT + b * bar_w)}" y="{_f(y + LANE_H - 2 - h)}" '
                   f'width="{_f(max(bar_w - 0.4, 0.5))}" height="{_f(h)}" '
                   f'fill="{_fill(region, colour)}"><title>{n} writes acknowledged by '
                   f'{escape(region)}</title></rect>')
    for b, n in sorted(errors.items()):
        out.append(f'<rect x="{_f(LEFT + b * bar_w)}" y="{y}" width="{_f(max(bar_w, 1.0))}" '
                   f'height="4" fill="{FAIL}"><title>{n} writes failed or unknown</title></rect>')
    return out


def _fill(state: str, colour: dict[str, str]) -> str:
    if state == "fail":
        return FAIL
    if state == "fault applied":
        return "#f7b6b6"
    if state == "fault in effect":
        return "#8b0000"
    return colour.get(state, OTHER)


def _sec(v: float | None) -> str:
    return "not observed" if v is None else f"{v:.3f} s"


def _tick(value: float, step: float) -> str:
    decimals = 0 if step >= 1 else (1 if step >= 0.1 and round(step * 10) == step * 10 else 2)
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text
