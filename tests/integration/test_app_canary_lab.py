"""The Redis profile of the netns lab on real servers: Debian's redis-server and
redis-sentinel, the storefronts' application-canary endpoints over them, faults applied
and rolled back through the netns driver, and the known answers of issue 23:

- async: a failover loses exactly the acknowledged writes the old master alone had (the
  test reads the old master's own files for them), and the read-back shows them missing;
- wait (min-replicas-to-write 1, WAIT 1): the same sequence loses none.

One lab per durability, shared by the checks that need no fresh one; the known answers
drive the driver and gameday's writers directly, and the async lab then runs the Redis game
day and its failback through `chaos run` (issue 23's done-when), last, where its state is
what they leave."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gameday.foundation import descriptor
from gameday.foundation.errors import LabError
from gameday.foundation.faults import Fault
from gameday.foundation.poll import poll_until
from gameday.foundation.settings import GamedaySettings
from gameday.labs.netns import redis_sentinel
from gameday.labs.netns.driver import NetnsDriver
from gameday.labs.netns.processes import run
from gameday.measure import app_canary
from gameday.measure.store import reader, timeline
from gameday.measure.store.timeline import CanaryAttempt
from tests.integration.conftest import (
    BIN,
    ROOT,
    chaos,
    gameday,
    lab_pids,
    residue,
)

HTTP_TIMEOUT_S = 5.0
# the first number of gameday's own application-canary writers here: above the test's own
APP_START = 2_000_000
# how long they write while the replica is cut off
APP_WRITE_S = 1.0


class RedisLab:
    def __init__(self, env: dict[str, str], durability: str) -> None:
        self.env = env
        self.durability = durability
        self.path = Path(env["GAMEDAY_LAB"])
        self.data: dict[str, Any] = json.loads(self.path.read_text())
        self.state = Path(self.data["state_dir"])
        profile = redis_sentinel.Profile.load(self.state)
        assert profile is not None
        self.profile = profile
        # the Redis lab has no PostgreSQL: its descriptor has no database block
        self.driver = NetnsDriver(descriptor.load(self.path))
        self.http = httpx.Client(timeout=HTTP_TIMEOUT_S)

    def url(self, region: str) -> str:
        return str(self.driver.lab.region(region).storefront_url)

    def write(self, region: str, seqs: Iterable[int]) -> tuple[set[int], set[int]]:
        """The acknowledged (2xx) and refused numbers, written one after another."""
        acked, refused = set(), set()
        for seq in seqs:
            try:
                answer = self.http.post(f"{self.url(region)}/canary/{seq}",
                                        headers={"X-Canary-Writer": "test"})
            except httpx.HTTPError:
                refused.add(seq)
                continue
            (acked if answer.is_success else refused).add(seq)
        return acked, refused

    def read_back(self, region: str, page: int = 7) -> list[int]:
        seqs: list[int] = []
        since: int | None = -1
        while since is not None:
            answer = self.http.get(f"{self.url(region)}/canary",
                                   params={"since": since, "limit": page})
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-Region"] == region
            body = answer.json()
            seqs += body["seqs"]
            since = body["next"]
        return seqs

    def healthy(self, region: str) -> bool:
        try:
            return self.http.get(f"{self.url(region)}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def app_writers(self, run_dir: Path, seconds: float) -> None:
        """gameday's application-canary writers (the recorder's AppWriters), through the
        global name as a user's writes go, for `seconds`, into a timeline of their own."""
        anchor_ns, utc = timeline.Clock.new_anchor()
        timeline.create(run_dir, {"anchor_ns": anchor_ns, "anchor_utc": utc,
                                  "app_start_seq": APP_START})
        canary = GamedaySettings.from_chaos({"app_canary": self.data["app_canary"]}).app_canary
        assert canary is not None
        name = app_canary.GlobalName.of(self.driver.lab)
        out = timeline.BatchWriter(run_dir)
        writers = app_canary.AppWriters(
            canary, timeline.Clock(anchor_ns), out, start_seq=APP_START,
            where=lambda: name.where(1.0, canary.deadline_s), verify=name.verify)

        async def write() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(writers.run(stop))
            await asyncio.sleep(seconds)
            stop.set()
            await task

        asyncio.run(write())
        out.close()

    def apply(self, name: str, region: str) -> dict[str, Any]:
        fault, target = Fault.parse(name), self.driver.lab.region(region)
        undo = self.driver.plan(fault, target)
        self.driver.inject(fault, target, undo)
        poll_until(lambda: self.driver.is_effective(fault, target, undo), timeout_s=15,
                   interval_s=0.1, what=f"{fault} on {region} in effect")
        return undo

    def revert(self, name: str, region: str, undo: dict[str, Any]) -> None:
        self.driver.revert(Fault.parse(name), self.driver.lab.region(region), undo)


@pytest.fixture(scope="module", params=["async", "wait"])
def redis_lab(request: pytest.FixtureRequest, lab_env: dict[str, str],
              no_shared_lab: None) -> Iterator[RedisLab]:
    durability = str(request.param)
    gameday("lab", "up", "--store", "redis-sentinel", "--redis-durability", durability,
            env=lab_env)
    lab: RedisLab | None = None
    try:
        lab = RedisLab(lab_env, durability)
        yield lab
    finally:
        pids = lab_pids(lab_env)
        root = lab.profile.root if lab else None
        if lab:
            lab.http.close()
        gameday("lab", "down", env=lab_env, check=False)
        # every process stopped, every namespace, link and file gone
        assert residue(lab_env, pids) == []
        assert root is None or not Path(root).exists()


def test_the_descriptor_names_the_store_and_the_endpoints(redis_lab: RedisLab) -> None:
    store = redis_lab.data["store"]
    assert store["kind"] == "redis-sentinel" and store["durability"] == redis_lab.durability
    assert store["min_replicas_to_write"] == (1 if redis_lab.durability == "wait" else 0)
    assert [s["site"] for s in store["sentinel"]["sentinels"]] == ["region-1", "region-2",
                                                                   "witness"]
    assert redis_lab.data["app_canary"]["write"]["path"] == "/canary/{seq}"
    assert "database" not in redis_lab.data
    # real Redis, real Sentinels: region-1 the master all three name, region-2 streaming
    assert redis_sentinel.role(redis_lab.profile, "198.18.0.11") == "master"
    assert redis_sentinel.replication(redis_lab.profile, "198.18.0.12")[
        "master_link_status"] == "up"
    assert set(redis_sentinel.masters_named(redis_lab.profile).values()) == {"198.18.0.11"}
    assert redis_lab.healthy("region-1") and not redis_lab.healthy("region-2")


def test_the_canary_endpoints_on_real_redis(redis_lab: RedisLab) -> None:
    http, url = redis_lab.http, redis_lab.url("region-1")
    first = http.post(f"{url}/canary/1000001", headers={"X-Canary-Writer": "w-1"})
    again = http.post(f"{url}/canary/1000001")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.headers["X-Region"] == "region-1"
    # a malformed write changes nothing
    assert http.post(f"{url}/canary/12x").status_code == 400
    assert http.get(f"{url}/canary", params={"sinse": 0}).status_code == 400
    # region-2's storefront writes to the master wherever it is (Sentinel discovery), as
    # an application behind Sentinel does; both read back the same set
    assert http.post(f"{redis_lab.url('region-2')}/canary/1000002").status_code == 201
    assert redis_lab.read_back("region-1", page=1) == [1000001, 1000002]
    assert redis_lab.read_back("region-2") == [1000001, 1000002]
    with redis_sentinel._closing(redis_sentinel.redis_client(redis_lab.profile,
                                                             "198.18.0.11")) as c:
        c.zrem(redis_sentinel.CANARY_KEY, 1000001, 1000002)


def test_a_drill_that_would_promote_behind_the_sentinels_is_refused_and_touches_nothing(
        redis_lab: RedisLab) -> None:
    before = lab_pids(redis_lab.env)
    proc = chaos("game-day.json", env=redis_lab.env, timeout=180)  # promotion 'runner'
    assert proc.returncode != 0
    assert "run by sentinel: gameday will not promote behind its back" in \
        proc.stdout + proc.stderr
    assert lab_pids(redis_lab.env) == before
    assert not _nft_table(redis_lab, "gd-region-1")
    assert redis_sentinel.role(redis_lab.profile, "198.18.0.11") == "master"


def test_block_egress_applies_and_rolls_back(redis_lab: RedisLab) -> None:
    undo = redis_lab.apply("block-egress", "region-1")
    assert _nft_table(redis_lab, "gd-region-1")
    redis_lab.revert("block-egress", "region-1", undo)
    redis_lab.revert("block-egress", "region-1", undo)  # twice is harmless
    assert not _nft_table(redis_lab, "gd-region-1")
    assert redis_lab.healthy("region-1")


@pytest.mark.parametrize("redis_lab", ["async"], indirect=True)
def test_a_dry_run_of_the_redis_game_day_changes_nothing(redis_lab: RedisLab) -> None:
    """Dry means dry on the Redis lab too: the game day's whole method walked under
    `--dry actions`, the steady state judged from the plan, and no process, nftables
    table or master changed."""
    lab = redis_lab
    before, ledger = lab_pids(lab.env), _ledger(lab)
    Path(lab.env["GAMEDAY_REPORTS"]).mkdir(parents=True, exist_ok=True)  # the journal's
    proc = chaos("game-day-redis.json", env=lab.env, extra=("--dry", "actions"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "plan: ready; nothing was injected" in out
    assert lab_pids(lab.env) == before
    assert not _nft_table(lab, "gd-region-1") and not _nft_table(lab, "gd-region-2")
    assert set(redis_sentinel.masters_named(lab.profile).values()) == {"198.18.0.11"}
    assert _ledger(lab) == ledger  # no fault recorded, planned or applied


def test_a_failover_loses_what_async_acknowledged_and_wait_did_not(
        redis_lab: RedisLab, tmp_path: Path) -> None:
    """The known answer: replication cut, writes through region-1's storefront, region-1
    killed, region-2 promoted by the Sentinels. The test reads the old master's own files
    for what it had, and the new master through the storefront's read-back."""
    lab = redis_lab
    before, refused_before = lab.write("region-1", range(0, 20))
    assert before == set(range(0, 20)) and not refused_before
    cut = lab.apply("replication-cut", "region-2")
    # under wait each refused write still costs WAIT's 1000 ms (the storefront sends the
    # write and its WAIT together): fewer of them
    end = 60 if lab.durability == "async" else 23
    during, refused_during = lab.write("region-1", range(20, end))
    # and gameday's own writers through the global name, as the recorder runs them
    lab.app_writers(tmp_path, APP_WRITE_S)
    stop = lab.apply("scale-to-zero", "region-1")
    started = time.monotonic()
    # the two Sentinels left name region-1 until they have promoted region-2
    poll_until(lambda: redis_sentinel.agreed_master(lab.profile, skip="region-1",
                                                    timeout=5) == "198.18.0.12",
               timeout_s=30, interval_s=0.1, retry_on=(LabError,),
               what="the Sentinels promoting region-2")
    failover_s = time.monotonic() - started
    old_master_all = set(redis_sentinel.read_isolated(lab.state, "region-1"))
    old_master_had = {seq for seq in old_master_all if seq < APP_START}  # the test's own
    poll_until(lambda: lab.healthy("region-2"), timeout_s=15, what="region-2 healthy")
    read_all = lab.read_back("region-2")
    read = [seq for seq in read_all if seq < APP_START]
    assert len(read) == len(set(read)) and read == sorted(read)
    acked = before | during
    lost = acked - set(read)
    assert old_master_had >= acked  # appendfsync always: whatever it acknowledged
    if lab.durability == "async":
        # every write made while the replica was cut off was acknowledged, and is lost
        assert during == set(range(20, 60)) and not refused_during
        assert lost == during == old_master_had - set(read)
    else:
        # nothing acknowledged without a replica (the master refuses: NOREPLICAS, or a
        # WAIT that timed out), and none of it on the new master
        assert not during and refused_during == set(range(20, end))
        assert lost == set() and not refused_during & set(read)
        # two nodes: the new master refuses writes until a replica is back
        assert lab.write("region-2", [900])[0] == set()
    print(f"{lab.durability}: failover {failover_s:.1f} s, acknowledged {len(acked)}, "
          f"lost {len(lost)}, refused {len(refused_during)}")

    # gameday's writers: every attempt recorded, each acknowledged one answered by
    # region-1 (X-Region); what they lost is what the old master alone holds of what they
    # had acknowledged, by the accounting the report uses, after gameday's own read-back
    tl, _ = reader.open_run(tmp_path)
    try:
        app_attempts = tl.app_attempts()
    finally:
        tl.close()
    app_acked = {a.seq for a in app_attempts if a.outcome == "ok"}
    app_seqs = sorted(a.seq for a in app_attempts)
    assert len(set(app_seqs)) == len(app_seqs) and app_seqs[0] == APP_START
    assert {a.server for a in app_attempts if a.outcome == "ok"} <= {"region-1"}
    assert old_master_all >= app_acked
    app_lost_known = app_acked & (old_master_all - set(read_all))
    configured = GamedaySettings.from_chaos({"app_canary": lab.data["app_canary"]}).app_canary
    assert configured is not None
    app_found = app_canary.classify(
        app_attempts, app_canary.read_back(
            lab.http, app_canary.Where(base_url=lab.url("region-2")), configured.read_back,
            APP_START - 1, most=len(app_attempts)),
        t_fault=None, start=APP_START)
    assert app_found.accounting.lost_seqs == tuple(sorted(app_lost_known))
    assert app_found.accounting.unexpected == 0 and app_found.never_sent == ()
    if lab.durability == "async":
        assert app_acked and app_lost_known == app_acked, (len(app_acked), len(app_attempts))
    else:
        assert not app_acked  # no replica: refused (503), or a WAIT that timed out
    print(f"{lab.durability}: gameday's writers attempted {len(app_attempts)}, acknowledged "
          f"{len(app_acked)}, lost {len(app_lost_known)}")
    # gameday's own read-back through the application and its accounting give the same
    # answer as the test's (measure.app_canary: the lab's endpoints, as its descriptor
    # publishes them, paged by 7)
    settings = GamedaySettings.from_chaos({"app_canary": {
        **lab.data["app_canary"], "read_back": {**lab.data["app_canary"]["read_back"],
                                                "page_size": 7}}})
    assert settings.app_canary is not None
    attempts = [CanaryAttempt(seq=seq, writer=0, t_send=float(seq), t_ack=float(seq) + 0.01
                              if seq in acked else None,
                              outcome="ok" if seq in acked else "failed",
                              server="region-1", error=None, notice=None)
                for seq in sorted(acked | refused_during)]
    where = app_canary.Where(base_url=lab.url("region-2"))
    # up to the first number of gameday's own writers (below): the test's writes only
    test_read = app_canary.read_back(lab.http, where, settings.app_canary.read_back, -1,
                                     most=len(attempts) + len(read_all))
    found = app_canary.classify(
        attempts, {seq: n for seq, n in test_read.items() if seq < APP_START},
        t_fault=float(end), start=0)
    w = found.accounting
    assert (w.acked, w.lost, w.lost_seqs) == (len(acked), len(lost), tuple(sorted(lost)))
    assert (w.recovered, w.unexpected, w.duplicate, found.never_sent) == (0, 0, 0, ())

    lab.revert("scale-to-zero", "region-1", stop)
    lab.revert("replication-cut", "region-2", cut)
    lab.revert("scale-to-zero", "region-1", stop)  # twice is harmless
    # region-1 is back as the new master's replica, its Sentinel and storefront with it
    poll_until(lambda: redis_sentinel.replication(lab.profile, "198.18.0.11").get(
        "master_link_status") == "up", timeout_s=30, retry_on=redis_sentinel._redis_errors(),
        what="region-1 streaming from region-2")
    assert redis_sentinel.role(lab.profile, "198.18.0.11") == "slave"
    assert not lab.healthy("region-1") and lab.healthy("region-2")
    # region-1's Sentinel restarts on its own configuration, which still names region-1:
    # it learns the new epoch from the others' hello messages (every 2 s)
    poll_until(lambda: set(redis_sentinel.masters_named(lab.profile).values())
               == {"198.18.0.12"}, timeout_s=20, interval_s=0.2,
               what="all three Sentinels naming region-2")
    assert not _nft_table(lab, "gd-region-2", redis_sentinel.CUT_TABLE)
    # writes are taken again (under wait: now that a replica is back), and what was lost
    # stays lost
    assert poll_until(lambda: lab.write("region-2", [901])[0] == {901}, timeout_s=15,
                      interval_s=0.2, what="a write through region-2")
    assert set(lab.read_back("region-1")) == set(read) | {901}

    if lab.durability == "wait":
        return  # the last test on this lab: the async lab's runs fail back (here and below)
    # the failback: the Sentinels make region-1 the master again
    done = lab.driver.switch_master(lab.driver.lab.region("region-1"))
    assert done["switched"] and done["from"] == "region-2"
    poll_until(lambda: lab.healthy("region-1"), timeout_s=15, what="region-1 healthy")
    assert set(lab.read_back("region-1")) == set(read) | {901}


def _after_probes(lab: RedisLab) -> list[tuple[str, Any, Any]]:
    """The last run's steady-state probes after the method, as its journal has them (a
    failed probe's exception names why)."""
    journal = json.loads((Path(lab.env["GAMEDAY_REPORTS"]) / "journal.json").read_text())
    after = (journal.get("steady_states") or {}).get("after") or {}
    return [(p["activity"]["name"], p.get("output"), p.get("exception"))
            for p in after.get("probes") or []]


def _ledger(lab: RedisLab) -> str:
    path = Path(lab.env["GAMEDAY_LAB"]).parent / "faults.jsonl"
    return path.read_text() if path.exists() else ""


def _nft_table(lab: RedisLab, netns: str, table: str = "gameday") -> bool:
    return run(["nft", "list", "table", "inet", table], netns=netns,
               check=False).returncode == 0


@pytest.mark.parametrize("redis_lab", ["async"], indirect=True)
def test_the_redis_game_day_and_its_failback_pass_through_chaos_run(
        redis_lab: RedisLab) -> None:
    """Issue 23's done-when on the async lab: `chaos run experiments/game-day-redis.json`
    then `experiments/failback-redis.json`. The Sentinels detect (+odown) and promote
    region-2 by themselves, the report says so and shows the application canary's classes
    and an RTO; the failback asks them (SENTINEL FAILOVER) and ends where the lab began.

    Replication is asynchronous here, so the game day may lose what region-1 acknowledged
    in the instant before it was cut off (the egress block comes first, as a partition
    would; seen: 0 or 1 write in a run). The verdict must then say so, and only that:
    it passes exactly when the application canary lost nothing."""
    lab = redis_lab
    gd = chaos("game-day-redis.json", env=lab.env)
    game_day = (Path(lab.env["GAMEDAY_REPORTS"]) / "latest").resolve()
    s = json.loads((game_day / "summary.json").read_text())
    assert s["configuration"]["store"] == "redis-sentinel"
    assert s["configuration"]["database_canary"] is False
    assert s["configuration"]["ha_manager"] == "sentinel"
    assert s["replication"]["configured"] == "async"
    # no database canary: the application canary's writes are the run's
    app = s["app_writes"]
    assert s["writes"] == app["writes"] and app["writes"]["acked"] > 0
    assert app["read_error"] is None and not app["never_sent"]
    lost = app["writes"]["lost"]
    if lost == 0:
        assert gd.returncode == 0, (_after_probes(lab), gd.stdout[-4000:] + gd.stderr[-4000:])
        assert s["verdict"] == "pass", s["reasons"]
        assert s["rpo_s"] == 0.0
    else:
        # acknowledged by region-1 (X-Region), and nothing else failed the verdict
        assert gd.returncode != 0 and s["verdict"] == "fail"
        assert app["lost_by_region"] == {"region-1": lost}, app
        probes = ("lost-writes-within-target", "rpo-within-target")
        assert all("application canary" in r or (
            r.startswith("steady state") and all(
                p.strip(" )") in probes for p in r.split("probes:")[-1].split(",")))
            for r in s["reasons"]), s["reasons"]
        assert s["rpo_s"] is not None and s["rpo_s"] < 1.0, s["rpo_s"]
    detection = s["phase_detail"]["detection_s"]
    assert "+odown" in str(detection["evidence"]), detection
    # the Sentinels hold region-1 down after down-after-milliseconds (2 s), then promote
    down_after = s["configuration"]["sentinel_down_after_s"]
    assert down_after <= detection["at_s"] <= down_after + 5.0, detection
    assert s["promotion"]["strategy"] == "none" and s["promotion"]["runner_reported_s"] is None
    assert s["promotion"]["observed_s"] is not None
    assert detection["at_s"] - (detection["error_s"] or 0) <= s["promotion"]["observed_s"]
    assert s["rto_s"] is not None and s["rto_s"] <= 30
    assert s["write_rto_s"] is not None
    report = (game_day / "report.md").read_text()
    assert "Detection (the Sentinels hold the master objectively down: +odown)" in report
    assert "## Writes (the application canary)" in report
    print(f"game day on Redis (async): verdict {s['verdict']}, detection "
          f"{detection['at_s']} s, promotion "
          f"{s['promotion']['observed_s']} s, RTO {s['rto_s']} s, write RTO "
          f"{s['write_rto_s']} s, application canary {app['writes']}")
    # the rollback brought region-1 back as region-2's replica
    assert redis_sentinel.role(lab.profile, "198.18.0.12") == "master"

    fb = chaos("failback-redis.json", env=lab.env)
    assert fb.returncode == 0, fb.stdout[-4000:] + fb.stderr[-4000:]
    s = json.loads((game_day / "summary.json").read_text())
    failback = s["failback"]
    assert failback is not None and failback["verdict"] == "pass", failback["reasons"]
    assert failback["lost"] == 0 and failback["rto_s"] < 30
    assert failback["strategy"] == "manager"
    print(f"failback on Redis (SENTINEL FAILOVER): RTO {failback['rto_s']} s, write RTO "
          f"{failback['write_rto_s']} s, lost {failback['lost']}")
    # where the lab began: region-1 the master all three Sentinels name, region-2 streaming
    assert redis_sentinel.role(lab.profile, "198.18.0.11") == "master"
    poll_until(lambda: set(redis_sentinel.masters_named(lab.profile).values())
               == {"198.18.0.11"}, timeout_s=20, interval_s=0.2,
               what="all three Sentinels naming region-1")
    assert redis_sentinel.replication(lab.profile, "198.18.0.12")["master_link_status"] == "up"


@pytest.mark.parametrize("redis_lab", ["async"], indirect=True)
def test_a_redis_drill_killed_mid_fault_is_put_back_by_gameday_recover(
        redis_lab: RedisLab) -> None:
    """`gameday recover` on the Redis lab: a game day SIGKILLed once its outage is in effect
    leaves region-1 stopped and cut off, and the Sentinels promote region-2. recover
    reverts both faults from the fault ledger and promotes nothing of its own (the
    Sentinels are the HA manager); a second recover has nothing to undo. Region-1 comes
    back as region-2's replica, never a second master: all three Sentinels name region-2,
    and only region-2's storefront is healthy."""
    lab = redis_lab
    reports = Path(lab.env["GAMEDAY_REPORTS"])
    before = set(reports.glob("2*"))
    proc = subprocess.Popen(
        [str(BIN / "chaos"), "--no-version-check", "run", "--journal-path",
         str(reports / "journal-killed.json"), str(ROOT / "experiments" / "game-day-redis.json")],
        env=lab.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def effective() -> bool:
            assert proc.poll() is None, "the drill ended before its fault was in effect"
            for run_dir in set(reports.glob("2*")) - before:
                with contextlib.suppress(sqlite3.Error), contextlib.closing(
                        sqlite3.connect(run_dir / "timeline.sqlite", timeout=1)) as db:
                    if db.execute("SELECT 1 FROM events WHERE kind = 'fault-effective'"
                                  ).fetchone():
                        return True
            return False

        poll_until(effective, timeout_s=60, interval_s=0.02, what="the outage in effect")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert _nft_table(lab, "gd-region-1")  # left as the kill found it
    # the Sentinels left promote region-2 meanwhile: region-1 must come back as its
    # replica, not as a second master
    poll_until(lambda: redis_sentinel.agreed_master(lab.profile, skip="region-1",
                                                    timeout=5) == "198.18.0.12",
               timeout_s=30, interval_s=0.1, retry_on=(LabError,),
               what="the Sentinels promoting region-2")
    rec = gameday("recover", env=lab.env)
    assert "nothing to undo" in gameday("recover", env=lab.env).stdout, rec.stdout
    assert not _nft_table(lab, "gd-region-1")
    poll_until(lambda: len(set(redis_sentinel.masters_named(lab.profile).values())) == 1,
               timeout_s=30, interval_s=0.2, retry_on=(LabError,),
               what="all three Sentinels naming one master")
    assert set(redis_sentinel.masters_named(lab.profile).values()) == {"198.18.0.12"}
    assert redis_sentinel.role(lab.profile, "198.18.0.12") == "master"
    poll_until(lambda: redis_sentinel.replication(lab.profile, "198.18.0.11").get(
        "master_link_status") == "up", timeout_s=30, retry_on=redis_sentinel._redis_errors(),
        what="region-1 streaming from region-2")
    poll_until(lambda: lab.healthy("region-2"), timeout_s=15, what="region-2 healthy")
    assert not lab.healthy("region-1")
    print(f"recover on Redis: {rec.stdout.strip()}")
