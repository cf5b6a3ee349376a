"""`gameday report RUN_DIR --junit FILE --prometheus FILE` on a fixed stored run: the JUnit
file passes a JUnit schema check (xmllint against tests/data/junit.xsd) and names each
missed target; the textfile parses with Prometheus' own parser and carries the numbers."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from gameday import cli
from gameday.report import junit, prometheus
from tests.fixtures.report import fixture_run

XSD = Path(__file__).resolve().parents[1] / "data" / "junit.xsd"


def _xmllint(path: Path) -> subprocess.CompletedProcess[str]:
    xmllint = shutil.which("xmllint")
    assert xmllint, "xmllint is missing: run `make setup` (apt package libxml2-utils)"
    return subprocess.run([xmllint, "--noout", "--schema", str(XSD), str(path)],
                          capture_output=True, text=True)


def _report(tmp_path: Path, *, lost: bool = False) -> tuple[Path, Path, Path]:
    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID, lost=lost)
    xml, prom = tmp_path / "out" / "junit.xml", tmp_path / "out" / "gameday.prom"
    xml.parent.mkdir()
    result = CliRunner().invoke(cli.main, ["report", str(run_dir), "--junit", str(xml),
                                           "--prometheus", str(prom)])
    assert result.exit_code == 0, result.output
    return run_dir, xml, prom


def _cases(xml: Path) -> dict[str, str | None]:
    root = ET.parse(xml).getroot()
    return {tc.get("name", ""): (tc.find("failure").get("message")  # type: ignore[union-attr]
                                 if tc.find("failure") is not None else None)
            for tc in root.iter("testcase")}


def test_a_passing_run_is_valid_junit_with_one_case_per_target(tmp_path: Path) -> None:
    _, xml, _ = _report(tmp_path)
    check = _xmllint(xml)
    assert check.returncode == 0, check.stderr
    assert "validates" in check.stderr
    cases = _cases(xml)
    assert list(cases) == ["RTO <= 30 s", "RPO <= 0 s", "lost writes <= 0",
                           "no unexpected rows", "no duplicate rows", "verdict"]
    assert all(v is None for v in cases.values()), cases
    root = ET.parse(xml).getroot()
    assert (root.get("tests"), root.get("failures")) == ("6", "0")


def test_a_run_that_lost_writes_fails_those_cases(tmp_path: Path) -> None:
    _, xml, prom = _report(tmp_path, lost=True)
    assert _xmllint(xml).returncode == 0
    cases = _cases(xml)
    assert cases["lost writes <= 0"] and "exceeds the target 0" in cases["lost writes <= 0"]
    assert cases["verdict"] and "lost" in cases["verdict"]
    root = ET.parse(xml).getroot()
    assert int(root.get("failures", "0")) >= 2
    metrics = _metrics(prom)
    assert metrics["gameday_verdict"] == 0 and metrics["gameday_lost_writes"] > 0


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites><testsuite name="x" tests="one" failures="0" errors="0">'
                   '<testcase classname="c"/></testsuite></testsuites>')
    check = _xmllint(bad)
    assert check.returncode != 0 and "fails to validate" in check.stderr


def test_not_observed_is_a_failure_not_a_pass() -> None:
    case = junit._at_most("RTO", None, 30, " s")
    assert case.failure == "RTO was not observed, so the target is not met"
    assert junit._none("duplicate rows", None).failure is not None


def _metrics(prom: Path) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(prom.read_text()):
        assert family.type == "gauge", family.name
        (sample,) = family.samples
        assert sample.labels["lab"] == "netns" and sample.labels["drill"] == "failover"
        out[sample.name] = sample.value
    return out


def test_the_textfile_parses_and_carries_the_numbers(tmp_path: Path) -> None:
    run_dir, _, prom = _report(tmp_path)
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = _metrics(prom)
    assert metrics["gameday_rto_seconds"] == pytest.approx(summary["rto_s"])
    assert metrics["gameday_rpo_seconds"] == pytest.approx(summary["rpo_s"])
    assert metrics["gameday_lost_writes"] == summary["writes"]["lost"] == 0
    assert metrics["gameday_verdict"] == 1
    assert metrics["gameday_rto_target_seconds"] == 30
    assert metrics["gameday_last_run_timestamp_seconds"] > 1.7e9
    assert not list(prom.parent.glob(".*.tmp"))  # written through a renamed temporary file


def test_an_unobserved_number_is_nan_and_labels_are_escaped() -> None:
    summary = {"experiment": 'say "hi"\\', "drill": "failover", "lab": "netns",
               "started_at": None, "rto_s": None, "rpo_s": None, "writes": {"lost": None},
               "verdict": "fail", "targets": {"rto_s": 30, "rpo_s": 0, "max_lost_writes": 0}}
    text = prometheus.render(summary)  # type: ignore[arg-type]
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert math.isnan(families["gameday_rto_seconds"].samples[0].value)
    assert families["gameday_verdict"].samples[0].labels["experiment"] == 'say "hi"\\'


def test_a_missing_output_directory_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID)
    result = CliRunner().invoke(cli.main, ["report", str(run_dir), "--junit",
                                           str(tmp_path / "nope" / "j.xml")])
    assert result.exit_code != 0 and "create it or choose another path" in result.output
    assert not (run_dir / "summary.json").exists()
