"""The phase registry on hand-made timelines with known answers: which phases a run has
(an HA manager detects and promotes by itself), what each measures, and the instants the
summary reads besides (the fault, the leader key, the first success)."""

from __future__ import annotations

import json

import pytest

from gameday.measure import instants, phases, stats
from gameday.measure import rto as rtos
from gameday.measure.store import writes
from gameday.measure.store.reader import Timeline
from gameday.measure.store.timeline import (
    CanaryAttempt,
    DnsSample,
    Event,
    HaSample,
    HttpSample,
    ReplicationSample,
)

T_FAULT = 10.0
R1, R2 = "198.18.0.11", "198.18.0.12"
ROLES = phases.Roles(primary={"name": "region-1", "address": R1, "db_host": R1},
                     secondary={"name": "region-2", "address": R2, "db_host": R2})


def _http(target: str, rows: list[tuple[float, bool, str | None]]) -> list[HttpSample]:
    return [HttpSample(t, target, int(ok), 200 if ok else None, region, None, 0.001, 0.0, None)
            for t, ok, region in rows]


def _ha(rows: list[tuple[float, bool, str | None]]) -> list[HaSample]:
    return [HaSample(t, "etcd", int(ok), leader, None, None if ok else "ConnectionError")
            for t, ok, leader in rows]


def full_timeline(configuration: dict[str, object] | None = None) -> Timeline:
    """Every phase observed once, each at its own instant (seconds after the fault):
    detection 0.2, leader key 0.4, promotion 0.5 (replication), authoritative DNS 0.7,
    resolver 0.9, first success 1.1, first write 0.8."""
    return Timeline(
        events=[Event(9.0, "experiment-started", None, "{}"),
                Event(T_FAULT, "fault-applied", "region-1", json.dumps({"fault": "x"})),
                Event(10.05, "fault-applied", "region-1", json.dumps({"fault": "y"})),
                Event(10.3, "fault-effective", "region-1", json.dumps({"fault": "y"})),
                Event(10.1, "fault-effective", "region-1", json.dumps({"fault": "x"}))],
        http=[*_http("region-1", [(9.9, True, "region-1"), (10.1, True, "region-1"),
                                  (10.2, False, None), (10.3, False, None)]),
              *_http("global", [(9.9, True, "region-1"), (10.1, False, None),
                                (11.1, True, "region-2"), (11.2, True, "region-2")])],
        dns=[DnsSample(t, server, 1, R2 if t >= flip else R1, "NOERROR", 1, 0.001, 0.0, None)
             for server, flip in (("authoritative", 10.7), ("resolver", 10.9))
             for t in (9.9, 10.5, 10.7, 10.9, 11.1)],
        replication=[ReplicationSample(t, "region-2", 1, int(t < 10.5), None, None, None)
                     for t in (9.75, 10.0, 10.25, 10.5)],
        canary=[CanaryAttempt(1, 0, 9.9, 9.91, "ok", R1, None, None),
                CanaryAttempt(2, 0, 10.6, None, "failed", None, "gone", None),
                CanaryAttempt(3, 0, 10.79, 10.8, "ok", R2, None, None)],
        ha=_ha([(9.8, True, "region-1"), (10.2, True, "region-1"), (10.4, False, None),
                (10.6, True, None), (10.8, True, "region-2")]),
        meta={"configuration": configuration or {}},
    )


def test_the_chain_and_its_names() -> None:
    assert [p.name for p in phases.chain()] == [
        "detection_s", "promotion_s", "dns_authoritative_s", "dns_resolver_s",
        "first_success_s", "first_write_s", "rto"]
    assert tuple(p.name for p in phases.chain()[:-1]) == phases.NAMES
    assert set(phases.by_name()) == {*phases.NAMES, "rto"}
    assert phases.by_name()["dns_resolver_s"].after == "dns_authoritative_s"


def test_an_ha_manager_detects_by_its_leader_key_and_promotes_itself() -> None:
    ha = {"ha_manager": "patroni"}
    assert phases.autonomous(ha) and not phases.autonomous({"ha_manager": "none"})
    assert not phases.autonomous(None) and not phases.autonomous({})
    chain = phases.chain(ha)
    assert [p.name for p in chain] == [p.name for p in phases.chain()]
    assert chain[0] is phases.HA_DETECTION and chain[1] is phases.HA_PROMOTION
    assert phases.by_name(ha)["detection_s"] is phases.HA_DETECTION
    assert phases.by_name()["detection_s"] is phases.PHASES[0]


@pytest.mark.parametrize(("configuration", "detection"), [
    ({}, 0.2),  # the first failed health check of region-1
    ({"ha_manager": "patroni"}, 0.6),  # the first sample whose leader is not region-1
])
def test_measure_all_measures_every_phase(configuration: dict[str, object],
                                          detection: float) -> None:
    tl = full_timeline(configuration)
    got = phases.measure_all(tl, T_FAULT, ROLES)
    assert list(got) == list(phases.NAMES)
    assert {n: round(i.at_s, 3) for n, i in got.items() if i.at_s is not None} == {
        "detection_s": detection, "promotion_s": 0.5, "dns_authoritative_s": 0.7,
        "dns_resolver_s": 0.9, "first_success_s": 1.1, "first_write_s": 0.8}


def test_roles_come_from_the_runs_meta() -> None:
    meta = {"regions": {"primary": {"name": "region-1"}, "secondary": {"name": "region-2"}}}
    roles = phases.Roles.from_meta(meta)
    assert (roles.primary["name"], roles.secondary["name"]) == ("region-1", "region-2")


def test_the_leader_key_is_lost_at_the_first_ok_sample_naming_another_leader() -> None:
    tl = full_timeline()
    lost = instants.leader_key_lost(tl, T_FAULT, "region-1")
    assert lost.at_s == pytest.approx(0.6) and lost.error_s == pytest.approx(0.2)
    assert lost.evidence == "the leader key no longer held by region-1 (DCS sample)"
    kept = Timeline(events=[], dns=[], http=[], canary=[], replication=[],
                    ha=_ha([(10.2, True, "region-1"), (10.4, False, None)]))
    never = instants.leader_key_lost(kept, T_FAULT, "region-1")
    assert never.at_s is None and never.reason == "the leader key was never seen leaving region-1"
    unsampled = Timeline(events=[], dns=[], http=[], canary=[], replication=[])
    assert instants.leader_key_lost(unsampled, T_FAULT, "region-1").reason == \
        "the HA manager's leader key was not sampled"


def test_the_fault_is_the_first_applied_and_its_effect_the_first_seen() -> None:
    assert instants.fault_time(full_timeline()) == (T_FAULT, 10.1)
    none = Timeline(events=[Event(1.0, "fault-effective", "region-1", "{}")], dns=[], http=[],
                    canary=[], replication=[])
    assert instants.fault_time(none) == (None, None)
    unseen = Timeline(events=[Event(1.0, "fault-applied", "region-1", "{}")], dns=[], http=[],
                      canary=[], replication=[])
    assert instants.fault_time(unseen) == (1.0, None)


def test_detection_and_first_success_read_from_the_fault_on() -> None:
    tl = full_timeline()
    seen = instants.detection(tl, T_FAULT, "region-1")
    assert (round(seen.at_s, 3), round(seen.error_s, 3)) == (0.2, 0.1)  # type: ignore[arg-type]
    assert seen.evidence == "first failed /healthz of region-1"
    assert instants.detection(tl, T_FAULT, "region-2").reason == \
        "no failed health check of region-2 after the fault"
    first = instants.first_success(tl, T_FAULT, "region-2")
    assert (round(first.at_s, 3), round(first.error_s, 3)) == (1.1, 1.0)  # type: ignore[arg-type]
    assert first.evidence == "first global request served by region-2"
    assert instants.first_success(tl, 11.15, "region-2").at_s == pytest.approx(0.05)
    assert instants.first_success(tl, 11.25, "region-2").reason == \
        "no global request was served by region-2"


def test_downtime_stops_at_the_rto_when_given() -> None:
    tl = full_timeline()
    assert rtos.downtime(tl, T_FAULT) == (pytest.approx(1.0), pytest.approx(1.0))
    assert rtos.downtime(tl, T_FAULT, until=10.5) == (0.0, None)
    assert rtos.downtime(tl, 11.05) == (0.0, pytest.approx(0.1))


def test_percentiles_intervals_and_ranges() -> None:
    assert stats.percentile([], 50) is None
    assert stats.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert stats.percentile([3.0, 1.0, 2.0, 4.0], 0) == 1.0
    assert stats.percentile([3.0, 1.0, 2.0, 4.0], 100) == 4.0
    assert stats.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 99) == 5.0
    assert stats.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 60) == 3.0
    assert stats.intervals([1.0, 1.5, 3.0]) == [0.5, 1.5]
    assert stats.intervals([1.0]) == []
    assert writes.seq_ranges([]) == []
    assert writes.seq_ranges([5, 3, 4, 9]) == [(3, 5), (9, 9)]
