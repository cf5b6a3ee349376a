"""The netns lab brought up production-shaped (issue 19, the lab side) and asked from inside
its namespaces, with dnspython, what a user there would get: real PowerDNS, the health-check
gate, unbound, dnsmasq and the PowerDNS Recursor, real storefronts on every address.

One lab for the module, `--region-addresses 2 --cname --ipv6 --health-interval 1
--health-failures 3 --health-timeout 0.5 --resolvers unbound,dnsmasq,pdns-recursor
--db-hostnames`:

- every server answers the global name as a CNAME to region-1's own name, with both of its
  A and both of its AAAA records, and a storefront answers on each of those addresses;
- each region's database is a name of the lab's zone (db.region-1.gameday.test, A and AAAA,
  both answering), which the host's own resolver does not know;
- the descriptor says so (health checks, endpoints, resolvers, db_host names with no
  db_addresses), read back from lab.json, and a game day and its failback pass on it, run
  with the lab's resolver as the system's (<state>/resolv.conf bound over /etc/resolv.conf
  in a mount namespace of chaos's own: real glibc and libpq lookups), with a flip per
  resolver (the slowest the budget's DNS phase, each within its own TTL of the authority),
  the whole answer of every server (chain, A and AAAA) in the dns table, and every
  acknowledged write attributed to a database by its name: region-1's until the promotion,
  region-2's after;
- dnsmasq raises a 1 s TTL to its 10 s floor, where unbound and the Recursor keep it;
- the gate keeps a region while one endpoint passes, and withdraws it at the threshold-th
  failed check of its last one (not before), each number read from the lab's descriptor;
- the Recursor serves the last answer stale while it cannot reach the authority;
- `lab down` removes all of it, dnsmasq's files outside the state directory included.

The tests run in this order on one lab: the flip changes which region answers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gameday.foundation import descriptor
from gameday.labs.netns import healthgate, resolvers
from gameday.labs.netns.driver import NetnsDriver
from gameday.labs.netns.processes import Processes
from tests.integration.conftest import BIN, checkout, gameday, lab_pids, lab_status, residue

PROFILE = ("--region-addresses", "2", "--cname", "--ipv6", "--health-interval", "1",
           "--health-failures", "3", "--health-timeout", "0.5",
           "--resolvers", "unbound,dnsmasq,pdns-recursor", "--db-hostnames")
NAME = "shop.gameday.test"
CLIENT = Path(__file__).with_name("dns_client.py")
USERS = "gd-region-2"  # where the queries come from
R1 = {"A": ["198.18.0.101", "198.18.0.11"], "AAAA": ["2001:2::101", "2001:2::11"]}
CHAIN = {"region-1": ["region-1.shop.gameday.test"], "region-2": ["region-2.shop.gameday.test"]}
DB = {"region-1": "db.region-1.gameday.test", "region-2": "db.region-2.gameday.test"}
# chaos with the lab's resolver as the system's: its resolv.conf bound over /etc/resolv.conf
# in a mount namespace of its own (unshare -m: private propagation), as README says to run it
WITH_LAB_DNS = 'mount --bind "$1/resolv.conf" /etc/resolv.conf && shift && exec "$@"'


@pytest.fixture(scope="module")
def lab(lab_env: dict[str, str]) -> Iterator[dict[str, str]]:
    gameday("lab", "up", *PROFILE, env=lab_env, timeout=300)
    try:
        yield lab_env
    finally:
        gameday("lab", "down", env=lab_env, check=False)


def client(*args: str, timeout: float = 30) -> list[dict[str, Any]]:
    proc = subprocess.run(["ip", "netns", "exec", USERS, sys.executable, str(CLIENT), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def ask(server: str, name: str = NAME, rdtype: str = "A",
        timeout: float = 1.0) -> dict[str, Any]:
    (got,) = client("once", server, name, rdtype, str(timeout))
    return got


def dns_block(env: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(env["GAMEDAY_LAB"]).read_text())
    descriptor.validate(data)
    return dict(data["dns"])


def servers(env: dict[str, str]) -> dict[str, str]:
    dns = dns_block(env)
    return {"authoritative": dns["authoritative"]["address"],
            **{r["name"]: r["address"] for r in dns["resolvers"]}}


def gate_status(env: dict[str, str]) -> dict[str, Any]:
    status = healthgate.read_status(Path(env["GAMEDAY_HOME"]) / "dns" /
                                    "healthgate-status.json")
    assert status is not None
    return status


def wait_for(what: str, condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def with_lab_dns(env: dict[str, str], *argv: str,
                 timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "-m", "sh", "-c", WITH_LAB_DNS, "sh",
                           env["GAMEDAY_HOME"], *argv],
                          env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=checkout(env))


def chaos_with_lab_dns(experiment: str, env: dict[str, str],
                       timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return with_lab_dns(env, str(BIN / "chaos"), "--no-version-check", "run",
                        "--journal-path", str(Path(env["GAMEDAY_REPORTS"]) / "journal.json"),
                        str(checkout(env) / "experiments" / experiment), timeout=timeout)


def host_resolv_conf() -> str:
    return hashlib.sha256(Path("/etc/resolv.conf").read_bytes()).hexdigest()


def test_every_server_answers_the_chain_and_every_address(lab: dict[str, str]) -> None:
    for who, server in servers(lab).items():
        for rdtype, addresses in R1.items():
            got = ask(server, rdtype=rdtype)
            assert (got["rcode"], got["chain"], got["addresses"]) == (
                "NOERROR", CHAIN["region-1"], addresses), (who, rdtype, got)
    urls = [f"http://{a}:8080/whoami" if ":" not in a else f"http://[{a}]:8080/whoami"
            for addresses in R1.values() for a in addresses]
    answered = client("http", *urls)
    assert [(r["status"], r["region"]) for r in answered] == [(200, "region-1")] * 4, answered


def test_each_database_is_a_name_only_the_lab_s_dns_knows(lab: dict[str, str]) -> None:
    lab_json = json.loads(Path(lab["GAMEDAY_LAB"]).read_text())
    assert [(r["db_host"], "db_addresses" in r) for r in lab_json["regions"]] == [
        (DB["region-1"], False), (DB["region-2"], False)]
    for name in DB.values():
        with pytest.raises(ValueError):
            ipaddress.ip_address(name)
        with pytest.raises(socket.gaierror):  # the host's own resolver does not know it
            socket.getaddrinfo(name, 5432)
    host = host_resolv_conf()
    # glibc under the lab's resolver: A and AAAA, the database's own addresses only
    found = with_lab_dns(lab, "getent", "-s", "dns", "ahosts", DB["region-1"])
    assert found.returncode == 0, found.stderr
    assert {line.split()[0] for line in found.stdout.splitlines()} == {
        "198.18.0.11", "2001:2::11"}, found.stdout
    assert host_resolv_conf() == host  # the bind stayed in its own mount namespace
    # the AAAA record is a database that answers, as itself
    db = lab_json["database"]
    with psycopg.connect(host="2001:2::11", port=db["port"], dbname=db["name"],
                         user=db["user"], password=db["password"], connect_timeout=5) as conn:
        row = conn.execute("SELECT host(inet_server_addr())").fetchone()
    assert row == ("2001:2::11",), row


def test_the_descriptor_says_what_the_dns_side_is_made_of_and_drills_measure_it(
        lab: dict[str, str]) -> None:
    dns = dns_block(lab)
    assert dns["health"] == {"checker": "healthgate", "interval_s": 1.0, "failures": 3,
                             "timeout_s": 0.5, "path": "/healthz", "port": 8080}
    assert dns["endpoints"]["region-1"] == {
        "addresses": ["198.18.0.11", "198.18.0.101", "2001:2::11", "2001:2::101"],
        "cnames": CHAIN["region-1"]}
    assert [r["name"] for r in dns["resolvers"]] == ["unbound", "dnsmasq", "pdns-recursor"]
    assert dns["resolver"]["address"] == dns["resolvers"][0]["address"]
    status = lab_status(lab)
    assert {"healthgate", "dnsmasq", "pdns-recursor", "storefront-region-1-2",
            "storefront-region-2-2"} <= {n for n, pid in status["processes"].items() if pid}
    # a region scaled to zero is every instance of it (planned only: nothing injected)
    lab_record = descriptor.load(Path(lab["GAMEDAY_LAB"]))
    plan = NetnsDriver(lab_record).plan("scale-to-zero", lab_record.primary)
    assert plan["stopped"] == ["storefront-region-1", "storefront-region-1-2",
                               "postgres-region-1"], plan

    # a game day and its failback on this profile, run with the lab's resolver as the
    # system's: each passes, with every resolver's flip and each write's database by name
    reports = Path(lab["GAMEDAY_REPORTS"])
    host = host_resolv_conf()
    for experiment, drill, to in (("game-day.json", "failover", "region-2"),
                                  ("failback.json", "failback", "region-1")):
        started = time.monotonic()
        proc = chaos_with_lab_dns(experiment, lab)
        took = time.monotonic() - started
        assert host_resolv_conf() == host
        run = max((d for d in reports.glob("2*") if d.is_dir()), key=lambda d: d.name)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["drill"] == drill, run
        assert proc.returncode == 0 and summary["verdict"] == "pass", (
            summary["reasons"], (proc.stdout + proc.stderr)[-3000:])
        _every_resolver_flipped(run, summary, dns, to)
        _writes_attributed_by_name(run, frm="region-1" if to == "region-2" else "region-2",
                                   to=to)
        print(f"{drill}: RTO {summary['rto_s']} ± {summary['rto_error_s']} s, authoritative "
              f"flip {summary['phases']['dns_authoritative_s']} s, resolvers "
              + ", ".join(f"{r['name']} {r['flip_s']} ± {r['error_s']} s"
                          for r in summary["dns"]["resolvers"]) + f" ({took:.1f} s)")


def _every_resolver_flipped(run: Path, summary: dict[str, Any], dns: dict[str, Any],
                            to: str) -> None:
    """A flip per resolver, the slowest the budget's DNS phase; the dns table holds each
    server's whole answer: the CNAME chain and every address, classified by region."""
    resolvers = summary["dns"]["resolvers"]
    assert [(r["name"], r["stream"]) for r in resolvers] == [
        ("unbound", "resolver"), ("dnsmasq", "resolver:dnsmasq"),
        ("pdns-recursor", "resolver:pdns-recursor")], resolvers
    flips = [r["flip_s"] for r in resolvers]
    assert None not in flips and all(r["error_s"] < 0.5 for r in resolvers), resolvers
    (slowest,) = [r for r in resolvers if r["slowest"]]
    assert slowest["flip_s"] == max(flips) == summary["phases"]["dns_resolver_s"], summary
    auth = summary["phases"]["dns_authoritative_s"]
    assert min(flips) >= auth - 0.1, summary
    # each follows the authority within its own TTL: all three keep their caches in whole
    # seconds, so a record of TTL n lives up to n + 1 s (dnsmasq's at least its floor)
    ttls = {r["name"]: max(dns["ttl_s"], r["min_ttl_s"]) for r in dns["resolvers"]}
    for r in resolvers:
        assert r["flip_s"] - auth <= ttls[r["name"]] + 1 + 0.3 + r["error_s"], (r, auth)
    db = sqlite3.connect(run / "timeline.sqlite")
    try:
        answers = set(db.execute("SELECT server, answer, chain, region FROM dns WHERE ok"))
    finally:
        db.close()
    expected = {region: (",".join(sorted(e["addresses"], key=lambda a: (":" in a, a))),
                         ",".join(e["cnames"]))
                for region, e in dns["endpoints"].items()}
    whole = {(*expected[r], r) for r in ("region-1", "region-2")}
    every = {a for addresses, _ in expected.values() for a in addresses.split(",")}
    for server in ("authoritative", *(r["stream"] for r in resolvers)):
        mine = {(answer, chain, region) for s, answer, chain, region in answers if s == server}
        # each region's four addresses (A and AAAA) through its own name
        assert whole <= mine, (server, mine)
        for answer, chain, region in mine - whole:
            # a resolver whose cached A and AAAA records expire apart answers one region's
            # A and the other's AAAA for a moment (seen with unbound in the failback): half
            # of each, so mixed, never a region
            assert region == "mixed" and set(answer.split(",")) <= every and set(
                chain.split(",")) == set(CHAIN["region-1"] + CHAIN["region-2"]), (
                server, answer, chain, region)
    assert to in expected


def _writes_attributed_by_name(run: Path, *, frm: str, to: str) -> None:
    """Every acknowledged canary write is recorded against the db_host name of the region
    whose server acknowledged it (inet_server_addr() against what the name resolves to):
    `frm`'s until the promotion was requested, `to`'s after, none by address."""
    db = sqlite3.connect(run / "timeline.sqlite")
    try:
        acks = db.execute("SELECT t_ack, server FROM canary WHERE outcome = 'ok' "
                          "ORDER BY t_ack").fetchall()
        (requested,) = db.execute("SELECT min(t) FROM events WHERE kind = "
                                  "'promote-requested' AND region = ?", (to,)).fetchone()
    finally:
        db.close()
    servers = [server for _, server in acks]
    assert set(servers) == {DB[frm], DB[to]}, sorted(set(servers))
    first_to = servers.index(DB[to])
    # one handover: `frm` acknowledged every write before `to`'s first, none after
    assert set(servers[:first_to]) == {DB[frm]} and set(servers[first_to:]) == {DB[to]}, (
        servers[first_to - 3:first_to + 3])
    assert requested is not None and acks[first_to][0] > requested, (acks[first_to], requested)
    print(f"{run.name}: {first_to} writes acknowledged by {DB[frm]}, "
          f"{len(servers) - first_to} by {DB[to]}")


def test_dnsmasq_raises_a_short_ttl_to_its_floor(lab: dict[str, str]) -> None:
    """A name no one asked yet: the first answer comes from the authority (TTL 1); the
    second from each resolver's cache, dnsmasq's with what is left of its 10 s floor."""
    ttl = dns_block(lab)["ttl_s"]
    second = {}
    for who, server in servers(lab).items():
        if who == "authoritative":
            continue
        first = ask(server, "region-2.shop.gameday.test")
        assert first["addresses"] == ["198.18.0.12", "198.18.0.201"], (who, first)
        assert first["ttl"] <= ttl, (who, first)
        second[who] = ask(server, "region-2.shop.gameday.test")["ttl"]
    floor = resolvers.RESOLVER_TTLS["dnsmasq"]["min_ttl_s"]
    assert floor - 2 <= second["dnsmasq"] <= floor, second
    assert second["unbound"] <= ttl and second["pdns-recursor"] <= ttl, second


def _region(sample: dict[str, Any]) -> str | None:
    return next((r for r, chain in CHAIN.items() if sample["chain"] == chain), None)


def _flip(samples: list[dict[str, Any]], server: str) -> float:
    """When `server` first answered region-2, having answered only region-2 since."""
    mine = [s for s in samples if s["server"] == server]
    regions = [_region(s) for s in mine]
    assert regions[0] == "region-1" and regions[-1] == "region-2", (server, regions)
    first = regions.index("region-2")
    assert set(regions[first:]) == {"region-2"}, (server, regions)  # no flapping back
    return float(mine[first]["t"])


def test_the_gate_withdraws_a_region_at_its_threshold(
        lab: dict[str, str]) -> None:
    dns = dns_block(lab)
    interval, failures = dns["health"]["interval_s"], dns["health"]["failures"]
    timeout = dns["health"]["timeout_s"]
    state = Path(lab["GAMEDAY_HOME"])
    procs = Processes(state)
    lab_json = json.loads(Path(lab["GAMEDAY_LAB"]).read_text())
    db = lab_json["database"]
    region_2 = lab_json["regions"][1]
    # region-2's database becomes writable, so its storefronts pass their checks too: with
    # both regions healthy, the failover record keeps the primary (reached at the region's
    # address: its db_host is a name only the lab's DNS knows)
    with psycopg.connect(host=region_2["address"], port=db["port"], dbname=db["name"],
                         user=db["user"], password=db["password"], connect_timeout=5,
                         autocommit=True) as conn:
        conn.execute("select pg_promote(true, 30)")
    endpoints_2 = dns["endpoints"]["region-2"]["addresses"]
    wait_for("region-2's endpoints pass",
             lambda: all(gate_status(lab)["endpoints"][a]["healthy"] for a in endpoints_2),
             timeout=(failures + 2) * interval)
    assert gate_status(lab)["active"] == "region-1"

    # one of region-1's two instances goes: the region stays, its other instance passes
    assert procs.stop("storefront-region-1-2")
    wait_for("198.18.0.101 is unhealthy",
             lambda: gate_status(lab)["endpoints"]["198.18.0.101"]["healthy"] is False,
             timeout=(failures + 2) * interval)
    assert gate_status(lab)["endpoints"]["2001:2::101"]["healthy"] is False
    got = ask(dns["authoritative"]["address"])
    assert (got["chain"], got["addresses"]) == (CHAIN["region-1"], ["198.18.0.101",
                                                                    "198.18.0.11"])

    # the last one goes: the authority watched from the users' namespace (each resolver's
    # following it within its TTL is checked on the game day's own samples, above: waiting
    # here for dnsmasq's 10 s floor again would only cost time)
    watch_s = failures * interval + timeout + 8
    every = {"authoritative": servers(lab)["authoritative"]}
    watcher = subprocess.Popen(
        ["ip", "netns", "exec", USERS, sys.executable, str(CLIENT), "watch", str(watch_s),
         NAME, *every.values()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # the watch has begun: region-1 answers
        killed = time.monotonic()
        assert procs.stop("storefront-region-1")
        out, err = watcher.communicate(timeout=watch_s + 30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err[-2000:]
    samples = [json.loads(line) for line in out.splitlines()]
    flips = {who: _flip(samples, address) for who, address in every.items()}
    withdrawn = flips["authoritative"] - killed
    # the first failed check comes within one interval of the kill, the threshold-th
    # (failures - 1) intervals later; a threshold of 1 (ifurlup's) would flip within one
    assert (failures - 1) * interval < withdrawn <= failures * interval + timeout + 0.5, (
        withdrawn, gate_status(lab)["changes"])
    change = gate_status(lab)["changes"][-1]
    assert change["active"] == "region-2" and "reloaded_monotonic" in change
    assert killed < change["monotonic"] <= flips["authoritative"], change
    print(f"withdrawn after {withdrawn:.3f} s")


def test_the_recursor_serves_stale_while_the_authority_is_out_of_reach(
        lab: dict[str, str]) -> None:
    dns = dns_block(lab)
    recursor = next(r for r in dns["resolvers"] if r["name"] == "pdns-recursor")
    unbound = next(r for r in dns["resolvers"] if r["name"] == "unbound")
    authority = dns["authoritative"]["address"]
    before = ask(recursor["address"])
    assert before["rcode"] == "NOERROR" and before["addresses"], before
    rules = (f"table inet gd_test_stale {{\n chain out {{\n"
             f"  type filter hook output priority 0;\n"
             f"  ip saddr {recursor['address']} ip daddr {authority} drop\n }}\n}}\n")
    subprocess.run(["ip", "netns", "exec", "gd-dns", "nft", "-f", "-"], input=rules,
                   text=True, check=True, timeout=10)
    try:
        time.sleep(dns["ttl_s"] + 1.5)  # every cached record has expired
        stale = ask(recursor["address"], timeout=6.0)
        # a name it never asked for: it cannot reach the authority
        unknown = ask(recursor["address"], "ns1.gameday.test", timeout=6.0)
        fresh = ask(unbound["address"])  # unbound still reaches the authority
    finally:
        subprocess.run(["ip", "netns", "exec", "gd-dns", "nft", "delete", "table", "inet",
                        "gd_test_stale"], check=True, timeout=10)
    assert (stale["rcode"], stale["chain"], stale["addresses"]) == (
        "NOERROR", before["chain"], before["addresses"]), stale
    assert unknown["rcode"] != "NOERROR", unknown
    assert fresh["rcode"] == "NOERROR" and fresh["ttl"] <= dns["ttl_s"], fresh
    assert recursor["serve_stale_s"] > 0 and unbound["serve_stale_s"] == 0
    print(f"stale answer: TTL {stale['ttl']}; a name never asked: {unknown['rcode']}")


def test_lab_down_removes_everything(lab: dict[str, str]) -> None:
    status = lab_status(lab)
    running = {name for name, pid in status["processes"].items() if pid}
    assert {"pdns", "healthgate", "unbound", "dnsmasq", "pdns-recursor",
            "storefront-region-2-2"} <= running, running
    pids = lab_pids(lab)
    gameday("lab", "down", env=lab)
    assert residue(lab, pids) == []
    assert not any(p.exists() for p in resolvers.dnsmasq_files().values())
    addresses = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True,
                               check=True).stdout
    assert "2001:2:" not in addresses and "198.18." not in addresses
