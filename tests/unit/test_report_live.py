"""The live view: read incrementally from a timeline being written, plain lines when not a
terminal, a rich panel on one (rich's capture), a final panel, and never an exception."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path

from rich.console import Console

from gameday.measure.store import timeline
from gameday.report import live
from tests.fixtures.report import fixture_run

R1, R2 = fixture_run.R1, fixture_run.R2
SUMMARY = {"verdict": "pass", "reasons": [], "rto_s": 1.5, "rto_error_s": 0.1,
           "write_rto_s": 0.61, "downtime_s": 1.5, "rpo_s": 0.0, "rpo_error_s": 0.6,
           "targets": {"rto_s": 30.0, "rpo_s": 0.0, "max_lost_writes": 0},
           "writes": {"lost": 0}}


def empty_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    timeline.create(run_dir, fixture_run.meta())
    return run_dir


def insert(run_dir: Path, table: str, *rows: tuple) -> None:
    conn = sqlite3.connect(run_dir / timeline.FILE)
    with conn:
        width = 4 if table == "events" else len(timeline.COLUMNS[table])
        conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})",
                         [(*row, *[None] * (width - len(row))) for row in rows])
    conn.close()


def http(t: float, target: str, ok: bool, region: str | None) -> tuple:
    return (t, target, int(ok), 200 if ok else None, region, None, 0.01, 0.0,
            None if ok else "ConnectError")


def dns(t: float, server: str, answer: str) -> tuple:
    return (t, server, 1, answer, "NOERROR", 1, 0.001, 0.0, None)


def test_reader_follows_the_phases_as_rows_arrive(tmp_path: Path) -> None:
    run_dir = empty_run(tmp_path)
    reader = live.Reader(run_dir)
    insert(run_dir, "http", http(0.5, "global", True, "region-1"))
    insert(run_dir, "canary", (1, 0, 0.5, 0.51, "ok", R1, None, None),
           (2, 0, 0.6, 0.61, "ok", R1, None, None))
    snap = reader.read(0.9)
    assert snap.phase == "steady state, before the fault" and snap.since_fault is None
    assert snap.canary_rate == 2.0 and snap.last_ack == "#2 by region-1 0.3 s ago"

    insert(run_dir, "events", (1.0, "fault-applied", "region-1", "{}"))
    insert(run_dir, "http", http(1.1, "region-1", False, None))
    insert(run_dir, "canary", (3, 0, 1.05, None, "failed", None, "OperationalError: gone", None))
    snap = reader.read(1.2)
    assert snap.since_fault is not None and abs(snap.since_fault - 0.2) < 1e-9
    assert snap.phase == "waiting for promotion"
    assert snap.canary_errors == 1 and snap.last_error == "#3 failed: OperationalError: gone"

    # the runner's own report of its promotion is not the evidence (a command or an HA
    # manager records none): the recorder seeing region-2 out of recovery is
    insert(run_dir, "events", (1.5, "promoted", "region-2", json.dumps({"error_s": 0.01})))
    insert(run_dir, "replication", (1.45, "region-2", 1, 1, 0.04, None, None))
    assert reader.read(1.55).phase == "waiting for promotion"
    insert(run_dir, "replication", (1.55, "region-2", 1, 0, None, None, None))
    insert(run_dir, "dns", dns(1.6, "authoritative", R2), dns(1.6, "resolver", R1))
    snap = reader.read(1.7)
    assert snap.phase == "waiting for the resolver DNS flip"
    assert snap.dns == {"authoritative": "region-2", "resolver": "region-1"}
    assert snap.lag_s == 0.04

    insert(run_dir, "dns", dns(2.0, "resolver", R2))
    insert(run_dir, "http", *[http(2.0 + i / 10, "global", True, "region-2") for i in range(4)])
    assert reader.read(2.5).phase == "waiting for the first write on the new primary"
    insert(run_dir, "canary", (4, 0, 2.4, 2.41, "ok", R2, None, None))
    assert reader.read(2.5).phase == "waiting for consecutive successes"
    insert(run_dir, "http", http(2.5, "global", True, "region-2"))
    snap = reader.read(2.6)
    assert snap.phase == "recovered" and snap.http["global"] == "200 region-2"
    insert(run_dir, "events", (3.0, "experiment-ended", None, "{}"))
    assert reader.read(3.1).phase == "ended"
    reader.close()


def test_plain_lines_when_not_a_terminal_then_the_final_panel(tmp_path: Path) -> None:
    run_dir = fixture_run.build(tmp_path / "run")  # a finished run: one line, then it ends
    console = Console(file=io.StringIO(), width=400)
    view = live.start(run_dir, lambda: 2.5, console=console, terminal=False, mode="lines")
    view._thread.join(2)
    assert not view._thread.is_alive()  # stopped by itself on experiment-ended
    live.stop(run_dir, SUMMARY)
    out = console.file.getvalue()
    first = out.splitlines()[0]
    assert first.startswith("2026-01-01T00:00:02.500+00:00 gameday since-fault=+1.5 s "
                            "phase='ended' dns[authoritative=region-2 resolver=region-2]")
    assert "RTO" in out and "1.500 s ± 100 ms" in out and ": PASS" in out
    view.stop(SUMMARY)  # a second stop does nothing
    assert console.file.getvalue() == out


def test_rich_panel_on_a_terminal(tmp_path: Path) -> None:
    run_dir = empty_run(tmp_path)
    insert(run_dir, "events", (1.0, "fault-applied", "region-1", "{}"))
    insert(run_dir, "dns", dns(1.1, "resolver", R1))
    insert(run_dir, "http", http(1.1, "global", False, None))
    console = Console(file=io.StringIO(), force_terminal=True, width=120,
                      color_system=None, legacy_windows=False)
    view = live.start(run_dir, lambda: 1.25, console=console, interval_s=0.01)
    assert view.terminal
    deadline = time.monotonic() + 2
    while "DNS resolver" not in console.file.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    view.stop({**SUMMARY, "verdict": "fail", "reasons": ["RTO not observed"]})
    out = console.file.getvalue()
    assert "since fault" in out and "+0.2 s" in out and "waiting for detection" in out
    assert "HTTP global" in out and "error: ConnectError" in out
    assert ": FAIL" in out and "• RTO not observed" in out


def test_never_raises_when_the_run_cannot_be_read(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=200)
    view = live.start(tmp_path / "no-such-run", lambda: 0.0, console=console, terminal=False,
                      interval_s=0.01)
    time.sleep(0.05)
    view.stop(None)
    assert "no report" in console.file.getvalue()
    live.stop(tmp_path / "never-started", None)  # unknown run: nothing to do


def test_every_phase_is_seen_by_evidence_the_reader_tracks() -> None:
    """The live view follows the phase registry: a phase added without evidence the
    reader knows fails here, not as a view stuck on "waiting for ..." during a drill."""
    from gameday.measure import phases

    for chain in (phases.chain({}), phases.chain({"ha_manager": "patroni"}),
                  phases.chain({"ha_manager": "sentinel"})):
        for phase in chain:
            assert phase.seen in live.EVIDENCE, phase.name


def test_promotion_by_a_command_or_the_system_is_seen_without_a_promoted_event(
        tmp_path: Path) -> None:
    """Under promotion none|command nobody records `promoted`: the live view moves on when
    the recorder sees region-2 writable (here its first acknowledged canary write)."""
    run_dir = empty_run(tmp_path)
    reader = live.Reader(run_dir)
    insert(run_dir, "events", (1.0, "fault-applied", "region-1", "{}"))
    insert(run_dir, "http", http(1.1, "region-1", False, None))
    assert reader.read(1.2).phase == "waiting for promotion"
    insert(run_dir, "canary", (5, 0, 1.5, 1.52, "ok", R2, None, None))
    assert reader.read(1.6).phase == "waiting for the authoritative DNS flip"
    reader.close()


def test_an_ha_manager_is_detected_by_its_leader_key(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    timeline.create(run_dir, fixture_run.meta(configuration={
        **fixture_run.CONFIGURATION, "ha_manager": "patroni"}))
    reader = live.Reader(run_dir)
    insert(run_dir, "events", (1.0, "fault-applied", "region-1", "{}"))
    insert(run_dir, "http", http(1.1, "region-1", False, None))
    insert(run_dir, "ha", (1.2, "etcd", 1, "region-1", None, None))
    assert reader.read(1.3).phase == "waiting for the HA manager's leader key to expire"
    insert(run_dir, "ha", (9.0, "etcd", 1, None, None, None))
    assert reader.read(9.1).phase == "waiting for promotion"
    reader.close()


def test_the_sentinels_detect_by_odown_and_the_application_canary_writes_first(
        tmp_path: Path) -> None:
    """On Redis with Sentinel: detection is a Sentinel's +odown (before it names another
    master), and with no database canary the first write is the application canary's."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    timeline.create(run_dir, fixture_run.meta(configuration={
        **fixture_run.CONFIGURATION, "ha_manager": "sentinel", "database_canary": False,
        "store": "redis-sentinel"}))
    reader = live.Reader(run_dir)
    insert(run_dir, "events", (1.0, "fault-applied", "region-1", "{}"))
    insert(run_dir, "http", http(1.1, "region-1", False, None))
    insert(run_dir, "ha", (1.2, "sentinel-witness", 1, "region-1", '{"odown": false}', None))
    assert reader.read(1.3).phase == "waiting for the Sentinels' +odown"
    insert(run_dir, "ha", (3.2, "sentinel-witness", 1, "region-1", '{"odown": true}', None))
    assert reader.read(3.3).phase == "waiting for promotion"
    insert(run_dir, "replication", (3.5, "region-2", 1, 0, None, "{}", None))
    insert(run_dir, "dns", dns(3.6, "authoritative", R2), dns(3.6, "resolver", R2))
    insert(run_dir, "http", http(3.7, "global", True, "region-2"))
    assert reader.read(3.8).phase == "waiting for the first write on the new primary"
    insert(run_dir, "app_canary", (9, 0, 3.8, 3.85, "ok", "region-2", None, 201))
    assert reader.read(3.9).phase == "waiting for consecutive successes"
    reader.close()


def test_quiet_mode_prints_phase_changes_and_a_heartbeat() -> None:
    def snap(now: float, phase: str) -> live.Snapshot:
        return live.Snapshot(now=now, since_fault=now - 1, phase=phase, dns={}, http={},
                             canary_rate=0.0, last_ack=None, canary_errors=0, last_error=None,
                             lag_s=None)

    quiet = live.Quiet(heartbeat_s=10)
    phases = ["waiting for detection"] * 3 + ["waiting for promotion"] * 30
    printed = [(t, text) for t, phase in enumerate(phases)
               if (text := quiet.feed(snap(float(t), phase), None)) is not None]
    assert [t for t, _ in printed] == [0, 3, 13, 23]  # 2 changes, then every 10 s
    assert "phase='waiting for promotion'" in printed[1][1] and "dns[" not in printed[1][1]
    assert "gameday heartbeat" in printed[2][1] and "dns[" in printed[2][1]


def test_off_prints_nothing(tmp_path: Path) -> None:
    run_dir = fixture_run.build(tmp_path / "run")
    console = Console(file=io.StringIO(), width=200)
    view = live.start(run_dir, lambda: 2.5, console=console, terminal=False, mode="off")
    view.stop(SUMMARY)
    assert console.file.getvalue() == ""
