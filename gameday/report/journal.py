"""The run's numbers in the Chaos Toolkit journal.

Chaos Toolkit's own tools read the journal, not our run directory: `chaos report`, the
notification channels (their run-completed / run-failed payload is the journal) and
Reliably. Its `extensions` list is the place an extension puts its results, one entry per
extension, named. Ours carries the headline numbers and the whole summary
(`gameday.summary/v1`, which holds no password), so a consumer needs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gameday.measure.contract import Summary

NAME = "gameday"


def extension(summary: Summary, run_dir: Path) -> dict[str, Any]:
    """Our journal entry: the headline first (what a notification shows), then the
    summary it comes from."""
    writes = summary["writes"]
    return {
        "name": NAME,
        "schema": summary["schema"],
        "drill": summary.get("drill", "failover"),
        "verdict": summary["verdict"],
        "reasons": list(summary["reasons"]),
        "targets": dict(summary["targets"]),
        "rto_s": summary["rto_s"],
        "rto_error_s": summary["rto_error_s"],
        "write_rto_s": summary["write_rto_s"],
        "downtime_s": summary["downtime_s"],
        "rpo_s": summary["rpo_s"],
        "rpo_error_s": summary["rpo_error_s"],
        "lost_writes": writes["lost"],
        "unexpected_rows": writes["unexpected"],
        "duplicate_rows": writes["duplicate"],
        "run_dir": str(run_dir),
        "report": str(run_dir / "report.md"),
        "summary": summary,
    }


def attach(journal: dict[str, Any], summary: Summary, run_dir: Path) -> dict[str, Any]:
    """Put the run's entry into the journal."""
    return put(journal, extension(summary, run_dir))


def put(journal: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """Put `entry` (named ours) into `journal["extensions"]`, replacing an earlier one of
    ours and keeping other extensions' entries."""
    others = [e for e in journal.get("extensions") or []
              if not (isinstance(e, dict) and e.get("name") == NAME)]
    ours = {**entry, "name": NAME}
    journal["extensions"] = [*others, ours]
    return ours
