"""Stop conditions without a lab: parsing (bad input is one line), each kind of check
against a real local endpoint or command, max_outage_s over a stored timeline, and the
interruption reaching the main thread as SIGTERM would. The netns lab runs the whole
abort in tests/integration/test_stop_conditions.py."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import InterruptExecution

from gameday.drill import watcher as watching
from gameday.foundation import interrupt, stopconditions
from gameday.foundation.errors import ConfigError
from gameday.foundation.events import Kind, Payload
from gameday.foundation.settings import GamedaySettings
from gameday.measure import run as runs
from gameday.measure.store import timeline


class _Server(http.server.ThreadingHTTPServer):
    """A local endpoint: GET /healthz answers `status`; GET /api/v1/query answers `query`
    (a Prometheus instant-query response body)."""

    def __init__(self) -> None:
        self.status = 200
        self.query: dict[str, Any] = {"status": "success",
                                      "data": {"resultType": "vector", "result": []}}
        self.asked: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805  # the handler, not the server
                self.asked.append(handler.path)
                if handler.path.startswith("/api/v1/query"):
                    body = json.dumps(self.query).encode()
                    handler.send_response(200)
                    handler.send_header("Content-Type", "application/json")
                else:
                    body = b"ok"
                    handler.send_response(self.status)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args: object) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, args=(0.01,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.shutdown()
    s.server_close()


def parse(*conditions: dict[str, Any], **config: Any) -> stopconditions.StopConditions:
    return stopconditions.parse({"abort_when": list(conditions), **config})


def test_nothing_configured_watches_nothing() -> None:
    stop = GamedaySettings.from_chaos({}).stop
    assert not stop.active and stop.conditions == ()


@pytest.mark.parametrize(("config", "message"), [
    ({"abort_when": "not json"}, "must be a list of conditions"),
    ({"abort_when": [{"type": "ping"}]}, "'type' must be one of http, promql, command"),
    ({"abort_when": [{"type": "http", "url": "ftp://x"}]}, "'url' must be an http://"),
    ({"abort_when": [{"type": "http", "url": "http://x", "expect": [200]}]},
     "unknown key 'expect' for a http condition"),
    ({"abort_when": [{"type": "promql", "url": "http://p:9090"}]}, "'query' must be a PromQL"),
    ({"abort_when": [{"type": "promql", "query": "up == 0"}]}, "prometheus_base_url"),
    ({"abort_when": [{"type": "command", "command": []}]}, "'command' must be a command line"),
    ({"abort_when": [{"type": "command", "command": "true", "on_error": "maybe"}]},
     "'on_error' must be abort or ignore"),
    ({"max_outage_s": "soon"}, "'max_outage_s' must be a number of seconds"),
    ({"abort_when": [{"type": "command", "command": "true", "name": "a"},
                     {"type": "command", "command": "false", "name": "a"}]}, "named alike"),
])
def test_bad_input_is_one_line_naming_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GamedaySettings.from_chaos(config)


def test_a_promql_condition_takes_chaostoolkit_prometheus_base_url() -> None:
    stop = stopconditions.parse({"prometheus_base_url": "http://prom:9090/",
                                 "abort_when": '[{"type": "promql", "query": "up == 0"}]'})
    (cond,) = stop.conditions
    assert cond.url == "http://prom:9090" and cond.name == "promql #1"


def test_http_fires_on_an_unexpected_status_and_when_unreachable(server: _Server) -> None:
    (cond,) = parse({"type": "http", "url": f"{server.url}/healthz", "name": "health"}).conditions
    assert watching.check(cond) is None
    server.status = 503
    assert watching.check(cond) == f"{server.url}/healthz answered 503, expected 200"
    dead = stopconditions.Condition(name="dead", kind="http", url="http://127.0.0.1:9/",
                                    timeout_s=0.5)
    with pytest.raises(watching.CheckError):
        watching.check(dead)


def test_promql_fires_on_a_non_zero_sample_the_way_an_alert_rule_does(server: _Server) -> None:
    (cond,) = parse({"type": "promql", "url": server.url, "query": "errors > 5"}).conditions
    assert watching.check(cond) is None  # empty vector: the alert is not firing
    assert server.asked[-1].startswith("/api/v1/query?query=errors")
    server.query["data"]["result"] = [{"metric": {"job": "shop"}, "value": [1.0, "0"]}]
    assert watching.check(cond) is None  # a `bool` query's 0 does not fire
    server.query["data"]["result"] = [{"metric": {"__name__": "x", "job": "shop"},
                                       "value": [1.0, "7.5"]}]
    assert watching.check(cond) == "`errors > 5` returned 7.5 (job=shop)"
    server.query = {"status": "error", "error": "parse error", "data": {}}
    with pytest.raises(watching.CheckError, match="parse error"):
        watching.check(cond)


def test_a_command_fires_when_it_exits_non_zero(tmp_path: Path) -> None:
    ok, bad, slow = parse(
        {"type": "command", "command": [sys.executable, "-c", "pass"], "name": "ok"},
        {"type": "command", "name": "bad",
         "command": [sys.executable, "-c", "print('alarm: checkout 5xx'); raise SystemExit(3)"]},
        {"type": "command", "name": "slow", "timeout_s": 0.2,
         "command": [sys.executable, "-c", "import time; time.sleep(5)"]}).conditions
    assert watching.check(ok) is None
    assert watching.check(bad).endswith("exited 3: alarm: checkout 5xx")  # type: ignore[union-attr]
    started = time.monotonic()
    with pytest.raises(watching.CheckError, match="longer than 0.2 s"):
        watching.check(slow)
    assert time.monotonic() - started < 3  # bounded


def _run(tmp_path: Path, *, served_from: float | None) -> runs.Run:
    """A stored run whose fault is at t=1 and, from `served_from`, region-2 serves."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    timeline.create(run_dir, {"run_id": "r", "anchor_ns": 1})
    conn = timeline.connect(run_dir)
    with conn:
        conn.execute("INSERT INTO events VALUES (1.0, 'fault-applied', 'region-1', '{}')")
        rows = []
        for i in range(40):
            t = 1.0 + i / 10
            ok = served_from is not None and t >= served_from
            rows.append((t, "global", int(ok), 200 if ok else None, "region-2" if ok else None,
                         None, 0.01, 0.0, None if ok else "ConnectError"))
        cols = timeline.COLUMNS["http"]
        conn.executemany(f"INSERT INTO http VALUES ({', '.join('?' * len(cols))})", rows)
    conn.close()
    return runs.Run(run_dir, timeline.Clock(1))


class _Clocked:
    """The stored run, its clock set by the test."""

    def __init__(self, run: runs.Run, now: float) -> None:
        self.run, self.at = run, now
        self.dir = run.dir

    def now(self) -> float:
        return self.at

    def events(self, kind: Kind) -> list[timeline.Event]:
        return self.run.events(kind)

    def event(self, payload: Payload) -> float:
        return self.run.event(payload, t=self.at)


def test_max_outage_fires_while_the_target_has_not_recovered(tmp_path: Path) -> None:
    run = _Clocked(_run(tmp_path, served_from=None), now=3.0)
    watcher = watching.Watcher(parse(max_outage_s=5), run, target="region-2", k=5)
    assert watcher.evaluate() is None  # 2 s into the outage
    run.at = 6.5
    reason = watcher.evaluate()
    assert reason == ("max_outage_s: region-2 has not served 5 consecutive global requests "
                      "5.5 s after the fault (limit 5 s)")


def test_max_outage_ends_once_the_service_recovered(tmp_path: Path) -> None:
    run = _Clocked(_run(tmp_path, served_from=3.0), now=4.0)
    watcher = watching.Watcher(parse(max_outage_s=2), run, target="region-2", k=5)
    assert watcher.evaluate() is None
    run.at = 600.0
    assert watcher.evaluate() is None


def test_the_watcher_records_the_reason_and_fires_once(tmp_path: Path, server: _Server) -> None:
    run = _Clocked(_run(tmp_path, served_from=None), now=1.5)
    server.status = 500
    stop = parse({"type": "http", "url": f"{server.url}/healthz", "name": "region-2-health"},
                 abort_check_interval_s=0.1)
    fired: list[str] = []
    watcher = watching.Watcher(stop, run, target="region-2", k=5, fire=fired.append)
    watcher.start()
    deadline = time.monotonic() + 5
    while not fired and time.monotonic() < deadline:
        time.sleep(0.02)
    watcher.stop()
    assert fired == [f"stop condition region-2-health: {server.url}/healthz answered 500, "
                     "expected 200"]
    (event,) = run.events(Kind.ABORTED)
    assert json.loads(event.detail or "{}")["reason"] == fired[0]


def test_an_unreadable_condition_aborts_unless_told_to_ignore_it() -> None:
    dead = {"type": "http", "url": "http://127.0.0.1:9/", "timeout_s": 0.5, "name": "dead"}
    run: Any = None
    aborting = watching.Watcher(parse(dead), run, target="region-2", k=5)
    assert aborting.evaluate().startswith("stop condition dead could not be evaluated")  # type: ignore[union-attr]
    ignoring = watching.Watcher(parse({**dead, "on_error": "ignore"}), run,
                                      target="region-2", k=5)
    assert ignoring.evaluate() is None


def test_abort_interrupts_the_main_thread_like_sigterm() -> None:
    """From the watcher's thread: the main thread, blocked in a wait, gets the
    InterruptExecution Chaos Toolkit plays the rollbacks on, with the reason."""
    interrupt.install()
    try:
        threading.Timer(0.2, interrupt.abort, args=("stop condition x: fired",)).start()
        with pytest.raises(InterruptExecution, match="aborted: stop condition x: fired"):
            time.sleep(5)
        assert interrupt.requested()
        with pytest.raises(interrupt.Interrupted):
            interrupt.check()  # a step still running stops at its next wait
    finally:
        interrupt.rollbacks_done()
        interrupt._requested.clear()
        interrupt._abort_reason.clear()


def test_an_aborted_run_has_the_verdict_aborted_with_its_reason(tmp_path: Path) -> None:
    import sqlite3

    from click.testing import CliRunner

    from gameday import cli
    from gameday.report import junit, outputs, prometheus
    from tests.fixtures.report import fixture_run

    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID)
    reason = "stop condition pager: `alarm-is-clear` exited 1"
    conn = sqlite3.connect(run_dir / "timeline.sqlite")
    with conn:
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [
            (1.2, "aborted", None, json.dumps({"reason": reason})),
            (1.21, "interrupted", None, "{}")])
    conn.close()
    summary = outputs.regenerate(run_dir).summary
    assert summary["verdict"] == "aborted"
    assert summary["reasons"][0] == f"aborted: {reason}; the rollbacks ran"
    assert not any("interrupted by a signal" in r for r in summary["reasons"])
    report = (run_dir / "report.md").read_text()
    assert report.startswith(f"# Game day {fixture_run.RUN_ID}: ABORTED")
    assert "**Aborted by a stop condition; the drill was rolled back:**" in report
    verdict = [c for c in junit.failover_cases(summary) if c.name == "verdict"][0]
    assert verdict.failure and verdict.failure.startswith("ABORTED: aborted: stop condition")
    assert 'gameday_aborted{drill="failover",experiment="fixture-failover",lab="netns"} 1.0' \
        in prometheus.render(summary)
    result = CliRunner().invoke(cli.main, ["report", str(run_dir)])
    assert result.exit_code == cli.EXIT_FAILED and ": ABORTED" in result.output
