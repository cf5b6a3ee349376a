"""How the samplers kept their schedule: samples, achieved interval p50/p99 and errors per
stream, in bounded memory however long the drill."""

from __future__ import annotations

import math
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import mul, sub

from gameday.measure.contract import SamplerStats
from gameday.measure.store.reader import Disordered, Timeline


def intervals(ts: Iterable[float]) -> list[float]:
    ts = list(ts)
    return [b - a for a, b in zip(ts, ts[1:], strict=False)]


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    idx = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[idx]


def gap_percentiles(windows: Iterable[Sequence[float]], ps: Sequence[float]
                    ) -> tuple[int, list[float | None]]:
    """(samples, percentile() of the gaps between consecutive times for each p), exactly as
    sorting every gap would give them, in bounded memory: the times come a window at a time
    (in order); the gaps are counted per bin of 2**-20 s (about a microsecond) and spooled
    to a temporary file as doubles; then only the gaps in the bins that hold the wanted
    ranks are read back and sorted. A bin's edges are exact (a power of two scales a float
    exactly), so a gap falls in the bin its value says."""
    scale = float(1 << 20)
    bins: Counter[int] = Counter()
    samples = 0
    prev: float | None = None
    sizes: list[int] = []
    with tempfile.TemporaryFile() as spool:
        for ts in windows:
            if not ts:
                continue
            samples += len(ts)
            gaps = array("d", [] if prev is None else [ts[0] - prev])
            gaps.extend(map(sub, ts[1:], ts[:-1]))
            prev = ts[-1]
            bins.update(map(math.floor, map(mul, gaps, repeat(scale))))
            gaps.tofile(spool)
            sizes.append(len(gaps))
        n = sum(sizes)
        if n == 0:
            return samples, [None for _ in ps]
        ranks = [min(n - 1, max(0, round(p / 100 * (n - 1)))) for p in ps]
        # the bin of each rank, and the rank within it
        where: dict[int, tuple[int, int]] = {}
        seen = 0
        pending = sorted(set(ranks))
        for b in sorted(bins):
            count = bins[b]
            while pending and pending[0] < seen + count:
                rank = pending.pop(0)
                where[rank] = (b, rank - seen)
            seen += count
            if not pending:
                break
        wanted = {b for b, _ in where.values()}
        members: dict[int, list[float]] = {b: [] for b in wanted}
        spool.seek(0)
        for size in sizes:
            gaps = array("d")
            gaps.fromfile(spool, size)
            for b in wanted:
                lo, hi = b / scale, (b + 1) / scale
                members[b].extend(g for g in gaps if lo <= g < hi)
    for values in members.values():
        values.sort()
    return samples, [members[where[r][0]][where[r][1]] for r in ranks]


def canary_gap_percentiles(tl: Timeline, ps: Sequence[float]) -> tuple[int, list[float | None]]:
    """`gap_percentiles` of the canary's sends in time order: from the canary read as
    stored (one column, sorted in a sliding buffer) when that finds them in order, else
    from SQLite's sort (which spills to its temporary file, and costs more than the read as
    stored)."""
    try:
        return gap_percentiles(tl.canary_sends_as_stored(), ps)
    except Disordered:
        return gap_percentiles(tl.canary_sends_sorted(), ps)


def sampler_stats(tl: Timeline) -> dict[str, SamplerStats]:
    """Samples, achieved interval p50/p99 and errors per sampler stream, each read a window
    at a time (the canary's sends sorted by SQLite)."""
    out: dict[str, SamplerStats] = {}
    streams = sorted((f"{table}:{name}", table, name)
                     for table in ("dns", "http", "replication", "ha")
                     if tl.has(table) for name in tl.names(table))
    for label, table, name in streams:
        rows = tl.stream(table, name)
        samples, (p50, p99) = gap_percentiles(rows.times(), (50, 99))
        out[label] = SamplerStats(samples=samples, errors=rows.errors(),
                                  interval_p50_s=_round(p50), interval_p99_s=_round(p99))
    samples, errors, _, _ = tl.canary_extent
    _, (p50, p99) = canary_gap_percentiles(tl, (50, 99))
    out["canary"] = SamplerStats(samples=samples, errors=errors, interval_p50_s=_round(p50),
                                 interval_p99_s=_round(p99))
    return out


def _round(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(v, nd)
