"""The DNS samplers record the whole answer (issue 19): A and AAAA, the CNAME chain and every
address, each sample classified by the regions' endpoint sets (endpoints.classify); and every
resolver the descriptor lists is sampled, with a flip of its own, the slowest being the DNS
phase of the RTO budget (summary.json `dns.resolvers[]`).

The DNS servers here are real UDP servers on loopback (fakes.udp_responder), answering with
dnspython's wire format what a Route 53 failover record through an ALB answers: a CNAME
chain, then A and AAAA records."""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from chaoslib.exceptions import ActivityFailed

from gameday.actions import wait
from gameday.drill import context as drills
from gameday.foundation import descriptor
from gameday.foundation.endpoints import MIXED, UNKNOWN, Endpoints
from gameday.foundation.errors import ConfigError
from gameday.measure import contract, instants, phases, samplers
from gameday.measure import run as runs
from gameday.measure import summary as summaries
from gameday.measure.store import reader, timeline
from gameday.measure.store.timeline import DnsSample
from gameday.report import outputs
from tests.fixtures.report import fixture_run
from tests.unit import fakes

NAME = "shop.gameday.test"
REGIONS = {
    "region-1": Endpoints.parse({"addresses": ["198.18.0.11", "198.18.0.101", "2001:2::11"],
                                 "cnames": ["region-1.shop.gameday.test"]}),
    "region-2": Endpoints.parse({"addresses": ["198.18.0.12", "198.18.0.102", "2001:2::12"],
                                 "cnames": [".eu-central-1.elb.amazonaws.com"]}),
}


class Rows(list):  # type: ignore[type-arg]
    """Stands in for the timeline's BatchWriter: the rows a sampler added, in order."""

    def add(self, row: Any) -> None:
        self.append(row)


class Clock:
    def now(self) -> float:
        return time.monotonic()


class Zone:
    """What the loopback DNS server answers for the global name: a CNAME chain, then the
    A and AAAA records at its end; `silent` rdtypes get no answer at all (a lost query)."""

    def __init__(self) -> None:
        self.chain: list[str] = []
        self.a: list[str] = []
        self.aaaa: list[str] = []
        self.silent: set[str] = set()
        self.ttl = 60


@pytest.fixture
def zone() -> Iterator[tuple[int, Zone]]:
    z = Zone()

    def reply(data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        rdtype = dns.rdatatype.to_text(query.question[0].rdtype)
        if rdtype in z.silent:
            return None  # lost: the client times out
        response = dns.message.make_response(query)
        owner = query.question[0].name
        for target in z.chain:
            response.answer.append(dns.rrset.from_text_list(owner, z.ttl, "IN", "CNAME",
                                                            [target + "."]))
            owner = dns.name.from_text(target)
        records = z.a if rdtype == "A" else z.aaaa if rdtype == "AAAA" else []
        if records:
            response.answer.append(dns.rrset.from_text_list(owner, z.ttl - 1, "IN", rdtype,
                                                            records))
        return response.to_wire()

    with fakes.udp_responder(reply) as port:
        yield port, z


def sample(port: int, *, timeout: float = 1.0) -> DnsSample:
    rows = Rows()
    sampler = samplers.DnsSampler("resolver:dnsmasq", "127.0.0.1", port, NAME, Clock(), rows,
                                  timeout, regions=REGIONS)
    asyncio.run(sampler.sample(1.0, 0.0))
    (row,) = rows
    assert isinstance(row, DnsSample)
    return row


def test_a_sample_records_a_and_aaaa_the_cname_chain_and_the_region(
        zone: tuple[int, Zone]) -> None:
    """An ALB behind a failover record: the chain to the ALB's name, two IPv4 and one IPv6
    address; every one is recorded (the old sampler kept only the A records, no chain)."""
    port, z = zone
    z.chain = ["shop.example.com", "my-alb-7.eu-central-1.elb.amazonaws.com"]
    z.a = ["198.18.0.102", "198.18.0.12"]
    z.aaaa = ["2001:2::12"]
    row = sample(port)
    assert (row.server, row.ok, row.rcode, row.error) == ("resolver:dnsmasq", 1, "NOERROR", None)
    assert row.answer == "198.18.0.102,198.18.0.12,2001:2::12"
    assert row.chain == "shop.example.com,my-alb-7.eu-central-1.elb.amazonaws.com"
    assert row.region == "region-2"
    assert row.ttl == 59  # the smallest TTL in the answer


@pytest.mark.parametrize(("chain", "a", "aaaa", "region"), [
    ([], [], ["2001:2::11"], "region-1"),  # AAAA only
    ([], ["198.18.0.11"], ["2001:2::12"], MIXED),  # one family each region's
    ([], ["198.18.0.11", "203.0.113.9"], [], MIXED),  # the region's and an unknown one
    ([], ["203.0.113.9"], [], UNKNOWN),
    # an address no region lists, named by the chain's ALB suffix
    (["x.eu-central-1.elb.amazonaws.com"], ["203.0.113.9"], [], "region-2"),
    # region-2's address through region-1's name: never forced into either
    (["region-1.shop.gameday.test"], ["198.18.0.12"], [], MIXED),
])
def test_each_answer_is_classified_never_forced(zone: tuple[int, Zone], chain: list[str],
                                                a: list[str], aaaa: list[str],
                                                region: str) -> None:
    port, z = zone
    z.chain, z.a, z.aaaa = chain, a, aaaa
    row = sample(port)
    assert (row.ok, row.region) == (1, region)


def test_an_empty_answer_and_a_lost_aaaa_query_fail_the_sample(zone: tuple[int, Zone]) -> None:
    port, z = zone
    empty = sample(port)
    assert (empty.ok, empty.answer, empty.rcode, empty.region) == (0, "", "NOERROR", None)
    z.a = ["198.18.0.11"]
    z.silent = {"AAAA"}  # the A query answers, the AAAA one never does
    lost = sample(port, timeout=0.2)
    assert (lost.ok, lost.answer, lost.region, lost.error) == (0, None, None, "Timeout")


# -- the flip, from what the sampler recorded ------------------------------------------------

META_REGIONS = {"primary": {"name": "region-1", "address": "198.18.0.11",
                            "endpoints": REGIONS["region-1"].to_dict()},
                "secondary": {"name": "region-2", "address": "198.18.0.12",
                              "endpoints": REGIONS["region-2"].to_dict()}}


def run_with(rows: list[DnsSample], *, resolvers: list[dict[str, Any]] | None = None
             ) -> reader.Timeline:
    meta: dict[str, Any] = {"regions": META_REGIONS}
    if resolvers is not None:
        meta["dns_resolvers"] = resolvers
    return reader.Timeline(events=[], dns=rows, http=[], replication=[], canary=[], meta=meta)


def resolver_rows(stream: str, flip: float, *, mixed_until: float | None = None,
                  start: float = 9.0, end: float = 14.0) -> list[DnsSample]:
    """A resolver answering region-1 (its address through its CNAME), then region-2's ALB
    from `flip` on; from `mixed_until`'s predecessor, region-2's address still through
    region-1's name (a resolver holding the CNAME past its TTL, the addresses not)."""
    rows = []
    for i in range(int((end - start) * 10) + 1):
        t = round(start + i / 10, 3)
        if t >= flip:
            answer, chain, region = "198.18.0.12", "x.eu-central-1.elb.amazonaws.com", "region-2"
        elif mixed_until is not None and t >= mixed_until:
            answer, chain, region = "198.18.0.12", "region-1.shop.gameday.test", MIXED
        else:
            answer, chain, region = "198.18.0.11", "region-1.shop.gameday.test", "region-1"
        rows.append(DnsSample(t, stream, 1, answer, "NOERROR", 1, 0.001, 0.0, None, chain,
                              region))
    return rows


def test_the_flip_waits_for_the_chain_to_be_the_secondarys(tmp_path: Path) -> None:
    """From 10.5 the resolver answers region-2's address through region-1's CNAME: mixed,
    not the secondary. Judged on the addresses alone (the old flip), it flipped at 10.5; it
    flips at 11.2, when the chain is region-2's too. A run recorded before samples had a
    class (no chain, no region column) is classified from its addresses, as it was."""
    rows = resolver_rows("resolver", 11.2, mixed_until=10.5)
    flip = instants.dns_flip(run_with(rows), 10.0, "resolver", "region-2", REGIONS)
    assert (flip.at_s, flip.error_s) == (pytest.approx(1.2), pytest.approx(0.1))

    # the same rows with the class cleared: classified here, from the addresses and chain
    unclassified = [r._replace(region=None) for r in rows]
    again = instants.dns_flip(run_with(unclassified), 10.0, "resolver", "region-2", REGIONS)
    assert again.at_s == pytest.approx(1.2)

    # an old run's table: no chain, no region column; read as None, judged by address
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    conn = sqlite3.connect(run_dir / timeline.FILE)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('regions', ?)", (json.dumps(META_REGIONS),))
    conn.execute("CREATE TABLE events (t REAL NOT NULL, kind TEXT NOT NULL, region TEXT, "
                 "detail TEXT)")
    conn.execute("CREATE TABLE canary (seq INTEGER, writer INTEGER, t_send REAL, t_ack REAL, "
                 "outcome TEXT, server TEXT, error TEXT, notice TEXT)")
    conn.execute("CREATE TABLE dns (t REAL NOT NULL, server TEXT NOT NULL, ok INTEGER NOT "
                 "NULL, answer TEXT, rcode TEXT, ttl INTEGER, latency REAL, lateness REAL, "
                 "error TEXT)")
    conn.executemany("INSERT INTO dns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     [r[:9] for r in rows])
    conn.commit()
    conn.close()
    old, _present = reader.open_run(run_dir)
    try:
        first = old.stream("dns", "resolver")[0]
        assert (first.answer, first.chain, first.region) == ("198.18.0.11", None, None)
        by_address = instants.dns_flip(old, 10.0, "resolver", "region-2", REGIONS)
        assert by_address.at_s == pytest.approx(0.5)  # what an address-only run shows
    finally:
        old.close()


# -- several resolvers -----------------------------------------------------------------------

RESOLVERS = [
    {"name": "unbound", "stream": "resolver", "kind": "unbound", "address": "198.18.0.53"},
    {"name": "dnsmasq", "stream": "resolver:dnsmasq", "kind": "dnsmasq",
     "address": "198.18.0.55"},
    {"name": "pdns-recursor", "stream": "resolver:pdns-recursor", "kind": "pdns-recursor",
     "address": "198.18.0.56"},
]


def three_resolvers(*, dnsmasq_flip: float | None = 12.3) -> list[DnsSample]:
    return [*resolver_rows("resolver", 10.8),
            *resolver_rows("resolver:dnsmasq", dnsmasq_flip if dnsmasq_flip else 99.0,
                           mixed_until=11.0),
            *resolver_rows("resolver:pdns-recursor", 10.6)]


def test_a_flip_per_resolver_and_the_slowest_is_the_budgets_dns_phase() -> None:
    tl = run_with(three_resolvers(), resolvers=RESOLVERS)
    roles = phases.Roles.from_meta(tl.meta)
    flips = phases.resolver_flips(tl, 10.0, roles)
    assert [(r["name"], f.at_s) for r, f in flips] == [
        ("unbound", pytest.approx(0.8)), ("dnsmasq", pytest.approx(2.3)),
        ("pdns-recursor", pytest.approx(0.6))]
    phase = phases.by_name()["dns_resolver_s"].measure
    assert phase is not None
    slowest = phase(tl, 10.0, roles)
    assert (slowest.at_s, slowest.error_s) == (pytest.approx(2.3), pytest.approx(0.1))
    assert slowest.evidence == ("the slowest of 3 resolvers, dnsmasq, answers with region-2's "
                                "endpoints only from here on")
    # the summary's section: each resolver's flip and error bar, the slowest marked
    found = summaries._resolvers(tl, 10.0, roles)
    assert [(r["name"], r["stream"], r["flip_s"], r["error_s"], r["slowest"]) for r in found] \
        == [("unbound", "resolver", 0.8, 0.1, False),
            ("dnsmasq", "resolver:dnsmasq", 2.3, 0.1, True),
            ("pdns-recursor", "resolver:pdns-recursor", 0.6, 0.1, False)]


def test_a_resolver_that_never_settles_leaves_the_dns_phase_unobserved() -> None:
    tl = run_with(three_resolvers(dnsmasq_flip=None), resolvers=RESOLVERS)
    roles = phases.Roles.from_meta(tl.meta)
    phase = phases.by_name()["dns_resolver_s"].measure
    assert phase is not None
    found = phase(tl, 10.0, roles)
    assert found.at_s is None
    assert found.reason == "the resolver dnsmasq never settled on region-2 (of 3 resolvers)"
    section = summaries._resolvers(tl, 10.0, roles)
    assert [r["slowest"] for r in section] == [False, True, False]
    assert section[1]["reason"] == "the resolver dnsmasq never settled on region-2"


def test_a_run_recorded_with_one_resolver_keeps_its_phase() -> None:
    """No `dns_resolvers` in the run's meta: the one `resolver` stream, as before."""
    tl = run_with(resolver_rows("resolver", 10.8))
    roles = phases.Roles.from_meta(tl.meta)
    phase = phases.by_name()["dns_resolver_s"].measure
    assert phase is not None
    assert phase(tl, 10.0, roles) == instants.dns_flip(tl, 10.0, "resolver", "region-2",
                                                       roles.endpoints())
    (only,) = summaries._resolvers(tl, 10.0, roles)
    assert (only["name"], only["slowest"], only["flip_s"]) == ("resolver", True, 0.8)
    assert summaries._resolvers(tl, None, roles)[0]["reason"] == "no fault"


def test_the_contract_takes_dns_resolvers_and_refuses_a_malformed_one(tmp_path: Path) -> None:
    run_dir = several_resolvers_run(tmp_path)
    built = summaries.build(run_dir)
    contract.validate(built)
    broken = copy.deepcopy(dict(built))
    broken["dns"]["resolvers"][0]["flip_s"] = "soon"
    with pytest.raises(ConfigError, match="field 'dns/resolvers/0/flip_s'"):
        contract.validate(broken)
    del broken["dns"]["resolvers"][0]["slowest"]
    broken["dns"]["resolvers"][0]["flip_s"] = None
    with pytest.raises(ConfigError, match="'slowest' is a required property"):
        contract.validate(broken)


# -- the descriptor's resolvers -------------------------------------------------------------


def lab_data(**dns: Any) -> dict[str, Any]:
    data = copy.deepcopy(fakes.descriptor_dict())
    data["dns"].update(dns)
    return data


def test_the_descriptor_samples_resolver_and_each_listed_one_once() -> None:
    alone = descriptor.from_dict(lab_data())
    resolver, port = alone.dns.resolver.address, alone.dns.resolver.port
    assert [(r.name, r.stream) for r in alone.dns.sampled()] == [("resolver", "resolver")]
    lab = descriptor.from_dict(lab_data(resolvers=[
        {"name": "unbound", "kind": "unbound", "address": resolver, "port": port,
         "min_ttl_s": 0},
        {"name": "dnsmasq", "kind": "dnsmasq", "address": "198.18.0.55", "port": 5353,
         "min_ttl_s": 0, "serve_stale_s": 0},
        {"name": "pdns-recursor", "address": "198.18.0.56"}]))
    sampled = lab.dns.sampled()
    # unbound is dns.resolver: one stream, `resolver`, under unbound's name
    assert [(r.name, r.stream, r.address, r.port, r.kind) for r in sampled] == [
        ("unbound", "resolver", resolver, port, "unbound"),
        ("dnsmasq", "resolver:dnsmasq", "198.18.0.55", 5353, "dnsmasq"),
        ("pdns-recursor", "resolver:pdns-recursor", "198.18.0.56", 53, None)]
    assert sampled[1].recorded() == {"name": "dnsmasq", "stream": "resolver:dnsmasq",
                                     "kind": "dnsmasq", "address": "198.18.0.55",
                                     "port": 5353, "min_ttl_s": 0, "serve_stale_s": 0}


@pytest.mark.parametrize("names", [["a", "a"], ["resolver"]])
def test_a_resolver_named_twice_is_refused(names: list[str]) -> None:
    data = lab_data(resolvers=[{"name": n, "address": f"198.18.0.{60 + i}"}
                               for i, n in enumerate(names)])
    with pytest.raises(ConfigError, match="give each resolver a name of its own"):
        descriptor.from_dict(data)


# -- the report -----------------------------------------------------------------------------


def several_resolvers_run(tmp_path: Path) -> Path:
    """The fixed run with two more resolvers: pdns-recursor flips before unbound (the
    `resolver` stream), dnsmasq after it, through a mixed answer."""
    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID)
    rows = []
    for t in fixture_run.ticks(50):
        for stream, flip in (("resolver:dnsmasq", 2.9), ("resolver:pdns-recursor", 2.05)):
            if t >= flip:
                answer, region = fixture_run.R2, "region-2"
            elif stream == "resolver:dnsmasq" and t >= 2.4:
                answer, region = f"{fixture_run.R1},{fixture_run.R2}", MIXED
            else:
                answer, region = fixture_run.R1, "region-1"
            rows.append(DnsSample(t, stream, 1, answer, "NOERROR", 1, 0.002, 0.0, None, "",
                                  region))
    conn = sqlite3.connect(run_dir / timeline.FILE)
    with conn:
        conn.executemany(timeline.insert_sql("dns"), rows)
    conn.close()
    timeline.write_meta(run_dir, {"dns_resolvers": [
        {"name": "unbound", "stream": "resolver", "kind": "unbound", "address": "198.18.0.53"},
        {"name": "dnsmasq", "stream": "resolver:dnsmasq", "kind": "dnsmasq",
         "address": "198.18.0.55"},
        {"name": "pdns-recursor", "stream": "resolver:pdns-recursor",
         "kind": "pdns-recursor", "address": "198.18.0.56"}]})
    return run_dir


def test_the_report_gives_a_flip_per_resolver_and_names_the_slowest(tmp_path: Path) -> None:
    run_dir = several_resolvers_run(tmp_path)
    out = outputs.regenerate(run_dir, history=tmp_path / "h.jsonl")
    s = out.summary
    assert s["phases"]["dns_resolver_s"] == pytest.approx(1.9)  # dnsmasq's, the slowest
    assert [(r["name"], r["flip_s"], r["slowest"]) for r in s["dns"]["resolvers"]] == [
        ("unbound", 1.45, False), ("dnsmasq", 1.9, True), ("pdns-recursor", 1.05, False)]
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["dns"] == s["dns"]
    report = (run_dir / "report.md").read_text()
    phases_section = report.split("## RTO phases", 1)[1].split("## Writes", 1)[0]
    assert ("DNS flip per resolver (3 sampled; the slowest, **dnsmasq**, is the DNS phase of "
            "the RTO budget above):") in phases_section
    assert ("| DNS flip through the caching resolver | 1.900 s ± 50 ms | 1.200 s | 1.000 s "
            "(by 5.000 s) | within | the slowest of 3 resolvers, dnsmasq, answers with "
            "region-2's endpoints only from here on |") in phases_section
    assert ("| **dnsmasq** | dnsmasq | 198.18.0.55 | 1.900 s ± 50 ms | the resolver dnsmasq "
            "answers with region-2's endpoints only from here on |") in phases_section
    assert ("| unbound | unbound | 198.18.0.53 | 1.450 s ± 50 ms | the resolver unbound "
            "answers with region-2's endpoints only from here on |") in phases_section
    assert "| pdns-recursor | pdns-recursor | 198.18.0.56 | 1.050 s ± 50 ms |" in phases_section
    # the timeline image has a lane per resolver
    svg = (run_dir / "timeline.svg").read_text()
    for lane in ("DNS resolver<", "DNS resolver:dnsmasq<", "DNS resolver:pdns-recursor<"):
        assert lane in svg


# -- the wait for recovery waits for every resolver's flip ------------------------------------


def test_the_wait_for_recovery_waits_until_every_resolver_answers_the_region(
        tmp_path: Path) -> None:
    """Global requests are served by region-2 and the canary writes there, but dnsmasq (its
    TTL floor) still sends its users to region-1: the run goes on until its flip is seen, so
    the slowest resolver's flip is measured; past the bound, the failure names it."""
    lab_file = tmp_path / "lab.json"
    lab_file.write_text(json.dumps(lab_data(resolvers=[
        {"name": "dnsmasq", "kind": "dnsmasq", "address": "198.18.0.55"}])))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    timeline.create(run_dir, {"run_id": "r", "anchor_ns": 1})
    run = runs.Run(run_dir, timeline.Clock(1))
    drills.publish(fakes.drill(lab_file, run=run))

    def store(*rows: Any) -> None:
        conn = timeline.connect(run_dir)
        with conn:
            for row in rows:
                conn.execute(timeline.insert_sql(timeline.table_of(row)), row)
        conn.close()

    def answer(t: float, stream: str, region: str | None) -> DnsSample:
        return DnsSample(t, stream, int(region is not None), "198.18.0.12", "NOERROR", 1,
                         0.001, 0.0, None, "", region)

    store(timeline.Event(1.0, "fault-applied", "region-1", "{}"),
          *(timeline.HttpSample(2.0 + i / 10, "global", 1, 200, "region-2", "198.18.0.12",
                                0.01, 0.0, None) for i in range(5)),
          timeline.CanaryAttempt(1, 0, 2.0, 2.01, "ok", "127.0.0.1", None, None),
          answer(0.5, "resolver:dnsmasq", "region-2"),  # before the fault: does not count
          answer(2.0, "resolver", "region-2"), answer(2.0, "resolver:dnsmasq", "region-1"))
    configuration = {"lab_file": str(lab_file)}
    with pytest.raises(ActivityFailed, match="region-2 did not recover within 0.3 s: "
                                             "resolvers not on region-2: dnsmasq answers "
                                             "region-1$"):
        wait.wait_for_recovery("region-2", 0.3, configuration=configuration)
    store(answer(2.5, "resolver:dnsmasq", None))  # a failed query is not a flip either
    with pytest.raises(ActivityFailed, match="dnsmasq fails$"):
        wait.wait_for_recovery("region-2", 0.3, configuration=configuration)
    store(answer(3.0, "resolver:dnsmasq", "region-2"))
    assert wait.wait_for_recovery("region-2", 0.3, configuration=configuration)["region"] \
        == "region-2"


# -- the DNS authority's own detection against its health-check budget ------------------------

ROUTE53 = {"health_interval_s": 30.0, "health_failures": 3, "health_timeout_s": 1.0}


@pytest.mark.parametrize(("at_s", "error_s", "within", "verdict"), [
    (88.266, 0.05, True, "the DNS authority withdrew region-1 after 88.266 s ± 0.050 s, within "
                         "its health-check budget of 91 s (30 s × 3 + 1 s)"),
    (95.0, 0.05, False, "the DNS authority withdrew region-1 after 95.000 s ± 0.050 s, 4.000 s "
                        "beyond its health-check budget of 91 s (30 s × 3 + 1 s)"),
    # the true instant lies in the error bar before the flip: 91 s may be either side
    (91.02, 0.05, None, "the DNS authority withdrew region-1 after 91.020 s ± 0.050 s, at the "
                        "edge of its health-check budget of 91 s (30 s × 3 + 1 s) (the budget "
                        "falls inside the error bar)"),
])
def test_the_authoritys_withdrawal_is_set_against_its_route53_like_budget(
        at_s: float, error_s: float, within: bool | None, verdict: str) -> None:
    flip = instants.Instant(at_s=at_s, error_s=error_s, evidence="authoritative")
    found = summaries.authority_detection(flip, "region-1", ROUTE53)
    assert found == {"region": "region-1", "withdrawn_s": at_s, "error_s": error_s,
                     "budget_s": 91.0, "interval_s": 30.0, "failures": 3.0, "timeout_s": 1.0,
                     "within": within, "verdict": verdict}


def test_an_authority_never_seen_withdrawing_says_why() -> None:
    found = summaries.authority_detection(instants.missing("the authority kept region-1"),
                                          "region-1", ROUTE53)
    assert (found["withdrawn_s"], found["within"]) == (None, None)
    assert found["verdict"] == ("the DNS authority was not seen withdrawing region-1 (the "
                                "authority kept region-1); its health-check budget of 91 s "
                                "(30 s × 3 + 1 s)")


def test_the_report_and_summary_state_the_authoritys_detection_beside_gamedays(
        tmp_path: Path) -> None:
    """The fixed run (authoritative flip at 0.700 s ± 50 ms) with health checks of 0.1 s ×
    3 + 0.05 s: the authority withdrew region-1 after its budget. gameday's own detection
    phase keeps its meaning (its first failed /healthz), and its budget is the same
    parameters'."""
    config = {**fixture_run.CONFIGURATION, "health_interval_s": 0.1, "health_failures": 3,
              "health_timeout_s": 0.05}
    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID, configuration=config)
    out = outputs.regenerate(run_dir, history=tmp_path / "h.jsonl")
    s = out.summary
    assert s["phases"]["detection_s"] == pytest.approx(0.0)  # gameday's, unchanged
    assert s["phase_detail"]["detection_s"]["evidence"] == "first failed /healthz of region-1"
    authority = s["dns"]["authority"]
    assert (authority["withdrawn_s"], authority["budget_s"], authority["within"]) == (
        pytest.approx(0.7), pytest.approx(0.35), False)
    verdict = ("the DNS authority withdrew region-1 after 0.700 s ± 0.050 s, 0.350 s beyond its "
               "health-check budget of 0.35 s (0.1 s × 3 + 0.05 s)")
    assert authority["verdict"] == verdict
    assert json.loads((run_dir / "summary.json").read_text())["dns"]["authority"] == authority
    report = (run_dir / "report.md").read_text()
    phases_section = report.split("## RTO phases", 1)[1].split("## Writes", 1)[0]
    assert f"\n{verdict[0].upper()}{verdict[1:]}.\n" in phases_section


def test_the_contract_refuses_an_authority_without_its_budget(tmp_path: Path) -> None:
    run_dir = several_resolvers_run(tmp_path)
    built = copy.deepcopy(dict(summaries.build(run_dir)))
    contract.validate(built)
    del built["dns"]["authority"]["budget_s"]
    with pytest.raises(ConfigError, match="'budget_s' is a required property"):
        contract.validate(built)
    del built["dns"]["authority"]  # a summary written before it existed
    contract.validate(built)
