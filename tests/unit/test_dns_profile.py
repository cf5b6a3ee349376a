"""The production-shaped DNS profile of the netns lab (issue 19, the lab side), without a lab:
where its addresses go (only the benchmarking ranges, none twice, none of the lab's own), what
`lab up` refuses before it changes anything, what the descriptor then says (valid against the
schema, old descriptors still valid), and how each extra resolver is configured. The lab
brought up in each shape and queried for real is tests/integration/test_dns_profile.py."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from click.testing import CliRunner

from gameday import cli
from gameday.foundation import descriptor
from gameday.foundation.errors import ConfigError
from gameday.labs.netns import dnsprofile, resolvers
from gameday.labs.netns import lab as netns
from gameday.labs.netns import topology as topo
from gameday.labs.netns.dnsprofile import DnsProfile, Plan
from tests.unit.test_descriptor import GOOD

FULL = DnsProfile(region_addresses=dnsprofile.MAX_REGION_ADDRESSES, cname=True, ipv6=True,
                  health_failures=3, health_timeout_s=2.0,
                  resolvers=("unbound", "dnsmasq", "pdns-recursor"), db_hostnames=True)
LAB_OWN = {topo.BRIDGE_ADDRESS, topo.AUTHORITATIVE, topo.RESOLVER, *topo.WITNESS.addresses,
           *topo.REGION_1.addresses, *topo.REGION_2.addresses}


def test_the_default_profile_is_the_lab_as_it_was() -> None:
    plan = Plan(profile=DnsProfile())
    assert not DnsProfile().gated
    assert {r: plan.addresses(r) for r in topo.REGIONS} == {
        "region-1": ["198.18.0.11"], "region-2": ["198.18.0.12"]}
    assert plan.namespace_addresses() == {}
    assert [(i.name, i.hosts) for i in plan.instances("region-1")] == [
        ("storefront-region-1", ("198.18.0.11",))]
    assert plan.cname("region-1") is None


def test_every_address_is_in_the_benchmarking_ranges_and_used_once() -> None:
    plan = Plan(profile=FULL)
    found = plan.every_address()
    assert all(dnsprofile.in_lab_ranges(a) for a in found), found
    v6 = [a for a in found if ":" in a]
    assert v6 and all(ipaddress.ip_address(a) in ipaddress.ip_network("2001:2::/48")
                      for a in v6)
    # the regions' first addresses are the lab's own; nothing else the profile adds is
    added = [a for r in topo.REGIONS for a in plan.ipv4(r)[1:]]
    added += [dnsprofile.RESOLVER_ADDRESSES[k] for k in FULL.extra_resolvers]
    assert not set(added) & LAB_OWN
    regional = [a for r in topo.REGIONS for a in plan.addresses(r)]
    assert len(regional) == len(set(regional)) == 2 * 2 * dnsprofile.MAX_REGION_ADDRESSES
    assert plan.ipv4("region-1")[0] == topo.address("region-1")  # the descriptor's address


def test_addresses_outside_the_ranges_are_told_apart() -> None:
    for outside in ("203.0.113.5", "198.20.0.1", "2001:3::1", "2001:db8::1", "10.0.0.1"):
        assert not dnsprofile.in_lab_ranges(outside), outside
    for inside in ("198.18.0.1", "198.19.255.254", "2001:2::53", "2001:2:0:ffff::1"):
        assert dnsprofile.in_lab_ranges(inside), inside


def test_namespace_addresses_put_each_where_it_answers() -> None:
    extra = Plan(profile=FULL).namespace_addresses()
    assert "198.18.0.101/24" in extra["gd-region-1"] and "2001:2::11/64" in extra["gd-region-1"]
    assert "198.18.0.201/24" in extra["gd-region-2"] and "2001:2::12/64" in extra["gd-region-2"]
    assert extra["gd-dns"] == ["198.18.0.55/24", "198.18.0.56/24", "2001:2::53/64"]


@pytest.mark.parametrize(("profile", "words"), [
    (DnsProfile(region_addresses=0), "--region-addresses must be from 1 to 8"),
    (DnsProfile(region_addresses=9), "--region-addresses must be from 1 to 8"),
    (DnsProfile(health_failures=0), "--health-failures must be from 1 to 10"),
    (DnsProfile(health_timeout_s=5.0), "at most the health interval (2 s)"),
    (DnsProfile(resolvers=("unbound", "bind9")), "unknown resolver 'bind9': choose from "
                                                 "unbound, dnsmasq, pdns-recursor"),
    (DnsProfile(resolvers=("dnsmasq", "dnsmasq")), "names a resolver twice"),
])
def test_bad_profiles_are_refused_naming_the_fix(profile: DnsProfile, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        profile.check(health_interval_s=2.0)


def test_resolvers_are_read_as_given() -> None:
    assert dnsprofile.parse_resolvers("unbound, dnsmasq,,pdns-recursor") == (
        "unbound", "dnsmasq", "pdns-recursor")
    assert dnsprofile.parse_resolvers(None) == dnsprofile.parse_resolvers("") == ()
    assert DnsProfile(resolvers=("dnsmasq",)).extra_resolvers == ("dnsmasq",)
    assert DnsProfile(resolvers=("unbound",)).extra_resolvers == ()


@pytest.mark.parametrize(("argv", "code", "words"), [
    (["--resolvers", "unbound,bind9"], cli.EXIT_CONFIG, "unknown resolver 'bind9'"),
    (["--resolvers", "dnsmasq,dnsmasq"], cli.EXIT_CONFIG, "names a resolver twice"),
    (["--health-interval", "2", "--health-timeout", "3"], cli.EXIT_CONFIG,
     "--health-timeout must be more than 0 and at most the health interval"),
    (["--region-addresses", "9"], cli.EXIT_USAGE, "'--region-addresses': 9 is not in the range"),
    (["--health-failures", "0"], cli.EXIT_USAGE, "'--health-failures': 0 is not in the range"),
])
def test_lab_up_refuses_bad_input_in_one_line_and_changes_nothing(
        tmp_path: Path, argv: list[str], code: int, words: str) -> None:
    """Refused before preflight: nothing is built, not even the state directory (these run
    as root on a lab machine, where a valid `lab up` would build a lab)."""
    home = tmp_path / "home"
    with mock.patch.object(netns, "preflight", side_effect=AssertionError("went on")) as pre:
        result = CliRunner().invoke(cli.main, ["lab", "up", *argv],
                                    env={"GAMEDAY_HOME": str(home)})
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and words in errors[0], result.output
    assert not pre.called and not home.exists()


def test_lab_up_hands_the_profile_over(tmp_path: Path) -> None:
    with mock.patch.object(netns, "up", return_value=tmp_path / "lab.json") as up:
        result = CliRunner().invoke(cli.main, [
            "lab", "up", "--region-addresses", "2", "--cname", "--ipv6", "--ttl", "60",
            "--health-interval", "30", "--health-failures", "3", "--health-timeout", "4",
            "--resolvers", "unbound,dnsmasq,pdns-recursor", "--db-hostnames"])
    assert result.exit_code == 0, result.output
    options = up.call_args.args[0]
    assert options.dns == DnsProfile(region_addresses=2, cname=True, ipv6=True,
                                     health_failures=3, health_timeout_s=4.0,
                                     resolvers=("unbound", "dnsmasq", "pdns-recursor"),
                                     db_hostnames=True)
    assert (options.dns_ttl_s, options.health_interval_s) == (60, 30)
    with mock.patch.object(netns, "up", return_value=tmp_path / "lab.json") as up:
        assert CliRunner().invoke(cli.main, ["lab", "up"]).exit_code == 0
    assert up.call_args.args[0].dns == DnsProfile()  # no flag: the lab as it was


# -- the descriptor ------------------------------------------------------------------------


def _lab_descriptor(profile: DnsProfile, interval_s: float = 30) -> dict[str, object]:
    data = copy.deepcopy(GOOD)
    data["dns"].update(ttl_s=60, health_interval_s=interval_s,  # type: ignore[attr-defined]
                       **dnsprofile.descriptor_fields(profile, health_interval_s=interval_s))
    return data


def test_the_profile_s_descriptor_is_valid_and_says_what_the_dns_side_is() -> None:
    data = _lab_descriptor(DnsProfile(region_addresses=2, cname=True, ipv6=True,
                                      health_failures=3, health_timeout_s=4.0,
                                      resolvers=("dnsmasq", "pdns-recursor")))
    descriptor.validate(data)
    dns = data["dns"]
    assert isinstance(dns, dict)
    assert dns["health"] == {"checker": "healthgate", "interval_s": 30, "failures": 3,
                             "timeout_s": 4.0, "path": "/healthz", "port": 8080}
    assert dns["endpoints"]["region-2"] == {
        "addresses": ["198.18.0.12", "198.18.0.201", "2001:2::12", "2001:2::201"],
        "cnames": ["region-2.shop.gameday.test"]}
    # every resolver the lab runs, unbound (the `resolver`) included, with its TTL habits
    assert [(r["name"], r["address"], r["min_ttl_s"], r["serve_stale_s"])
            for r in dns["resolvers"]] == [
        ("unbound", topo.RESOLVER, 0, 0), ("dnsmasq", "198.18.0.55", 10, 0),
        ("pdns-recursor", "198.18.0.56", 1, 7200)]
    lab = descriptor.from_dict(data)  # today's loader reads it as before
    assert lab.dns.resolver.address == topo.RESOLVER and lab.dns.health_interval_s == 30


def test_the_default_lab_s_descriptor_says_ifurlup_and_one_address() -> None:
    data = _lab_descriptor(DnsProfile(), interval_s=1)
    descriptor.validate(data)
    dns = data["dns"]
    assert isinstance(dns, dict)
    assert dns["health"]["checker"] == "ifurlup" and dns["health"]["failures"] == 1
    assert dns["endpoints"] == {"region-1": {"addresses": ["198.18.0.11"], "cnames": []},
                                "region-2": {"addresses": ["198.18.0.12"], "cnames": []}}
    assert "resolvers" not in dns


def test_old_descriptors_stay_valid_and_new_fields_are_checked() -> None:
    descriptor.validate(copy.deepcopy(GOOD))  # no health, endpoints or resolvers
    for change, field in [
        (lambda d: d["dns"].update(health={"interval_s": 30}), "dns/health"),
        (lambda d: d["dns"].update(health={"interval_s": 0, "failures": 3}),
         "dns/health/interval_s"),
        (lambda d: d["dns"].update(resolvers=[{"name": "x"}]), "dns/resolvers/0"),
        (lambda d: d["dns"].update(endpoints={"region-1": {"address": ["198.18.0.11"]}}),
         "dns/endpoints/region-1"),
    ]:
        data = copy.deepcopy(GOOD)
        change(data)
        with pytest.raises(ConfigError, match=f"field '{field}'"):
            descriptor.validate(data)


def test_the_profile_is_kept_with_the_lab(tmp_path: Path) -> None:
    dnsprofile.save(tmp_path, FULL)
    assert dnsprofile.load(tmp_path) == FULL
    # a profile saved before --db-hostnames existed: the addresses, as then
    (tmp_path / dnsprofile.PROFILE_FILE).write_text(json.dumps({"cname": True}))
    assert dnsprofile.load(tmp_path) == DnsProfile(cname=True, db_hostnames=False)
    assert dnsprofile.load(tmp_path / "none") == DnsProfile()  # a lab from before: default
    (tmp_path / dnsprofile.PROFILE_FILE).write_text("[]")
    assert dnsprofile.load(tmp_path) == DnsProfile()


def test_the_gate_reads_interval_threshold_and_timeout_from_the_lab(tmp_path: Path) -> None:
    config = dnsprofile.gate_config(tmp_path, FULL, ttl_s=60, interval_s=30,
                                    database_ipv6=True)
    assert (config.interval_s, config.failures, config.timeout_s, config.ttl_s) == (30, 3, 2.0,
                                                                                    60)
    assert config.regions["region-2"] == Plan(profile=FULL).addresses("region-2")
    restored = type(config).from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config


# -- the resolvers' configuration ----------------------------------------------------------


def test_dnsmasq_forwards_only_the_lab_zone_with_a_ttl_floor() -> None:
    conf = resolvers.dnsmasq_conf("198.18.0.55").splitlines()
    assert "min-cache-ttl=10" in conf and "listen-address=198.18.0.55" in conf
    assert "no-resolv" in conf and "no-hosts" in conf
    servers = [line for line in conf if line.startswith("server=")]
    assert servers == [f"server=/{topo.ZONE}/{topo.AUTHORITATIVE}"]
    assert not any(line.startswith(("use-stale-cache", "max-cache-ttl")) for line in conf)


def test_the_recursor_serves_stale_and_asks_only_the_lab(tmp_path: Path) -> None:
    conf = dict(line.split("=", 1) for line in
                resolvers.recursor_conf(tmp_path, "198.18.0.56").splitlines()
                if "=" in line and not line.startswith("#"))
    assert conf["serve-stale-extensions"] == "240"
    assert conf["query-local-address"] == conf["local-address"] == "198.18.0.56"
    assert conf["forward-zones"] == f"{topo.ZONE}={topo.AUTHORITATIVE}"
    assert conf["dont-query"] == "0.0.0.0/0, ::/0"
    assert resolvers.RESOLVER_TTLS["pdns-recursor"]["serve_stale_s"] == 240 * 30


class _Started:
    """Stands in for Processes at resolvers.start's seam (starting a process in the lab's
    DNS namespace needs root): records what would be started where."""

    started: list[tuple[str, list[str], str | None]] = []

    def __init__(self, state: Path) -> None:
        self.log_dir = state / "logs"

    def start(self, name: str, argv: list[str], *, netns: str | None = None,
              **_: Any) -> None:
        self.started.append((name, argv, netns))


def test_starting_dnsmasq_writes_its_files_where_apparmor_lets_it_and_down_removes_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run" / "dnsmasq"  # absent, as on a host with no dnsmasq
    monkeypatch.setattr(resolvers, "DNSMASQ_DIR", run_dir)
    monkeypatch.setattr(resolvers, "Processes", _Started)
    monkeypatch.setattr(_Started, "started", [])
    state = tmp_path / "state"
    resolvers.start(state, "dnsmasq", "198.18.0.55")
    conf = run_dir / "gameday-lab.conf"
    assert "listen-address=198.18.0.55" in conf.read_text().splitlines()
    assert (state / "logs" / "dnsmasq.log").resolve() == run_dir / "gameday-lab.log"
    assert _Started.started == [("dnsmasq", ["dnsmasq", "--keep-in-foreground",
                                             f"--conf-file={conf}"], topo.DNS.name)]
    # the directory was made by the lab, so `down` removes it with the files
    assert sorted(resolvers.remove_files(state)) == sorted(
        [str(conf), str(run_dir / "gameday-lab.log"), str(run_dir)])
    assert not run_dir.exists()


def test_down_leaves_a_dnsmasq_directory_the_lab_did_not_make(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "dnsmasq"
    run_dir.mkdir()  # a system dnsmasq's
    monkeypatch.setattr(resolvers, "DNSMASQ_DIR", run_dir)
    monkeypatch.setattr(resolvers, "Processes", _Started)
    monkeypatch.setattr(_Started, "started", [])
    resolvers.start(tmp_path / "state", "dnsmasq", "198.18.0.55")
    assert len(resolvers.remove_files(tmp_path / "state")) == 2
    assert run_dir.is_dir() and not any(run_dir.iterdir())


def test_starting_the_recursor_keeps_its_files_in_the_state_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolvers, "Processes", _Started)
    monkeypatch.setattr(_Started, "started", [])
    resolvers.start(tmp_path, "pdns-recursor", "198.18.0.56")
    directory = tmp_path / "dns" / "recursor"
    assert "local-address=198.18.0.56" in (directory / "recursor.conf").read_text()
    assert f'addNTA("{topo.ZONE}"' in (directory / "recursor.lua").read_text()
    assert _Started.started == [("pdns-recursor",
                                 ["pdns_recursor", f"--config-dir={directory}"],
                                 topo.DNS.name)]
    with pytest.raises(ValueError, match="bind9"):
        resolvers.start(tmp_path, "bind9", "198.18.0.57")


def test_a_region_s_storefronts_are_every_instance_of_its_profile(tmp_path: Path) -> None:
    assert netns.storefront_names(tmp_path, "region-1") == ["storefront-region-1"]
    dnsprofile.save(tmp_path, DnsProfile(region_addresses=3))
    assert netns.storefront_names(tmp_path, "region-2") == [
        "storefront-region-2", "storefront-region-2-2", "storefront-region-2-3"]


# -- --db-hostnames: each region's database by a name of the lab's zone ---------------------


def _zone_records(text: str) -> dict[tuple[str, str], set[str]]:
    import dns.rdatatype
    import dns.zone

    zone = dns.zone.from_text(text, relativize=False)
    return {(str(name).rstrip("."), dns.rdatatype.to_text(rdataset.rdtype)):
            {r.to_text() for r in rdataset} for name, rdataset in zone.iterate_rdatasets()}


def test_the_gate_s_zone_names_each_database_where_it_listens(tmp_path: Path) -> None:
    from gameday.labs.netns import healthgate

    profile = DnsProfile(region_addresses=2, cname=True, ipv6=True, db_hostnames=True)
    config = dnsprofile.gate_config(tmp_path, profile, ttl_s=1, interval_s=1,
                                    database_ipv6=True)
    for active in ("region-1", "region-2"):  # the gate's flip leaves them as they are
        records = _zone_records(healthgate.render_zone(config, active=active, serial=2))
        db = {k: v for k, v in records.items() if k[0].startswith("db.")}
        # the database's own address only: not the region's other storefront addresses
        assert db == {("db.region-1.gameday.test", "A"): {"198.18.0.11"},
                      ("db.region-1.gameday.test", "AAAA"): {"2001:2::11"},
                      ("db.region-2.gameday.test", "A"): {"198.18.0.12"},
                      ("db.region-2.gameday.test", "AAAA"): {"2001:2::12"}}, db
    # Patroni's PostgreSQL listens on 0.0.0.0: no AAAA that would not answer
    ha = dnsprofile.gate_config(tmp_path, profile, ttl_s=1, interval_s=1, database_ipv6=False)
    records = _zone_records(healthgate.render_zone(ha, active="region-1", serial=1))
    assert {k for k in records if k[0].startswith("db.")} == {
        ("db.region-1.gameday.test", "A"), ("db.region-2.gameday.test", "A")}
    # without the flag, no such names
    plain = dnsprofile.gate_config(tmp_path, DnsProfile(cname=True, ipv6=True), ttl_s=1,
                                   interval_s=1, database_ipv6=True)
    records = _zone_records(healthgate.render_zone(plain, active="region-1", serial=1))
    assert not [k for k in records if k[0].startswith("db.")]


def test_the_ifurlup_zone_names_each_database_too() -> None:
    from gameday.labs.netns import configs

    records = Plan(profile=DnsProfile(db_hostnames=True)).db_records(ipv6=False)
    assert records == ["db.region-1 IN A 198.18.0.11", "db.region-2 IN A 198.18.0.12"]
    zone = configs.zone(ttl_s=1, extra=records)
    assert "\ndb.region-1 IN A 198.18.0.11\n" in zone and "$ORIGIN gameday.test." in zone
    assert "db." not in configs.zone(ttl_s=1)
    assert Plan(profile=DnsProfile()).db_records(ipv6=True) == []


def _written(tmp_path: Path, options: netns.LabOptions) -> descriptor.Lab:
    path = netns._write_descriptor(tmp_path, options, "secret", None)
    descriptor.validate(json.loads(path.read_text()))
    return descriptor.load(path)


def test_the_descriptor_names_each_database_and_gives_no_addresses(tmp_path: Path) -> None:
    """Attribution then goes through resolving db_host (Lab.database_identities): no
    db_addresses to fall back on."""
    lab = _written(tmp_path, netns.LabOptions(dns=DnsProfile(db_hostnames=True, ipv6=True)))
    assert [(r.db_host, r.db_addresses, r.address) for r in lab.regions] == [
        ("db.region-1.gameday.test", (), "198.18.0.11"),
        ("db.region-2.gameday.test", (), "198.18.0.12")]
    assert lab.writer_params()["host"] == "db.region-1.gameday.test,db.region-2.gameday.test"
    # the storefronts and the global name stay as they were
    assert lab.regions[0].storefront_url == "http://198.18.0.11:8080"
    plain = _written(tmp_path, netns.LabOptions())
    assert [r.db_host for r in plain.regions] == ["198.18.0.11", "198.18.0.12"]


def test_the_lab_s_resolv_conf_names_its_resolver_only() -> None:
    lines = [line for line in netns.resolv_conf().splitlines()
             if line and not line.startswith("#")]
    assert lines == [f"nameserver {topo.RESOLVER}", "options timeout:1 attempts:2"]


def test_pg_hba_lets_the_lab_s_ipv6_range_in() -> None:
    from gameday.labs.netns import configs

    assert "host all all 2001:2::/48 scram-sha-256" in configs.pg_hba().splitlines()
