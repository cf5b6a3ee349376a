from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gameday.foundation import descriptor
from gameday.foundation.errors import ConfigError, LabError

GOOD = {
    "schema": "gameday.lab/v1",
    "lab": "netns",
    "state_dir": "/tmp/x",
    "regions": [
        {"name": "region-1", "role": "primary", "driver": "netns", "netns": "gd-region-1",
         "address": "198.18.0.11", "storefront_url": "http://198.18.0.11:8080",
         "db_host": "198.18.0.11"},
        {"name": "region-2", "role": "secondary", "driver": "netns", "netns": "gd-region-2",
         "address": "198.18.0.12", "storefront_url": "http://198.18.0.12:8080",
         "db_host": "198.18.0.12"},
    ],
    "dns": {"name": "shop.gameday.test", "authoritative": {"address": "198.18.0.53"},
            "resolver": {"address": "198.18.0.54"}},
    "database": {"name": "storefront", "user": "gameday", "password": "s3cret", "port": 5432},
}


def test_good_descriptor_loads(tmp_path: Path) -> None:
    p = tmp_path / "lab.json"
    p.write_text(json.dumps(GOOD))
    lab = descriptor.load(p)
    assert lab.primary.name == "region-1" and lab.secondary.address == "198.18.0.12"
    params = lab.writer_params()
    assert params["host"] == "198.18.0.11,198.18.0.12" and params["port"] == "5432,5432"
    assert params["target_session_attrs"] == "read-write"
    assert "s3cret" not in repr(lab)


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d["regions"][0].pop("netns"), "regions/0"),
    (lambda d: d["dns"]["resolver"].update(port=70000), "dns/resolver/port"),
    (lambda d: d["database"].update(port="5432"), "database/port"),
    (lambda d: d["regions"][1].update(driver="docker"), "regions/1/driver"),
])
def test_bad_descriptor_names_the_field(tmp_path: Path, mutate, field: str) -> None:
    data = copy.deepcopy(GOOD)
    mutate(data)
    p = tmp_path / "lab.json"
    p.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=f"field '{field}'"):
        descriptor.load(p)


def test_two_primaries_are_refused() -> None:
    data = copy.deepcopy(GOOD)
    data["regions"][1]["role"] = "primary"
    with pytest.raises(ConfigError, match="one 'primary' and one 'secondary'"):
        descriptor.from_dict(data)


def test_missing_descriptor_says_to_bring_the_lab_up(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="gameday lab up"):
        descriptor.load(tmp_path / "nope.json")


def test_malformed_json_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "lab.json"
    p.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        descriptor.load(p)
