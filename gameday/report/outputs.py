"""Everything a finished (or interrupted) run leaves in its directory: summary.json,
report.md, timeline.svg, the journal, its line in the reports directory's history.jsonl,
the `latest` link, in GitHub Actions the job summary, and on a Pushgateway its metrics. One
entry point for the control (`write_run_outputs`) and one for `gameday report RUN_DIR`
(`regenerate`), so both render a run the same way. A run directory copied out of CI with
only its summary.json still gives its verdict, trend, JUnit and metrics."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gameday.foundation.errors import ConfigError, GamedayError
from gameday.measure import contract
from gameday.measure import summary as summaries
from gameday.measure.contract import Summary, Verdict
from gameday.measure.store import reader, timeline
from gameday.report import github, markdown, prometheus, svg
from gameday.report import journal as journals
from gameday.report import trend as trends

logger = logging.getLogger(f"chaostoolkit.{__name__}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outputs:
    summary: Summary
    trend: trends.Trend
    report: Path | None = None  # None: rendered from summary.json alone, no report.md

    @property
    def failed(self) -> bool:
        return self.summary.get("verdict") != Verdict.PASS


def is_run_dir(path: Path) -> bool:
    return (Path(path) / timeline.FILE).is_file() or (Path(path) / "summary.json").is_file()


def regenerate(run_dir: Path, *, history: Path | None = None, factor: float | None = None,
               record: bool = True) -> Outputs:
    """Rebuild summary.json, report.md and timeline.svg from the stored timeline alone (no
    lab), and record the run in the history (replacing its earlier line). The same run
    directory and history give byte-identical files."""
    run_dir = Path(run_dir)
    if not (run_dir / timeline.FILE).is_file():
        if (run_dir / "summary.json").is_file():
            return _from_summary(run_dir, history=history, factor=factor)
        raise ConfigError(f"{run_dir} holds no {timeline.FILE}: is it a run directory?")
    tl, present = reader.open_run(run_dir)
    try:
        return _render(run_dir, tl, present, history=history, factor=factor, record=record)
    finally:
        tl.close()


def _render(run_dir: Path, tl: reader.Timeline, present: Mapping[int, int] | None, *,
            history: Path | None, factor: float | None, record: bool) -> Outputs:
    summary = summaries.compute(tl, present)
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    # the contract, on what summary.json will hold, before anything is written: a summary
    # that breaks it is a bug of ours, never a file (or a history line) to hand on
    contract.validate(json.loads(text))
    history = history if history is not None else run_dir.absolute().parent / trends.FILE
    entry = trends.compact(summary)
    if record:
        try:
            trends.record(history, entry)
        except OSError as exc:
            logger.error("gameday: cannot record the run in %s: %s", history.name, exc)
    trend = trends.evaluate(entry, trends.read(history), factor=_factor(summary, factor))
    (run_dir / "summary.json").write_text(text)
    (run_dir / svg.FILE).write_text(svg.render(summary, tl))
    (run_dir / "report.md").write_text(
        markdown.render(summary, tl.events, trend=trend, image=svg.FILE))
    return Outputs(summary=summary, trend=trend, report=run_dir / "report.md")


def _factor(summary: Mapping[str, Any], given: float | None) -> float:
    if given is not None:
        return given
    return float((summary.get("configuration") or {}).get("regression_factor")
                 or trends.DEFAULT_FACTOR)


def _from_summary(run_dir: Path, *, history: Path | None, factor: float | None) -> Outputs:
    """A run directory with only summary.json: its verdict and trend, nothing written (the
    history beside a copied-out run is not the one it belongs to, so it is read, not
    recorded into)."""
    path = run_dir / "summary.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read it as JSON ({exc})") from None
    contract.validate(data)
    summary: Summary = data
    history = history if history is not None else run_dir.absolute().parent / trends.FILE
    trend = trends.evaluate(trends.compact(summary), trends.read(history),
                            factor=_factor(summary, factor))
    return Outputs(summary=summary, trend=trend, report=None)


def write_run_outputs(run_dir: Path, journal: dict[str, Any] | None = None, *,
                      pushgateway: str | None = None) -> Summary:
    """Build summary.json from the stored timeline and render report.md beside it; the
    Chaos Toolkit journal gets the numbers in its extensions and a copy in the run; with
    `pushgateway`, the metrics are pushed there (a gateway that does not answer is logged:
    the run's verdict does not depend on it)."""
    out = regenerate(run_dir)
    if pushgateway:
        try:
            prometheus.push(pushgateway, out.summary)
            logger.info("gameday: metrics pushed to %s", prometheus.safe_url(pushgateway))
        except GamedayError as exc:
            logger.error("gameday: %s", exc)
    if journal is not None:
        journals.attach(journal, out.summary, run_dir)
        (run_dir / "journal.json").write_text(json.dumps(journal, indent=2, default=str))
    _link_latest(run_dir)
    try:
        github.append(out.summary, out.trend)
    except OSError as exc:
        logger.error("gameday: cannot write the GitHub job summary: %s", exc)
    return out.summary


def _link_latest(run_dir: Path) -> None:
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / ".latest.tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    tmp.replace(latest)
