"""`gameday report RUN_DIR --junit FILE --prometheus FILE --pushgateway URL` on a fixed stored
run: the JUnit file passes the Jenkins junit-10 schema and ours (xmllint), with one suite per
drill, stable case names and measured times, from summary.json alone; the textfile and the
push parse with Prometheus' own parser and carry the numbers under stable labels; the push
reaches a Pushgateway-compatible endpoint the test starts on loopback."""

from __future__ import annotations

import http.server
import json
import math
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from gameday import cli
from gameday.measure import contract
from gameday.measure.instants import Instant, missing
from gameday.measure.summary import authority_detection
from gameday.report import junit, outputs, prometheus
from tests.fixtures.report import fixture_run
from tests.unit.test_report import check_golden

DATA = Path(__file__).resolve().parents[1] / "data"
XSD = DATA / "junit.xsd"  # ours: strict about counts, times and required names
# the Jenkins xUnit plugin's, as pytest's sdist ships it: `make venv` puts it in the venv
# (scripts/fetch-junit-xsd.sh), so nothing of it is copied into this repository
JENKINS_XSD = Path(sys.prefix) / "share" / "gameday" / "junit-10.xsd"


def _xmllint(path: Path, xsd: Path = XSD) -> subprocess.CompletedProcess[str]:
    if not xsd.exists():
        pytest.fail(f"{xsd} is missing: run `make venv` (scripts/fetch-junit-xsd.sh fetches it)")
    xmllint = shutil.which("xmllint")
    assert xmllint, "xmllint is missing: run `make setup` (apt package libxml2-utils)"
    return subprocess.run([xmllint, "--noout", "--schema", str(xsd), str(path)],
                          capture_output=True, text=True)


def _valid(path: Path) -> None:
    for xsd in (XSD, JENKINS_XSD):
        check = _xmllint(path, xsd)
        assert check.returncode == 0 and "validates" in check.stderr, (xsd.name, check.stderr)


def _report(tmp_path: Path, *, lost: bool = False, app: bool = False
            ) -> tuple[Path, Path, Path]:
    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID, lost=lost, app=app)
    xml, prom = tmp_path / "out" / "junit.xml", tmp_path / "out" / "gameday.prom"
    xml.parent.mkdir()
    result = CliRunner().invoke(cli.main, ["report", str(run_dir), "--junit", str(xml),
                                           "--prometheus", str(prom), "--no-fail"])
    assert result.exit_code == 0, result.output
    return run_dir, xml, prom


def _cases(xml: Path) -> dict[str, str | None]:
    root = ET.parse(xml).getroot()
    return {tc.get("name", ""): (tc.find("failure").get("message")  # type: ignore[union-attr]
                                 if tc.find("failure") is not None else None)
            for tc in root.iter("testcase")}


FAILBACK: dict = {
    "experiment": "Fixture failback", "experiment_id": "fixture-failback",
    "started_at": "2026-01-01T00:05:00+00:00", "duration_s": 41.25, "rto_s": 2.847,
    "rto_error_s": 0.05, "write_rto_s": 1.9, "downtime_s": 2.5, "lost": 0,
    "split_brain_writes": 0, "unreplicated_writes": 0, "split_brain_window_utc": None,
    "resync_method": "pg_rewind", "resync_s": 3.2, "catch_up_s": 0.4, "phases": {},
    "verdict": "pass", "reasons": [], "run_id": "20260101T000500Z-fixture-failback",
    "strategy": "runner", "command": None}


def _game_day_with_failback(tmp_path: Path) -> dict:
    """The fixed game day's summary.json as it is after its failback ran (the failback's
    block attached), and nothing else: no timeline beside it."""
    run_dir = fixture_run.build(tmp_path / "built" / fixture_run.RUN_ID)
    summary = outputs.regenerate(run_dir).summary
    return {**summary, "failback": FAILBACK}


def test_junit_from_summary_json_alone_validates_with_one_suite_per_drill(tmp_path: Path) -> None:
    """Against the Jenkins junit-10 schema and ours; one suite per drill with unique names,
    stable case names, each time the measured seconds, each suite's the drill's duration,
    the headline table in system-out. Built from summary.json alone: no timeline."""
    summary = _game_day_with_failback(tmp_path)
    run_dir = tmp_path / "copied-out"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps(summary))
    xml = tmp_path / "junit.xml"
    result = CliRunner().invoke(cli.main, ["report", str(run_dir), "--junit", str(xml)])
    assert result.exit_code == 0, result.output
    _valid(xml)
    root = ET.parse(xml).getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["gameday failover: fixture-failover",
                                               "gameday failback: fixture-failback"]
    assert all(float(s.get("time") or 0) > 0 for s in suites)
    assert [float(s.get("time") or 0) for s in suites] == [summary["duration_s"], 41.25]
    failover, failback = ({tc.get("name"): tc for tc in s.iter("testcase")} for s in suites)
    assert list(failover) == ["RTO", "write RTO", "downtime", "RPO", "lost writes",
                              "unexpected rows", "duplicate rows", "DNS authority detection",
                              "DNS flip: resolver", "verdict"]
    assert list(failback) == ["RTO", "write RTO", "downtime", "lost writes",
                              "split-brain writes", "verdict"]
    for name, key in (("RTO", "rto_s"), ("write RTO", "write_rto_s"), ("downtime", "downtime_s")):
        assert float(failover[name].get("time") or 0) == pytest.approx(summary[key], abs=5e-4)
        assert float(failover[name].get("time") or 0) > 0
    assert float(failover["DNS authority detection"].get("time") or 0) == 0.7
    assert float(failover["DNS flip: resolver"].get("time") or 0) == 1.45
    assert float(failback["RTO"].get("time") or 0) == 2.847
    assert {tc.get("classname") for tc in failover.values()} == {"gameday.failover.fixture-failover"}
    out = suites[0].find("system-out")
    assert out is not None and "| RTO (service) | 1.500 s" in (out.text or "")
    props = {p.get("name"): p.get("value") for p in suites[0].iter("property")}
    assert props["target.rto_s"] == "30" and props["run_id"] == fixture_run.RUN_ID
    assert props["dns.authority.budget_s"] == "2" and props["dns.slowest_resolver"] == "resolver"
    assert (root.get("tests"), root.get("failures")) == ("16", "0")
    assert not (run_dir / "report.md").exists()  # no timeline: nothing else was rendered


def test_a_new_target_keeps_every_case_name(tmp_path: Path) -> None:
    summary = _game_day_with_failback(tmp_path)
    tighter = {**summary, "targets": {**summary["targets"], "rto_s": 1.0}}
    names = [[(tc.get("classname"), tc.get("name")) for tc in ET.fromstring(
        junit.render(s)).iter("testcase")] for s in (summary, tighter)]  # type: ignore[arg-type]
    assert names[0] == names[1]
    assert len(set(names[0])) == len(names[0])  # unique across the file
    failed = _cases_of(junit.render(tighter))  # type: ignore[arg-type]
    assert failed["RTO"] == "RTO 1.5 s exceeds the target 1 s"


def _cases_of(text: str) -> dict[str, str | None]:
    root = ET.fromstring(text)
    suite = root.find("testsuite")
    assert suite is not None
    return {tc.get("name", ""): (tc.find("failure").get("message")  # type: ignore[union-attr]
                                 if tc.find("failure") is not None else None)
            for tc in suite.iter("testcase")}


def test_a_failback_runs_file_has_its_one_suite(tmp_path: Path) -> None:
    summary = _game_day_with_failback(tmp_path)
    failback_run = {**summary, "drill": "failback", "experiment": "Fixture failback",
                    "experiment_id": "fixture-failback", "duration_s": 41.25}
    xml = tmp_path / "failback.xml"
    junit.write(xml, failback_run)  # type: ignore[arg-type]
    _valid(xml)
    suites = ET.parse(xml).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["gameday failback: fixture-failback"]


def test_a_passing_run_is_valid_junit_with_one_case_per_measure(tmp_path: Path) -> None:
    _, xml, _ = _report(tmp_path)
    _valid(xml)
    cases = _cases(xml)
    assert all(v is None for v in cases.values()), cases
    root = ET.parse(xml).getroot()
    assert (root.get("tests"), root.get("failures")) == ("10", "0")


def test_a_run_that_lost_writes_fails_those_cases(tmp_path: Path) -> None:
    _, xml, prom = _report(tmp_path, lost=True)
    _valid(xml)
    cases = _cases(xml)
    assert cases["lost writes"] and "exceeds the target 0" in cases["lost writes"]
    assert cases["verdict"] and "lost" in cases["verdict"]
    root = ET.parse(xml).getroot()
    assert int(root.get("failures", "0")) >= 2
    metrics = _metrics(prom)
    assert metrics["gameday_verdict"] == 0 and metrics["gameday_lost_writes"] > 0


def test_the_application_canary_has_its_own_cases_by_the_same_target(tmp_path: Path) -> None:
    _, xml, _ = _report(tmp_path, app=True)
    _valid(xml)
    cases = _cases(xml)
    assert cases["lost writes"] is None  # the database canary lost nothing
    assert cases["lost writes (application canary)"] == (
        "lost writes (application canary) 12 exceeds the target 0")
    assert cases["write RTO (application canary)"] is None
    assert cases["unexpected numbers (application canary)"] is None
    assert cases["verdict"] and "application canary: 12 acknowledged writes lost" in \
        cases["verdict"]


def test_the_schema_checks_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites><testsuite name="x" tests="one" failures="0" errors="0">'
                   '<testcase classname="c"/></testsuite></testsuites>')
    for xsd in (XSD, JENKINS_XSD):
        check = _xmllint(bad, xsd)
        assert check.returncode != 0 and "fails to validate" in check.stderr, xsd.name


def test_not_observed_is_a_failure_not_a_pass() -> None:
    case = junit._at_most("RTO", None, 30, " s")
    assert case.failure == "RTO was not observed, so the target (at most 30 s) is not met"
    assert junit._none("duplicate rows", None).failure is not None
    assert junit._measured("downtime", None).failure == "downtime was not observed"


def _families(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        out[family.name] = family.samples
    return out


# a sample per phase, per resolver: a label of their own beside the stable ones
PER_LABEL = ("gameday_phase_seconds", "gameday_dns_resolver_flip_seconds")


def _metrics(prom: Path, *, experiment: str = "fixture-failover") -> dict[str, float]:
    out = {}
    for name, samples in _families(prom.read_text()).items():
        if name in PER_LABEL:
            continue
        (sample,) = samples
        assert sample.labels == {"lab": "netns", "drill": "failover", "experiment": experiment}
        out[name] = sample.value
    return out


def test_the_textfile_parses_and_carries_the_numbers(tmp_path: Path) -> None:
    run_dir, _, prom = _report(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = _metrics(prom)
    assert metrics["gameday_rto_seconds"] == pytest.approx(summary["rto_s"])
    assert metrics["gameday_write_rto_seconds"] == pytest.approx(summary["write_rto_s"])
    assert metrics["gameday_downtime_seconds"] == pytest.approx(summary["downtime_s"])
    assert metrics["gameday_rpo_seconds"] == pytest.approx(summary["rpo_s"])
    assert metrics["gameday_lost_writes"] == summary["writes"]["lost"] == 0
    assert metrics["gameday_verdict"] == 1 and metrics["gameday_aborted"] == 0
    assert metrics["gameday_rto_target_seconds"] == 30
    assert metrics["gameday_duration_seconds"] == summary["duration_s"]
    assert metrics["gameday_last_run_timestamp_seconds"] > 1.7e9
    phases = {s.labels["phase"]: s.value
              for s in _families(prom.read_text())["gameday_phase_seconds"]}
    assert phases == {name.removesuffix("_s"): pytest.approx(at)
                      for name, at in summary["phases"].items()}
    assert set(phases) >= {"detection", "promotion", "dns_authoritative", "first_write"}
    assert "gameday_failback_rto_seconds" not in metrics  # no failback ran
    authority = summary["dns"]["authority"]
    assert metrics["gameday_dns_authority_withdrawal_seconds"] == authority["withdrawn_s"] == 0.7
    assert metrics["gameday_dns_authority_budget_seconds"] == authority["budget_s"] == 2.0
    assert metrics["gameday_dns_authority_within_budget"] == 1
    (flip,) = _families(prom.read_text())["gameday_dns_resolver_flip_seconds"]
    assert flip.labels == {"lab": "netns", "drill": "failover", "experiment": "fixture-failover",
                           "resolver": "resolver"}
    assert flip.value == summary["dns"]["resolvers"][0]["flip_s"] == 1.45
    # written through a renamed temporary file: nothing else is left beside it
    assert sorted(p.name for p in prom.parent.iterdir()) == ["gameday.prom", "junit.xml"]


def test_an_unobserved_number_is_nan_and_labels_are_stable() -> None:
    summary = {"experiment": 'Region-1 is lost: say "hi" in a 90-character title\\',
               "experiment_id": "game-day", "drill": "failover", "lab": "netns",
               "started_at": None, "rto_s": None, "write_rto_s": None, "downtime_s": None,
               "rpo_s": None, "writes": {"lost": None}, "phases": {"detection_s": None},
               "verdict": "fail", "failback": {"rto_s": 2.5, "split_brain_writes": 3},
               "targets": {"rto_s": 30, "rpo_s": 0, "max_lost_writes": 0}}
    families = _families(prometheus.render(summary))  # type: ignore[arg-type]
    assert math.isnan(families["gameday_rto_seconds"][0].value)
    assert math.isnan(families["gameday_phase_seconds"][0].value)
    assert families["gameday_verdict"][0].labels == {
        "drill": "failover", "experiment": "game-day", "lab": "netns"}
    assert families["gameday_failback_rto_seconds"][0].value == 2.5
    assert families["gameday_split_brain_writes"][0].value == 3


ROUTE53 = {"health_interval_s": 30, "health_failures": 3, "health_timeout_s": 1}


def _resolver(name: str, flip_s: float | None, *, slowest: bool = False) -> dict:
    return {"name": name, "stream": f"resolver:{name}", "kind": name, "address": None,
            "flip_s": flip_s, "error_s": None if flip_s is None else 0.05,
            "evidence": None, "reason": "no sample after the fault" if flip_s is None else None,
            "slowest": slowest}


def _with_dns(summary: dict, withdrawal: Instant, *resolvers: dict) -> dict:
    """The summary of a run on a Route 53-like lab (checks every 30 s, three failures, 1 s
    timeout: a 91 s budget), its authority's block made by the summary's own code, valid
    against summary.schema.json."""
    out = {**summary, "dns": {"resolvers": list(resolvers), "authority": authority_detection(
        withdrawal, "region-1", ROUTE53)}}
    contract.validate(out)
    return out


def test_each_resolver_flip_and_the_authority_are_gauges_nan_when_not_observed(
        tmp_path: Path) -> None:
    summary = _game_day_with_failback(tmp_path)
    beyond = _with_dns(summary, Instant(at_s=95.0, error_s=0.05),
                       _resolver("unbound", 119.266, slowest=True), _resolver("dnsmasq", 117.266),
                       _resolver("pdns-recursor", None))
    families = _families(prometheus.render(beyond))  # type: ignore[arg-type]
    stable = {"drill": "failover", "experiment": "fixture-failover", "lab": "netns"}
    flips = {s.labels["resolver"]: s.value
             for s in families["gameday_dns_resolver_flip_seconds"]}
    assert flips.keys() == {"unbound", "dnsmasq", "pdns-recursor"}
    assert (flips["unbound"], flips["dnsmasq"]) == (119.266, 117.266)
    assert math.isnan(flips["pdns-recursor"])
    assert all(s.labels == {**stable, "resolver": s.labels["resolver"]}
               for s in families["gameday_dns_resolver_flip_seconds"])
    (withdrawal,) = families["gameday_dns_authority_withdrawal_seconds"]
    assert (withdrawal.labels, withdrawal.value) == (stable, 95.0)
    assert families["gameday_dns_authority_budget_seconds"][0].value == 91.0
    assert families["gameday_dns_authority_within_budget"][0].value == 0  # beyond
    unseen = _with_dns(summary, missing("no authoritative flip"), _resolver("unbound", None))
    families = _families(prometheus.render(unseen))  # type: ignore[arg-type]
    assert math.isnan(families["gameday_dns_authority_withdrawal_seconds"][0].value)
    assert math.isnan(families["gameday_dns_authority_within_budget"][0].value)
    assert families["gameday_dns_authority_budget_seconds"][0].value == 91.0
    edge = _with_dns(summary, Instant(at_s=91.02, error_s=0.05), _resolver("unbound", 92.0))
    families = _families(prometheus.render(edge))  # type: ignore[arg-type]
    assert families["gameday_dns_authority_withdrawal_seconds"][0].value == 91.02
    assert math.isnan(families["gameday_dns_authority_within_budget"][0].value)


def test_junit_fails_a_resolver_that_never_flipped_not_an_authority_beyond_its_budget(
        tmp_path: Path) -> None:
    """On a Route 53-like lab: the authority withdrew region-1 4 s beyond its 91 s budget,
    and the PowerDNS Recursor never answered with region-2. The resolver fails with the
    summary's own words; the authority's case passes with its withdrawal as its time (its
    flip also waits for the secondary's own checks, which that budget does not hold: on
    the default lab a passing drill's flip came 0.63 s beyond it in CI); the other
    resolvers pass with their flips as their times, and the file still validates against
    both schemas."""
    summary = _game_day_with_failback(tmp_path)
    beyond = _with_dns(summary, Instant(at_s=95.0, error_s=0.05),
                       _resolver("unbound", 119.266, slowest=True), _resolver("dnsmasq", 117.266),
                       _resolver("pdns-recursor", None))
    xml = tmp_path / "junit.xml"
    junit.write(xml, beyond)  # type: ignore[arg-type]
    _valid(xml)
    root = ET.parse(xml).getroot()
    failover = root.findall("testsuite")[0]
    cases = {tc.get("name"): tc for tc in failover.iter("testcase")}
    failed = _cases_of(xml.read_text())
    assert failed["DNS authority detection"] is None
    assert beyond["dns"]["authority"]["verdict"] == (
        "the DNS authority withdrew region-1 after 95.000 s ± 0.050 s, 4.000 s beyond its "
        "health-check budget of 91 s (30 s × 3 + 1 s)")  # the report says it
    assert float(cases["DNS authority detection"].get("time") or 0) == 95.0
    assert failed["DNS flip: pdns-recursor"] == (
        "DNS flip: pdns-recursor was not observed: no sample after the fault")
    assert failed["DNS flip: unbound"] is None and failed["DNS flip: dnsmasq"] is None
    assert float(cases["DNS flip: unbound"].get("time") or 0) == 119.266
    assert (failover.get("tests"), failover.get("failures")) == ("12", "1")
    assert root.get("failures") == "1"  # the failback's suite has no DNS cases
    props = {p.get("name"): p.get("value") for p in failover.iter("property")}
    assert props["dns.authority.budget_s"] == "91" and props["dns.slowest_resolver"] == "unbound"
    # the same run with every resolver flipped and the authority within, or at the edge of,
    # its budget: every DNS case passes (at the edge the recorder cannot say it missed)
    for withdrawal in (Instant(at_s=88.266, error_s=0.05), Instant(at_s=91.02, error_s=0.05)):
        ok = _with_dns(summary, withdrawal, _resolver("unbound", 119.266, slowest=True))
        passed = _cases_of(junit.render(ok))  # type: ignore[arg-type]
        assert passed["DNS authority detection"] is None and passed["DNS flip: unbound"] is None
    unseen = _with_dns(summary, missing("no authoritative flip"), _resolver("unbound", 92.0))
    assert _cases_of(junit.render(unseen))["DNS authority detection"] == (  # type: ignore[arg-type]
        "the DNS authority was not seen withdrawing region-1 (no authoritative flip); its "
        "health-check budget of 91 s (30 s × 3 + 1 s)")


def test_junit_of_a_summary_without_the_dns_blocks_has_the_cases_it_always_had(
        tmp_path: Path) -> None:
    summary = _game_day_with_failback(tmp_path)
    root = ET.fromstring(junit.render(_before_dns(summary)))  # type: ignore[arg-type]
    failover = root.findall("testsuite")[0]
    assert [tc.get("name") for tc in failover.iter("testcase")] == [
        "RTO", "write RTO", "downtime", "RPO", "lost writes", "unexpected rows",
        "duplicate rows", "verdict"]
    assert not [p for p in failover.iter("property") if (p.get("name") or "").startswith("dns")]


def test_a_summary_without_the_dns_blocks_exports_no_dns_series(tmp_path: Path) -> None:
    summary = _game_day_with_failback(tmp_path)
    no_authority = {**summary, "dns": {"resolvers": summary["dns"]["resolvers"]}}
    for s, expected in ((_before_dns(summary), set()),
                        (no_authority, {"gameday_dns_resolver_flip_seconds"})):
        families = _families(prometheus.render(s))  # type: ignore[arg-type]
        assert {n for n in families if n.startswith("gameday_dns_")} == expected
        assert families["gameday_rto_seconds"][0].value == summary["rto_s"]


class _Pushgateway(http.server.ThreadingHTTPServer):
    """What a Prometheus Pushgateway does with a push, for the test: PUT or POST
    /metrics/job/<job>{/<label>/<value>} stores the body (text exposition format) under
    its grouping key and answers 200; anything else is a 400, as the real one does."""

    def __init__(self) -> None:
        self.groups: dict[str, tuple[str, str]] = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def _store(handler) -> None:  # noqa: N805  # the handler, not the server
                length = int(handler.headers.get("Content-Length") or 0)
                body = handler.rfile.read(length).decode()
                parts = handler.path.split("/")
                if parts[:3] != ["", "metrics", "job"] or len(parts) % 2 != 0:
                    handler.send_response(400)
                else:
                    self.groups[handler.path] = (handler.command, body)
                    handler.send_response(200)
                handler.end_headers()

            do_PUT = do_POST = _store

            def log_message(handler, *args: object) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> _Pushgateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def test_report_pushes_the_drills_group_to_a_pushgateway(tmp_path: Path) -> None:
    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID)
    with _Pushgateway() as gateway:
        result = CliRunner().invoke(cli.main, ["report", str(run_dir), "--pushgateway",
                                               gateway.url])
        assert result.exit_code == 0, result.output
    (path, (method, body)), = gateway.groups.items()
    assert path == "/metrics/job/gameday/drill/failover/experiment/fixture-failover/lab/netns"
    assert method == "PUT"  # replaces the group: the drill's last run, not a pile of them
    summary = json.loads((run_dir / "summary.json").read_text())
    families = _families(body)
    assert families["gameday_rto_seconds"][0].value == pytest.approx(summary["rto_s"])
    assert families["gameday_rto_seconds"][0].labels["experiment"] == "fixture-failover"
    assert len(families["gameday_phase_seconds"]) == len(summary["phases"])


def test_the_push_with_several_resolvers_keeps_the_drills_one_group(tmp_path: Path) -> None:
    """The resolver label sits on the samples, not in the grouping key: one PUT to the same
    group, every resolver in its body."""
    summary = _with_dns(_game_day_with_failback(tmp_path), Instant(at_s=88.266, error_s=0.05),
                        _resolver("unbound", 119.266, slowest=True),
                        _resolver("dnsmasq", 117.266))
    with _Pushgateway() as gateway:
        prometheus.push(gateway.url, summary)  # type: ignore[arg-type]
    (path, (method, body)), = gateway.groups.items()
    assert path == "/metrics/job/gameday/drill/failover/experiment/fixture-failover/lab/netns"
    assert method == "PUT"
    flips = _families(body)["gameday_dns_resolver_flip_seconds"]
    assert {s.labels["resolver"]: s.value for s in flips} == {"unbound": 119.266,
                                                                "dnsmasq": 117.266}


def test_the_control_setting_pushes_at_the_end_of_the_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID)
    with _Pushgateway() as gateway:
        outputs.write_run_outputs(run_dir, None, pushgateway=gateway.url)
    assert list(gateway.groups) == [
        "/metrics/job/gameday/drill/failover/experiment/fixture-failover/lab/netns"]


def test_a_pushgateway_that_does_not_answer_is_one_line_with_its_exit_code(tmp_path: Path) -> None:
    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    result = CliRunner().invoke(cli.main, ["report", str(run_dir), "--pushgateway",
                                           f"http://user:secret@127.0.0.1:{port}"])
    assert result.exit_code == cli.EXIT_TARGET, result.output
    assert f"cannot push the metrics to the Pushgateway at http://127.0.0.1:{port}" in result.output
    assert "secret" not in result.output


def test_a_missing_output_directory_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID)
    result = CliRunner().invoke(cli.main, ["report", str(run_dir), "--junit",
                                           str(tmp_path / "nope" / "j.xml")])
    assert result.exit_code != 0 and "create it or choose another path" in result.output
    assert not (run_dir / "summary.json").exists()


def _before_dns(summary: dict) -> dict:
    """The summary as runs wrote it before `dns` (resolvers, authority) existed."""
    return {k: v for k, v in summary.items() if k != "dns"}


def test_the_outputs_equal_their_golden_files(tmp_path: Path) -> None:
    """The fixed game day with its failback, as JUnit XML and as the Prometheus exposition,
    byte for byte; and the same summary without its `dns` block (older runs) exactly as
    these outputs were before they read it. After an intended change:
    GAMEDAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_junit_prometheus.py -k golden
    (once per file it rewrites), then review the diff."""
    summary = _game_day_with_failback(tmp_path)
    for suffix, s in (("", summary), ("-before-dns", _before_dns(summary))):
        check_golden(f"junit{suffix}.xml", junit.render(s))  # type: ignore[arg-type]
        check_golden(f"gameday{suffix}.prom", prometheus.render(s))  # type: ignore[arg-type]
