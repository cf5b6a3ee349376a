"""Which region a DNS answer is (issue 19): a region is a set of endpoints, not an address.

A region behind a load balancer answers with several addresses that change over time, IPv4
and IPv6, often through a CNAME chain (a Route 53 failover record aliasing an ALB's
`*.eu-west-1.elb.amazonaws.com`). The descriptor's `dns.endpoints` names each region's
addresses, CIDRs and CNAME targets (an exact name, or a suffix starting with a dot); a
region without an entry is its `address`.

`classify` is the one rule, for the readiness gate's DNS check and for the flip instant
alike: an answer is region X only when its whole final answer set belongs to X. An answer
that is partly X and partly something else is `MIXED`; one that no region claims, or that
two regions claim alike, is `UNKNOWN`. Neither is ever forced into a region: a flip judged
on half an answer would be a flip users did not see.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MIXED = "mixed"
UNKNOWN = "unknown"
NOT_REGIONS = (MIXED, UNKNOWN)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _name(text: str) -> str:
    return text.strip().rstrip(".").lower()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Endpoints:
    """What one region's answers are made of."""

    addresses: frozenset[Address] = frozenset()
    networks: tuple[Network, ...] = ()
    names: frozenset[str] = frozenset()  # CNAME targets, exactly
    suffixes: tuple[str, ...] = ()  # CNAME targets by suffix, each starting with a dot

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, where: str = "endpoints") -> Endpoints:
        """`{"addresses": [...], "cidrs": [...], "cnames": [...]}` as the descriptor gives
        it; ValueError naming the entry that is not an address, a network or a name."""
        addresses: set[Address] = set()
        networks: list[Network] = []
        for text in raw.get("addresses", ()):
            try:
                addresses.add(ipaddress.ip_address(str(text).strip()))
            except ValueError:
                raise ValueError(f"{where}.addresses: {text!r} is not an IPv4 or IPv6 "
                                 "address (a host name goes in cnames)") from None
        for text in raw.get("cidrs", ()):
            try:
                networks.append(ipaddress.ip_network(str(text).strip(), strict=False))
            except ValueError:
                raise ValueError(f"{where}.cidrs: {text!r} is not a network such as "
                                 "198.18.0.0/24 or 2001:2::/64") from None
        names, suffixes = set(), []
        for text in raw.get("cnames", ()):
            name = _name(str(text))
            if not name.strip("."):
                raise ValueError(f"{where}.cnames: {text!r} is not a name")
            if name.startswith("."):
                suffixes.append(name)
            else:
                names.add(name)
        return cls(addresses=frozenset(addresses), networks=tuple(networks),
                   names=frozenset(names), suffixes=tuple(suffixes))

    @classmethod
    def of_address(cls, address: str) -> Endpoints:
        """A region known only by its `address` (descriptors without `dns.endpoints`): an
        IP address, or a host name, which the global name's answer is a CNAME to."""
        try:
            return cls(addresses=frozenset({ipaddress.ip_address(address.strip())}))
        except ValueError:
            return cls.parse({"cnames": [address]})

    def to_dict(self) -> dict[str, list[str]]:
        """The descriptor's form, sorted: what a run records of the region."""
        return {"addresses": sorted(str(a) for a in self.addresses),
                "cidrs": [str(n) for n in self.networks],
                "cnames": sorted(self.names) + list(self.suffixes)}

    def holds(self, address: Address) -> bool:
        return address in self.addresses or any(address in n for n in self.networks)

    def names_it(self, name: str) -> bool:
        name = _name(name)
        return name in self.names or any(name.endswith(s) for s in self.suffixes)


def classify(addresses: Iterable[str], chain: Sequence[str],
             regions: Mapping[str, Endpoints]) -> str:
    """The region an answer is, or MIXED or UNKNOWN.

    `addresses` are the final answer's A and AAAA records, `chain` the CNAME targets it went
    through. Each address belongs to the regions whose addresses or CIDRs hold it; one no
    region holds belongs to the regions a name of the chain is a CNAME target of (an ALB's
    addresses are not known in advance, its name is). The chain, when it names regions,
    must name the same one. The answer is X when X is the one region every address belongs
    to; MIXED when its addresses belong to different regions (or some to none); UNKNOWN
    when none belongs anywhere, when two regions claim all of it alike, or when it is empty.
    """
    by_chain = {r for r, e in regions.items() if any(e.names_it(n) for n in chain)}
    owners: list[set[str]] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            owners.append(set())
            continue
        held = {r for r, e in regions.items() if e.holds(address)}
        owners.append(held or set(by_chain))
    if not owners:
        return UNKNOWN
    common = set.intersection(*owners)
    if by_chain and common:
        common &= by_chain
    if len(common) == 1:
        return common.pop()
    if common:
        return UNKNOWN  # claimed alike by several regions: the descriptor cannot tell
    return MIXED if any(owners) else UNKNOWN


def owner(address: str, regions: Mapping[str, Endpoints]) -> str | None:
    """The one region whose addresses or CIDRs hold `address`; None when none does, when
    two do alike, or when it is not an address (never a guess)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    held = [r for r, e in regions.items() if e.holds(ip)]
    return held[0] if len(held) == 1 else None
