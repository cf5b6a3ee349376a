"""A long drill on the real lab: the service held in region-2 under steady-state checks,
its availability in the report, then the failback as after any game day; and the canary
table's retention rule against a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from gameday.postgres.canary import prune_canary
from tests.integration.conftest import assert_starting_topology, chaos

# long enough for every figure of the hold to be judged (over a hundred global requests,
# six steady-state checks at HOLD_CHECK_S, a thousand canary writes at the experiment's cap)
HOLD_S = 6
HOLD_CHECK_S = 1


def _primary(env: dict[str, str]) -> psycopg.Connection:
    lab = json.loads(Path(env["GAMEDAY_LAB"]).read_text())
    db = lab["database"]
    return psycopg.connect(host=lab["regions"][0]["db_host"], port=db["port"], user=db["user"],
                           password=db["password"], dbname=db["name"], autocommit=True,
                           connect_timeout=3)


def test_prune_keeps_the_runs_still_measured(shared_lab: dict[str, str]) -> None:
    _retention(shared_lab)


def _retention(lab_env: dict[str, str]) -> None:
    table = "gameday_canary_retention_test"
    with _primary(lab_env) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}, {table}_runs")
        conn.execute(f"CREATE TABLE {table} (seq bigint PRIMARY KEY, writer integer)")
        try:
            # rows from before the rule (no run registered), then three runs of 10 rows
            conn.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, 5) g")
            assert prune_canary(conn, table, start_seq=6, run_id="a", keep_runs=2) == 0
            conn.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(6, 15) g")
            # run b starts: a (the run before, which a failback may still be measuring) stays
            assert prune_canary(conn, table, start_seq=16, run_id="b", keep_runs=2) == 5
            conn.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(16, 25) g")
            assert conn.execute(f"SELECT min(seq) FROM {table}").fetchone()[0] == 6
            # run c starts: a goes, b and c stay
            assert prune_canary(conn, table, start_seq=26, run_id="c", keep_runs=2) == 10
            conn.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(26, 30) g")
            # run d wrote nothing (crashed at once): e gets its start_seq and replaces it,
            # and c's rows (the last run that wrote) are the ones before it
            assert prune_canary(conn, table, start_seq=31, run_id="d", keep_runs=2) == 10
            assert prune_canary(conn, table, start_seq=31, run_id="e", keep_runs=2) == 0
            assert [r[0] for r in conn.execute(f"SELECT seq FROM {table} ORDER BY seq")] == \
                list(range(26, 31))
            assert conn.execute(f"SELECT start_seq, run_id FROM {table}_runs ORDER BY "
                                "start_seq").fetchall() == [(26, "c"), (31, "e")]
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}, {table}_runs")


def test_long_drill_holds_in_region_2_then_fails_back(shared_lab: dict[str, str]) -> None:
    _long_drill(shared_lab)


def _long_drill(lab_env: dict[str, str]) -> None:
    # a failback with no game day behind it is refused
    bad = chaos("failback.json", env=lab_env, timeout=120)
    assert bad.returncode != 0 and "no game day ran" in bad.stdout + bad.stderr
    gd = chaos("game-day-long.json", env=lab_env, timeout=600,
               extra=("--var", f"hold_s={HOLD_S}", "--var", f"hold_check_interval_s={HOLD_CHECK_S}"))
    assert gd.returncode == 0, gd.stdout[-3000:] + gd.stderr[-3000:]
    latest = (Path(lab_env["GAMEDAY_REPORTS"]) / "latest").resolve()
    fb = chaos("failback.json", env=lab_env)
    assert fb.returncode == 0, fb.stdout[-3000:] + fb.stderr[-3000:]
    _failback_returned_to_the_start(lab_env, latest)

    summary = json.loads((latest / "summary.json").read_text())
    hold = summary["hold"]
    assert hold["region"] == "region-2" and hold["ended"] is True
    assert HOLD_S <= hold["held_s"] < HOLD_S + 10, hold
    # a 50 ms global sampler over the hold, every request served by region-2
    assert hold["global_requests"] >= HOLD_S * 15, hold
    assert hold["served_by_region"] == hold["global_ok"] == hold["global_requests"], hold
    assert hold["success_ratio"] == 1.0
    assert hold["canary_attempts"] > 0 and hold["canary_errors"] == 0, hold
    # the experiment caps the canary at 200 writes/s (a primary with no synchronous standby
    # takes thousands): at most that, and no less than half of it on this lab
    assert 100 * HOLD_S <= hold["canary_attempts"] <= 200 * 1.02 * hold["held_s"], hold
    assert summary["configuration"]["canary_max_rate"] == 200
    assert hold["checks"] >= HOLD_S // 2 - 1 and hold["checks_failed"] == 0, hold
    assert hold["timeline_mb_per_hour"] > 0
    assert summary["verdict"] == "pass" and summary["failback"]["verdict"] == "pass", summary
    report = (latest / "report.md").read_text()
    assert "## Hold in the secondary region" in report
    assert f"{hold['global_ok']} of {hold['global_requests']} (100.000%)" in report

    # the hold is bounded by its own events on the run's clock
    import sqlite3
    db = sqlite3.connect(latest / "timeline.sqlite")
    (start,), (end,) = (db.execute("SELECT t FROM events WHERE kind = ?", (k,)).fetchone()
                        for k in ("hold-start", "hold-end"))
    db.close()
    assert abs((end - start) - hold["held_s"]) < 0.01

    # retention: the failback (the newest run) kept its own rows and the game day's
    with _primary(lab_env) as conn:
        starts = [r[0] for r in conn.execute(
            "SELECT start_seq FROM gameday_canary_runs ORDER BY start_seq")]
        assert len(starts) == 2 and starts[0] == json.loads(db_meta(latest, "start_seq")), \
            starts
        assert conn.execute("SELECT count(*) FROM gameday_canary WHERE seq < %s",
                            (starts[0],)).fetchone()[0] == 0


def db_meta(run_dir: Path, key: str) -> str:
    import sqlite3
    db = sqlite3.connect(run_dir / "timeline.sqlite")
    try:
        return str(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])
    finally:
        db.close()


def _failback_returned_to_the_start(lab_env: dict[str, str], latest: Path) -> None:
    """The failback's part of the game day's summary and report, the starting topology, and
    a second failback refused with nothing changed."""
    summary = json.loads((latest / "summary.json").read_text())
    failback = summary["failback"]
    assert failback is not None, "the game day report lacks its failback"
    assert failback["lost"] == 0 and summary["writes"]["lost"] == 0
    assert failback["split_brain_writes"] == 0
    assert failback["rto_s"] is not None and failback["rto_s"] < 30
    assert failback["catch_up_s"] is not None
    assert "## Failback" in (latest / "report.md").read_text()
    assert_starting_topology(lab_env)
    again = chaos("failback.json", env=lab_env, timeout=120)
    assert again.returncode != 0
    assert_starting_topology(lab_env)
