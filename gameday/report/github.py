"""The GitHub Actions job summary: when `GITHUB_STEP_SUMMARY` names a file, append the
verdict, the headline table and the Mermaid chart of the run, staying under GitHub's 1 MiB
limit for a step's summary."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gameday.report import markdown
from gameday.report import trend as trends

logger = logging.getLogger(f"chaostoolkit.{__name__}")

ENV = "GITHUB_STEP_SUMMARY"
LIMIT = 1024 * 1024


def text(summary: Mapping[str, Any], trend: trends.Trend | None = None, *,
         chart: bool = True) -> str:
    title = markdown.title(summary).replace("# ", "## ", 1)
    lines = [title, "", *markdown.verdict_lines(summary, trend), "", *markdown.headline(summary),
             ""]
    if chart:
        block = markdown.mermaid(summary)
        if block:
            lines += [*block, ""]
    lines += [f"Full report: `reports/{summary.get('run_id')}/report.md`.", "", ""]
    return "\n".join(lines)


def append(summary: Mapping[str, Any], trend: trends.Trend | None = None, *,
           environ: Mapping[str, str] | None = None) -> Path | None:
    """Append to the job summary when running in GitHub Actions; returns the file written."""
    env = os.environ if environ is None else environ
    name = env.get(ENV)
    if not name:
        return None
    path = Path(name)
    used = path.stat().st_size if path.is_file() else 0
    for chart in (True, False):
        data = text(summary, trend, chart=chart).encode()
        if used + len(data) <= LIMIT:
            with path.open("ab") as f:
                f.write(data)
            return path
    logger.warning("gameday: the job summary is full (%d bytes); the verdict was not added",
                   used)
    return None
