"""A DNS answer classified against each region's endpoints (issue 19, phase 2b): region X
only when the whole final answer set is X's, otherwise mixed or unknown, never forced into
a region. One rule (gameday.foundation.endpoints.classify), used by the readiness gate's DNS
probe (asked here of a real UDP DNS server on loopback) and by the flip instant."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from gameday.drill import checks
from gameday.foundation import descriptor
from gameday.foundation.endpoints import MIXED, UNKNOWN, Endpoints, classify
from gameday.foundation.errors import ConfigError
from gameday.measure import instants, phases
from gameday.measure.store.timeline import DnsSample
from tests.unit import fakes

TWO_REGIONS = {"region-1": Endpoints.of_address("198.18.0.11"),
               "region-2": Endpoints.of_address("198.18.0.12")}

# an ALB per region: two known addresses each (IPv4 and IPv6), a CIDR, and the ALB's name
ALBS = {
    "region-1": Endpoints.parse({"addresses": ["198.18.0.11", "198.18.0.101", "2001:2::11"],
                                 "cidrs": ["198.18.1.0/24"],
                                 "cnames": [".eu-west-1.elb.amazonaws.com"]}),
    "region-2": Endpoints.parse({"addresses": ["198.18.0.12", "198.18.0.102", "2001:2::12"],
                                 "cidrs": ["198.18.2.0/24"],
                                 "cnames": ["region-2.shop.gameday.test",
                                            ".eu-central-1.elb.amazonaws.com"]}),
}


@pytest.mark.parametrize(("addresses", "chain", "expected"), [
    # the exact set
    (["198.18.0.11", "198.18.0.101"], [], "region-1"),
    # part of the set (one ALB node answered), or held by the region's CIDR
    (["198.18.0.102"], [], "region-2"),
    (["198.18.2.77", "198.18.0.12"], [], "region-2"),
    # the region's set and more: an address no region has
    (["198.18.0.11", "198.18.0.101", "198.18.9.9"], [], MIXED),
    # addresses of both regions
    (["198.18.0.11", "198.18.0.12"], [], MIXED),
    # no region's
    (["203.0.113.7"], [], UNKNOWN),
    ([], [], UNKNOWN),
    (["not-an-address"], [], UNKNOWN),
    # an ALB's addresses are not known in advance: its CNAME suffix says whose they are
    (["203.0.113.7", "203.0.113.8"], ["my-alb-123.eu-west-1.elb.amazonaws.com"], "region-1"),
    (["203.0.113.7"], ["shop.example.com", "region-2.shop.gameday.test"], "region-2"),
    (["203.0.113.7"], ["REGION-2.shop.gameday.test."], "region-2"),
    # a suffix matches a whole label's end only as written (with its dot)
    (["203.0.113.7"], ["xeu-west-1.elb.amazonaws.com"], UNKNOWN),
    # the chain names one region, the addresses are the other's
    (["198.18.0.12"], ["my-alb-123.eu-west-1.elb.amazonaws.com"], MIXED),
    # AAAA only, written either way
    (["2001:2::12"], [], "region-2"),
    (["2001:0002:0000:0000:0000:0000:0000:0011"], [], "region-1"),
])
def test_an_answer_is_a_region_only_when_all_of_it_is(addresses: list[str], chain: list[str],
                                                      expected: str) -> None:
    assert classify(addresses, chain, ALBS) == expected


def test_an_answer_two_regions_claim_alike_is_unknown() -> None:
    overlapping = {"region-1": Endpoints.parse({"cidrs": ["198.18.0.0/16"]}),
                   "region-2": Endpoints.parse({"cidrs": ["198.18.0.0/24"]})}
    assert classify(["198.18.0.12"], [], overlapping) == UNKNOWN
    assert classify(["198.18.7.1"], [], overlapping) == "region-1"


def test_a_region_known_by_a_host_name_is_the_cname_target() -> None:
    regions = {"region-1": Endpoints.of_address("eu-west.shop.example.com"),
               "region-2": Endpoints.of_address("2001:db8::20")}
    assert classify(["203.0.113.7"], ["EU-west.shop.example.com."], regions) == "region-1"
    assert classify(["203.0.113.7"], [], regions) == UNKNOWN
    assert classify(["2001:db8:0::20"], [], regions) == "region-2"
    data = lab_dict()
    data["regions"][0]["address"] = "eu-west.shop.example.com"
    assert descriptor.from_dict(data).endpoints()["region-1"] == regions["region-1"]


@pytest.mark.parametrize(("raw", "message"), [
    ({"addresses": ["db.example.com"]}, "is not an IPv4 or IPv6 address"),
    ({"cidrs": ["198.18.0.0/33"]}, "is not a network"),
    ({"cnames": ["."]}, "is not a name"),
])
def test_a_bad_endpoint_is_refused_naming_it(raw: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Endpoints.parse(raw)


def test_endpoints_round_trip_through_the_descriptor_s_form() -> None:
    for endpoints in ALBS.values():
        assert Endpoints.parse(endpoints.to_dict()) == endpoints


# -- the descriptor ------------------------------------------------------------------------


def lab_dict(**endpoints: dict[str, list[str]]) -> dict:
    data = copy.deepcopy(fakes.descriptor_dict())
    if endpoints:
        data["dns"]["endpoints"] = {k.replace("_", "-"): v for k, v in endpoints.items()}
    return data


def test_a_region_without_endpoints_is_its_address() -> None:
    lab = descriptor.from_dict(lab_dict(region_1={"cnames": [".eu-west-1.elb.amazonaws.com"]}))
    assert lab.endpoints() == {
        "region-1": Endpoints(suffixes=(".eu-west-1.elb.amazonaws.com",)),
        "region-2": Endpoints.of_address("198.18.0.12")}


@pytest.mark.parametrize(("data", "message"), [
    (lab_dict(region_3={"addresses": ["198.18.0.13"]}),
     "dns.endpoints names 'region-3', which is not a region"),
    (lab_dict(region_1={"addresses": ["db.example.com"]}),
     "dns.endpoints.region-1.addresses: 'db.example.com' is not an IPv4 or IPv6 address"),
])
def test_bad_endpoints_in_the_descriptor_are_one_line(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        descriptor.from_dict(data)


def test_a_region_may_not_be_called_mixed() -> None:
    data = lab_dict()
    data["regions"][1]["name"] = "mixed"
    with pytest.raises(ConfigError, match="may not be called 'mixed'"):
        descriptor.from_dict(data)


# -- the flip instant ----------------------------------------------------------------------


def dns_rows(*answers: tuple[float, str | None]) -> list[DnsSample]:
    return [DnsSample(t, "resolver", int(a is not None), a, "NOERROR", 1, 0.001, 0.0, None)
            for t, a in answers]


def test_the_flip_is_the_first_answer_from_which_every_answer_is_the_secondary_s(
        tmp_path: Path) -> None:
    from tests.unit.test_metrics_edges import tl_of

    rows = dns_rows((9.5, "198.18.0.101,198.18.0.11"),
                    (10.2, "198.18.0.102"),  # one node of region-2's ALB
                    (10.4, "198.18.0.11,198.18.0.12"),  # mixed: not yet
                    (10.6, "198.18.0.102,198.18.0.12"),
                    (10.8, "198.18.0.12"),
                    (11.0, "198.18.2.5,198.18.0.102"))  # its CIDR
    flip = instants.dns_flip(tl_of(dns=rows), 10.0, "resolver", "region-2", ALBS)
    assert (flip.at_s, flip.error_s) == (pytest.approx(0.6), pytest.approx(0.2))
    # the old rule (the answer equals the secondary's one address) never saw this flip
    assert instants.dns_flip(tl_of(dns=rows), 10.0, "resolver", "region-2",
                             TWO_REGIONS).at_s is None


def test_the_run_records_each_region_s_endpoints_for_the_flip() -> None:
    meta = {"regions": {
        "primary": {"name": "region-1", "address": "198.18.0.11", "db_host": "x",
                    "endpoints": ALBS["region-1"].to_dict()},
        # a run recorded before endpoint sets: the region's address
        "secondary": {"name": "region-2", "address": "198.18.0.12", "db_host": "y"}}}
    assert phases.Roles.from_meta(meta).endpoints() == {"region-1": ALBS["region-1"],
                                                        "region-2": TWO_REGIONS["region-2"]}


# -- the readiness gate's DNS probe, against a real DNS server -----------------------------


ZONE = {  # what the server answers for the global name, by type
    "A": ["198.18.0.101", "198.18.0.11"],
    "AAAA": ["2001:2::11"],
}


@pytest.fixture
def dns_server() -> Iterator[dict[str, list[str]]]:
    """A UDP DNS server on loopback answering the global name with a CNAME to
    region-1.shop.gameday.test and the addresses of `answers` (changed by the test)."""
    answers = copy.deepcopy(ZONE)
    target = "region-1.shop.gameday.test."

    def reply(wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        response.answer.append(dns.rrset.from_text(question.name, 1, "IN", "CNAME", target))
        kind = dns.rdatatype.to_text(question.rdtype)
        if answers.get(kind):
            response.answer.append(dns.rrset.from_text_list(target, 1, "IN", kind,
                                                            answers[kind]))
        return response.to_wire()

    with fakes.udp_responder(reply) as port:
        answers["port"] = [str(port)]
        yield answers


def test_the_gate_s_dns_probe_classifies_a_and_aaaa_through_the_chain(
        tmp_path: Path, dns_server: dict[str, list[str]]) -> None:
    data = lab_dict(region_1={"addresses": ["198.18.0.11", "198.18.0.101", "2001:2::11"],
                              "cnames": ["region-1.shop.gameday.test"]},
                    region_2={"addresses": ["198.18.0.12"]})
    for server in ("authoritative", "resolver"):
        data["dns"][server] = {"address": "127.0.0.1", "port": int(dns_server["port"][0])}
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(data))
    lab = descriptor.load(path)
    assert checks.dns_answers_region(lab, "region-1", "resolver")
    assert not checks.dns_answers_region(lab, "region-2", "resolver")
    # region-2's address among region-1's: the answer is mixed, neither region's
    dns_server["A"] = ["198.18.0.11", "198.18.0.12"]
    assert not checks.dns_answers_region(lab, "region-1", "authoritative")
    assert not checks.dns_answers_region(lab, "region-2", "authoritative")
    # AAAA only, known by the chain's name alone
    dns_server["A"], dns_server["AAAA"] = [], ["2001:2::99"]
    assert checks.dns_answers_region(lab, "region-1", "authoritative")
