"""The production-shaped DNS profile of the netns lab (`lab up --region-addresses N --cname
--ipv6 --health-failures F --health-timeout S --resolvers ...`), issue 19.

A production edge is not one address per region: an ALB answers on several addresses that
change, a Route 53 failover record is often a CNAME or an alias to a per-region name, AAAA
records come along, health checks run every 30 s and need 3 failures in a row, and users sit
behind many resolvers. This module holds what the profile asks for (`DnsProfile`), where its
addresses are (`Plan`: all from 198.18.0.0/15 and 2001:2::/48, the benchmarking ranges), and
how to read a DNS answer with its CNAME chain (`resolve`), which `lab up` and the tests use to
see what the authority and each resolver say.

Without any of those flags the lab is exactly the one it always was: PowerDNS `ifurlup` with
one address per region. With one of --region-addresses, --cname, --ipv6, --health-failures or
--health-timeout, the global name is served by the health-check gate (healthgate.py), because
`ifurlup` cannot express a failure threshold in the PowerDNS the lab runs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

from gameday.foundation.errors import ConfigError
from gameday.labs.netns import healthgate
from gameday.labs.netns import topology as topo
from gameday.labs.netns.resolvers import RESOLVER_TTLS

MAX_REGION_ADDRESSES = 8  # Route 53 answers at most 8 addresses of a multivalue set
RESOLVER_KINDS = ("unbound", "dnsmasq", "pdns-recursor")
# unbound is the lab's resolver (topology.RESOLVER) in every profile; the others get their
# own address in the DNS namespace when --resolvers names them
RESOLVER_ADDRESSES = {"unbound": topo.RESOLVER, "dnsmasq": "198.18.0.55",
                      "pdns-recursor": "198.18.0.56"}
PREFIX6 = 64
BRIDGE_ADDRESS6 = "2001:2::1"
DNS_ADDRESS6 = "2001:2::53"  # the gate checks the regions' IPv6 addresses from here
PROFILE_FILE = "dns/profile.json"  # under the state directory: what `lab up` was asked for
HEALTH_PATH = "/healthz"


@dataclasses.dataclass(frozen=True, kw_only=True)
class DnsProfile:
    """What `lab up` was asked for on the DNS side. The defaults are the lab as it was."""

    region_addresses: int = 1
    cname: bool = False
    ipv6: bool = False
    health_failures: int | None = None  # None: PowerDNS ifurlup (one failure flips)
    health_timeout_s: float | None = None  # None: 1 s, as ifurlup's timeout in the zone
    resolvers: tuple[str, ...] = ()
    # each region's database behind a name of the lab's zone (db.region-1.gameday.test), the
    # descriptor's db_host, so that a drill reaches and attributes it through DNS
    db_hostnames: bool = False

    def check(self, *, health_interval_s: float) -> None:
        if not 1 <= self.region_addresses <= MAX_REGION_ADDRESSES:
            raise ConfigError(f"--region-addresses must be from 1 to {MAX_REGION_ADDRESSES}, "
                              f"got {self.region_addresses}")
        if self.health_failures is not None and not 1 <= self.health_failures <= 10:
            raise ConfigError("--health-failures must be from 1 to 10 (Route 53's failure "
                              f"threshold), got {self.health_failures}")
        if self.health_timeout_s is not None and \
                not 0 < self.health_timeout_s <= health_interval_s:
            raise ConfigError(f"--health-timeout must be more than 0 and at most the health "
                              f"interval ({health_interval_s:g} s), got "
                              f"{self.health_timeout_s:g}")
        unknown = [r for r in self.resolvers if r not in RESOLVER_KINDS]
        if unknown:
            raise ConfigError(f"--resolvers: unknown resolver {unknown[0]!r}: choose from "
                              f"{', '.join(RESOLVER_KINDS)} (comma-separated)")
        if len(set(self.resolvers)) != len(self.resolvers):
            raise ConfigError("--resolvers names a resolver twice: give each once")

    @property
    def gated(self) -> bool:
        """The health-check gate serves the global name (healthgate.py says why)."""
        return (self.region_addresses > 1 or self.cname or self.ipv6
                or self.health_failures is not None or self.health_timeout_s is not None)

    @property
    def failures(self) -> int:
        return self.health_failures or 1

    @property
    def timeout_s(self) -> float:
        return self.health_timeout_s if self.health_timeout_s is not None else 1.0

    @property
    def extra_resolvers(self) -> tuple[str, ...]:
        """The resolvers `lab up` starts besides unbound, which always runs."""
        return tuple(r for r in self.resolvers if r != "unbound")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["resolvers"] = list(self.resolvers)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DnsProfile:
        return cls(**{**data, "resolvers": tuple(data.get("resolvers", ()))})


def parse_resolvers(text: str | None) -> tuple[str, ...]:
    """`unbound,dnsmasq,pdns-recursor` as given on the command line."""
    if not text:
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclasses.dataclass(frozen=True, kw_only=True)
class Instance:
    """One storefront process of a region and the addresses it listens on."""

    region: str
    name: str  # its name in the lab's process table
    hosts: tuple[str, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """Where everything of the profile lives. The first address of each region is the one
    the lab always had, so the descriptor's `address`, `db_host` (unless --db-hostnames
    names it) and `storefront_url` stay."""

    profile: DnsProfile

    def ipv4(self, region: str) -> list[str]:
        first = topo.address(region)
        number = 1 if region == "region-1" else 2
        return [first] + [f"198.18.0.{100 * number + i}"
                          for i in range(1, self.profile.region_addresses)]

    def ipv6(self, region: str) -> list[str]:
        """2001:2::11 beside 198.18.0.11, 2001:2::101 beside 198.18.0.101: the last octet's
        digits, read as hex, so one can tell which instance an address is."""
        if not self.profile.ipv6:
            return []
        return [f"2001:2::{v4.rsplit('.', 1)[1]}" for v4 in self.ipv4(region)]

    def addresses(self, region: str) -> list[str]:
        return self.ipv4(region) + self.ipv6(region)

    def cname(self, region: str) -> str | None:
        """The per-region name the global name is a CNAME to (a load balancer's name)."""
        return f"{region}.{topo.GLOBAL_NAME}" if self.profile.cname else None

    def db_name(self, region: str) -> str | None:
        """The name of the region's database in the lab's zone, with --db-hostnames."""
        return f"db.{region}.{topo.ZONE}" if self.profile.db_hostnames else None

    def db_host(self, region: str) -> str:
        """The descriptor's db_host: the database's name, or its address as always."""
        return self.db_name(region) or topo.address(region)

    def db_addresses(self, region: str, *, ipv6: bool) -> list[str]:
        """Where the region's database accepts connections: the region's first address, and
        with --ipv6 its IPv6 twin when the database listens on IPv6 (`ipv6`: the scripted
        lab's PostgreSQL listens on '*'; Patroni's on 0.0.0.0 only)."""
        return [topo.address(region), *(self.ipv6(region)[:1] if ipv6 else [])]

    def db_records(self, *, ipv6: bool) -> list[str]:
        """The zone's records of the database names (none without --db-hostnames): A, and
        AAAA only where the database really listens (db_addresses)."""
        records = []
        for region in topo.REGIONS:
            name = self.db_name(region)
            if name is None:
                continue
            owner = name.removesuffix(f".{topo.ZONE}")
            records += [f"{owner} IN {'AAAA' if ':' in a else 'A'} {a}"
                        for a in self.db_addresses(region, ipv6=ipv6)]
        return records

    def instances(self, region: str) -> list[Instance]:
        """The region's storefronts: `storefront-region-1` as always, then
        `storefront-region-1-2` and so on, each on its own IPv4 (and IPv6) address."""
        v4, v6 = self.ipv4(region), self.ipv6(region)
        found = []
        for i, address in enumerate(v4):
            name = f"storefront-{region}" if i == 0 else f"storefront-{region}-{i + 1}"
            hosts = (address, v6[i]) if v6 else (address,)
            found.append(Instance(region=region, name=name, hosts=hosts))
        return found

    def namespace_addresses(self) -> dict[str, list[str]]:
        """Addresses to add beyond topology's, per namespace, as `address/prefix`."""
        extra: dict[str, list[str]] = {}
        for region, ns in topo.REGIONS.items():
            extra[ns.name] = [f"{a}/{topo.PREFIX}" for a in self.ipv4(region)[1:]]
            extra[ns.name] += [f"{a}/{PREFIX6}" for a in self.ipv6(region)]
        extra[topo.DNS.name] = [f"{RESOLVER_ADDRESSES[r]}/{topo.PREFIX}"
                                for r in self.profile.extra_resolvers]
        if self.profile.ipv6:
            extra[topo.DNS.name].append(f"{DNS_ADDRESS6}/{PREFIX6}")
        return {ns: addresses for ns, addresses in extra.items() if addresses}

    def every_address(self) -> list[str]:
        """Every address the profile adds or uses: each must be in the benchmarking ranges."""
        found = [a for region in topo.REGIONS for a in self.addresses(region)]
        found += [RESOLVER_ADDRESSES[r] for r in self.profile.resolvers]
        if self.profile.ipv6:
            found += [DNS_ADDRESS6, BRIDGE_ADDRESS6]
        return found


LAB_RANGES = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48"))


def in_lab_ranges(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == net.version and ip in net for net in LAB_RANGES)


# -- what `lab up` recorded ------------------------------------------------------------------


def save(state: Path, profile: DnsProfile) -> None:
    path = state / PROFILE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(profile.to_dict()))
    os.replace(tmp, path)


def load(state: Path) -> DnsProfile:
    """The profile the lab at `state` was brought up with (the default one for a lab made
    before the profile existed, which is what it then is)."""
    try:
        data = json.loads((state / PROFILE_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return DnsProfile()
    return DnsProfile.from_dict(data) if isinstance(data, dict) else DnsProfile()


# -- the health-check gate's configuration --------------------------------------------------

GATE_CONFIG_FILE = "dns/healthgate.json"
GATE_STATUS_FILE = "dns/healthgate-status.json"


def gate_config(state: Path, profile: DnsProfile, *, ttl_s: float, interval_s: float,
                database_ipv6: bool) -> healthgate.GateConfig:
    """The gate's configuration for the lab at `state` (`database_ipv6`: see
    Plan.db_addresses)."""
    plan = Plan(profile=profile)
    return healthgate.GateConfig(
        zone=topo.ZONE, name=topo.GLOBAL_NAME, ttl_s=max(0, round(ttl_s)),
        interval_s=interval_s, failures=profile.failures, timeout_s=profile.timeout_s,
        port=topo.STOREFRONT_PORT, path=HEALTH_PATH, match="ok",
        regions={region: plan.addresses(region) for region in topo.REGIONS},
        cname=profile.cname,
        static_records=[f"ns1 IN A {topo.AUTHORITATIVE}", f"resolver IN A {topo.RESOLVER}",
                        *(f"{region} IN A {topo.address(region)}" for region in topo.REGIONS),
                        *plan.db_records(ipv6=database_ipv6)],
        authority=f"ns1.{topo.ZONE}",
        zone_file=str(state / "dns" / f"{topo.ZONE}.zone"),
        pdns_config_dir=str(state / "dns"),
        status_file=str(state / GATE_STATUS_FILE),
    )


# -- the descriptor's extra fields -----------------------------------------------------------


def descriptor_fields(profile: DnsProfile, *, health_interval_s: float) -> dict[str, Any]:
    """The `dns` block's fields that say what the DNS side is made of (docs/design.md, The
    netns lab): each region's endpoints, the health checks, and the resolvers named."""
    plan = Plan(profile=profile)
    fields: dict[str, Any] = {
        "health": {
            "checker": "healthgate" if profile.gated else "ifurlup",
            "interval_s": health_interval_s,
            "failures": profile.failures,
            "timeout_s": profile.timeout_s,
            "path": HEALTH_PATH,
            "port": topo.STOREFRONT_PORT,
        },
        "endpoints": {
            region: {"addresses": plan.addresses(region),
                     "cnames": [c for c in [plan.cname(region)] if c]}
            for region in topo.REGIONS
        },
    }
    if profile.resolvers:
        # every resolver the lab runs: unbound (the `resolver` above) and those named
        kinds = ["unbound", *profile.extra_resolvers]
        fields["resolvers"] = [{"name": kind, "kind": kind,
                                "address": RESOLVER_ADDRESSES[kind], "port": 53,
                                **RESOLVER_TTLS[kind]}
                               for kind in kinds]
    return fields


# -- reading an answer -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Answer:
    """A DNS answer as a client sees it: the CNAME chain followed, then the addresses."""

    rcode: str
    chain: tuple[str, ...]  # CNAME targets in order, without the trailing dot
    addresses: frozenset[str]
    ttl: int | None  # the smallest TTL in the answer


def resolve(server: str, name: str, rdtype: str, *, timeout: float = 1.0,
            ad: bool = False) -> Answer:
    """Ask `server` once over UDP (`ad`: with the AD bit, as `dig` asks). Raises OSError or a
    dnspython error when no answer comes."""
    import dns.flags
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    flags = dns.flags.RD | (dns.flags.AD if ad else 0)
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype), flags=flags)
    response = dns.query.udp(query, server, timeout=timeout)
    chain: list[str] = []
    addresses: set[str] = set()
    ttls: list[int] = []
    for rrset in response.answer:
        ttls.append(rrset.ttl)
        for rdata in rrset:
            if rrset.rdtype == dns.rdatatype.CNAME:
                chain.append(str(rdata.target).rstrip("."))
            elif rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                addresses.add(rdata.address)
    return Answer(rcode=dns.rcode.to_text(response.rcode()), chain=tuple(chain),
                  addresses=frozenset(addresses), ttl=min(ttls) if ttls else None)
