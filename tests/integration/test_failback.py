"""Failback on the real lab: two full cycles end in the starting topology with no lost
acknowledged write in either switchover; a blackhole drill's split brain is counted exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from tests.integration.conftest import chaos, gameday


def _lab(env: dict[str, str]) -> dict:
    return json.loads(Path(env["GAMEDAY_LAB"]).read_text())


def _conn(lab: dict, region: int) -> psycopg.Connection:
    db = lab["database"]
    return psycopg.connect(host=lab["regions"][region]["db_host"], port=db["port"],
                           user=db["user"], password=db["password"], dbname=db["name"],
                           autocommit=True, connect_timeout=3)


def assert_starting_topology(env: dict[str, str]) -> None:
    lab = _lab(env)
    with _conn(lab, 0) as c1:
        assert c1.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        assert c1.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
        # the replication mode survives the cycle: a sync lab stays synchronous
        modes = [r[0] for r in c1.execute("SELECT sync_state FROM pg_stat_replication")]
        want = "sync" if lab["database"]["replication"] == "sync" else "async"
        assert modes == [want], modes
    with _conn(lab, 1) as c2:
        row = c2.execute("SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)"
                         ).fetchone()
        assert row == (True, "streaming"), row
    import dns.message
    import dns.query
    import dns.rdatatype
    for server in (lab["dns"]["authoritative"]["address"], lab["dns"]["resolver"]["address"]):
        r = dns.query.udp(dns.message.make_query(lab["dns"]["name"], dns.rdatatype.A), server,
                          timeout=2)
        assert [rr.address for rrset in r.answer for rr in rrset] == ["198.18.0.11"], server


def test_failback_returns_to_the_starting_topology(shared_lab: dict[str, str]) -> None:
    """A failback before any game day is refused; a game day then a failback ends where the
    lab started; a second failback is refused. That a next game day and failback work from
    there is what the shared lab's starting-state check proves after every later test
    (conftest.SharedLab): each interruption case runs one."""
    lab_env = shared_lab
    bad = chaos("failback.json", env=lab_env, timeout=120)
    assert bad.returncode != 0 and "no game day ran" in bad.stdout + bad.stderr
    for cycle in (1,):
        gd = chaos("game-day.json", env=lab_env)
        assert gd.returncode == 0, gd.stdout[-3000:]
        fb = chaos("failback.json", env=lab_env)
        assert fb.returncode == 0, fb.stdout[-3000:]
        latest = Path(lab_env["GAMEDAY_REPORTS"]) / "latest"
        summary = json.loads((latest / "summary.json").read_text())
        failback = summary["failback"]
        assert failback is not None, f"cycle {cycle}: the game day report lacks its failback"
        assert failback["lost"] == 0 and summary["writes"]["lost"] == 0
        assert failback["split_brain_writes"] == 0
        assert failback["rto_s"] is not None and failback["rto_s"] < 30
        assert failback["catch_up_s"] is not None
        assert "## Failback" in (latest / "report.md").read_text() or \
            "Failback" in (latest / "report.md").read_text()
        assert_starting_topology(lab_env)
        # failback again without a game day: refused, nothing changed
        again = chaos("failback.json", env=lab_env, timeout=120)
        assert again.returncode != 0
        assert_starting_topology(lab_env)


def test_blackhole_split_brain_is_counted(lab_env: dict[str, str]) -> None:
    gameday("lab", "up", "--replication", "async", env=lab_env)
    try:
        gd = chaos("game-day.json", env=lab_env, extra=("--var", "region_faults=blackhole"))
        reports = Path(lab_env["GAMEDAY_REPORTS"])
        game_day_dir = (reports / "latest").resolve()
        summary = json.loads((game_day_dir / "summary.json").read_text())
        assert summary["rto_s"] is not None, gd.stdout[-3000:]
        assert [f["fault"] for f in summary["faults"]] == ["blackhole"]
        # count independently: the local writer's acknowledgements after the promotion
        # (instant from the game day's own timeline) that exist only on the old primary
        meta = dict(__import__("sqlite3").connect(game_day_dir / "timeline.sqlite").execute(
            "SELECT key, value FROM meta").fetchall())
        anchor = datetime.fromisoformat(json.loads(meta["anchor_utc"]))
        t_promoted = __import__("sqlite3").connect(game_day_dir / "timeline.sqlite").execute(
            "SELECT t FROM events WHERE kind = 'promoted'").fetchone()[0]
        promoted_at = anchor + timedelta(seconds=t_promoted)
        acks = Path(lab_env["GAMEDAY_HOME"], "logs", "local-writer-region-1.acks").read_text()
        acked = {int(line.split("\t")[0]): datetime.fromtimestamp(float(line.split("\t")[1]), UTC)
                 for line in acks.splitlines() if line}
        lab = _lab(lab_env)
        with _conn(lab, 0) as c1:
            old = {r[0]: r[1] for r in c1.execute("SELECT seq, written_at FROM gameday_canary "
                                                  "WHERE writer = -1")}
        with _conn(lab, 1) as c2:
            new = {r[0] for r in c2.execute("SELECT seq FROM gameday_canary WHERE writer = -1")}
        beyond = [s for s, at in old.items() if s not in new and at > promoted_at]
        assert beyond, "the local writer wrote nothing after the promotion: no split brain to count"
        assert all(s in acked for s in beyond)
        fb = chaos("failback.json", env=lab_env)
        assert fb.returncode != 0  # acknowledged writes were lost: the drill must say so
        summary = json.loads(((reports / "latest") / "summary.json").read_text())
        assert summary["failback"]["split_brain_writes"] == len(beyond)
        assert_starting_topology(lab_env)
    finally:
        gameday("lab", "down", env=lab_env, check=False)
