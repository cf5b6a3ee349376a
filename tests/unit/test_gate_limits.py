"""The readiness gate's DNS limits and the RTO target they leave room for (issue 19, phase
2): `max_ttl_s` and `max_health_interval_s` are configuration (defaults 300 s and 30 s, so a
Route 53 failover record with 30 s health checks passes), and a target that the lab's TTL
and health checks cannot meet is refused, saying by how much. The descriptor's `dns.health`
feeds the detection budget (interval × failures + timeout).

The gate's questions to the lab (health, DNS, standby) are replaced by answers that pass:
these tests are about what the descriptor and the configuration alone decide.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from gameday.drill import checks, gate
from gameday.foundation import descriptor
from gameday.foundation.errors import ConfigError
from gameday.foundation.settings import GamedaySettings
from gameday.measure import phases
from tests.unit import fakes

# a Route 53 failover record: TTL 60 s, checks every 30 s, unhealthy after 3 failures
ROUTE53 = {"ttl_s": 60, "health_interval_s": 30,
           "health": {"interval_s": 30, "failures": 3, "timeout_s": 2.0}}


def settings(tmp_path: Path, dns: dict[str, Any] | None = None,
             **configuration: Any) -> GamedaySettings:
    data = fakes.descriptor_dict()
    data["dns"].update(dns or {})
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(data))
    return GamedaySettings.from_chaos({**configuration, "lab_file": str(path)})


@pytest.fixture
def lab_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    for probe in ("region_is_healthy", "dns_answers_region", "standby_is_streaming",
                  "replication_lag_below"):
        monkeypatch.setattr(checks, probe, lambda *a, **k: True)


def problems(s: GamedaySettings) -> list[str]:
    return gate.check_once(s, s.load_lab())


@pytest.mark.usefixtures("lab_ready")
def test_route53_s_ttl_and_health_checks_pass_the_default_limits(tmp_path: Path) -> None:
    assert problems(settings(tmp_path, ROUTE53, rto_target_s=300)) == []


@pytest.mark.usefixtures("lab_ready")
def test_the_limits_are_configuration(tmp_path: Path) -> None:
    s = settings(tmp_path, ROUTE53, rto_target_s=300, max_ttl_s=30, max_health_interval_s=10)
    assert (s.gate.max_ttl_s, s.gate.max_health_interval_s) == (30, 10)
    found = problems(s)
    assert any(p.startswith("DNS TTL 60 s is above max_ttl_s=30 s") for p in found), found
    assert any(p.startswith("DNS health interval 30 s is above max_health_interval_s=10 s")
               for p in found), found


@pytest.mark.usefixtures("lab_ready")
def test_beyond_the_default_limits_is_refused(tmp_path: Path) -> None:
    found = problems(settings(tmp_path, {"ttl_s": 301, "health_interval_s": 31},
                              rto_target_s=1000))
    assert len(found) == 2 and "max_ttl_s=300 s" in found[0] \
        and "max_health_interval_s=30 s" in found[1], found


@pytest.mark.parametrize(("key", "value"), [("max_ttl_s", "soon"), ("max_ttl_s", -1),
                                            ("max_health_interval_s", 0)])
def test_a_bad_limit_names_its_key(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"configuration '{key}'"):
        settings(tmp_path, **{key: value})


@pytest.mark.usefixtures("lab_ready")
def test_an_unreachable_rto_target_is_refused_saying_by_how_much(tmp_path: Path) -> None:
    found = problems(settings(tmp_path, ROUTE53, rto_target_s=60))
    # detection 30 × 3 + 2, promotion 1, authoritative 30, resolver 60, first success 0.05,
    # 4 more request intervals 0.2
    (refusal,) = found
    assert "the RTO target 60 s cannot be reached" in refusal
    assert "RTO budget of 183.25 s, 123.25 s more" in refusal
    assert "detection +92 s (health interval 30 s × 3 failure(s) + check timeout 2 s)" \
        in refusal
    assert "dns_resolver +60 s (DNS TTL 60 s)" in refusal
    assert "raise rto_target_s to 183.25" in refusal


@pytest.mark.usefixtures("lab_ready")
def test_a_target_the_budget_meets_passes(tmp_path: Path) -> None:
    assert problems(settings(tmp_path, ROUTE53, rto_target_s=183.25)) == []
    # the default lab: TTL 1 s, checks every 1 s, one failure: a budget of 5.25 s
    assert problems(settings(tmp_path, {"ttl_s": 1, "health_interval_s": 1},
                             rto_target_s=5.25)) == []
    assert len(problems(settings(tmp_path, {"ttl_s": 1, "health_interval_s": 1},
                                 rto_target_s=5))) == 1


def test_a_broken_limit_is_not_waited_for(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "region_is_healthy", lambda *a, **k: False)
    for probe in ("dns_answers_region", "standby_is_streaming", "replication_lag_below"):
        monkeypatch.setattr(checks, probe, lambda *a, **k: True)
    s = settings(tmp_path, ROUTE53, rto_target_s=30, ready_timeout_s=20)
    started = time.monotonic()
    found = gate.check(s, s.load_lab())
    assert time.monotonic() - started < 5
    assert found[0] == "expected: region-1 passes its health check"
    assert "cannot be reached" in found[1]


def test_the_descriptor_s_health_checks_feed_the_detection_budget(tmp_path: Path) -> None:
    s = settings(tmp_path, ROUTE53)
    configuration = s.recorded(s.load_lab())["configuration"]
    assert (configuration["health_interval_s"], configuration["health_failures"],
            configuration["health_timeout_s"]) == (30, 3, 2.0)
    assert phases.deadlines(configuration)["detection_s"].deadline_s == 92


def test_without_health_checks_the_budget_keeps_ifurlup_s(tmp_path: Path) -> None:
    s = settings(tmp_path, {"ttl_s": 1, "health_interval_s": 1})
    configuration = s.recorded(s.load_lab())["configuration"]
    assert (configuration["health_failures"], configuration["health_timeout_s"]) == (1, 1.0)
    assert phases.deadlines(configuration)["detection_s"].deadline_s == 2


def test_the_health_block_alone_gives_the_interval(tmp_path: Path) -> None:
    lab = settings(tmp_path, {"health": {"interval_s": 30, "failures": 3}}).load_lab()
    assert lab.dns.health_interval_s == 30
    assert lab.dns.health == descriptor.Health(interval_s=30, failures=3)


def test_two_intervals_that_disagree_are_refused(tmp_path: Path) -> None:
    s = settings(tmp_path, {"health_interval_s": 10, "health": {"interval_s": 30,
                                                                "failures": 3}})
    with pytest.raises(ConfigError, match="dns.health_interval_s .10 s. and "
                                          "dns.health.interval_s .30 s. disagree"):
        s.load_lab()


def test_a_resolver_s_ttl_floor_is_the_dns_phase_s_budget(tmp_path: Path) -> None:
    """dnsmasq with min-cache-ttl=10 keeps a TTL-1 answer 10 s: its users' flip, the DNS
    phase, is allowed 10 s, not the record's 1 s; a floor below the TTL changes nothing."""
    resolvers = [{"name": "unbound", "address": "198.18.0.54", "min_ttl_s": 0},
                 {"name": "dnsmasq", "address": "198.18.0.55", "min_ttl_s": 10}]
    s = settings(tmp_path, {"ttl_s": 1, "health_interval_s": 1, "resolvers": resolvers})
    configuration = s.recorded(s.load_lab())["configuration"]
    assert configuration["dns_ttl_floor_s"] == 10
    resolver = phases.deadlines(configuration)["dns_resolver_s"]
    assert (resolver.allowance_s, resolver.basis) == (
        10, "DNS TTL 1 s, held 10 s by a resolver's TTL floor")
    s = settings(tmp_path, {**ROUTE53, "resolvers": resolvers})
    resolver = phases.deadlines(s.recorded(s.load_lab())["configuration"])["dns_resolver_s"]
    assert (resolver.allowance_s, resolver.basis) == (60, "DNS TTL 60 s")
    # without resolvers' floors the run records what it always did
    s = settings(tmp_path, {"ttl_s": 1, "health_interval_s": 1})
    assert "dns_ttl_floor_s" not in s.recorded(s.load_lab())["configuration"]
