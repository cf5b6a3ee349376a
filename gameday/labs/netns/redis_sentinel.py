"""The Redis profile of the netns lab (`gameday lab up --store redis-sentinel`): a Redis per
region (region-2 replicating region-1) and a Sentinel in each region plus one in
`gd-witness` (quorum 2), which promote region-2 by themselves when region-1 is lost. The
storefronts keep their orders and the application canary's numbers in Redis, and find the
master through the Sentinels (redis-py's Sentinel support).

Why these choices:
- Debian's redis-server and redis-sentinel, run as the `redis` user, with every file they
  open (configurations, the append-only files, the Sentinels' own rewritten
  configurations) in a data root made for this lab and owned by `redis` (dataroot.py), so
  the lab works from any checkout. Neither package ships an AppArmor profile (Debian 12,
  Ubuntu 22.04 and 24.04); tests/unit/test_redis_profile.py checks the installed ones.
- Both Redis and the Sentinels ask for a password (requirepass, masterauth, sentinel
  auth-pass): they listen on the lab's address, which the host reaches over the bridge
  (gameday runs there). Passwords sit in 0600 files of the data root and the storefront's
  environment, never on a command line.
- No delay on the cross-region paths here: this kernel has no netem, and the delay proxy
  the PostgreSQL profile uses cannot sit on a path the Sentinels hand out (they give every
  client the master's own address).
- appendonly with appendfsync always: Redis writes and fsyncs a write before it answers,
  so a write the master acknowledged survives its crash (SIGKILL), and the master's files
  read later say exactly what it had (`read_isolated`).
- Durability "async" (Redis's default: a write is acknowledged once the master has it) or
  "wait": min-replicas-to-write 1 on both nodes, and the storefront's canary write waits
  for one replica (WAIT 1). Under "wait" a master without a replica refuses every write:
  after region-1 is lost, region-2 writes again only once region-1 is back as its
  replica.

The fault hooks (the netns driver calls them when the lab runs this profile):
- scale-to-zero kills the region's storefront, Sentinel and Redis (SIGKILL, by pid);
  reverting starts Redis as a replica of the master the other Sentinels name (or as the
  master, when they still name it), its Sentinel on the configuration it rewrote itself,
  and the storefront;
- replication-cut (on the replica's region) drops the region's new connections to the
  other region's Redis and ends the replica's link, while the Sentinels' established
  connections stay: writes acknowledged meanwhile exist only on the master;
- blackhole's revert demotes a region's Redis that went on as a master while it was cut
  off, before its traffic flows again (the Sentinels would, seconds later);
- `failover_to` is the failback: SENTINEL FAILOVER once the target replica is in sync.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gameday.foundation.errors import ConfigError, LabError
from gameday.foundation.poll import poll_until
from gameday.labs.netns import topology as topo
from gameday.labs.netns.dataroot import DataRoot
from gameday.labs.netns.processes import Processes, connects, run, wait_port

STORE = "redis-sentinel"
REDIS_OS_USER = "redis"
PROFILE_FILE = "redis-sentinel.json"  # in the state directory, 0600: the hooks' facts
CUT_TABLE = "gameday_cut"
ISOLATED_PORT = 16379  # read_isolated's throwaway server
DURABILITIES = ("async", "wait")
PROGRAMS = {"redis-server": "redis-server", "redis-sentinel": "redis-sentinel",
            "redis-cli": "redis-tools"}
SITES: dict[str, topo.Namespace] = {"region-1": topo.REGION_1, "region-2": topo.REGION_2,
                                    "witness": topo.WITNESS}
# the storefront's keys (gameday.labs.storefront): named here for the lab's seed and reads
CANARY_KEY = "storefront:canary"
PRODUCTS = ((1, "umbrella", 1999), (2, "rain boots", 4999), (3, "flashlight", 1299))


@dataclasses.dataclass(frozen=True, kw_only=True)
class RedisOptions:
    durability: str = "async"
    down_after_ms: int = 2000
    failover_timeout_ms: int = 10000

    def check(self) -> None:
        if self.durability not in DURABILITIES:
            raise ConfigError(f"--redis-durability must be async or wait, got "
                              f"{self.durability!r}")
        if not 100 <= self.down_after_ms <= 60000:
            raise ConfigError("--sentinel-down-after-ms must be from 100 to 60000")
        if not 1000 <= self.failover_timeout_ms <= 600000:
            raise ConfigError("--sentinel-failover-timeout-ms must be from 1000 to 600000")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Profile:
    """What the hooks need, written by `lab up` to <state>/redis-sentinel.json (0600)."""

    root: str
    password: str = dataclasses.field(repr=False)
    sentinel_password: str = dataclasses.field(repr=False)
    durability: str = "async"
    down_after_ms: int = 2000
    failover_timeout_ms: int = 10000
    wait_timeout_ms: int = 1000
    min_replicas_max_lag_s: int = 3

    @property
    def data_root(self) -> DataRoot:
        return DataRoot(Path(self.root), REDIS_OS_USER)

    @property
    def min_replicas_to_write(self) -> int:
        return 1 if self.durability == "wait" else 0

    def save(self, state: Path) -> None:
        tmp = state / f".{PROFILE_FILE}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dataclasses.asdict(self), f)
        tmp.replace(state / PROFILE_FILE)

    @classmethod
    def load(cls, state: Path) -> Profile | None:
        """The profile of the lab in `state`, None when that lab runs PostgreSQL."""
        try:
            data = json.loads((state / PROFILE_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise LabError(f"{state / PROFILE_FILE} is unreadable ({exc}): run `gameday lab "
                           "down` and `gameday lab up`") from None
        return cls(**data)


def address(site: str) -> str:
    return SITES[site].addresses[0]


def region_of(host: str) -> str | None:
    return next((r for r in topo.REGIONS if topo.address(r) == host), None)


# --- configuration files ----------------------------------------------------------------


def _token(value: str) -> str:
    """A password as a configuration token: new ones are URL-safe base64, which needs no
    quoting; anything else is refused rather than quoted wrongly."""
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise LabError("a Redis password must be letters, digits, - and _")
    return value


def redis_conf(profile: Profile, region: str, *, replicaof: str | None,
               data_dir: str, port: int = topo.REDIS_PORT,
               bind: tuple[str, ...] | None = None) -> str:
    """The Redis of `region`: a replica of `replicaof` (an address), or a master."""
    lines = [
        f"# gameday netns lab: Redis in {region}",
        f"bind {' '.join(bind or (topo.address(region), '127.0.0.1'))}",
        f"port {port}",
        "protected-mode yes",
        "daemonize no",
        'logfile ""',
        f"dir {data_dir}",
        'save ""',
        "appendonly yes",
        "appendfsync always",
        f"requirepass {_token(profile.password)}",
        f"masterauth {_token(profile.password)}",
        "replica-read-only yes",
        "repl-diskless-sync yes",
        "repl-diskless-sync-delay 0",
        "repl-ping-replica-period 1",
        "repl-timeout 5",
        f"min-replicas-to-write {profile.min_replicas_to_write}",
        f"min-replicas-max-lag {profile.min_replicas_max_lag_s}",
    ]
    if replicaof:
        lines.append(f"replicaof {replicaof} {topo.REDIS_PORT}")
    return "\n".join(lines) + "\n"


def sentinel_conf(profile: Profile, site: str, data_dir: str) -> str:
    """A Sentinel monitoring region-1's Redis as the master; it rewrites this file itself
    from then on (epochs, the replicas and Sentinels it learnt)."""
    name = topo.REDIS_MASTER_NAME
    return "\n".join([
        f"# gameday netns lab: Sentinel in {site}",
        f"bind {address(site)} 127.0.0.1",
        f"port {topo.SENTINEL_PORT}",
        "daemonize no",
        'logfile ""',
        f"dir {data_dir}",
        f"requirepass {_token(profile.sentinel_password)}",
        "sentinel resolve-hostnames no",
        "sentinel announce-hostnames no",
        f"sentinel monitor {name} {topo.address('region-1')} {topo.REDIS_PORT} 2",
        f"sentinel auth-pass {name} {_token(profile.password)}",
        f"sentinel down-after-milliseconds {name} {profile.down_after_ms}",
        f"sentinel failover-timeout {name} {profile.failover_timeout_ms}",
        f"sentinel parallel-syncs {name} 1",
        "sentinel deny-scripts-reconfig yes",
    ]) + "\n"


# --- clients ----------------------------------------------------------------------------


def redis_client(profile: Profile, host: str, port: int = topo.REDIS_PORT,
                 timeout: float = 1.0) -> Any:
    import redis

    return redis.Redis(host=host, port=port, password=profile.password,
                       socket_timeout=timeout, socket_connect_timeout=timeout)


def sentinel_client(profile: Profile, site: str, timeout: float = 1.0) -> Any:
    import redis

    return redis.Redis(host=address(site), port=topo.SENTINEL_PORT,
                       password=profile.sentinel_password, socket_timeout=timeout,
                       socket_connect_timeout=timeout)


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


@contextmanager
def _closing(client: Any) -> Iterator[Any]:
    try:
        yield client
    finally:
        client.close()


def role(profile: Profile, host: str, port: int = topo.REDIS_PORT) -> str | None:
    """"master" or "slave" as the Redis at host:port says, None when it does not answer."""
    try:
        with _closing(redis_client(profile, host, port, timeout=0.5)) as c:
            answer = c.execute_command("ROLE")
    except _redis_errors():
        return None
    return _text(answer[0])


def replication(profile: Profile, host: str) -> dict[str, Any]:
    with _closing(redis_client(profile, host, timeout=0.5)) as c:
        info: dict[str, Any] = c.info("replication")
    return info


def masters_named(profile: Profile, *, skip: str | None = None) -> dict[str, str | None]:
    """Each Sentinel's master address (None: it does not answer), but `skip`'s site."""
    named: dict[str, str | None] = {}
    for site in SITES:
        if site == skip:
            continue
        try:
            with _closing(sentinel_client(profile, site, timeout=0.5)) as c:
                answer = c.sentinel_get_master_addr_by_name(topo.REDIS_MASTER_NAME)
            named[site] = _text(answer[0]) if answer else None
        except _redis_errors():
            named[site] = None
    return named


def agreed_master(profile: Profile, *, skip: str | None = None,
                  timeout: float = 15.0) -> str:
    """The master's address once a quorum (2) of the Sentinels but `skip`'s names the same
    one; LabError when they do not within `timeout`."""
    seen: dict[str, str | None] = {}

    def agreed() -> str | bool:
        nonlocal seen
        seen = masters_named(profile, skip=skip)
        answers = [a for a in seen.values() if a]
        for candidate in set(answers):
            if answers.count(candidate) >= 2:
                return candidate
        return False

    found = poll_until(agreed, timeout_s=timeout, interval_s=0.1, interruptible=False,
                       error=lambda _: LabError(
                           f"the Sentinels do not agree on the Redis master within "
                           f"{timeout:.0f} s (they name {seen})"))
    return str(found)


# --- up ---------------------------------------------------------------------------------


def preflight() -> None:
    for program, package in PROGRAMS.items():
        if shutil.which(program) is None:
            raise LabError(f"`{program}` is missing: run `make setup` "
                           f"(or apt-get install {package})")
    import pwd

    try:
        pwd.getpwnam(REDIS_OS_USER)
    except KeyError:
        raise LabError("there is no `redis` OS user: run `make setup` (apt-get install "
                       "redis-server creates it)") from None


def new_profile(root: DataRoot, options: RedisOptions) -> Profile:
    return Profile(root=str(root.path), password=secrets.token_urlsafe(18),
                   sentinel_password=secrets.token_urlsafe(18),
                   durability=options.durability, down_after_ms=options.down_after_ms,
                   failover_timeout_ms=options.failover_timeout_ms)


def up(state: Path, profile: Profile, progress: Callable[[str], None]) -> None:
    """Redis in both regions (region-2 a replica of region-1), the products, then the three
    Sentinels, waited for until each knows the master, its replica and the two others."""
    profile.save(state)
    try:
        _up(state, profile, progress)
    except _redis_errors() as exc:
        raise LabError(f"a lab Redis or Sentinel answered {type(exc).__name__}: "
                       f"{str(exc)[:200]}") from None


def _up(state: Path, profile: Profile, progress: Callable[[str], None]) -> None:
    root = profile.data_root
    progress("redis: master in region-1, replica in region-2")
    start_redis(state, profile, "region-1", replicaof=None)
    _wait_role(profile, "region-1", "master", 20)
    start_redis(state, profile, "region-2", replicaof=topo.address("region-1"))
    _wait_link(profile, "region-2", 30)
    # after the replica: under "wait" the master refuses writes until it counts one
    # (NOREPLICAS), which its first acknowledgement of the stream brings within a second
    poll_until(lambda: _seed(profile), timeout_s=10, interval_s=0.1,
               retry_on=_redis_errors(), interruptible=False,
               error=lambda last: LabError(f"Redis in region-1 did not take the products "
                                           f"within 10 s ({str(last)[:200]})"))
    progress("sentinels: region-1, region-2 and the witness, quorum 2")
    for site in SITES:
        root.mkdir(f"sentinel-{site}")
        root.write(f"sentinel-{site}/sentinel.conf",
                   sentinel_conf(profile, site, str(root / f"sentinel-{site}")))
        start_sentinel(state, site)
    for site in SITES:
        _wait_sentinel_ready(profile, site, 30)


def _seed(profile: Profile) -> bool:
    """The storefront's products, in region-1's Redis; True once written."""
    from gameday.labs import storefront

    with _closing(redis_client(profile, topo.address("region-1"))) as c:
        pipe = c.pipeline(transaction=True)
        for pid, name, price in PRODUCTS:
            pipe.hset(f"{storefront.PRODUCT_PREFIX}{pid}",
                      mapping={"name": name, "price_cents": price})
            pipe.sadd(storefront.PRODUCTS_KEY, pid)
        pipe.execute()
    return True


def start_redis(state: Path, profile: Profile, region: str, *, replicaof: str | None) -> None:
    """Redis in `region` on its data directory, as a replica of `replicaof` or a master.
    The configuration is written afresh: what the Sentinels told the process before it
    stopped is theirs to tell again."""
    root = profile.data_root
    root.mkdir(region)
    root.write(f"{region}.conf", redis_conf(profile, region, replicaof=replicaof,
                                            data_dir=str(root / region)))
    Processes(state).start(f"redis-{region}", ["redis-server", str(root / f"{region}.conf")],
                           netns=topo.REGIONS[region].name, user=REDIS_OS_USER)
    wait_port(topo.address(region), topo.REDIS_PORT, 15, f"Redis in {region}")


def start_sentinel(state: Path, site: str) -> None:
    """The Sentinel of `site` on the configuration it keeps (and rewrites) itself."""
    profile = Profile.load(state)
    if profile is None:
        raise LabError(f"{state} holds no Redis profile")
    conf = profile.data_root / f"sentinel-{site}" / "sentinel.conf"
    Processes(state).start(f"sentinel-{site}", ["redis-sentinel", str(conf)],
                           netns=SITES[site].name, user=REDIS_OS_USER)
    wait_port(address(site), topo.SENTINEL_PORT, 15, f"Sentinel in {site}")


def storefront_env(profile: Profile, region: str) -> dict[str, str]:
    """The storefront's configuration, as JSON in its environment (never argv): its own
    region's Sentinel first, then the others'."""
    order = [region, *(s for s in SITES if s != region)]
    config = {
        "sentinels": [[address(s), topo.SENTINEL_PORT] for s in order],
        "master_name": topo.REDIS_MASTER_NAME,
        "password": profile.password,
        "sentinel_password": profile.sentinel_password,
        "local": [topo.address(region), topo.REDIS_PORT],
        "durability": profile.durability,
        "wait_timeout_ms": profile.wait_timeout_ms,
    }
    return {"STOREFRONT_REDIS": json.dumps(config)}


def _wait_role(profile: Profile, region: str, wanted: str, timeout: float) -> None:
    poll_until(lambda: role(profile, topo.address(region)) == wanted, timeout_s=timeout,
               interval_s=0.05, interruptible=False,
               error=lambda _: LabError(f"Redis in {region} is not the {wanted} after "
                                        f"{timeout:.0f} s"))


def _wait_link(profile: Profile, region: str, timeout: float) -> None:
    """Until the replica in `region` streams from its master (master_link_status up)."""
    poll_until(lambda: replication(profile, topo.address(region)).get("master_link_status")
               == "up", timeout_s=timeout, interval_s=0.05, retry_on=_redis_errors(),
               interruptible=False,
               error=lambda _: LabError(f"the Redis replica in {region} does not stream "
                                        f"from its master after {timeout:.0f} s"))


def _wait_sentinel_ready(profile: Profile, site: str, timeout: float) -> None:
    """Until the Sentinel knows the two others and the replica, and a failover could be
    authorised (SENTINEL CKQUORUM)."""
    last: dict[str, Any] = {}

    def ready() -> bool:
        nonlocal last
        with _closing(sentinel_client(profile, site, timeout=0.5)) as c:
            last = c.sentinel_master(topo.REDIS_MASTER_NAME)
            if int(last.get("num-other-sentinels", 0)) < 2 or \
                    int(last.get("num-slaves", 0)) < 1:
                return False
            c.execute_command("SENTINEL", "CKQUORUM", topo.REDIS_MASTER_NAME)
        return True

    poll_until(ready, timeout_s=timeout, interval_s=0.1, retry_on=_redis_errors(),
               interruptible=False,
               error=lambda _: LabError(
                   f"the Sentinel in {site} is not ready after {timeout:.0f} s (it knows "
                   f"{last.get('num-other-sentinels', '?')} other Sentinels and "
                   f"{last.get('num-slaves', '?')} replicas)"))


def descriptor_block(profile: Profile) -> dict[str, Any]:
    """The descriptor's "store" block for this profile (docs/app-canary.md)."""
    return {
        "kind": STORE,
        "master_name": topo.REDIS_MASTER_NAME,
        "password": profile.password,
        "durability": profile.durability,
        "min_replicas_to_write": profile.min_replicas_to_write,
        **({"wait_timeout_ms": profile.wait_timeout_ms} if profile.durability == "wait"
           else {}),
        "canary_key": CANARY_KEY,
        "nodes": [{"region": r, "address": topo.address(r), "port": topo.REDIS_PORT}
                  for r in topo.REGIONS],
        "sentinel": {
            "password": profile.sentinel_password,
            "quorum": 2,
            "down_after_ms": profile.down_after_ms,
            "failover_timeout_ms": profile.failover_timeout_ms,
            "sentinels": [{"site": s, "address": address(s), "port": topo.SENTINEL_PORT}
                          for s in SITES],
        },
    }


# --- fault hooks: scale-to-zero ---------------------------------------------------------


def _names(region: str) -> tuple[str, str, str]:
    return f"storefront-{region}", f"sentinel-{region}", f"redis-{region}"


def plan_stop(state: Path, region: str) -> dict[str, Any]:
    procs = Processes(state)
    return {"applicable": True, "store": STORE,
            "stopped": [n for n in _names(region) if procs.alive(n)]}


def stop(state: Path, undo: dict[str, Any]) -> None:
    """Every process the record lists, killed as a crash would (Redis has fsynced what it
    acknowledged: appendfsync always)."""
    procs = Processes(state)
    for name in undo["stopped"]:
        procs.signal(name, signal.SIGKILL)


def stopped(state: Path, region: str, undo: dict[str, Any]) -> bool:
    procs = Processes(state)
    if any(procs.alive(n) for n in undo["stopped"]):
        return False
    host = topo.address(region)
    return not any(connects(host, port, 0.2) for port in
                   (topo.REDIS_PORT, topo.SENTINEL_PORT, topo.STOREFRONT_PORT))


def restart(state: Path, region: str, undo: dict[str, Any],
            start_storefront: Callable[[str], None]) -> None:
    """Redis first, as a replica of the master the other Sentinels agree on (the way they
    expect an old master back: they would demote it themselves, after its storefront had
    said "ok" as a master for a moment), or as the master when they still name it; then
    its Sentinel, on the configuration it rewrote itself; then the storefront."""
    profile = _profile(state)
    procs = Processes(state)
    store_name, sentinel_name, redis_name = _names(region)
    if redis_name in undo["stopped"] and not procs.alive(redis_name):
        master = agreed_master(profile, skip=region)
        own = topo.address(region)
        start_redis(state, profile, region, replicaof=None if master == own else master)
    if sentinel_name in undo["stopped"] and not procs.alive(sentinel_name):
        start_sentinel(state, region)
    if store_name in undo["stopped"] and not procs.alive(store_name):
        start_storefront(region)


# --- fault hooks: replication-cut -------------------------------------------------------


def cut_rules(peer: str) -> str:
    return f"""table inet {CUT_TABLE} {{
    chain output {{
        type filter hook output priority 0; policy accept;
        ip daddr {peer} tcp dport {topo.REDIS_PORT} ct state new counter drop comment "gameday cut"
    }}
}}
"""


def plan_cut(region: str) -> dict[str, Any]:
    return {"applicable": True, "store": STORE, "netns": topo.REGIONS[region].name,
            "table": CUT_TABLE, "peer": topo.address(topo.other_region(region))}


def cut(state: Path, region: str, undo: dict[str, Any]) -> None:
    """New connections from the region to the other's Redis dropped, then the replica's
    link ended: it cannot come back, while the Sentinels' established connections (and
    so their view of the master) stay."""
    profile = _profile(state)
    if _table_present(undo["netns"], CUT_TABLE):
        raise LabError(f"an nftables table '{CUT_TABLE}' is already in {undo['netns']}: "
                       "run `gameday recover` first")
    run(["nft", "-f", "-"], netns=undo["netns"], input=cut_rules(undo["peer"]))
    try:
        with _closing(redis_client(profile, topo.address(region))) as c:
            c.execute_command("CLIENT", "KILL", "TYPE", "master")
    except _redis_errors() as exc:
        raise LabError(f"the Redis in {region} did not end its replication link "
                       f"({type(exc).__name__})") from None


def is_cut(state: Path, region: str, undo: dict[str, Any]) -> bool:
    if not _table_present(undo["netns"], CUT_TABLE):
        return False
    try:
        info = replication(_profile(state), topo.address(region))
    except _redis_errors():
        return False
    return info.get("role") != "slave" or info.get("master_link_status") != "up"


def uncut(undo: dict[str, Any]) -> None:
    if _table_present(undo["netns"], CUT_TABLE):
        run(["nft", "delete", "table", "inet", CUT_TABLE], netns=undo["netns"])


# --- fault hooks: blackhole -------------------------------------------------------------


def demote_if_superseded(state: Path, region: str) -> bool:
    """Before a cut-off region's traffic flows again: its Redis, still a master while the
    Sentinels elsewhere promoted the other, becomes that master's replica (and says so in
    its configuration), so its storefront never answers "ok" beside the new master. True
    when it was demoted."""
    profile = _profile(state)
    if not Processes(state).alive(f"redis-{region}"):
        return False
    master = agreed_master(profile, skip=region)
    if master == topo.address(region):
        return False
    netns = topo.REGIONS[region].name
    env = {"REDISCLI_AUTH": profile.password}
    for command in (["REPLICAOF", master, str(topo.REDIS_PORT)], ["CONFIG", "REWRITE"]):
        run(["redis-cli", "--no-auth-warning", "-h", "127.0.0.1", "-p",
             str(topo.REDIS_PORT), *command], netns=netns, env=env, timeout=10)
    return True


# --- failback ---------------------------------------------------------------------------


def failover_to(state: Path, region: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Make `region`'s Redis the master through the Sentinels (SENTINEL FAILOVER), once
    they know it as a healthy replica and it has everything the master has. Returns what
    was done; LabError when the Sentinels do not switch within `timeout`."""
    profile = _profile(state)
    target = topo.address(region)
    started = time.monotonic()
    master = agreed_master(profile)
    if master == target:
        return {"switched": False, "master": region}
    deadline = started + timeout

    def remaining() -> float:
        return max(0.1, deadline - time.monotonic())

    def promotable() -> bool:
        with _closing(sentinel_client(profile, "witness", timeout=0.5)) as c:
            replicas = c.sentinel_slaves(topo.REDIS_MASTER_NAME)
        known = [r for r in replicas if str(r.get("ip")) == target]
        if not known or known[0].get("master-link-status") != "ok" or \
                any(f in str(known[0].get("flags", "")) for f in ("s_down", "disconnected")):
            return False
        ours, theirs = replication(profile, target), replication(profile, master)
        return bool(ours.get("master_link_status") == "up" and
                    int(ours.get("slave_repl_offset", -1)) >=
                    int(theirs.get("master_repl_offset", 0)))

    poll_until(promotable, timeout_s=remaining(), interval_s=0.1, retry_on=_redis_errors(),
               interruptible=False,
               error=lambda _: LabError(f"Redis in {region} is not a replica in sync that "
                                        f"the Sentinels may promote, after {timeout:.0f} s"))
    asked = time.monotonic()
    with _closing(sentinel_client(profile, "witness")) as c:
        c.execute_command("SENTINEL", "FAILOVER", topo.REDIS_MASTER_NAME)

    def switched() -> bool:
        return masters_named(profile).get("witness") == target and \
            role(profile, target) == "master" and role(profile, master) == "slave"

    poll_until(switched, timeout_s=remaining(), interval_s=0.05, interruptible=False,
               error=lambda _: LabError(f"the Sentinels did not make {region} the Redis "
                                        f"master within {timeout:.0f} s"))
    return {"switched": True, "master": region, "from": region_of(master),
            "switch_s": round(time.monotonic() - asked, 3)}


# --- the old master's own data ----------------------------------------------------------


def read_isolated(state: Path, region: str, key: str = CANARY_KEY) -> list[int]:
    """The members of `key` in the files of `region`'s Redis, which must be down (after
    scale-to-zero, before its revert): a copy of its data directory served by a throwaway
    Redis on another port that no Sentinel knows, read, stopped and removed. This is what
    the old master had when it died, which its revert as a replica then discards."""
    profile = _profile(state)
    procs = Processes(state)
    if procs.alive(f"redis-{region}"):
        raise LabError(f"Redis in {region} is running: its files are read only while it is "
                       "down")
    root = profile.data_root
    copy = f"{region}-isolated"
    root.mkdir(copy)
    root.empty(copy)
    run(["cp", "-a", "--", f"{root / region}/.", str(root / copy)], user=REDIS_OS_USER)
    host = topo.address(region)
    root.write(f"{copy}.conf", redis_conf(profile, region, replicaof=None,
                                          data_dir=str(root / copy), port=ISOLATED_PORT,
                                          bind=(host,)))
    name = f"redis-isolated-{region}"
    procs.start(name, ["redis-server", str(root / f"{copy}.conf")],
                netns=topo.REGIONS[region].name, user=REDIS_OS_USER)
    try:
        def members() -> tuple[list[int]]:
            # a tuple, truthy also when the set is empty
            with _closing(redis_client(profile, host, ISOLATED_PORT)) as c:
                if c.info("persistence").get("loading"):
                    raise OSError("still loading")
                return (sorted(int(m) for m in c.zrange(key, 0, -1)),)

        (found,) = poll_until(members, timeout_s=15, interval_s=0.05,
                              retry_on=_redis_errors(), interruptible=False,
                              error=lambda last: LabError(f"the copy of {region}'s Redis "
                                                          f"did not answer ({last})"))
        return found
    finally:
        procs.stop(name)
        root.empty(copy)


# --- helpers ----------------------------------------------------------------------------


def _profile(state: Path) -> Profile:
    profile = Profile.load(state)
    if profile is None:
        raise LabError(f"the lab in {state} does not run the Redis profile")
    return profile


def _text(value: object) -> str:
    """A reply as text: redis-py answers bytes (the clients here do not decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _table_present(netns: str, table: str) -> bool:
    return run(["nft", "list", "table", "inet", table], netns=netns,
               check=False).returncode == 0


def storefront_argv(region: str) -> list[str]:
    return [sys.executable, "-m", "gameday.labs.storefront", "--region", region,
            "--port", str(topo.STOREFRONT_PORT), "--store", STORE]
