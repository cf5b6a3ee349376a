"""The netns lab's Redis profile without a lab: its configuration files, its options (bad
ones refused in one line before anything starts), its descriptor block against the
schema, and the installed packages' AppArmor profiles (none). The real Redis and
Sentinels run in tests/integration/test_app_canary_lab.py."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import pytest
from click.testing import CliRunner

from gameday import cli
from gameday.foundation import descriptor
from gameday.foundation.errors import ConfigError, LabError
from gameday.labs.netns import dnsprofile, redis_sentinel
from gameday.labs.netns import lab as netns_lab
from tests.unit.test_descriptor import GOOD


def profile(durability: str = "async") -> redis_sentinel.Profile:
    return redis_sentinel.Profile(root="/var/tmp/gameday-redis-x", password="pw-1_A",
                                  sentinel_password="pw-2_B", durability=durability)


def conf_lines(text: str) -> dict[str, str]:
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in text.splitlines()
            if line and not line.startswith("#")}


@pytest.mark.parametrize(("durability", "min_replicas"), [("async", "0"), ("wait", "1")])
def test_redis_persists_every_write_and_refuses_without_a_replica_under_wait(
        durability: str, min_replicas: str) -> None:
    conf = conf_lines(redis_sentinel.redis_conf(profile(durability), "region-2",
                                                replicaof="198.18.0.11", data_dir="/d"))
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "always"
    assert conf["min-replicas-to-write"] == min_replicas
    assert conf["replicaof"] == "198.18.0.11 6379"
    assert conf["requirepass"] == conf["masterauth"] == "pw-1_A"
    assert conf["bind"] == "198.18.0.12 127.0.0.1"
    master = redis_sentinel.redis_conf(profile(), "region-1", replicaof=None, data_dir="/d")
    assert "replicaof" not in conf_lines(master)


def test_the_sentinels_watch_region_1_with_quorum_2() -> None:
    text = redis_sentinel.sentinel_conf(profile(), "witness", "/d/sentinel-witness")
    assert "sentinel monitor gameday 198.18.0.11 6379 2" in text.splitlines()
    assert "bind 198.18.0.30 127.0.0.1" in text.splitlines()
    assert "sentinel auth-pass gameday pw-1_A" in text.splitlines()
    assert "requirepass pw-2_B" in text.splitlines()


def test_a_password_that_would_need_quoting_is_refused() -> None:
    bad = redis_sentinel.Profile(root="/r", password="a b", sentinel_password="x")
    with pytest.raises(LabError, match="letters, digits"):
        redis_sentinel.redis_conf(bad, "region-1", replicaof=None, data_dir="/d")


@pytest.mark.parametrize(("argv", "says"), [
    (["--store", "redis-sentinel", "--replication", "async"],
     "--replication applies to --store postgresql"),
    (["--store", "redis-sentinel", "--delay-ms", "5"], "--delay-ms applies to"),
    (["--store", "redis-sentinel", "--ha", "patroni"], "--ha applies to"),
    (["--redis-durability", "wait"], "--redis-durability applies to --store redis-sentinel"),
    (["--sentinel-down-after-ms", "500"], "applies to --store redis-sentinel"),
    (["--store", "redis"], "Invalid value for '--store'"),
    (["--store", "redis-sentinel", "--redis-durability", "sync"],
     "Invalid value for '--redis-durability'"),
    (["--store", "redis-sentinel", "--sentinel-down-after-ms", "50"],
     "Invalid value for '--sentinel-down-after-ms'"),
])
def test_lab_up_refuses_an_option_of_the_other_store_and_starts_nothing(
        argv: list[str], says: str) -> None:
    with mock.patch.object(netns_lab, "up") as up:
        result = CliRunner().invoke(cli.main, ["lab", "up", *argv])
    assert result.exit_code == 2, result.output
    assert says in result.output
    up.assert_not_called()


def test_lab_up_passes_the_redis_options() -> None:
    with mock.patch.object(netns_lab, "up", return_value=Path("/x/lab.json")) as up:
        result = CliRunner().invoke(cli.main, [
            "lab", "up", "--store", "redis-sentinel", "--redis-durability", "wait",
            "--sentinel-down-after-ms", "1500"])
    assert result.exit_code == 0, result.output
    options = up.call_args.args[0]
    assert options.store == "redis-sentinel" and options.redis_store
    assert options.redis == redis_sentinel.RedisOptions(durability="wait", down_after_ms=1500)


def test_the_default_lab_up_is_postgresql() -> None:
    with mock.patch.object(netns_lab, "up", return_value=Path("/x/lab.json")) as up:
        assert CliRunner().invoke(cli.main, ["lab", "up"]).exit_code == 0
    assert up.call_args.args[0] == netns_lab.LabOptions()
    assert netns_lab.LabOptions().store == "postgresql"


@pytest.mark.parametrize(("options", "says"), [
    (netns_lab.LabOptions(store="redis"), "--store must be one of"),
    (netns_lab.LabOptions(store="redis-sentinel", ha="patroni"), "Sentinels fail over"),
    (netns_lab.LabOptions(store="redis-sentinel",
                          redis=redis_sentinel.RedisOptions(durability="sync")),
     "async or wait"),
    # one storefront per region on its first address: the DNS profile's extra addresses
    # and host names would be names with nothing behind them
    *((netns_lab.LabOptions(store="redis-sentinel", dns=dnsprofile.DnsProfile(**given)),
       "apply to --store postgresql")
      for given in ({"region_addresses": 2}, {"ipv6": True}, {"db_hostnames": True})),
])
def test_bad_options_are_refused_before_anything_is_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: netns_lab.LabOptions,
        says: str) -> None:
    monkeypatch.setenv("GAMEDAY_HOME", str(tmp_path / "state"))
    with pytest.raises(ConfigError, match=says):
        netns_lab.up(options)
    assert not (tmp_path / "state").exists()


def redis_descriptor() -> dict[str, object]:
    data = copy.deepcopy(GOOD)
    del data["database"]
    data["store"] = redis_sentinel.descriptor_block(profile("wait"))
    data["app_canary"] = netns_lab.APP_CANARY
    return data


def test_the_store_blocks_validate_and_old_descriptors_still_do() -> None:
    descriptor.validate(copy.deepcopy(GOOD))  # no store, no app_canary: as before
    postgresql = {**copy.deepcopy(GOOD), "app_canary": netns_lab.APP_CANARY,
                  "store": {"kind": "postgresql", "canary_table": "storefront_canary"}}
    assert descriptor.from_dict(postgresql).database.name == "storefront"
    netns_lab.validate_descriptor(redis_descriptor())
    broken = redis_descriptor()
    broken["store"]["sentinel"]["quorum"] = 0  # type: ignore[index]
    with pytest.raises(ConfigError, match="field 'store/sentinel/quorum'"):
        netns_lab.validate_descriptor(broken)
    no_master = redis_descriptor()
    del no_master["store"]["master_name"]  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="master_name"):
        netns_lab.validate_descriptor(no_master)


def test_a_redis_lab_descriptor_loads_for_drills_with_its_sentinels_as_ha_manager(
        tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(redis_descriptor()))
    lab = descriptor.load(path)
    assert lab.store == "redis-sentinel" and lab.redis is not None
    assert lab.redis.master_name == "gameday" and lab.redis.quorum == 2
    assert lab.redis.durability == "wait"
    assert [n.region for n in lab.redis.nodes] == ["region-1", "region-2"]
    assert [s.site for s in lab.redis.sentinels] == ["region-1", "region-2", "witness"]
    assert lab.redis.node("region-2").address == "198.18.0.12"
    # the Sentinels are its HA manager: they promote by themselves, gameday observes them
    assert lab.ha is not None and lab.ha.manager == "sentinel" and lab.ha.dcs is None
    assert lab.ha.ttl_s == 2.0  # down-after-milliseconds
    assert lab.sql_database is None
    # a PostgreSQL question asked of it fails in one line naming the store
    with pytest.raises(ConfigError, match="keeps its data in Redis") as refused:
        lab.database  # noqa: B018
    assert "\n" not in str(refused.value)


def test_a_descriptor_without_a_database_needs_a_redis_store(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    del data["database"]
    with pytest.raises(ConfigError, match="'database' is a required property"):
        descriptor.from_dict(data)
    with_ha = {**redis_descriptor(), "ha": {"manager": "external"}}
    with pytest.raises(ConfigError, match="no 'database' and no 'ha' block"):
        descriptor.from_dict(with_ha)
    with_db = {**redis_descriptor(), "database": copy.deepcopy(GOOD["database"])}
    with pytest.raises(ConfigError, match="no 'database' and no 'ha' block"):
        descriptor.from_dict(with_db)


def test_debian_s_redis_packages_ship_no_apparmor_profile() -> None:
    """The lab runs redis-server and redis-sentinel on files in /var/tmp: an AppArmor
    profile shipped with them would have to allow that (as unbound's does, for its own)."""
    if shutil.which("dpkg") is None:
        pytest.fail("dpkg is missing: this check reads the installed redis packages' files "
                    "(Debian or Ubuntu; `make setup` installs them)")
    for package in ("redis-server", "redis-sentinel", "redis-tools"):
        listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True,
                                timeout=30)
        if listed.returncode != 0:
            pytest.fail(f"the {package} package is not installed: run `make setup`")
        assert not [f for f in listed.stdout.splitlines()
                    if f.startswith("/etc/apparmor.d/")], package


@pytest.mark.parametrize(("program", "package"), [("redis-server", "redis-server"),
                                                  ("redis-sentinel", "redis-sentinel"),
                                                  ("redis-cli", "redis-tools")])
def test_a_missing_redis_program_is_named_with_its_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, program: str, package: str) -> None:
    monkeypatch.setenv("GAMEDAY_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(netns_lab.os, "geteuid", lambda: 0)
    real = netns_lab.shutil.which
    monkeypatch.setattr(redis_sentinel.shutil, "which",
                        lambda p: None if p == program else real(p))
    with pytest.raises(LabError, match=rf"`{program}` is missing: run `make setup` "
                                       rf"\(or apt-get install {package}\)"):
        netns_lab.up(netns_lab.LabOptions(store="redis-sentinel"))
    assert not (tmp_path / "state").exists()


def test_the_redis_profile_s_faults_are_the_driver_s_second_table(tmp_path: Path) -> None:
    """The netns driver picks one fault table by the lab's store: the Redis profile's
    steps (redis_sentinel.py) come from it, through the same `Fault` enum, and a fault
    either table cannot apply is planned not applicable. Only plans here: nothing is
    injected (that needs the lab: tests/integration/test_app_canary_lab.py)."""
    from gameday.foundation.faults import Fault
    from gameday.labs.netns.driver import NetnsDriver
    from gameday.labs.netns.redis_sentinel import Profile

    lab = descriptor.from_dict({**copy.deepcopy(GOOD), "state_dir": str(tmp_path)},
                               path=str(tmp_path / "lab.json"))
    postgresql = NetnsDriver(lab)
    Profile(root=str(tmp_path / "root"), password="p", sentinel_password="s").save(tmp_path)
    redis = NetnsDriver(lab)
    region_1, region_2 = lab.region("region-1"), lab.region("region-2")
    assert postgresql.redis is None and redis.redis is not None
    assert redis.plan(Fault.SCALE_TO_ZERO, region_1) == {
        "applicable": True, "store": "redis-sentinel", "stopped": []}
    assert redis.plan(Fault.REPLICATION_CUT, region_2) == {
        "applicable": True, "store": "redis-sentinel", "netns": "gd-region-2",
        "table": "gameday_cut", "peer": "198.18.0.11"}
    assert redis.plan(Fault.BLACKHOLE, region_1) == {
        "applicable": True, "netns": "gd-region-1", "table": "gameday",
        "store": "redis-sentinel"}  # no region-local writer: that is PostgreSQL's
    assert postgresql.plan(Fault.BLACKHOLE, region_1)["local_writer"] == "local-writer-region-1"
    assert postgresql.plan(Fault.REPLICATION_CUT, region_2)["proxy"] == "delay-region-2"
    for driver in (postgresql, redis):
        assert driver.plan(Fault.CORDON, region_1) == {
            "applicable": False, "reason": "the netns lab has no nodes to cordon"}
        assert driver.plan(Fault.SWITCHOVER, region_1)["applicable"] is False
