"""The report a person reads first: golden files from a fixed stored run, byte-identical
regeneration, valid Mermaid gantt syntax, the phase budget, GitHub job summary, the CLI.

Regenerate the golden files after an intended change with
    GAMEDAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_report.py
which fails for each file it rewrote; review the diff and run the tests again without it."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from pathlib import Path
from unittest import mock
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from gameday import cli
from gameday.foundation.errors import ConfigError
from gameday.measure import contract
from gameday.report import budget, gantt, github, markdown, outputs, svg
from gameday.report import trend as trends
from tests.fixtures.report import fixture_run

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "report"
UPDATE = os.environ.get("GAMEDAY_UPDATE_GOLDEN") == "1"

# three earlier runs of the same experiment, for the trend section, and a failback between
# them, which the trend leaves out (another drill)
PROFILE = ("lab=netns replication=sync ttl_s=1 health_interval_s=1 delay_ms=20 k=5 "
           "faults=block-egress,scale-to-zero")
HISTORY = [
    {"run_id": f"20251231T0{h}0000Z-{drill}", "started_at": f"2025-12-31T0{h}:00:00+00:00",
     "drill": drill, "experiment_id": f"fixture-{drill}", "profile": PROFILE,
     "experiment": f"Fixture {drill}", "lab": "netns", "verdict": "pass",
     "targets": {"rto_s": 30.0, "rpo_s": 0.0, "max_lost_writes": 0}, "rto_s": rto,
     "rto_error_s": 0.05, "write_rto_s": 0.6, "downtime_s": rto, "rpo_s": 0.0, "lost": 0,
     "failback_rto_s": None}
    for h, drill, rto in ((1, "failover", 1.4), (2, "failover", 1.6), (3, "failback", 0.7),
                          (4, "failover", 1.5))
]


def seeded_reports(tmp_path: Path, **build: object) -> Path:
    reports = tmp_path / "reports"
    reports.mkdir(parents=True)
    (reports / trends.FILE).write_text("".join(trends.line(e) + "\n" for e in HISTORY))
    run_id = str(build.pop("run_id", fixture_run.RUN_ID))
    return fixture_run.build(reports / run_id, run_id=run_id, **build)  # type: ignore[arg-type]


def check_golden(name: str, text: str, *, golden: Path = GOLDEN, update: bool = UPDATE) -> None:
    """`text` must equal the golden file. Updating rewrites the file and then fails: a run
    that rewrote a golden file compared it with nothing, so it can never pass."""
    path = golden / name
    if update:
        if path.is_file() and path.read_text() == text:
            return
        path.write_text(text)
        pytest.fail(f"{name}: golden file rewritten; review `git diff {path}` and run the "
                    "tests again without GAMEDAY_UPDATE_GOLDEN")
    assert path.is_file(), f"missing golden file {path}: run with GAMEDAY_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file"


def test_the_golden_check_fails_on_a_difference_and_when_it_rewrites(tmp_path: Path) -> None:
    (tmp_path / "g.md").write_text("one\n")
    check_golden("g.md", "one\n", golden=tmp_path, update=False)
    with pytest.raises(AssertionError, match="g.md differs from its golden file"):
        check_golden("g.md", "two\n", golden=tmp_path, update=False)
    with pytest.raises(AssertionError, match="missing golden file"):
        check_golden("new.md", "two\n", golden=tmp_path, update=False)
    check_golden("g.md", "one\n", golden=tmp_path, update=True)  # nothing to rewrite
    with pytest.raises(pytest.fail.Exception, match="g.md: golden file rewritten"):
        check_golden("g.md", "two\n", golden=tmp_path, update=True)
    assert (tmp_path / "g.md").read_text() == "two\n"


# --- a small Mermaid gantt grammar checker ----------------------------------------------

TAGS = {"done", "active", "crit", "milestone"}
ID = re.compile(r"^[A-Za-z][\w-]*$")
DURATION = re.compile(r"^\d+(\.\d+)?(ms|s|m|h|d|w)$")


def check_gantt(source: str) -> list[str]:
    """Errors in a gantt chart under the subset of Mermaid's grammar the report uses:
    `gantt` first; directives title, dateFormat, axisFormat, tickInterval, todayMarker,
    excludes; `section NAME`; tasks `NAME : [tags,] [id,] start, end|duration` where, with
    `dateFormat x`, start and end are integer milliseconds or `after ID`."""
    errors: list[str] = []
    lines = [ln.strip() for ln in source.splitlines() if ln.strip() and
             not ln.strip().startswith("%%")]
    if not lines or lines[0] != "gantt":
        return ["the first line must be 'gantt'"]
    date_format = None
    ids: set[str] = set()
    tasks = 0
    for n, ln in enumerate(lines[1:], 2):
        word = ln.split(None, 1)[0]
        if word in ("title", "axisFormat", "tickInterval", "excludes", "section"):
            if len(ln.split(None, 1)) < 2:
                errors.append(f"line {n}: {word} needs a value")
            continue
        if word == "dateFormat":
            date_format = ln.split(None, 1)[1]
            continue
        if ln in ("todayMarker off", "inclusiveEndDates"):
            continue
        if ":" not in ln:
            errors.append(f"line {n}: not a directive, section or task: {ln!r}")
            continue
        name, spec = (p.strip() for p in ln.split(":", 1))
        if not name or any(c in name for c in "#;"):
            errors.append(f"line {n}: bad task name {name!r}")
        parts = [p.strip() for p in spec.split(",")]
        tags = []
        while parts and parts[0] in TAGS:
            tags.append(parts.pop(0))
        if len(parts) == 3:
            task_id = parts.pop(0)
            if not ID.match(task_id) or task_id in ids:
                errors.append(f"line {n}: bad or repeated id {task_id!r}")
            ids.add(task_id)
        if len(parts) != 2:
            errors.append(f"line {n}: a task needs a start and an end: {spec!r}")
            continue
        start, end = parts
        if date_format != "x":
            errors.append(f"line {n}: the checker knows only 'dateFormat x'")
            continue
        if start.startswith("after "):
            if start[6:].strip() not in ids:
                errors.append(f"line {n}: 'after' names an unknown id")
            start_ms = None
        elif re.fullmatch(r"\d+", start):
            start_ms = int(start)
        else:
            errors.append(f"line {n}: start {start!r} is not in dateFormat x")
            continue
        if re.fullmatch(r"\d+", end):
            if start_ms is not None and int(end) < start_ms:
                errors.append(f"line {n}: ends before it starts")
        elif not DURATION.match(end) or end.endswith("ms"):
            # Mermaid's durations take no milliseconds (mermaid-js/mermaid#3028)
            errors.append(f"line {n}: end {end!r} is neither a date nor a duration")
        tasks += 1
    if date_format is None:
        errors.append("no dateFormat")
    if not tasks:
        errors.append("no task")
    return errors


def test_gantt_checker_rejects_broken_charts() -> None:
    assert check_gantt("gantt\n dateFormat x\n a : t1, 0, 10") == []
    assert check_gantt("graph TD\n a-->b")
    assert check_gantt("gantt\n dateFormat x\n a : t1, 10, 5")  # ends before it starts
    assert check_gantt("gantt\n dateFormat x\n a : t1, 0, 500ms")  # no ms durations
    assert check_gantt("gantt\n dateFormat x\n a: b : t1, 0, 10")  # a second colon
    assert check_gantt("gantt\n dateFormat x\n a#1 : t1, 0, 10")
    assert check_gantt("gantt\n dateFormat x\n a : t1, 0, 10\n b : t1, 0, 10")  # repeated id
    assert check_gantt("gantt\n dateFormat x\n a : t1, after t9, 10")
    assert check_gantt("gantt\n dateFormat x\n just words")


def mermaid_blocks(report: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)\n```", report, flags=re.S)


# --- golden files -------------------------------------------------------------------------


def test_fixed_run_renders_to_the_golden_report(tmp_path: Path) -> None:
    run_dir = seeded_reports(tmp_path)
    out = outputs.regenerate(run_dir)
    assert out.summary["verdict"] == "pass" and not out.trend.regression
    check_golden("report.md", (run_dir / "report.md").read_text())
    check_golden("timeline.svg", (run_dir / "timeline.svg").read_text())
    check_golden("summary.json", (run_dir / "summary.json").read_text())


def test_run_with_lost_writes_renders_to_the_golden_report(tmp_path: Path) -> None:
    run_dir = seeded_reports(tmp_path, lost=True, run_id="20260101T000000Z-fixture-lost")
    out = outputs.regenerate(run_dir)
    assert out.summary["verdict"] == "fail"
    report = (run_dir / "report.md").read_text()
    check_golden("report-lost.md", report)
    assert "Lost sequence numbers: 47–50." in report
    assert "- acknowledged by: 198.18.0.11: 4" in report
    assert "RPO 0.090 s exceeds its target 0 s" in report  # flagged by the trend too


def test_run_with_both_canaries_renders_them_side_by_side_and_names_the_difference(
        tmp_path: Path) -> None:
    """The database canary lost nothing; the application acknowledged 12 writes its
    read-back does not return (the fixture's story): the verdict names the application
    canary, and the report puts both side by side and says where they differ."""
    run_dir = seeded_reports(tmp_path, app=True, run_id="20260101T000000Z-fixture-app")
    out = outputs.regenerate(run_dir)
    s = out.summary
    assert s["verdict"] == "fail"
    assert s["reasons"] == ["application canary: 12 acknowledged writes lost (at most 0 "
                            "allowed)"]
    app = s["app_writes"]
    assert app["writes"] == {"attempted": 152, "acked": 84, "lost": 12, "recovered": 0,
                             "unknown_absent": 10, "unexpected": 0, "duplicate": 0}
    assert (app["write_rto_s"], app["write_rto_error_s"], app["rpo_s"]) == (1.715, 0.04, 0.31)
    assert app["lost_by_region"] == {"region-1": 12}
    assert s["writes"]["lost"] == 0  # the database canary lost nothing
    report = (run_dir / "report.md").read_text()
    check_golden("report-app.md", report)
    assert "| Lost acknowledged writes (application canary) | 12 | ≤ 0 | ❌ |" in report
    assert "| Lost | 0 | 12 |" in report
    assert "| Write RTO | 0.610 s ± 30 ms | 1.715 s ± 40 ms |" in report
    assert ("the application acknowledged 12 writes it cannot read back while the database "
            "canary lost none") in report
    assert "took its first write 1.105 s after the database" in report


def test_each_canary_is_judged_by_max_lost_writes_and_named_when_it_misses(
        tmp_path: Path) -> None:
    both = outputs.regenerate(seeded_reports(tmp_path / "both", app=True, lost=True)).summary
    assert [r for r in both["reasons"] if "acknowledged writes lost" in r] == [
        "database canary: 4 acknowledged writes lost (at most 0 allowed)",
        "application canary: 12 acknowledged writes lost (at most 0 allowed)"]
    # both lost: the counts differ with the canaries' rates; where the data ends differs
    assert both["app_writes"]["differences"][0] == (
        "the application's data ends 0.220 s earlier than the database's (RPO 0.310 s "
        "against 0.090 s): the application lost writes the database kept (its buffer or "
        "cache, or a datastore of its own)")
    # both lost, their data ending at the same time: no difference, whatever the counts
    run_dir = seeded_reports(tmp_path / "agree", app=True, lost=True)
    with sqlite3.connect(run_dir / "timeline.sqlite") as conn:
        conn.execute("INSERT INTO app_final_rows SELECT seq, 1 FROM app_canary WHERE "
                     "outcome = 'ok' AND t_send >= 0.7 AND t_send < 0.925")
    conn.close()
    agree = outputs.regenerate(run_dir).summary
    assert agree["app_writes"]["writes"]["lost"] == 3 and agree["writes"]["lost"] == 4
    assert (agree["app_writes"]["rpo_s"], agree["rpo_s"]) == (0.085, 0.09)
    assert [d for d in agree["app_writes"]["differences"] if "RPO" in d or "lost" in d] == []
    assert "Both canaries lost acknowledged writes. Their counts differ" in \
        (run_dir / "report.md").read_text()
    # the application's target met by a higher max_lost_writes: only the database's loss
    # (4 <= 12 passes both): no reason names either canary
    run_dir = seeded_reports(tmp_path / "lenient", app=True, lost=True)
    with sqlite3.connect(run_dir / "timeline.sqlite") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'targets'", (json.dumps(
            {"rto_s": 30.0, "rpo_s": 1.0, "max_lost_writes": 12}),))
    conn.close()
    lenient = outputs.regenerate(run_dir).summary
    assert lenient["verdict"] == "pass", lenient["reasons"]
    # a summary whose app_writes breaks the contract is refused before it is written
    broken = dict(both, app_writes={k: v for k, v in both["app_writes"].items()
                                    if k != "differences"})
    with pytest.raises(ConfigError, match="field 'app_writes'"):
        contract.validate(broken)


def test_a_failed_application_read_back_fails_the_verdict_and_says_why(
        tmp_path: Path) -> None:
    run_dir = seeded_reports(tmp_path, app=True)
    with sqlite3.connect(run_dir / "timeline.sqlite") as conn:
        conn.execute("DROP TABLE app_final_rows")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('app_read_error', ?)", (json.dumps(
            "the application canary's read-back GET http://198.18.0.12:8080/canary?since=1 "
            "answered 502, not 200: check app_canary.read_back"),))
    conn.close()
    out = outputs.regenerate(run_dir)
    s = out.summary
    assert s["verdict"] == "fail"
    assert s["reasons"] == [
        "application canary: the application canary's read-back GET "
        "http://198.18.0.12:8080/canary?since=1 answered 502, not 200: check "
        "app_canary.read_back; its lost writes are unknown"]
    assert s["app_writes"]["writes"]["attempted"] == 152
    assert s["app_writes"]["writes"]["lost"] is None
    report = (run_dir / "report.md").read_text()
    assert "| Lost acknowledged writes (application canary) | unknown | ≤ 0 | — |" in report
    assert "Application read-back: the application canary's read-back GET" in report


def test_report_sections_come_in_the_order_people_read_them(tmp_path: Path) -> None:
    run_dir = seeded_reports(tmp_path)
    outputs.regenerate(run_dir)
    report = (run_dir / "report.md").read_text()
    order = ["**Verdict: PASS.**", "| RTO (service) |", "## RTO phases", "```mermaid",
             "](timeline.svg)", "## Writes", "## Faults", "## Sequence of actions",
             "## Probe statistics", "## Configuration", "## Trend", "## Raw data"]
    positions = [report.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_regeneration_is_byte_identical_and_free_of_paths_and_clock(tmp_path: Path) -> None:
    run_dir = seeded_reports(tmp_path)
    outputs.regenerate(run_dir)
    files = ("report.md", "timeline.svg", "summary.json")
    first = {f: (run_dir / f).read_bytes() for f in files}
    history = (run_dir.parent / trends.FILE).read_bytes()
    # a copy elsewhere, regenerated again and again, gives the same bytes
    other = tmp_path / "elsewhere" / "reports"
    other.mkdir(parents=True)
    shutil.copy(run_dir.parent / trends.FILE, other / trends.FILE)
    copy = other / run_dir.name
    shutil.copytree(run_dir, copy)
    outputs.regenerate(copy)
    outputs.regenerate(run_dir)
    for f in files:
        assert (run_dir / f).read_bytes() == first[f]
        assert (copy / f).read_bytes() == first[f]
    assert (run_dir.parent / trends.FILE).read_bytes() == history  # recorded once
    for f in files:
        assert str(tmp_path) not in first[f].decode()
    # a newer run in the history does not change an older run's report
    newer = dict(HISTORY[0], run_id="20270101T000000Z-later", started_at="2027-01-01T00:00:00+00:00",
                 rto_s=99.0)
    with (run_dir.parent / trends.FILE).open("a") as fh:
        fh.write(trends.line(newer) + "\n")
    outputs.regenerate(run_dir)
    assert (run_dir / "report.md").read_bytes() == first["report.md"]


def test_mermaid_chart_is_valid_gantt(tmp_path: Path) -> None:
    run_dir = seeded_reports(tmp_path)
    outputs.regenerate(run_dir)
    blocks = mermaid_blocks((run_dir / "report.md").read_text())
    assert len(blocks) == 1
    assert check_gantt(blocks[0]) == []
    assert "Promotion 0.610 s : p2, 0, 610" in blocks[0]
    assert "RTO 1.500 s : milestone, rto, 1500, 1500" in blocks[0]


def test_timeline_svg_is_well_formed_and_linked(tmp_path: Path) -> None:
    run_dir = seeded_reports(tmp_path)
    outputs.regenerate(run_dir)
    root = ElementTree.fromstring((run_dir / svg.FILE).read_text())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for lane in ("faults", "global requests", "region-1 /healthz", "DNS resolver",
                 "canary writes"):
        assert lane in texts
    assert "RTO 1.500 s" in texts and "promotion 0.610 s" in texts
    assert "![Timeline of the run" in (run_dir / "report.md").read_text()


# --- budget and overruns ------------------------------------------------------------------


def test_budget_is_derived_from_the_configuration() -> None:
    b = budget.derive({"health_interval_s": 2.0, "health_failures": 3, "health_timeout_s": 1.0,
                       "dns_ttl_s": 5.0, "k_consecutive": 5, "http_interval_s": 0.1})
    assert b["detection_s"].deadline_s == pytest.approx(7.0)       # 2 × 3 + 1
    assert b["promotion_s"].deadline_s == pytest.approx(8.0)       # + 1 (default)
    assert b["dns_authoritative_s"].deadline_s == pytest.approx(10.0)  # + one interval
    assert b["dns_resolver_s"].deadline_s == pytest.approx(15.0)   # + TTL
    assert b["first_success_s"].deadline_s == pytest.approx(15.1)  # + one request
    assert b["rto"].deadline_s == pytest.approx(15.5)              # + 4 requests
    assert b["first_write_s"].deadline_s == pytest.approx(9.0)     # promotion + 1
    assert budget.overrun(16.0, b["rto"]) == pytest.approx(0.5)
    assert budget.overrun(1.0, b["rto"]) == 0.0
    assert budget.overrun(None, b["rto"]) is None
    # nonsense values fall back to the defaults
    assert budget.parameters({"dns_ttl_s": "soon", "health_failures": -1})["dns_ttl_s"] == 1.0


def test_an_overrun_phase_is_named_with_its_overrun() -> None:
    summary = json.loads((GOLDEN / "summary.json").read_text())
    summary["phases"]["dns_resolver_s"] = 9.25  # deadline 5.0 with the fixture's settings
    summary["phase_detail"]["dns_resolver_s"]["at_s"] = 9.25
    text = markdown.render(summary, [])
    assert "| DNS flip through the caching resolver | 9.250 s ± 50 ms | 8.550 s | 1.000 s " \
           "(by 5.000 s) | **+4.250 s** |" in text
    assert "- DNS flip through the caching resolver overran its budget by 4.250 s" in text
    chart = mermaid_blocks(text)[0]
    assert "DNS resolver flip 9.250 s : crit, p4, 700, 9250" in chart
    assert check_gantt(chart) == []


def test_unobserved_phases_say_why_and_leave_the_chart_valid() -> None:
    summary = json.loads((GOLDEN / "summary.json").read_text())
    summary["phases"]["promotion_s"] = None
    summary["phase_detail"]["promotion_s"] = {"at_s": None, "error_s": None, "evidence": None,
                                              "reason": "region-2 was not promoted"}
    text = markdown.render(summary, [])
    assert "not observed: region-2 was not promoted" in text
    chart = mermaid_blocks(text)[0]
    assert "Promotion" not in chart and check_gantt(chart) == []
    # the first write waits for promotion: without it the bar starts at detection
    assert "First write 0.610 s : p6, 0, 610" in chart


def test_no_fault_renders_without_a_chart() -> None:
    summary = json.loads((GOLDEN / "summary.json").read_text())
    summary["phases"] = dict.fromkeys(summary["phases"])
    summary["rto_s"] = None
    summary["faults"] = []
    assert gantt.render(summary, budget.derive({})) is None
    text = markdown.render(summary, [])
    assert "```mermaid" not in text and "no fault was injected" in text


def test_failback_section_when_present() -> None:
    summary = json.loads((GOLDEN / "summary.json").read_text())
    assert "## Failback" not in markdown.render(summary, [])
    summary["failback"] = {"rto_s": 2.25, "rto_error_s": 0.05, "write_rto_s": 0.4, "lost": 0,
                           "split_brain_writes": 3, "split_brain_window_s": [0.1, 0.35],
                           "catch_up_s": 0.8,
                           "phases": {"promotion_s": 0.3, "dns_resolver_s": 2.0}}
    text = markdown.render(summary, [])
    section = text.split("## Failback", 1)[1].split("\n## ", 1)[0]
    assert "| Failback RTO (service) | 2.250 s ± 50 ms |" in section
    assert "| Split-brain writes | 3 | 0 | ❌ |" in section
    assert "| Catch-up of the old primary | 0.800 s |" in section
    assert "from +0.100 s to +0.350 s" in section
    assert section.index("Promotion") < section.index("caching resolver")
    # the block as the failback drill stores it (window in UTC, resync details)
    summary["failback"] = {"rto_s": 2.0, "rto_error_s": None, "write_rto_s": 0.3, "lost": 0,
                           "split_brain_writes": 0, "unreplicated_writes": 2,
                           "split_brain_window_utc": ["2026-01-01T00:00:01+00:00",
                                                      "2026-01-01T00:00:02+00:00"],
                           "resync_method": "rewind", "resync_s": 0.5, "catch_up_s": 0.2,
                           "downtime_s": 1.1, "phases": {}, "verdict": "fail",
                           "reasons": ["late"]}
    section = markdown.render(summary, []).split("## Failback", 1)[1].split("\n## ", 1)[0]
    assert "| Resync of the old primary | 0.500 s (rewind) |" in section
    assert "from 2026-01-01T00:00:01+00:00 to 2026-01-01T00:00:02+00:00 (UTC)" in section
    assert "never replicated: 2." in section and "- late" in section


# --- outputs, GitHub, CLI -----------------------------------------------------------------


def test_write_run_outputs_writes_everything_and_records_history(tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.delenv(github.ENV, raising=False)
    run_dir = seeded_reports(tmp_path)
    summary = outputs.write_run_outputs(run_dir, {"status": "completed"})
    assert summary["verdict"] == "pass"
    for f in ("summary.json", "report.md", "timeline.svg", "journal.json"):
        assert (run_dir / f).is_file()
    assert (run_dir.parent / "latest").resolve() == run_dir.resolve()
    lines = trends.read(run_dir.parent / trends.FILE)
    assert [e["run_id"] for e in lines] == [e["run_id"] for e in HISTORY] + [run_dir.name]


def test_regenerate_refuses_a_directory_without_a_timeline(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timeline.sqlite"):
        outputs.regenerate(tmp_path)


def test_github_step_summary_gets_verdict_table_and_chart(tmp_path: Path) -> None:
    summary = json.loads((GOLDEN / "summary.json").read_text())
    target = tmp_path / "step-summary.md"
    target.write_text("earlier step\n")
    assert github.append(summary, None, environ={github.ENV: str(target)}) == target
    text = target.read_text()
    assert text.startswith("earlier step\n## Game day ")
    assert "| RTO (service) | 1.500 s ± 100 ms | ≤ 30 s | ✅ |" in text
    assert check_gantt(mermaid_blocks(text)[0]) == []
    assert github.append(summary, None, environ={}) is None


def test_github_step_summary_stays_under_its_limit(tmp_path: Path) -> None:
    summary = json.loads((GOLDEN / "summary.json").read_text())
    target = tmp_path / "step-summary.md"
    small = len(github.text(summary, chart=False).encode())
    target.write_bytes(b"x" * (github.LIMIT - small))  # room for the table, not the chart
    github.append(summary, environ={github.ENV: str(target)})
    assert target.stat().st_size == github.LIMIT
    assert "```mermaid" not in target.read_text()
    assert github.append(summary, environ={github.ENV: str(target)}) is None  # full
    assert target.stat().st_size == github.LIMIT


def _fake_outputs(*, failed: bool = False, regression: bool = False) -> mock.Mock:
    return mock.Mock(summary={"verdict": "fail" if failed else "pass", "reasons": []},
                     failed=failed, report=None,
                     trend=mock.Mock(regression=regression, flags=["RTO up"] if regression
                                     else [], against="nothing"))


def test_cli_report_passes_its_options_to_the_core(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("{}")  # a run directory, as far as the CLI sees
    with mock.patch.object(outputs, "regenerate", return_value=_fake_outputs()) as regen:
        result = CliRunner().invoke(cli.main, [
            "report", str(tmp_path), "--history", str(tmp_path / "h.jsonl"),
            "--regression-factor", "2", "--fail-on-regression"])
    assert result.exit_code == 0, result.output
    regen.assert_called_once_with(tmp_path, history=tmp_path / "h.jsonl", factor=2.0)


@pytest.mark.parametrize(("regression", "failed", "flags", "code"), [
    (False, False, [], 0),
    (False, True, [], 1),  # a FAIL verdict fails the command by itself
    (False, True, ["--no-fail"], 0),
    (True, False, [], 0),  # a regression only with --fail-on-regression
    (True, False, ["--fail-on-regression"], 1),
    (True, True, ["--no-fail", "--fail-on-regression"], 1),
])
def test_cli_report_exit_code(tmp_path: Path, regression: bool, failed: bool,
                              flags: list[str], code: int) -> None:
    (tmp_path / "summary.json").write_text("{}")
    fake = _fake_outputs(failed=failed, regression=regression)
    with mock.patch.object(outputs, "regenerate", return_value=fake):
        result = CliRunner().invoke(cli.main, ["report", str(tmp_path), *flags])
    assert result.exit_code == code, result.output


def test_cli_report_on_a_stored_run_end_to_end(tmp_path: Path) -> None:
    run_dir = seeded_reports(tmp_path, lost=True, run_id="20260101T000000Z-fixture-lost")
    result = CliRunner().invoke(cli.main, ["report", str(run_dir), "--fail-on-regression"])
    assert result.exit_code == 1
    assert "FAIL; regression: RPO 0.090 s exceeds its target 0 s" in result.output
    assert CliRunner().invoke(cli.main, ["report", str(run_dir), "--no-fail"]).exit_code == 0
    ok = seeded_reports(tmp_path / "ok")
    result = CliRunner().invoke(cli.main, ["report", str(ok), "--fail-on-regression"])
    assert result.exit_code == 0, result.output
    # not a run directory: missing or without a run in it, the same usage error
    empty = tmp_path / "empty"
    empty.mkdir()
    for where in (tmp_path / "missing", empty):
        result = CliRunner().invoke(cli.main, ["report", str(where)])
        assert result.exit_code == cli.EXIT_USAGE and "not a run directory" in result.output


def test_cli_report_as_json_says_what_it_compared_with(tmp_path: Path) -> None:
    run_dir = seeded_reports(tmp_path)
    result = CliRunner().invoke(cli.main, ["report", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["verdict"] == "pass" and out["regression"] == []
    assert out["report"] == str(run_dir / "report.md")
    assert out["compared_with"].startswith("the 3 earlier failover runs of experiment "
                                           "`fixture-failover`")


def test_help_answers_to_h() -> None:
    for argv in (["-h"], ["report", "-h"], ["plan", "-h"], ["recover", "-h"]):
        result = CliRunner().invoke(cli.main, argv)
        assert result.exit_code == 0 and "Usage:" in result.output, argv


def test_a_hold_reports_its_availability_between_its_events(tmp_path: Path) -> None:
    """A long drill's hold: the global requests and canary attempts between hold-start and
    hold-end, the checks from hold-end, the timeline's growth from both; runs without a
    hold have no `hold` key (the golden summaries above)."""
    import sqlite3

    run = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID)
    start, end = 2.05, 3.55
    conn = sqlite3.connect(run / "timeline.sqlite")
    with conn:
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [
            (start, "hold-start", "region-2", json.dumps({"hold_s": 1.5,
                                                          "timeline_bytes": 1_000_000})),
            (end, "hold-end", "region-2", json.dumps({"checks": 3, "checks_failed": 1,
                                                      "timeline_bytes": 1_600_000}))])
    conn.close()
    summary = outputs.regenerate(run, history=tmp_path / "h.jsonl").summary
    glob = [r for r in fixture_run.http_rows() if r[1] == "global" and start <= r[0] <= end]
    canary, _ = fixture_run.canary_rows(lost=False)
    attempts = [r for r in canary if start <= r[2] <= end]
    hold = summary["hold"]
    assert hold == {
        "region": "region-2", "planned_s": 1.5, "held_s": 1.5, "start_s": 1.05,
        "ended": True, "global_requests": len(glob),
        "global_ok": sum(1 for r in glob if r[2]),
        "success_ratio": round(sum(1 for r in glob if r[2]) / len(glob), 6),
        "served_by_region": sum(1 for r in glob if r[2] and r[4] == "region-2"),
        "canary_attempts": len(attempts),
        "canary_errors": sum(1 for r in attempts if r[4] != "ok"),
        "checks": 3, "checks_failed": 1,
        # 0.6 MB in 1.5 s
        "timeline_mb_per_hour": 1440.0,
    }
    # the hold straddles the last failing requests: not every request succeeded
    assert 0 < hold["global_ok"] < hold["global_requests"]
    report = (run / "report.md").read_text()
    assert "## Hold in the secondary region" in report
    assert (f"| Global requests succeeded | {hold['global_ok']} of {hold['global_requests']} "
            f"({hold['success_ratio'] * 100:.3f}%); {hold['served_by_region']} served by "
            "region-2 |") in report
    assert "| Steady-state checks failed | 1 of 3 |" in report


def test_authoritative_flapping_is_named_next_to_the_phases(tmp_path: Path) -> None:
    """PowerDNS answers at random while both regions look down: the authoritative server
    answers region-2, region-1, region-2 ... and the resolver may flip first. The report
    says so beside the phase table instead of leaving the order unexplained."""
    import sqlite3

    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID)
    r1, r2 = fixture_run.R1, fixture_run.R2
    conn = sqlite3.connect(run_dir / "timeline.sqlite")
    with conn:
        conn.execute("DELETE FROM dns WHERE server = 'authoritative'")
        answers = [(t, r1 if t < 1.2 else (r2 if round(t * 20) % 3 else r1) if t < 1.7 else r2)
                   for t in fixture_run.ticks(50)]
        conn.executemany("INSERT INTO dns VALUES (?, 'authoritative', 1, ?, 'NOERROR', 1, "
                         "0.002, 0.0, NULL, '', ?)",
                         [(t, a, "region-1" if a == r1 else "region-2") for t, a in answers])
    conn.close()
    summary = outputs.regenerate(run_dir, history=tmp_path / "h.jsonl").summary
    flaps = summary["flapping"]["authoritative"]  # type: ignore[typeddict-item]
    changes = [t for (t, a), (_, b) in zip(answers, answers[1:], strict=False)
               if a != b and t >= 1.0]
    assert flaps["changes"] == len(changes) >= 4
    assert "resolver" not in summary["flapping"]  # type: ignore[typeddict-item]
    report = (run_dir / "report.md").read_text()
    phases = report.split("## RTO phases", 1)[1].split("## Writes", 1)[0]
    assert (f"Flapping: the authoritative DNS server answered both regions {flaps['changes']} "
            f"times between {flaps['from_s']:+.3f} s and {flaps['to_s']:+.3f} s") in phases
    # the golden run's DNS flips once: nothing to say there
    assert "flapping" not in json.loads((GOLDEN / "summary.json").read_text())


def test_the_configuration_table_shows_labels_only() -> None:
    config = {"dns_ttl_s": 1.0, "promotion": "none", "ha_manager": "patroni",
              "dns_interval_s": 0.05, "replication_interval_s": 0.25, "regression_factor": 1.5,
              "some_future_key_s": 2.0, "another_ms": 3}
    table = markdown._configuration({"lab": "netns", "configuration": config,
                                     "targets": {"rto_s": 30, "rpo_s": 0, "max_lost_writes": 0}})
    settings = [row.split("|")[1].strip() for row in table if row.startswith("| ")][1:]
    assert not [s for s in settings if "_" in s], settings
    assert "Some future key (s)" in settings and "Another (ms)" in settings


def test_every_key_the_control_records_has_a_label(tmp_path: Path) -> None:
    """Every key of the configuration a run records (GamedaySettings.recorded: an HA lab's
    keys and a capped canary's too) has its label in the report."""
    from gameday.foundation.settings import GamedaySettings
    from tests.unit import fakes

    data = {**fakes.descriptor_dict(),
            "ha": {"manager": "patroni", "scope": "s", "ttl_s": 10, "loop_wait_s": 1,
                   "retry_timeout_s": 3}}
    lab_file = tmp_path / "lab.json"
    lab_file.write_text(json.dumps(data))
    settings = GamedaySettings.from_chaos({"lab_file": str(lab_file), "canary_max_rate": 200})
    recorded = set(settings.recorded(settings.load_lab())["configuration"])
    assert "ha_ttl_s" in recorded and "canary_max_rate" in recorded
    assert recorded <= set(markdown.CONFIG_LABELS), recorded - set(markdown.CONFIG_LABELS)


def test_links_survive_the_report_being_copied_out(tmp_path: Path) -> None:
    """A CI artifact is the run directory alone: a link may point at a file beside the
    report or at a URL, never up into the repository."""
    run_dir = seeded_reports(tmp_path)
    outputs.regenerate(run_dir)
    report = (run_dir / "report.md").read_text()
    targets = re.findall(r"\]\(([^)]+)\)", report)
    assert targets, "the report links its timeline image"
    bad = [t for t in targets if not (re.match(r"https?://", t) or (run_dir / t).is_file())]
    assert not bad, bad


def test_a_summary_that_breaks_its_contract_is_never_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """design.md: summary.json is validated against its schema before it is written. A
    summary our code got wrong stops there: no summary.json, no report, no history line,
    and the error names the field."""
    from gameday.measure import summary as summaries

    run_dir = seeded_reports(tmp_path)
    real = summaries.compute

    def broken(*args: object, **kwargs: object) -> object:
        return {**real(*args, **kwargs), "verdict": "maybe"}  # type: ignore[arg-type]

    monkeypatch.setattr(summaries, "compute", broken)
    history = tmp_path / "history.jsonl"
    with pytest.raises(ConfigError, match="summary.json: field 'verdict': 'maybe' is not one "
                                          "of"):
        outputs.regenerate(run_dir, history=history)
    assert not (run_dir / "summary.json").exists() and not (run_dir / "report.md").exists()
    assert not history.exists()
