"""Fixed names and addresses of the netns lab (docs/design.md, The netns lab).

Addresses come from 198.18.0.0/15, the benchmarking range, so nothing the lab sends can
reach a real network; namespaces get no default route.
"""

from __future__ import annotations

import dataclasses

BRIDGE = "gd-br0"
BRIDGE_ADDRESS = "198.18.0.1"
PREFIX = 24
ZONE = "gameday.test"
GLOBAL_NAME = f"shop.{ZONE}"
DB_NAME = "storefront"
DB_USER = "gameday"
DB_PORT = 5432
STOREFRONT_PORT = 8080
PROXY_PORT = 15432  # inside each region: the delayed path to the other region's database
NFT_TABLE = "gameday"
# the autonomous-HA profile (`lab up --ha patroni`)
ETCD_PORT = 2379
ETCD_PROXY_PORT = 12379  # inside each region: the delayed path to the witness's etcd
PATRONI_PORT = 8008
PATRONI_SCOPE = "gameday"
PATRONI_NAMESPACE = "/service/"
# the Redis profile (`lab up --store redis-sentinel`)
REDIS_PORT = 6379
SENTINEL_PORT = 26379
REDIS_MASTER_NAME = "gameday"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Namespace:
    name: str  # the network namespace
    veth: str  # host side of the veth pair (<= 15 characters)
    addresses: tuple[str, ...]


REGION_1 = Namespace(name="gd-region-1", veth="gdv-region-1", addresses=("198.18.0.11",))
REGION_2 = Namespace(name="gd-region-2", veth="gdv-region-2", addresses=("198.18.0.12",))
DNS = Namespace(name="gd-dns", veth="gdv-dns", addresses=("198.18.0.53", "198.18.0.54"))
# a third site for the HA manager's DCS (a single-member etcd): without it, either region
# could lose the quorum along with the other
WITNESS = Namespace(name="gd-witness", veth="gdv-witness", addresses=("198.18.0.30",))
NAMESPACES = (REGION_1, REGION_2, DNS, WITNESS)  # every name `lab down` removes
BASE_NAMESPACES = (REGION_1, REGION_2, DNS)  # what `lab up` builds without --ha
AUTHORITATIVE = "198.18.0.53"
RESOLVER = "198.18.0.54"

REGIONS = {"region-1": REGION_1, "region-2": REGION_2}


def other_region(name: str) -> str:
    return "region-2" if name == "region-1" else "region-1"


def address(region: str) -> str:
    return REGIONS[region].addresses[0]
