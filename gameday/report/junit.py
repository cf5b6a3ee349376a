"""A run as JUnit XML, for CI test views (GitHub test-report actions, GitLab, Jenkins).

CI systems show test results; a game day's results are targets met or missed. So each
target is one testcase (RTO, RPO, lost writes), each integrity check another (unexpected
rows, duplicate rows), and one testcase carries the verdict, whose other reasons
(steady state not met, interrupted, a failed step) no target shows. A number that was not
observed is a failure that says so: a target is met only when it was measured. The
failback, when the run has one, is a second suite. Standard library only (xml.etree), and
the same summary gives byte-identical XML.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from gameday.report.contract import Summary


@dataclasses.dataclass(frozen=True, kw_only=True)
class Case:
    name: str
    failure: str | None  # None: passed


def _at_most(what: str, value: float | int | None, target: float | int, unit: str) -> Case:
    name = f"{what} <= {target:g}{unit}"
    if value is None:
        return Case(name=name, failure=f"{what} was not observed, so the target is not met")
    if value > target:
        return Case(name=name, failure=f"{what} {value:g}{unit} exceeds the target {target:g}{unit}")
    return Case(name=name, failure=None)


def _none(what: str, value: int | None) -> Case:
    name = f"no {what}"
    if value is None:
        return Case(name=name, failure=f"{what} unknown: the canary table was not read")
    return Case(name=name, failure=f"{value} {what}" if value else None)


def failover_cases(s: Summary) -> list[Case]:
    t = s["targets"]
    w = s["writes"]
    return [
        _at_most("RTO", s["rto_s"], t["rto_s"], " s"),
        _at_most("RPO", s["rpo_s"], t["rpo_s"], " s"),
        _at_most("lost writes", w["lost"], t["max_lost_writes"], ""),
        _none("unexpected rows", w["unexpected"]),
        _none("duplicate rows", w["duplicate"]),
        Case(name="verdict", failure=("; ".join(s["reasons"]) or "fail")
             if s["verdict"] != "pass" else None),
    ]


def failback_cases(s: Summary) -> list[Case]:
    fb = s["failback"]
    if not fb:
        return []
    t = s["targets"]
    return [
        _at_most("failback RTO", fb.get("rto_s"), t["rto_s"], " s"),
        _at_most("failback lost writes", fb.get("lost"), t["max_lost_writes"], ""),
        Case(name="failback verdict", failure=("; ".join(fb.get("reasons") or []) or "fail")
             if fb.get("verdict") != "pass" else None),
    ]


def _suite(parent: ET.Element, name: str, classname: str, cases: list[Case],
           s: Summary, properties: dict[str, Any]) -> None:
    failures = sum(1 for c in cases if c.failure)
    suite = ET.SubElement(parent, "testsuite", {
        "name": name, "tests": str(len(cases)), "failures": str(failures), "errors": "0",
        "skipped": "0", "time": "0", "timestamp": _timestamp(s["started_at"]),
    })
    props = ET.SubElement(suite, "properties")
    for key, value in properties.items():
        ET.SubElement(props, "property", {"name": key, "value": "" if value is None else f"{value}"})
    for case in cases:
        tc = ET.SubElement(suite, "testcase", {"classname": classname, "name": case.name,
                                               "time": "0"})
        if case.failure:
            failure = ET.SubElement(tc, "failure", {"message": case.failure, "type": "missed"})
            failure.text = case.failure


def _timestamp(started_at: str | None) -> str:
    """JUnit's timestamp is ISO 8601 without a zone (Ant's format); ours is UTC."""
    return (started_at or "1970-01-01T00:00:00")[:19]


def render(s: Summary, run_dir: Path | None = None) -> str:
    experiment = s["experiment"] or "game day"
    drill = s["drill"]
    root = ET.Element("testsuites", {"name": f"gameday: {experiment}"})
    suites = [(f"gameday {drill}: {experiment}", f"gameday.{drill}", failover_cases(s),
               {"run_id": s["run_id"], "lab": s["lab"], "verdict": s["verdict"],
                "rto_s": s["rto_s"], "rpo_s": s["rpo_s"], "lost_writes": s["writes"]["lost"],
                "report": run_dir / "report.md" if run_dir else None})]
    fb = s["failback"]
    if fb:
        suites.append((f"gameday failback: {experiment}", "gameday.failback", failback_cases(s),
                       {"run_id": fb.get("run_id"), "verdict": fb.get("verdict"),
                        "rto_s": fb.get("rto_s"), "lost_writes": fb.get("lost")}))
    total = failed = 0
    for name, classname, cases, props in suites:
        _suite(root, name, classname, cases, s, props)
        total += len(cases)
        failed += sum(1 for c in cases if c.failure)
    root.set("tests", str(total))
    root.set("failures", str(failed))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(path: Path, s: Summary, run_dir: Path | None = None) -> None:
    path.write_text(render(s, run_dir), encoding="utf-8")
