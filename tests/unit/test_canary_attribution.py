"""The canary attributes each acknowledged write to a region by the server's own identity
(issue 19): the address the server answers inet_server_addr() with, among each region's
database addresses (`db_addresses`, or what `db_host` resolves to), not the address the
client dialled. With host names, or behind a proxy such as PgBouncer, the dialled address
is not the server's. The real lab checks it end to end (tests/integration/test_canary.py,
through a TCP proxy and a host name)."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from gameday.foundation import descriptor
from gameday.foundation.endpoints import Endpoints, owner
from gameday.foundation.errors import ConfigError
from gameday.measure.canary import Attribution
from tests.unit import fakes

IDENTITIES = {"region-1": Endpoints.parse({"addresses": ["198.18.0.11", "2001:2::11"]}),
              "region-2": Endpoints.parse({"cidrs": ["198.18.2.0/24"]})}


@pytest.mark.parametrize(("address", "region"), [
    ("198.18.0.11", "region-1"), ("2001:2::11", "region-1"), ("198.18.2.40", "region-2"),
    ("198.18.0.12", None), ("not-an-address", None), ("", None)])
def test_the_owner_of_an_address_is_the_one_region_holding_it(address: str,
                                                              region: str | None) -> None:
    assert owner(address, IDENTITIES) == region


def test_an_address_two_regions_hold_belongs_to_neither() -> None:
    both = {**IDENTITIES, "region-3": Endpoints.parse({"addresses": ["198.18.0.11"]})}
    assert owner("198.18.0.11", both) is None


def test_a_write_is_recorded_as_its_servers_region_not_as_the_address_dialled() -> None:
    attribute = Attribution(IDENTITIES, {"region-1": "db.region-1.example",
                                         "region-2": "db.region-2.example"})
    # behind a proxy: the client dialled the proxy, the server says who it is
    assert attribute("198.18.2.40", dialled="10.0.0.5") == "db.region-2.example"
    assert attribute("2001:2::11", dialled="10.0.0.5") == "db.region-1.example"
    # a server no region lists: recorded as it is, so no region gets the write by guess
    assert attribute("203.0.113.9", dialled="198.18.0.11") == "203.0.113.9"
    # over a Unix socket the server has no address: the dialled one (none) stays
    assert attribute(None, dialled="") == ""


def lab_data(**regions: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(fakes.descriptor_dict())
    for r in data["regions"]:
        r.update(regions.get(r["name"].replace("-", "_"), {}))
    return data


def test_each_regions_database_is_its_db_addresses_or_what_db_host_resolves_to() -> None:
    lab = descriptor.from_dict(lab_data(
        region_1={"db_host": "localhost"},
        region_2={"db_host": "pgbouncer.invalid", "db_addresses": ["198.18.0.12",
                                                                   "198.18.2.0/24"]}))
    found = lab.database_identities()
    assert found["region-1"].holds(ipaddress.ip_address("127.0.0.1"))
    assert found["region-2"] == Endpoints.parse({"addresses": ["198.18.0.12"],
                                                 "cidrs": ["198.18.2.0/24"]})
    attribute = Attribution.of(lab)
    assert attribute("127.0.0.1", dialled="127.0.0.1") == "localhost"
    assert attribute("198.18.2.7", dialled="10.0.0.5") == "pgbouncer.invalid"
    # a name that does not resolve gives the region no address: nothing attributed to it
    unresolved = descriptor.from_dict(lab_data(region_2={"db_host": "db.invalid"}))
    assert unresolved.database_identities()["region-2"] == Endpoints()
    assert Attribution.of(unresolved)("198.18.0.12", dialled=None) == "198.18.0.12"


def test_a_bad_db_address_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"region-2.db_addresses.addresses: 'pg-1' is not an "
                                          r"IPv4 or IPv6 address"):
        descriptor.from_dict(lab_data(region_2={"db_addresses": ["pg-1"]}))
