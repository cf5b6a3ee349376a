"""Everything a finished (or interrupted) run leaves in its directory: summary.json,
report.md, the journal, and the `latest` link. One entry point, so the control, `gameday
report RUN_DIR` and crash recovery render a run the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gameday.measure import timeline
from gameday.report import markdown
from gameday.report import summary as summaries


def events_of(run_dir: Path) -> list[tuple]:
    conn = timeline.connect(run_dir)
    try:
        return conn.execute("SELECT t, kind, region, detail FROM events ORDER BY t").fetchall()
    finally:
        conn.close()


def write_run_outputs(run_dir: Path, journal: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build summary.json from the stored timeline and render report.md beside it."""
    summary = summaries.build(run_dir)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    (run_dir / "report.md").write_text(markdown.render(summary, events_of(run_dir)))
    if journal is not None:
        (run_dir / "journal.json").write_text(json.dumps(journal, indent=2, default=str))
    _link_latest(run_dir)
    return summary


def _link_latest(run_dir: Path) -> None:
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / ".latest.tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    tmp.replace(latest)
