"""The drill on a store without SQL (Redis with Sentinel): the application canary is the RPO
measure (the summary's writes and RPO are its), the Sentinels' view is the HA evidence
(+odown is the detection), the recorder samples Redis and the Sentinels (on real servers,
tests/unit/redis_servers.py), a wait for recovery counts the application's writes, and a run
without the application canary, or promotion 'manager' where no Sentinel is, is refused."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from gameday.actions import wait
from gameday.drill import context as drills
from gameday.drill import preflight, stores
from gameday.experiments import compose
from gameday.foundation import descriptor
from gameday.foundation.errors import ConfigError
from gameday.foundation.settings import GamedaySettings
from gameday.labs.netns import redis_sentinel
from gameday.measure import app_canary, instants, phases, summary
from gameday.measure import run as runs
from gameday.measure.samplers import (
    RedisReplicationSampler,
    SentinelEvents,
    SentinelSampler,
)
from gameday.measure.store import reader, timeline
from gameday.measure.store.timeline import AppCanaryAttempt, HaSample, ReplicationSample
from gameday.report import outputs
from tests.fixtures.report import fixture_run
from tests.unit import fakes
from tests.unit.redis_servers import Set

REDIS_CONFIGURATION = {**fixture_run.CONFIGURATION, "replication": "async",
                       "store": "redis-sentinel", "database_canary": False,
                       "ha_manager": "sentinel", "sentinel_down_after_s": 0.5}


def redis_run(run_dir: Path) -> Path:
    """The fixture's failover as a Redis lab records it: no database canary (no SQL), the
    application canary's story unchanged (12 writes region-1 acknowledged in the 0.3 s
    before the fault are not read back), and the Sentinels sampled: the witness holds
    region-1 down (+odown) from 1.3 and names region-2 the master from 1.5; region-1's
    Sentinel answers nothing after the fault."""
    fixture_run.build(run_dir, app=True, configuration=dict(REDIS_CONFIGURATION))
    rows = []
    for t in fixture_run.ticks(100):
        odown = 1.3 <= t < 1.5
        leader = "region-2" if t >= 1.5 else "region-1"
        rows.append(HaSample(t, "sentinel-witness", 1, leader,
                             json.dumps({"odown": odown, "flags": ["master"] +
                                         (["o_down"] if odown else [])}), None))
        rows.append(HaSample(t, "sentinel-region-1", int(t < 1.0),
                             "region-1" if t < 1.0 else None, None,
                             None if t < 1.0 else "ConnectionError"))
    conn = sqlite3.connect(run_dir / timeline.FILE)
    with conn:
        conn.execute("DELETE FROM canary")
        conn.execute("DROP TABLE final_rows")
        conn.execute("DELETE FROM meta WHERE key LIKE 'final_read%'")
        conn.executemany("INSERT INTO ha VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    return run_dir


def test_without_sql_the_application_canary_is_the_run_s_writes_and_rpo(
        tmp_path: Path) -> None:
    s = summary.build(redis_run(tmp_path / "run"))
    assert s["writes"] == s["app_writes"]["writes"]
    assert s["writes"]["lost"] == 12 and s["rpo_s"] == 0.31
    assert s["rpo_error_s"] == s["app_writes"]["rpo_error_s"]
    # judged by max_lost_writes and the RPO target, named as the application canary's; no
    # database canary, so no "canary table was not read"
    assert s["reasons"] == ["application canary: 12 acknowledged writes lost (at most 0 "
                            "allowed)",
                            "application canary: RPO 0.310 s exceeds the target 0 s"]
    assert s["verdict"] == "fail" and s["writes_detail"] is None


def test_the_sentinels_odown_is_the_detection_and_the_application_s_first_write_the_write_rto(
        tmp_path: Path) -> None:
    s = summary.build(redis_run(tmp_path / "run"))
    detail = s["phase_detail"]
    assert s["phases"]["detection_s"] == 0.3  # the witness's first o_down, at 1.3
    assert "+odown" in str(detail["detection_s"]["evidence"])
    # region-2's Redis first answered as the master at the replication sample of 1.75
    assert s["phases"]["promotion_s"] == 0.75
    assert s["promotion"]["observed_s"] == 0.75
    assert s["phases"]["first_write_s"] == 1.715 == s["write_rto_s"]
    assert "application-canary" in str(detail["first_write_s"]["evidence"])
    assert [p.name for p in phases.chain(s["configuration"])][:2] == ["detection_s",
                                                                      "promotion_s"]
    assert phases.chain(s["configuration"])[0] is phases.SENTINEL_DETECTION


def test_the_report_of_a_redis_run_shows_the_sentinels_and_the_application_canary(
        tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    out = outputs.regenerate(redis_run(reports / fixture_run.RUN_ID))
    report = (out.summary and (reports / fixture_run.RUN_ID / "report.md")).read_text()
    assert "Detection (the Sentinels hold the master objectively down: +odown)" in report
    assert "Promotion by the Sentinels" in report
    assert "| Sentinel down-after (s) | 0.5 |" in report
    assert "| Datastore | redis-sentinel |" in report
    assert "application canary: 12 acknowledged writes lost" in report
    # no database canary ran: the application canary's writes stand alone, not beside a
    # database canary's that never wrote
    assert "## Writes (the application canary)" in report
    assert "No database canary: this lab's store (redis-sentinel) has no SQL" in report
    assert "| Lost acknowledged writes (application canary) | 12 | ≤ 0 | ❌ |" in report
    assert "## Both canaries" not in report and "(database canary)" not in report
    assert "(acknowledged by region-1: 12; read back from http://198.18.0.12:8080)" in report


def test_a_detection_never_seen_says_the_sentinels_were_not_sampled(tmp_path: Path) -> None:
    run_dir = redis_run(tmp_path / "run")
    with sqlite3.connect(run_dir / timeline.FILE) as conn:
        conn.execute("DELETE FROM ha")
    s = summary.build(run_dir)
    assert s["phases"]["detection_s"] is None
    assert s["notes"]["detection_s"] == "the Sentinels were not sampled"


def test_a_live_read_back_leaves_out_the_writes_still_in_flight() -> None:
    attempts = [AppCanaryAttempt(1, 0, 0.1, 0.2, "ok", "region-1", None, 201),
                AppCanaryAttempt(2, 0, 0.3, 0.6, "ok", "region-1", None, 201),
                AppCanaryAttempt(3, 0, 0.7, 0.8, "ok", "region-1", None, 201)]
    read = {1: 1, 4: 1}  # 4: acknowledged after the read began, its attempt not flushed
    live = app_canary.classify(attempts, read, t_fault=None, start=1, cutoff=0.5, live=True)
    assert live.accounting.counts()["acked"] == 1 and live.accounting.lost == 0
    assert live.never_sent == ()
    final = app_canary.classify(attempts, read, t_fault=None, start=1)
    assert final.accounting.lost == 2 and final.never_sent == (4,)


# --- the recorder's samplers, on real servers ---------------------------------------------


class Rows:
    def __init__(self) -> None:
        self.rows: list[Any] = []

    def add(self, row: Any) -> None:
        self.rows.append(row)


def _sample(sampler: Any, t: float) -> None:
    async def once() -> None:
        try:
            await sampler.sample(t, 0.0)
        finally:
            await sampler.close()

    asyncio.run(once())


def test_the_recorder_samples_each_redis_and_each_sentinel(redis_set: Set) -> None:
    lab = redis_set.lab()
    out = Rows()
    for t, region in ((1.0, "region-1"), (2.0, "region-2")):
        _sample(RedisReplicationSampler(lab, region, None, out, 0.5), t)  # type: ignore[arg-type]
    _sample(SentinelSampler(lab, "witness", None, out, 0.5), 3.0)  # type: ignore[arg-type]
    master, replica, view = out.rows
    assert isinstance(master, ReplicationSample) and master[:4] == (1.0, "region-1", 1, 0)
    senders = json.loads(master.detail)["senders"]
    assert [s["address"] for s in senders] == [f"127.0.0.1:{redis_set.replica.port}"]
    assert replica[:4] == (2.0, "region-2", 1, 1)
    assert json.loads(replica.detail)["receiver"]["link"] == "up"
    assert isinstance(view, HaSample) and view[:4] == (3.0, "sentinel-witness", 1, "region-1")
    assert json.loads(view.detail)["odown"] is False
    # the master lost: its samples fail, and the Sentinel names region-2 once it promoted
    redis_set.master.stop(signal.SIGKILL)
    _sample(RedisReplicationSampler(lab, "region-1", None, out, 0.5), 4.0)  # type: ignore[arg-type]
    assert out.rows[-1][:3] == (4.0, "region-1", 0) and out.rows[-1].error

    def named_region_2() -> bool:
        _sample(SentinelSampler(lab, "witness", None, out, 0.5), 5.0)  # type: ignore[arg-type]
        return bool(out.rows[-1].leader == "region-2")

    redis_set.wait(named_region_2, "the Sentinel names region-2", timeout=15)
    assert any(json.loads(r.detail or "{}").get("odown") for r in out.rows
               if isinstance(r, HaSample))
    _sample(RedisReplicationSampler(lab, "region-2", None, out, 0.5), 6.0)  # type: ignore[arg-type]
    assert out.rows[-1][:4] == (6.0, "region-2", 1, 0)  # promoted: the master


def test_the_sentinel_s_own_announcements_are_recorded_the_instant_they_arrive(
        redis_set: Set) -> None:
    """+odown then +switch-master, subscribed to on a real Sentinel (quorum 1, down-after
    0.3 s), each an `ha` row on the run's clock; the detection instant reads the +odown
    row, whatever the samples between them missed."""
    lab = redis_set.lab()
    out = Rows()
    clock = timeline.Clock(time.monotonic_ns())
    events = SentinelEvents(lab, "witness", clock, out, 0.5)  # type: ignore[arg-type]

    async def listen() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(events.run(stop))
        await asyncio.sleep(0.3)  # subscribed
        killed = clock.now()
        redis_set.master.stop(signal.SIGKILL)
        for _ in range(150):
            if any(r.leader == "region-2" for r in out.rows):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, 2)
        await events.close()
        return killed

    killed = asyncio.run(listen())
    odown, switch = out.rows[0], out.rows[-1]
    assert isinstance(odown, HaSample) and odown[1:4] == ("sentinel-witness", 1, "region-1")
    assert json.loads(odown.detail or "{}")["event"] == "+odown"
    assert json.loads(odown.detail or "{}")["odown"] is True
    # down-after-milliseconds (300) after the master's last answer, which may come a
    # little before the kill: after the kill, and within a few seconds
    assert 0.0 < odown.t - killed < 3.0, odown.t - killed
    assert switch[3] == "region-2" and json.loads(switch.detail or "{}")["event"] == \
        "+switch-master"
    assert switch.t >= odown.t
    # the timeline's detection is the +odown row
    run_dir = redis_set.base / "run"
    run_dir.mkdir()
    timeline.create(run_dir, {"run_id": "r", "anchor_ns": clock.anchor_ns})
    conn = timeline.connect(run_dir)
    with conn:
        conn.executemany(timeline.insert_sql("ha"), out.rows)
    conn.close()
    tl, _ = reader.open_run(run_dir)
    try:
        at = instants.sentinel_odown(tl, killed, "region-1")
    finally:
        tl.close()
    assert at.at_s is not None and abs(at.at_s - (odown.t - killed)) < 1e-6, at


def test_an_announcement_of_another_master_or_not_understood_is_no_row() -> None:
    events = SentinelEvents.__new__(SentinelEvents)
    events.site, events.master_name = "witness", "gameday"
    events.regions = {"198.18.0.11 6379": "region-1", "198.18.0.12 6379": "region-2"}
    assert events.row(1.0, "+odown", "master other 198.18.0.11 6379 #quorum 2/2") is None
    assert events.row(1.0, "+switch-master", "gameday 198.18.0.11 6379") is None
    row = events.row(1.0, "+switch-master", "gameday 198.18.0.11 6379 198.18.0.12 6379")
    assert row is not None and row.leader == "region-2"


# --- the steps and the refusals -------------------------------------------------------------


def redis_lab_file(tmp_path: Path) -> Path:
    data = fakes.descriptor_dict()
    del data["database"]
    data["store"] = redis_sentinel.descriptor_block(redis_sentinel.Profile(
        root="/var/tmp/gameday-redis-x", password="pw-1_A", sentinel_password="pw-2_B"))
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(data))
    return path


def test_a_redis_drill_without_the_application_canary_is_refused(tmp_path: Path) -> None:
    lab = descriptor.load(redis_lab_file(tmp_path))
    without = GamedaySettings.from_chaos({"promotion": "none"})
    with pytest.raises(ConfigError, match="the application canary is the drill's RPO measure"):
        preflight.check_store(without, lab)
    preflight.check_store(GamedaySettings.from_chaos(
        {"promotion": "none", "app_canary": dict(compose.LAB_APP_CANARY)}), lab)
    # gameday never promotes behind the Sentinels' back
    with pytest.raises(ConfigError, match="run by sentinel: gameday will not promote"):
        preflight.refuse_runner_behind_manager(GamedaySettings.from_chaos({}), lab)


def test_promotion_manager_is_refused_where_no_sentinel_is(tmp_path: Path) -> None:
    lab = descriptor.load(fakes.write_lab(tmp_path))
    manager = GamedaySettings.from_chaos({"promotion": "manager"})
    with pytest.raises(ConfigError, match="only Redis's Sentinels are asked so"):
        preflight.check_store(manager, lab)
    with pytest.raises(ConfigError, match="only Redis's Sentinels are asked so"):
        stores.switch_over_by_manager(lab, lab.region("region-1"), 1)


def test_the_wait_for_recovery_counts_the_application_s_writes_on_redis(
        tmp_path: Path) -> None:
    lab_file = redis_lab_file(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    timeline.create(run_dir, {"run_id": "r", "anchor_ns": 1})
    conn = timeline.connect(run_dir)
    with conn:
        conn.execute("INSERT INTO events VALUES (1.0, 'fault-applied', 'region-1', '{}')")
        conn.executemany("INSERT INTO http VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [(2.0 + i / 10, "global", 1, 200, "region-2", "198.18.0.12", 0.01,
                           0.0, None) for i in range(5)])
        conn.execute(timeline.insert_sql("dns"), timeline.DnsSample(
            2.0, "resolver", 1, "198.18.0.12", "NOERROR", 1, 0.001, 0.0, None, "",
            "region-2"))
    conn.close()
    run = runs.Run(run_dir, timeline.Clock(1))
    configuration = {"lab_file": str(lab_file), "promotion": "none",
                     "app_canary": copy.deepcopy(compose.LAB_APP_CANARY)}
    drills.publish(fakes.drill(lab_file, run=run, configuration=configuration))
    with pytest.raises(ActivityFailed, match="no application-canary writes answered from it"):
        wait.wait_for_recovery(region="region-2", timeout_s=0.2, configuration=configuration)
    writer = timeline.BatchWriter(run_dir)
    writer.add(AppCanaryAttempt(7, 0, 2.0, 2.01, "ok", "region-2", None, 201))
    writer.flush()
    writer.close()
    assert wait.wait_for_recovery(region="region-2", timeout_s=0.5,
                                  configuration=configuration)["region"] == "region-2"


def test_a_failback_asked_of_the_sentinels_validates_and_reads_as_theirs(
        tmp_path: Path) -> None:
    """promotion 'manager' is a strategy of summary.json's contract, and its report and
    JUnit say the HA manager switched over (no split brain to count: a returning old master
    is made a replica)."""
    from gameday.report import junit, markdown

    reports = tmp_path / "reports"
    reports.mkdir()
    run_dir = redis_run(reports / fixture_run.RUN_ID)
    with sqlite3.connect(run_dir / timeline.FILE) as conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('promotion', ?)",
                     (json.dumps({"strategy": "manager", "command": []}),))
    s = outputs.regenerate(run_dir).summary  # validated against the schema on the way
    assert s["promotion"]["strategy"] == "manager"
    report = (run_dir / "report.md").read_text()
    assert "the HA manager was asked through its own API (Redis's Sentinels: SENTINEL " \
           "FAILOVER)" in report
    assert junit._split_brain(None, "manager", 0).failure is None
    assert "not counted (rewound by the HA manager)" in "\n".join(
        markdown.failback_headline({"strategy": "manager", "split_brain_writes": None}))


def test_the_verdict_probes_read_the_application_back_again_when_a_read_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """On a store without SQL the RPO probe reads the application canary back live. A read
    that fails once (the application's connections still finding the new master after a
    failover) is tried again: before, the probe failed with RPO "not observed" in a run
    whose final read found the numbers (seen in CI). A read that always fails still does."""
    from gameday.probes import verdict

    run_dir = redis_run(tmp_path / "run")
    conn = sqlite3.connect(run_dir / timeline.FILE)
    saved = conn.execute(f"SELECT seq, n FROM {timeline.APP_FINAL_ROWS}").fetchall()
    conn.close()
    lab_file = redis_lab_file(tmp_path)
    configuration = {"lab_file": str(lab_file), "promotion": "none",
                     "app_canary": copy.deepcopy(compose.LAB_APP_CANARY)}
    run = runs.Run(run_dir, timeline.Clock(time.monotonic_ns() - 100 * 10**9))
    drills.publish(fakes.drill(lab_file, run=run, configuration=configuration))
    refused = app_canary.Where(base_url="http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(verdict.checks, "global_where", lambda lab, deadline: refused)
    real, calls = app_canary.snapshot, []

    def flaky(run_dir: Path, where: Any, read: Any, t: float, **kw: Any) -> int:
        calls.append(t)
        if len(calls) == 1 or fails_always:  # the real read, refused: its error recorded
            return real(run_dir, where, read, t, **kw)
        timeline.write_final_rows(run_dir, saved, table=timeline.APP_FINAL_ROWS, meta={
            "app_read_t": t, "app_read_from": "http://198.18.0.12:8080",
            "app_read_error": None, "app_read_live": True})
        return len(saved)

    monkeypatch.setattr(verdict.app_canary, "snapshot", flaky)
    fails_always = False
    with caplog.at_level("WARNING"):
        assert verdict.rpo_seconds(configuration=configuration) == 0.31
    assert len(calls) == 2 and "attempt 1 of 3" in caplog.text
    fails_always, calls[:] = True, []
    with pytest.raises(Exception, match="RPO was not observed"):
        verdict.rpo_seconds(configuration=configuration)
    assert len(calls) == verdict.LIVE_READS
