"""gameday.redis against real servers (tests/unit/redis_servers.py): a Redis master, its
replica and a Sentinel. The store's questions answer as gameday.postgres's do (a master is
the writable primary, a replica a standby), the Sentinel's view shows its own detection
(+odown) and promotion (+switch-master), and the failback's SENTINEL FAILOVER switches
only to a replica in sync."""

from __future__ import annotations

import signal
import time

import pytest

from gameday import postgres, redis
from gameday.drill import checks, stores
from gameday.foundation.errors import ConfigError, LabError, TargetError
from gameday.redis import sentinel
from tests.unit.redis_servers import Set


def test_a_master_is_the_writable_primary_and_its_replica_a_streaming_standby(
        redis_set: Set) -> None:
    lab = redis_set.lab()
    r1, r2 = lab.region("region-1"), lab.region("region-2")
    assert stores.for_lab(lab) is redis
    assert (redis.role(lab, r1), redis.role(lab, r2)) == ("primary", "standby")
    assert (redis.is_writable(lab, r1), redis.is_writable(lab, r2)) == (True, False)
    assert redis.standby_streams(lab, r2) and not redis.standby_streams(lab, r1)
    assert redis.streams_from(lab, r1, r2) and not redis.streams_from(lab, r2, r1)
    # the readiness gate's questions, through the lab's store
    assert checks.standby_is_streaming(lab, "region-2")
    assert checks.replication_lag_below(lab, "region-2", 5.0)
    c = redis_set.client(redis_set.master)
    try:
        for i in range(200):
            c.set(f"k{i}", "x" * 100)
    finally:
        c.close()
    assert redis.wait_replayed(lab, r2, r1, 5, "catch up") < 5
    # the master learns the replica's offset from its acknowledgement, once a second
    redis_set.wait(lambda: (redis.replay_lag(lab, r1, r2) or (1.0,))[0] == 0.0,
                   "the master sees its replica caught up", timeout=3)
    assert redis.replay_lag(lab, r2, r1) is None  # a replica has no replica


def test_a_redis_that_is_down_answers_none_and_its_stream_is_an_error(redis_set: Set) -> None:
    lab = redis_set.lab()
    r2 = lab.region("region-2")
    redis_set.replica.stop(signal.SIGKILL)
    assert redis.role(lab, r2) is None and redis.is_writable(lab, r2) is None
    with pytest.raises(TargetError, match="the Redis in region-2 does not answer"):
        redis.standby_streams(lab, r2)
    assert not redis.streams_from(lab, lab.region("region-1"), r2)
    assert redis.replay_lag(lab, lab.region("region-1"), r2) is None
    with pytest.raises(TargetError, match="did not catch up within 0.2 s"):
        redis.wait_replayed(lab, r2, lab.region("region-1"), 0.2, "catch up")


def test_gameday_never_promotes_nor_changes_a_redis_behind_the_sentinels_back(
        redis_set: Set) -> None:
    lab = redis_set.lab()
    r1, r2 = lab.region("region-1"), lab.region("region-2")
    with pytest.raises(LabError, match="promotion 'none'"):
        redis.promote(lab, r2, 1, clock=time.monotonic)
    with pytest.raises(LabError, match="SENTINEL FAILOVER"):
        redis.make_read_only(lab, r1)
    assert redis.make_writable_again(lab, r2) is False
    redis.restore_replication_mode(lab, r1)
    assert (redis.role(lab, r1), redis.role(lab, r2)) == ("primary", "standby")


def test_the_postgresql_questions_are_refused_in_one_line_on_a_redis_lab(
        redis_set: Set) -> None:
    lab = redis_set.lab()
    with pytest.raises(ConfigError, match="keeps its data in Redis"):
        postgres.is_writable(lab, lab.region("region-1"))
    assert not stores.has_sql_canary(lab)


def test_the_sentinel_s_view_shows_its_detection_then_its_promotion(redis_set: Set) -> None:
    lab = redis_set.lab()
    before = sentinel.views(lab)["witness"]
    assert before is not None and before.master == "region-1" and not before.odown
    assert "master" in before.flags
    redis_set.master.stop(signal.SIGKILL)
    seen: list[sentinel.SentinelView] = []

    def promoted() -> bool:
        v = sentinel.view(lab, lab.redis.sentinels[0])  # type: ignore[union-attr]
        if v is not None:
            seen.append(v)
        return v is not None and v.master == "region-2"

    redis_set.wait(promoted, "the Sentinel names region-2", timeout=15)
    odown = [i for i, v in enumerate(seen) if v.odown]
    switched = next(i for i, v in enumerate(seen) if v.master == "region-2")
    # +odown (sampled every 20 ms) before +switch-master: detection, then promotion
    assert odown and odown[0] < switched
    assert all(v.master == "region-1" for v in seen[:switched])
    redis_set.wait(lambda: redis.is_writable(lab, lab.region("region-2")) is True,
                   "region-2 answers as the master")
    assert sentinel.masters_named(lab) == {"witness": "region-2"}
    assert sentinel.agreed_master(lab) == "region-2"


def test_the_switchover_asks_the_sentinels_and_waits_until_they_switched(
        redis_set: Set) -> None:
    lab = redis_set.lab()
    r1, r2 = lab.region("region-1"), lab.region("region-2")
    done = sentinel.switch_over(lab, r2, 20)
    assert done["switched"] and done["master"] == "region-2" and done["from"] == "region-1"
    assert done["asked"] == "witness" and 0 < done["switch_s"] < 20
    assert redis.role(lab, r2) == "primary" and sentinel.agreed_master(lab) == "region-2"
    # the old master follows at once (the Sentinels would take 10-20 s, while it went on
    # acknowledging writes it then lost), its writes no longer paused
    assert redis.role(lab, r1) == "standby"
    redis_set.wait(lambda: redis.streams_from(lab, r2, r1), "region-1 follows region-2",
                   timeout=5)
    c = redis_set.client(redis_set.replica)
    try:
        assert c.set("after", "1")  # region-2, the master now: not paused
    finally:
        c.close()
    # asked again when it is already the master: nothing to do (the old master follows
    # once the Sentinels reconfigure it, 10-20 s later: not waited for here)
    assert sentinel.switch_over(lab, r2, 20) == {"switched": False, "master": "region-2"}
    # the switchover is asked only of a Sentinel that names the agreed master, never of
    # one still on an older view
    assert sentinel._naming(lab, "region-2").site == "witness"
    with pytest.raises(LabError, match="no Sentinel answers naming region-1 the master"):
        sentinel._naming(lab, "region-1")


def test_the_switchover_refuses_a_replica_that_is_not_in_sync(redis_set: Set) -> None:
    lab = redis_set.lab()
    redis_set.replica.stop(signal.SIGKILL)
    with pytest.raises(LabError, match="not a replica in sync that the Sentinels may "
                                       "promote, after 0.5 s"):
        sentinel.switch_over(lab, lab.region("region-2"), 0.5)
    assert redis.is_writable(lab, lab.region("region-1")) is True
