"""docs/your-environment.md's Route 53 descriptor (docs/examples/route53-alb.lab.json) says
what the page says it does: a failover record's CNAME to an ALB is that ALB's region by its
name's suffix, each resolver is sampled with a flip of its own, PgBouncer's host names
attribute a write by the server's own address (db_addresses), and the readiness gate
refuses a target under the 187.25 s budget its TTL and health checks give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gameday.drill import checks, gate
from gameday.foundation import descriptor
from gameday.foundation.endpoints import UNKNOWN, classify
from gameday.foundation.settings import GamedaySettings
from gameday.measure.canary import Attribution

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "route53-alb.lab.json"
PAGE = EXAMPLE.parents[1] / "your-environment.md"


def lab() -> descriptor.Lab:
    return descriptor.from_dict(json.loads(EXAMPLE.read_text()), password="not-used")


def test_the_example_is_on_the_page_and_valid() -> None:
    assert "examples/route53-alb.lab.json" in PAGE.read_text()
    descriptor.validate(json.loads(EXAMPLE.read_text()), source=EXAMPLE.name)


@pytest.mark.parametrize(("addresses", "chain", "region"), [
    (["52.48.1.2", "2a05:d018::1"], ["shop-eu-west-1234567890.eu-west-1.elb.amazonaws.com"],
     "eu-west"),
    (["3.120.9.9"], ["shop-eu-central-987654321.eu-central-1.elb.amazonaws.com"],
     "eu-central"),
    (["52.48.1.2"], [], UNKNOWN),  # an alias record's bare addresses: give cidrs for those
    (["52.48.1.2", "3.120.9.9"], [], UNKNOWN),
])
def test_an_alb_answer_is_its_region_by_the_albs_name(addresses: list[str], chain: list[str],
                                                      region: str) -> None:
    assert classify(addresses, chain, lab().endpoints()) == region


def test_every_resolver_is_sampled_once() -> None:
    sampled = lab().dns.sampled()
    # the VPC resolver is dns.resolver: sampled once, under its name
    assert [(r.name, r.stream) for r in sampled] == [("vpc", "resolver"),
                                                     ("office", "resolver:office")]


def test_a_write_through_pgbouncer_is_attributed_by_the_servers_own_address() -> None:
    attribute = Attribution.of(lab())
    # PgBouncer's address is what was dialled; PostgreSQL says who it is
    assert attribute("10.20.0.17", dialled="192.0.2.80") == "pg.eu-central.shop.example.com"
    assert attribute("10.10.0.5", dialled="192.0.2.81") == "pg.eu-west.shop.example.com"
    assert attribute("192.0.2.80", dialled="192.0.2.80") == "192.0.2.80"  # nobody's


def test_the_gate_refuses_a_target_under_route53s_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for probe in ("region_is_healthy", "dns_answers_region", "standby_is_streaming",
                  "replication_lag_below"):
        monkeypatch.setattr(checks, probe, lambda *a, **k: True)
    path = tmp_path / "lab.json"
    path.write_text(EXAMPLE.read_text())
    s = GamedaySettings.from_chaos({"lab_file": str(path), "rto_target_s": 120})
    (refusal,) = gate.limits(s, lab())
    assert "RTO budget of 187.25 s, 67.25 s more" in refusal
    assert "detection +96 s (health interval 30 s × 3 failure(s) + check timeout 6 s)" \
        in refusal
    assert "187.25 s" in PAGE.read_text()
    ok = GamedaySettings.from_chaos({"lab_file": str(path), "rto_target_s": 240})
    assert gate.limits(ok, lab()) == []
