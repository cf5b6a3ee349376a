"""`gameday lab up | down | status` for the netns lab.

`up` builds everything from fixed names, so `down` can always find and remove it, also
after `up` crashed half-way: it deletes the namespaces, veths, bridge and resolv.conf
overrides that carry the lab's names, stops every process recorded in a pid file, and
removes the state directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from gameday.foundation import descriptor, lock
from gameday.foundation.errors import ConfigError, LabError
from gameday.foundation.poll import poll_until, poll_within
from gameday.labs.netns import apparmor, configs, dataroot, dnsprofile, healthgate, redis_sentinel, resolvers
from gameday.labs.netns import patroni as patroni_profile
from gameday.labs.netns import topology as topo
from gameday.labs.netns.processes import Processes, is_zombie, run, unreachable, wait_port
from gameday.postgres.connection import BULK_TIMEOUT_S, bounds, cause

PG_OS_USER = "postgres"


@dataclass(frozen=True, kw_only=True)
class LabOptions:
    replication: str = "sync"  # "sync" or "async"
    inter_region_delay_ms: float = 20.0
    dns_ttl_s: float = 1.0
    health_interval_s: float = 1.0
    ha: str | None = None  # None: gameday promotes; "patroni": Patroni + an etcd witness
    patroni: patroni_profile.PatroniOptions = dataclasses.field(
        default_factory=patroni_profile.PatroniOptions)
    # the datastore behind the storefronts: "postgresql", or "redis-sentinel" (Redis with
    # Sentinel as its failover manager: redis_sentinel.py)
    store: str = "postgresql"
    redis: redis_sentinel.RedisOptions = dataclasses.field(
        default_factory=redis_sentinel.RedisOptions)
    # the production-shaped DNS profile (dnsprofile.py); its defaults are the lab as it was
    dns: dnsprofile.DnsProfile = dataclasses.field(default_factory=dnsprofile.DnsProfile)

    @property
    def redis_store(self) -> bool:
        return self.store == redis_sentinel.STORE

    def check(self) -> None:
        if self.store not in STORES:
            raise ConfigError(f"--store must be one of {', '.join(STORES)}, got {self.store!r}")
        if self.redis_store:
            if self.ha:
                raise ConfigError("--ha patroni is PostgreSQL's failover manager: with "
                                  "--store redis-sentinel the Sentinels fail over")
            self.redis.check()
            if (self.dns.region_addresses > 1 or self.dns.ipv6 or self.dns.db_hostnames):
                raise ConfigError("--region-addresses, --ipv6 and --db-hostnames apply to "
                                  "--store postgresql: the Redis profile runs one storefront "
                                  "per region on its first address")
        if self.ha not in (None, "patroni"):
            raise ConfigError(f"--ha must be 'patroni' (or left out), got {self.ha!r}")
        if self.ha:
            self.patroni.check()
        if self.replication not in ("sync", "async"):
            raise ConfigError("replication must be 'sync' or 'async'")
        if not 0 <= self.inter_region_delay_ms <= 5000:
            raise ConfigError("inter_region_delay_ms must be between 0 and 5000")
        if not 0 <= self.dns_ttl_s <= 300:
            raise ConfigError("dns_ttl_s must be between 0 and 300")
        if not 1 <= self.health_interval_s <= 60:
            raise ConfigError("health_interval_s must be a whole number of seconds from 1 to 60")
        self.dns.check(health_interval_s=self.health_interval_s)


STORES = ("postgresql", redis_sentinel.STORE)

# The application canary's endpoints on the lab's storefronts (docs/app-canary.md), the
# same over both stores: paths on the storefront's URL, reached through the global name
APP_CANARY = {
    "write": {"method": "POST", "path": "/canary/{seq}",
              "headers": {"X-Canary-Writer": "{writer}"}},
    "read_back": {"path": "/canary?since={since}&limit={limit}", "page_size": 1000},
}
STOREFRONT_CANARY_TABLE = "storefront_canary"


def state_dir() -> Path:
    return Path(os.environ.get("GAMEDAY_HOME") or ".gameday").absolute()


def pg_bindir() -> Path:
    """The newest PostgreSQL server binaries (Debian keeps them off PATH)."""
    configured = os.environ.get("GAMEDAY_PG_BINDIR")
    if configured:
        return Path(configured)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("postgres")
    if which:
        return Path(os.path.realpath(which)).parent
    raise LabError("PostgreSQL server binaries not found: run `make setup` "
                   "(apt-get install postgresql) or set GAMEDAY_PG_BINDIR")


# `lab up` marks the state directory as the lab's own with this file, and `lab down`
# removes only a directory that holds it: GAMEDAY_HOME may point anywhere.
OWN_MARK = ".gameday-lab"


def _mark(state: Path) -> dict[str, Any] | None:
    """The state directory's mark (what `lab up` made there), None when it has none."""
    try:
        data: Any = json.loads((state / OWN_MARK).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _write_mark(state: Path, mark: dict[str, Any]) -> None:
    tmp = state / f".{OWN_MARK}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(mark, f)
    tmp.replace(state / OWN_MARK)


def _claim_state_dir(state: Path) -> None:
    """Make `state` the lab's own: a new directory, or an empty one. A directory that holds
    anything else is refused, because `lab down` removes what it marked."""
    if state.is_symlink() or (state.exists() and not state.is_dir()):
        raise LabError(f"GAMEDAY_HOME {state} is not a directory: point it at a new or empty "
                       "directory")
    if state.exists():
        # the drill lock's file may be left by a `lab down` or `recover` that found no lab
        if _mark(state) is None and any(p.name != lock.FILE for p in state.iterdir()):
            raise LabError(f"{state} already holds files that are not the lab's: set "
                           "GAMEDAY_HOME to a new or empty directory (`lab down` removes the "
                           "lab's state directory)")
        created = bool((_mark(state) or {}).get("created"))
    else:
        state.mkdir(parents=True)
        created = True
    _write_mark(state, {"owner": "gameday lab up", "created": created})


def data_root(state: Path) -> dataroot.DataRoot | None:
    """The lab's data root, as `lab up` recorded it in the state directory's mark (owned
    by the postgres user, or by redis in the Redis profile)."""
    mark = _mark(state) or {}
    recorded = mark.get("data_root")
    if not recorded or not dataroot.is_data_root(Path(recorded)):
        return None
    return dataroot.DataRoot(Path(recorded), str(mark.get("data_root_owner") or PG_OS_USER))


def pg_data_root(state: Path) -> Path:
    """Where the data directories live (dataroot.py says why there)."""
    root = data_root(state)
    if root is None or root.path.name.startswith(dataroot.REDIS_PREFIX):
        raise LabError(f"{state} records no PostgreSQL data root: the lab is not up, runs "
                       "the Redis profile, or was made by another version (run `gameday "
                       "lab down` and `gameday lab up`)")
    return root.path


def _new_data_root(state: Path, owner: str = PG_OS_USER,
                   prefix: str = dataroot.PREFIX) -> dataroot.DataRoot:
    root = dataroot.DataRoot.create(owner, prefix=prefix)
    _write_mark(state, {**(_mark(state) or {}), "data_root": str(root.path),
                        "data_root_owner": owner})
    return root


REQUIRED_PROGRAMS = {
    "ip": "iproute2",
    "nft": "nftables",
    "setpriv": "util-linux",
    "pdns_server": "pdns-server pdns-backend-bind",
    "unbound": "unbound",
}
HA_PROGRAMS = {
    "patroni": "patroni",
    "patronictl": "patroni",
    "etcd": "etcd-server",
}


def preflight(ha: str | None = None, store: str = "postgresql") -> None:
    """Refuse early, with the fix, and before anything is created."""
    if os.geteuid() != 0:
        raise LabError("the netns lab needs root (network namespaces, nftables): "
                       "run `sudo gameday lab up`")
    needed = {**REQUIRED_PROGRAMS, **(HA_PROGRAMS if ha else {})}
    for program, package in needed.items():
        if shutil.which(program) is None:
            raise LabError(f"`{program}` is missing: run `make setup` "
                           f"(or apt-get install {package})")
    if store == redis_sentinel.STORE:
        redis_sentinel.preflight()
        why = unreachable(dataroot.PARENT, redis_sentinel.REDIS_OS_USER, read=False,
                          execute=True)
        if why:
            raise LabError(f"the redis user, which runs the lab's Redis, cannot reach "
                           f"{dataroot.PARENT} ({why}): let it in (chmod o+x)")
        _check_addresses_free()
        return
    bindir = pg_bindir()
    for program in ("initdb", "postgres", "pg_basebackup", "pg_ctl"):
        if not (bindir / program).exists():
            raise LabError(f"{bindir / program} is missing: run `make setup` "
                           "(or apt-get install postgresql)")
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise LabError("there is no `postgres` OS user: run `make setup` "
                       "(apt-get install postgresql creates it)") from None
    _check_reachable_by_postgres(bindir, ha)
    _check_addresses_free()


def _check_addresses_free() -> None:
    taken = _address_in_use(f"{topo.BRIDGE_ADDRESS.rsplit('.', 1)[0]}.")
    if taken:
        raise LabError(f"the lab's addresses 198.18.0.0/{topo.PREFIX} are already in use on "
                       f"{taken}: remove them there (ip addr del ... dev {taken}) or run "
                       "`gameday lab down` if a lab is up")


PG_PROGRAMS = ("initdb", "postgres", "pg_basebackup", "pg_ctl", "pg_rewind")


def preflight_dns(profile: dnsprofile.DnsProfile) -> None:
    """What the DNS profile needs besides the lab's own programs."""
    for kind in profile.extra_resolvers:
        if shutil.which(resolvers.PROGRAMS[kind]) is None:
            raise LabError(f"`{resolvers.PROGRAMS[kind]}` is missing for --resolvers {kind}: "
                           f"run `make setup` (or apt-get install {resolvers.PACKAGES[kind]})")
    if profile.gated and shutil.which("pdns_control") is None:
        raise LabError("`pdns_control` is missing: run `make setup` "
                       "(or apt-get install pdns-server)")
    if profile.ipv6 and not Path("/proc/sys/net/ipv6").is_dir():
        raise LabError("--ipv6: this kernel has no IPv6 (booted with ipv6.disable=1?): "
                       "leave out --ipv6, or boot with IPv6")


def _check_reachable_by_postgres(bindir: Path, ha: str | None) -> None:
    """PostgreSQL (and Patroni) run as the postgres user: refuse now, naming the directory
    in the way, rather than time out waiting for a server that cannot start."""
    wanted: list[tuple[Path, str, bool, bool]] = [
        (bindir / p, "set GAMEDAY_PG_BINDIR to binaries it can reach", True, True)
        for p in PG_PROGRAMS if (bindir / p).exists()]
    wanted.append((dataroot.PARENT, f"the lab keeps its databases under {dataroot.PARENT}",
                   False, True))
    if ha:
        wanted.append((Path(shutil.which("patroni") or "patroni"),
                       "install Patroni where it can reach it (apt-get install patroni)",
                       True, True))
    for path, fix, read, execute in wanted:
        why = unreachable(path, PG_OS_USER, read=read, execute=execute)
        if why:
            raise LabError(f"the {PG_OS_USER} user, which runs the lab's databases, cannot "
                           f"reach {path} ({why}): let it in (e.g. chmod o+x on that "
                           f"directory) or {fix}")


def _address_in_use(prefix: str) -> str | None:
    """The interface that already holds an address of the lab's range, if any."""
    out = run(["ip", "-o", "-4", "addr", "show"], check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3].startswith(prefix) and parts[1] != topo.BRIDGE:
            return parts[1]
    return None


def verify_running(lab_state: str, *, ha: bool = False, store: str = "postgresql") -> None:
    """Refuse a descriptor that does not match what runs: its namespaces and its services
    must be there, or faults and measurements would hit the wrong (or no) target (under
    the Redis profile: the witness's Sentinel, which no fault stops)."""
    state = Path(lab_state)
    redis = store == redis_sentinel.STORE
    wanted = topo.NAMESPACES if ha or redis else topo.BASE_NAMESPACES
    missing = [ns.name for ns in wanted if ns.name not in existing_namespaces()]
    procs = Processes(state)
    services = ["pdns", "unbound", "storefront-region-1", "storefront-region-2"]
    if ha:
        services.append("etcd-witness")
    if redis:
        services.append("sentinel-witness")
    services += [s for s in _profile_services(state) if s not in services]
    missing += [n for n in services if not procs.alive(n)]
    if missing:
        raise LabError(f"the lab descriptor does not match what is running (missing: "
                       f"{', '.join(missing)}): run `gameday lab down` then `gameday lab up`")


def _profile_services(state: Path) -> list[str]:
    """The processes the DNS profile the lab was brought up with runs."""
    profile = dnsprofile.load(state)
    plan = dnsprofile.Plan(profile=profile)
    names = [i.name for region in topo.REGIONS for i in plan.instances(region)]
    names += list(profile.extra_resolvers)
    return names + (["healthgate"] if profile.gated else [])


def existing_namespaces() -> list[str]:
    proc = run(["ip", "netns", "list"], check=False)
    names = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    return [ns.name for ns in topo.NAMESPACES if ns.name in names]


def _link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def is_up(state: Path) -> bool:
    return (state / "lab.json").exists() or bool(existing_namespaces()) or _link_exists(topo.BRIDGE)


# --- up ---------------------------------------------------------------------------------


def _quiet(msg: str) -> None:
    """The default progress callback: say nothing."""


def up(options: LabOptions = LabOptions(), *,  # noqa: B008
       progress: Callable[[str], None] = _quiet) -> Path:
    """Bring the lab up and return the descriptor's path. On any failure, keep the logs of
    what was started (the one-line error names where), then tear down what was built, so
    nothing half-done is left behind."""
    options.check()
    preflight(options.ha, options.store)
    preflight_dns(options.dns)
    state = state_dir()
    if is_up(state):
        raise LabError(f"the lab is already up (state in {state}): use it, "
                       "or run `gameday lab down` first")
    _claim_state_dir(state)
    started = time.monotonic()
    wall_started = time.time() - 1  # the kernel's audit records are stamped in wall time
    try:
        password = secrets.token_urlsafe(18)
        progress("network: bridge, namespaces, veths")
        _network(topo.NAMESPACES if options.ha or options.redis_store
                 else topo.BASE_NAMESPACES)
        _profile_network(options.dns)
        dnsprofile.save(state, options.dns)
        profile: redis_sentinel.Profile | None = None
        if options.redis_store:
            root = _new_data_root(state, redis_sentinel.REDIS_OS_USER, dataroot.REDIS_PREFIX)
            profile = redis_sentinel.new_profile(root, options.redis)
            redis_sentinel.up(state, profile, progress)
            ha_auth = None
        elif options.ha:
            progress("etcd witness, Patroni members: leader in region-1, replica in region-2")
            ha_auth = _patroni_databases(state, options, password)
        else:
            progress("postgresql: primary in region-1, standby in region-2")
            _databases(state, options, password)
            ha_auth = None
        progress("storefronts")
        _storefronts(state, password)
        progress("global DNS: PowerDNS with " + (
            "the health-check gate" if options.dns.gated else "LUA ifurlup") + ", resolvers "
            + ", ".join(["unbound", *options.dns.extra_resolvers]))
        _dns(state, options)
        (state / RESOLV_CONF).write_text(resolv_conf())
        path = _write_descriptor(state, options, password, ha_auth, profile)
        progress("warming up DNS health checks")
        _warm_up(state, options.dns)
    except BaseException as exc:
        kept = _keep_logs(state)
        progress("lab up failed: tearing down what was built"
                 + (f" (the logs are kept in {kept})" if kept else ""))
        denied = apparmor.denied_line(lab_programs(), since=wall_started) \
            if isinstance(exc, Exception) else None
        down()
        where = f"; the lab's logs are kept in {kept}" if kept else ""
        if denied:
            raise LabError(f"lab up failed: {denied}{where}") from exc
        if isinstance(exc, psycopg.Error):
            raise LabError(f"lab up failed: a lab database answered {cause(exc)}: "
                           f"run `gameday lab up` again{where}") from None
        if isinstance(exc, LabError):
            raise LabError(f"{exc}{where}") from None
        raise
    denied = apparmor.denied_line(lab_programs(), since=wall_started)
    if denied:  # up all the same (a denied log file, say): said, not fatal
        progress(f"warning: {denied}")
    progress(f"lab up in {time.monotonic() - started:.1f} s")
    return path


def lab_programs() -> list[str]:
    """The programs the lab runs, as a profile or a denial record names them."""
    programs = [*REQUIRED_PROGRAMS, *HA_PROGRAMS, *redis_sentinel.PROGRAMS,
                *resolvers.PROGRAMS.values(), sys.executable]
    with contextlib.suppress(LabError):
        programs.append(str(pg_bindir() / "postgres"))
    return programs


def _keep_logs(state: Path) -> Path | None:
    """A copy of the lab's logs outside the state directory, which `down` removes: what a
    failed `lab up` started said is all there is to read about why."""
    logs = state / "logs"
    if not logs.is_dir() or not any(logs.iterdir()):
        return None
    kept = Path(tempfile.mkdtemp(prefix="gameday-lab-up-failed-"))
    # links followed: unbound's log is a link into its own directory, which `down` removes
    shutil.copytree(logs, kept, symlinks=False, ignore_dangling_symlinks=True,
                    dirs_exist_ok=True)
    return kept


def _network(namespaces: tuple[topo.Namespace, ...]) -> None:
    run(["ip", "link", "add", topo.BRIDGE, "type", "bridge"])
    run(["ip", "addr", "add", f"{topo.BRIDGE_ADDRESS}/{topo.PREFIX}", "dev", topo.BRIDGE])
    run(["ip", "link", "set", topo.BRIDGE, "up"])
    for ns in namespaces:
        run(["ip", "netns", "add", ns.name])
        etc = Path("/etc/netns") / ns.name
        etc.mkdir(parents=True, exist_ok=True)
        # ip netns exec bind-mounts this over /etc/resolv.conf: lookups inside the lab go
        # to the lab's resolver instead of waiting for the host's to time out.
        (etc / "resolv.conf").write_text(f"nameserver {topo.RESOLVER}\noptions timeout:1\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        run(["ip", "link", "add", ns.veth, "type", "veth", "peer", "name", "eth0",
             "netns", ns.name])
        run(["ip", "link", "set", ns.veth, "master", topo.BRIDGE])
        run(["ip", "link", "set", ns.veth, "up"])
        for address in ns.addresses:
            run(["ip", "addr", "add", f"{address}/{topo.PREFIX}", "dev", "eth0"], netns=ns.name)
        run(["ip", "link", "set", "lo", "up"], netns=ns.name)
        run(["ip", "link", "set", "eth0", "up"], netns=ns.name)


def _profile_network(profile: dnsprofile.DnsProfile) -> None:
    """The DNS profile's addresses beyond topology's: more per region, IPv6, the extra
    resolvers' (nodad: an IPv6 address is usable at once, not after duplicate detection)."""
    if profile.ipv6:
        run(["ip", "-6", "addr", "add", f"{dnsprofile.BRIDGE_ADDRESS6}/{dnsprofile.PREFIX6}",
             "dev", topo.BRIDGE, "nodad"])
    for netns, addresses in dnsprofile.Plan(profile=profile).namespace_addresses().items():
        for address in addresses:
            run(["ip", "addr", "add", address, "dev", "eth0",
                 *(["nodad"] if ":" in address else [])], netns=netns)


def _pg_run(args: list[str], *, netns: str | None = None, password: str | None = None,
            timeout: float = 60.0) -> None:
    env = {"PGPASSWORD": password} if password else None
    run([str(pg_bindir() / args[0]), *args[1:]], netns=netns, user=PG_OS_USER, env=env,
        timeout=timeout)


def write_node_conf(root: dataroot.DataRoot, *, region: str, replication: str,
                    password: str, delay_ms: float, standby: bool,
                    fenced: bool = False) -> None:
    """The node's own settings (gameday-node.conf) and its standby.signal: written at `lab
    up`, and again after every base backup, rewind or fencing (see database.NodeOps)."""
    text = configs.pg_node(region=region, replication=replication, password=password,
                           delay_ms=delay_ms, standby=standby)
    if fenced:
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("primary_conninfo"))
        text += "\n# fenced by gameday: a standby with no upstream\nprimary_conninfo = ''\n"
    root.write(f"{region}/gameday-node.conf", text)
    if standby:
        root.write(f"{region}/standby.signal", "")
    else:
        root.unlink(f"{region}/standby.signal")


def start_postgres(state: Path, region: str) -> None:
    data = pg_data_root(state) / region
    # a postmaster.pid left by a killed server makes the next start fail until it is gone
    Processes(state).start(
        f"postgres-{region}",
        [str(pg_bindir() / "postgres"), "-D", str(data)],
        netns=topo.REGIONS[region].name,
        user=PG_OS_USER,
    )


def wait_accepting(host: str, password: str, timeout: float, what: str) -> None:
    """Until the server at `host` accepts a connection (not merely listens)."""

    def accepts() -> bool:
        with _connect(host, password, "postgres"):
            return True

    poll_until(accepts, timeout_s=timeout, interval_s=0.05, retry_on=(psycopg.Error,),
               error=lambda last: LabError(f"{what} did not accept connections within "
                                           f"{timeout:.0f} s ({cause(last)})"))


def _connect(host: str, password: str, dbname: str = topo.DB_NAME) -> psycopg.Connection:
    """Bounded as the runner's connections are: a statement the lab's own PostgreSQL cannot
    finish (CREATE DATABASE on a primary waiting for a standby that is not there) fails
    `lab up` with its cause instead of hanging it."""
    return psycopg.connect(host=host, port=topo.DB_PORT, user=topo.DB_USER, password=password,
                           dbname=dbname, autocommit=True, connect_timeout=2,
                           **bounds(statement_timeout_s=BULK_TIMEOUT_S))


def _databases(state: Path, options: LabOptions, password: str) -> None:
    root = _new_data_root(state)
    r1, r2 = root / "region-1", root / "region-2"
    root.write(".pwfile", password + "\n")
    # --no-sync here and for the standby's base backup: what they write is synced as the
    # kernel writes it back, and a lab does not outlive a crash of its machine (its
    # namespaces go with it); syncing both cost about half a second of each `lab up`
    _pg_run(["initdb", "-D", str(r1), f"--username={topo.DB_USER}",
             f"--pwfile={root / '.pwfile'}", "--auth=scram-sha-256", "--encoding=UTF8",
             "--locale=C.UTF-8", "--no-sync"])
    root.unlink(".pwfile")
    root.write("region-1/pg_hba.conf", configs.pg_hba())
    root.write("region-1/postgresql.conf", configs.pg_common(options.replication), append=True)
    # async until the standby streams: a synchronous primary without its standby would
    # block CREATE DATABASE forever
    write_node_conf(root, region="region-1", replication="async", password=password,
                    delay_ms=options.inter_region_delay_ms, standby=False)
    start_postgres(state, "region-1")
    # listening is not accepting: "the database system is starting up" for a moment more
    # (seen here failing `lab up` in CI)
    wait_accepting(topo.address("region-1"), password, 30, "PostgreSQL in region-1")
    with _connect(topo.address("region-1"), password, "postgres") as conn:
        conn.execute(f"CREATE DATABASE {topo.DB_NAME}")
    schema = resources.files("gameday.labs").joinpath("storefront.sql").read_text()
    with _connect(topo.address("region-1"), password) as conn:
        conn.execute(schema)
    # the delayed cross-region paths: each region reaches the other's database through a
    # proxy in its own namespace (127.0.0.1:15432)
    for region in ("region-1", "region-2"):
        start_delay_proxy(state, region, options.inter_region_delay_ms, wait=False)
    for region in ("region-1", "region-2"):
        _wait_port_in(topo.REGIONS[region].name, topo.PROXY_PORT, 10, f"delay proxy in {region}")
    _pg_run(["pg_basebackup", "-h", "127.0.0.1", "-p", str(topo.PROXY_PORT), "-U", topo.DB_USER,
             "-D", str(r2), "-X", "stream", "-c", "fast", "--no-sync"],
            netns=topo.REGION_2.name, password=password, timeout=120)
    write_node_conf(root, region="region-2", replication=options.replication,
                    password=password, delay_ms=options.inter_region_delay_ms, standby=True)
    start_postgres(state, "region-2")
    wait_port(topo.address("region-2"), topo.DB_PORT, 30, "PostgreSQL in region-2")
    wait_streaming(password, standby="region-2", timeout=30)
    write_node_conf(root, region="region-1", replication=options.replication,
                    password=password, delay_ms=options.inter_region_delay_ms, standby=False)
    with _connect(topo.address("region-1"), password) as conn:
        conn.execute("SELECT pg_reload_conf()")


def start_delay_proxy(state: Path, region: str, delay_ms: float, *, wait: bool = True) -> None:
    """The region's delayed path to the other region's database: 127.0.0.1:15432 inside it."""
    other = topo.other_region(region)
    Processes(state).start(
        f"delay-{region}",
        [sys.executable, "-m", "gameday.labs.netns.delayproxy",
         f"127.0.0.1:{topo.PROXY_PORT}", f"{topo.address(other)}:{topo.DB_PORT}", str(delay_ms)],
        netns=topo.REGIONS[region].name,
        env={"PYTHONPATH": _package_root()},
    )
    if wait:
        _wait_port_in(topo.REGIONS[region].name, topo.PROXY_PORT, 10, f"delay proxy in {region}")


def start_etcd_proxy(state: Path, region: str, delay_ms: float, *, wait: bool = True) -> None:
    """The region's delayed path to the witness's etcd: 127.0.0.1:12379 inside it."""
    Processes(state).start(
        f"delay-etcd-{region}",
        [sys.executable, "-m", "gameday.labs.netns.delayproxy",
         f"127.0.0.1:{topo.ETCD_PROXY_PORT}", f"{topo.WITNESS.addresses[0]}:{topo.ETCD_PORT}",
         str(delay_ms)],
        netns=topo.REGIONS[region].name,
        env={"PYTHONPATH": _package_root()},
    )
    if wait:
        _wait_port_in(topo.REGIONS[region].name, topo.ETCD_PROXY_PORT, 10,
                      f"etcd proxy in {region}")


def _patroni_databases(state: Path, options: LabOptions,
                       password: str) -> patroni_profile.Credentials:
    """The autonomous-HA profile: etcd in the witness, both regions' paths to it and to each
    other, Patroni bootstraps region-1 (the storefront's database and schema then), region-2
    joins as its replica (synchronous in a sync lab). Returns the profile's passwords."""
    root = _new_data_root(state)
    credentials = patroni_profile.Credentials.new()
    patroni_profile.write_configs(state=state, root=root, replication=options.replication,
                                  password=password, bindir=pg_bindir(),
                                  options=options.patroni, credentials=credentials)
    patroni_profile.start_etcd(state)
    wait_port(topo.WITNESS.addresses[0], topo.ETCD_PORT, 20, "etcd in the witness")
    patroni_profile.enable_etcd_auth(credentials)
    for region in ("region-1", "region-2"):
        start_delay_proxy(state, region, options.inter_region_delay_ms, wait=False)
        start_etcd_proxy(state, region, options.inter_region_delay_ms, wait=False)
    for region in ("region-1", "region-2"):
        _wait_port_in(topo.REGIONS[region].name, topo.PROXY_PORT, 10, f"delay proxy in {region}")
        _wait_port_in(topo.REGIONS[region].name, topo.ETCD_PROXY_PORT, 10,
                      f"etcd proxy in {region}")
    patroni_profile.start_member(state, root.path, "region-1", PG_OS_USER)
    patroni_profile.wait_role(state, "region-1", "primary", 60)
    wait_accepting(topo.address("region-1"), password, 30, "PostgreSQL in region-1")
    with _connect(topo.address("region-1"), password, "postgres") as conn:
        conn.execute(f"CREATE DATABASE {topo.DB_NAME}")
    schema = resources.files("gameday.labs").joinpath("storefront.sql").read_text()
    with _connect(topo.address("region-1"), password) as conn:
        conn.execute(schema)
    patroni_profile.start_member(state, root.path, "region-2", PG_OS_USER)
    patroni_profile.wait_role(state, "region-2", "replica", 120)
    wait_streaming(password, standby="region-2", timeout=60)
    if options.replication == "sync":
        _wait_synchronous(password, standby="region-2", timeout=30)
    return credentials


def _wait_synchronous(password: str, *, standby: str, timeout: float) -> None:
    """Patroni names its synchronous standby a loop after the replica streams: until then a
    sync lab would still be asynchronous."""

    def synchronous() -> bool:
        with _connect(topo.address(topo.other_region(standby)), password) as conn:
            rows = conn.execute("SELECT sync_state FROM pg_stat_replication "
                                "WHERE application_name = %s", (standby,)).fetchall()
        return any(r[0] in ("sync", "quorum") for r in rows)

    poll_until(synchronous, timeout_s=timeout, interval_s=0.2, retry_on=(psycopg.Error,),
               interruptible=False,
               error=lambda _: LabError(f"{standby} is not the synchronous standby after "
                                        f"{timeout:.0f} s (Patroni synchronous_mode)"))


def _wait_port_in(netns: str, port: int, timeout: float, what: str) -> None:
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=0.5)"
    poll_until(lambda: run([sys.executable, "-c", probe], netns=netns,
                           check=False).returncode == 0,
               timeout_s=timeout, interval_s=0.05, interruptible=False,
               error=lambda _: LabError(f"{what} did not listen on 127.0.0.1:{port} within "
                                        f"{timeout:.0f} s"))


def wait_streaming(password: str, *, standby: str, timeout: float) -> None:
    """The standby must really stream (pg_stat_wal_receiver), not just accept connections."""
    status = "not asked yet"

    def streaming() -> bool:
        nonlocal status
        try:
            with _connect(topo.address(standby), password) as conn:
                row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
        except psycopg.Error as exc:
            status = cause(exc)
            return False
        status = str(row[0]) if row else "no wal receiver"
        return status == "streaming"

    poll_until(streaming, timeout_s=timeout, interval_s=0.1, interruptible=False,
               error=lambda _: LabError(f"the standby in {standby} is not streaming after "
                                        f"{timeout:.0f} s ({status})"))


def start_storefront(state: Path, region: str, password: str) -> None:
    """The region's storefronts that are not running: one on 0.0.0.0, or with the DNS
    profile's --region-addresses or --ipv6, one per address (dnsprofile.Plan.instances).
    On the Redis profile, one on 0.0.0.0 (LabOptions.check refuses more)."""
    profile = redis_sentinel.Profile.load(state)
    if profile is not None:  # the Redis profile: its passwords are the profile's
        if not Processes(state).alive(f"storefront-{region}"):
            Processes(state).start(
                f"storefront-{region}", redis_sentinel.storefront_argv(region),
                netns=topo.REGIONS[region].name,
                env={**redis_sentinel.storefront_env(profile, region),
                     "PYTHONPATH": _package_root()})
        return
    # psycopg.connect's keyword arguments, as JSON in the environment (never argv): no
    # connection string to quote, so no character of the password can add a keyword
    params = {"host": "127.0.0.1", "port": topo.DB_PORT, "dbname": topo.DB_NAME,
              "user": topo.DB_USER, "password": password}
    procs = Processes(state)
    instances = dnsprofile.Plan(profile=dnsprofile.load(state)).instances(region)
    for instance in instances:
        if procs.alive(instance.name):
            continue
        # one instance of one address listens everywhere, as the lab always did
        hosts = instance.hosts if len(instances) > 1 or len(instance.hosts) > 1 else ()
        procs.start(
            instance.name,
            [sys.executable, "-m", "gameday.labs.storefront", "--region", region,
             "--port", str(topo.STOREFRONT_PORT), *(f"--host={h}" for h in hosts)],
            netns=topo.REGIONS[region].name,
            env={"STOREFRONT_CONNECT": json.dumps(params), "PYTHONPATH": _package_root()},
        )


def storefront_names(state: Path, region: str) -> list[str]:
    """The region's storefront processes: one, or one per address with --region-addresses."""
    plan = dnsprofile.Plan(profile=dnsprofile.load(state))
    return [instance.name for instance in plan.instances(region)]


def wait_storefronts(state: Path, region: str, timeout: float = 15) -> None:
    """Every address of the region's storefronts accepts connections."""
    for address in dnsprofile.Plan(profile=dnsprofile.load(state)).addresses(region):
        wait_port(address, topo.STOREFRONT_PORT, timeout, f"storefront in {region}")


def _package_root() -> str:
    """The directory that holds the `gameday` package, for the lab's Python processes
    (storefronts, delay proxies): a source checkout or an installed site-packages alike."""
    return str(Path(__file__).resolve().parents[3])  # gameday/labs/netns/lab.py


def _storefronts(state: Path, password: str) -> None:
    for region in ("region-1", "region-2"):
        start_storefront(state, region, password)
    for region in ("region-1", "region-2"):
        wait_storefronts(state, region)


def _dns(state: Path, options: LabOptions) -> None:
    dns_dir = state / "dns"
    dns_dir.mkdir(parents=True, exist_ok=True)
    (dns_dir / "pdns.conf").write_text(
        configs.pdns_conf(str(state), health_interval_s=options.health_interval_s))
    (dns_dir / "named.conf").write_text(configs.named_conf(str(state)))
    database_ipv6 = _database_ipv6(options)
    gate = dnsprofile.gate_config(state, options.dns, ttl_s=options.dns_ttl_s,
                                  interval_s=options.health_interval_s,
                                  database_ipv6=database_ipv6) \
        if options.dns.gated else None
    if gate:
        # the primary answers until the gate's checks say otherwise, as Route 53 does
        healthgate.write_zone(gate, active="region-1", serial=1)
    else:
        db_records = dnsprofile.Plan(profile=options.dns).db_records(ipv6=database_ipv6)
        (dns_dir / f"{topo.ZONE}.zone").write_text(
            configs.zone(ttl_s=options.dns_ttl_s, extra=db_records))
    procs = Processes(state)
    procs.start("pdns", ["pdns_server", f"--config-dir={dns_dir}"], netns=topo.DNS.name)
    start_unbound(state)
    for kind in options.dns.extra_resolvers:
        resolvers.start(state, kind, dnsprofile.RESOLVER_ADDRESSES[kind])
    if gate:
        config_file = state / dnsprofile.GATE_CONFIG_FILE
        config_file.write_text(json.dumps(gate.to_dict(), indent=1))
        procs.start("healthgate", [sys.executable, "-m", "gameday.labs.netns.healthgate",
                                   "--config", str(config_file)],
                    netns=topo.DNS.name, env={"PYTHONPATH": _package_root()})


def _database_ipv6(options: LabOptions) -> bool:
    """The databases listen on their region's IPv6 address: with --ipv6, the scripted lab's
    PostgreSQL (listen_addresses '*'), not Patroni's (it listens on 0.0.0.0)."""
    return options.dns.ipv6 and options.ha is None


RESOLV_CONF = "resolv.conf"  # in the state directory


def resolv_conf() -> str:
    """A resolv.conf naming the lab's resolver only, for a runner that should resolve the
    lab's names (--db-hostnames) as the system does: bound over /etc/resolv.conf in a
    mount namespace of its own (README, The netns lab), never the host's."""
    return (f"# gameday netns lab: its resolver (unbound), which answers {topo.ZONE} only\n"
            f"nameserver {topo.RESOLVER}\noptions timeout:1 attempts:2\n")


def unbound_argv() -> list[str]:
    """unbound in the foreground on the lab's config (configs.UNBOUND_DIR)."""
    return ["unbound", "-d", "-c", str(configs.UNBOUND_DIR / "unbound.conf")]


def start_unbound(state: Path) -> None:
    """The resolver, with every file it opens in configs.UNBOUND_DIR, where the unbound
    package's AppArmor profile lets it read and write. Its log is written there too, through
    <state>/logs/unbound.log, a link: the profile checks the file's real path, also for the
    output it inherits."""
    directory = configs.UNBOUND_DIR
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    (directory / "unbound.conf").write_text(configs.unbound_conf(str(directory)))
    log = directory / "unbound.log"
    log.touch()
    procs = Processes(state)
    procs.log_dir.mkdir(parents=True, exist_ok=True)
    link = procs.log_dir / "unbound.log"
    link.unlink(missing_ok=True)
    link.symlink_to(log)
    procs.start("unbound", unbound_argv(), netns=topo.DNS.name)


def _write_descriptor(state: Path, options: LabOptions, password: str,
                      ha_auth: patroni_profile.Credentials | None,
                      profile: redis_sentinel.Profile | None = None) -> Path:
    data: dict[str, Any] = {
        "schema": descriptor.SCHEMA_ID,
        "lab": "netns",
        "state_dir": str(state),
        "inter_region_delay_ms": options.inter_region_delay_ms,
        "regions": [
            {
                "name": region,
                "role": "primary" if region == "region-1" else "secondary",
                "driver": "netns",
                "netns": topo.REGIONS[region].name,
                "address": topo.address(region),
                "storefront_url": f"http://{topo.address(region)}:{topo.STOREFRONT_PORT}",
                "db_host": dnsprofile.Plan(profile=options.dns).db_host(region),
                "db_port": topo.REDIS_PORT if profile else topo.DB_PORT,
            }
            for region in ("region-1", "region-2")
        ],
        "dns": {
            "zone": topo.ZONE,
            "name": topo.GLOBAL_NAME,
            "authoritative": {"address": topo.AUTHORITATIVE, "port": 53},
            "resolver": {"address": topo.RESOLVER, "port": 53},
            "ttl_s": options.dns_ttl_s,
            "health_interval_s": options.health_interval_s,
            **dnsprofile.descriptor_fields(options.dns,
                                           health_interval_s=options.health_interval_s),
        },
        "database": {
            "name": topo.DB_NAME,
            "user": topo.DB_USER,
            "password": password,
            "port": topo.DB_PORT,
            "replication": options.replication,
            "canary_table": "gameday_canary",
        },
        "store": {"kind": "postgresql", "canary_table": STOREFRONT_CANARY_TABLE},
        "app_canary": APP_CANARY,
    }
    if profile is not None:
        # no PostgreSQL here: no "database" block, so no PostgreSQL measurement can
        # pretend to work on Redis (the application canary measures its RPO)
        del data["database"]
        data["store"] = redis_sentinel.descriptor_block(profile)
        data["inter_region_delay_ms"] = 0  # redis_sentinel.py says why
    if options.ha == "patroni":
        p = options.patroni
        data["ha"] = {
            "manager": "patroni", "scope": topo.PATRONI_SCOPE,
            "dcs": {"kind": "etcd3", "address": topo.WITNESS.addresses[0],
                    "port": topo.ETCD_PORT, "namespace": topo.PATRONI_NAMESPACE,
                    **({"username": patroni_profile.ETCD_READER,
                        "password": ha_auth.etcd_reader} if ha_auth else {})},
            "ttl_s": p.ttl_s, "loop_wait_s": p.loop_wait_s,
            "retry_timeout_s": p.retry_timeout_s,
            "maximum_lag_on_failover": p.maximum_lag_on_failover,
            "command_env": {"PATRONICTL_CONFIG_FILE": str(patroni_profile.ctl_config(state))},
        }
    validate_descriptor(data)
    path = state / "lab.json"
    tmp = state / ".lab.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    tmp.replace(path)
    return path


def validate_descriptor(data: dict[str, Any]) -> None:
    """The descriptor against its schema (the Redis profile's has no "database" block)."""
    descriptor.validate(data)


def _warm_up(state: Path, profile: dnsprofile.DnsProfile = dnsprofile.DnsProfile(),  # noqa: B008
             timeout: float = 20.0) -> None:
    """ifurlup answers with its first set until checks have run: wait until the
    authoritative server and every resolver answer with region-1 (its whole set, and its
    CNAME with --cname), seen by real queries."""
    import dns.exception

    plan = dnsprofile.Plan(profile=profile)
    chain = tuple(c for c in [plan.cname("region-1")] if c)
    wanted = [("A", frozenset(plan.ipv4("region-1")))]
    if profile.ipv6:
        wanted.append(("AAAA", frozenset(plan.ipv6("region-1"))))
    servers = [topo.AUTHORITATIVE, topo.RESOLVER]
    servers += [dnsprofile.RESOLVER_ADDRESSES[r] for r in profile.extra_resolvers]
    deadline = time.monotonic() + timeout
    for server in servers:
        for rdtype, want in wanted:
            def answers(server: str = server, rdtype: str = rdtype,
                        want: frozenset[str] = want) -> bool:
                got = dnsprofile.resolve(server, topo.GLOBAL_NAME, rdtype, timeout=0.5)
                return got.addresses == want and got.chain == chain

            def silent(_: object, server: str = server, rdtype: str = rdtype,
                       want: frozenset[str] = want) -> LabError:
                return LabError(f"DNS at {server} did not answer {topo.GLOBAL_NAME} {rdtype} = "
                                f"{', '.join(sorted(want))} within {timeout:.0f} s "
                                "(pdns.log says why)")

            poll_until(answers, timeout_s=max(0.0, deadline - time.monotonic()),
                       interval_s=0.1, retry_on=(OSError, dns.exception.DNSException),
                       interruptible=False, error=silent)
    if profile.gated:
        # the zone answers region-1 from the start; the gate's first round is what makes
        # every endpoint's state known, so that a fault from now on is counted from there
        def checked() -> bool:
            status = healthgate.read_status(state / dnsprofile.GATE_STATUS_FILE)
            return bool(status and status.get("regions", {}).get("region-1"))

        poll_until(checked, timeout_s=max(0.0, deadline - time.monotonic()), interval_s=0.1,
                   interruptible=False,
                   error=lambda _: LabError(
                       f"the health-check gate did not find region-1 healthy within "
                       f"{timeout:.0f} s (healthgate.log says why)"))


# --- down -------------------------------------------------------------------------------


def down(*, progress: Callable[[str], None] = _quiet) -> list[str]:
    """Remove everything the lab made. Safe to run twice and after a failed `up`. Of the
    files, only what `up` marked as the lab's own: the state directory with its mark, and
    the data root that mark records."""
    state = state_dir()
    removed: list[str] = []
    procs = Processes(state)
    mark = _mark(state)
    root = data_root(state)
    # Patroni first (it would start its PostgreSQL again), then the postmasters it leaves,
    # then the scripted lab's databases with a fast shutdown, then everything else; each
    # stage's processes side by side
    members = {region: root / region if root else state / "no-data-root"
               for region in topo.REGIONS if f"patroni-{region}" in procs.names()}
    removed += [f"process patroni-{region}"
                for region in patroni_profile.stop_members(state, members)]
    databases = [name for name in procs.names() if name.startswith("postgres")]
    removed += [f"process {name}"  # SIGINT: fast shutdown
                for name in procs.stop_all(databases, sig=signal.SIGINT)]
    removed += [f"process {name}" for name in procs.stop_all(procs.names())]
    nft = shutil.which("nft")
    for name in existing_namespaces():
        if nft:
            run(["nft", "delete", "table", "inet", topo.NFT_TABLE], netns=name, check=False)
        _kill_leftovers_in(name)
        run(["ip", "netns", "delete", name], check=False)
        removed.append(f"namespace {name}")
    for ns in topo.NAMESPACES:
        if _link_exists(ns.veth):
            run(["ip", "link", "delete", ns.veth], check=False)
            removed.append(f"veth {ns.veth}")
        etc = Path("/etc/netns") / ns.name
        if etc.exists():
            shutil.rmtree(etc, ignore_errors=True)
            removed.append(f"{etc}")
    with contextlib.suppress(OSError):
        Path("/etc/netns").rmdir()  # only if empty: it may hold other tools' namespaces
    if _link_exists(topo.BRIDGE):
        run(["ip", "link", "delete", topo.BRIDGE], check=False)
        removed.append(f"bridge {topo.BRIDGE}")
    if configs.UNBOUND_DIR.exists():
        shutil.rmtree(configs.UNBOUND_DIR, ignore_errors=True)
        removed.append(str(configs.UNBOUND_DIR))
    removed += resolvers.remove_files(state)
    for item in removed:
        progress(f"removed {item}")
    if root is not None:
        try:
            if root.remove():
                removed.append(str(root.path))
                progress(f"removed {root.path}")
        except (LabError, OSError) as exc:
            progress(f"left {root.path} in place: {exc}")
    if mark is None:
        if state.exists():
            progress(f"left {state} in place: `lab up` did not mark it as the lab's own "
                     f"(no {OWN_MARK} in it); remove it yourself if it is")
    elif mark.get("created"):
        shutil.rmtree(state, ignore_errors=True)
        removed.append(str(state))
        progress(f"removed {state}")
    else:
        # an empty directory the lab was given: empty again, and kept
        for entry in list(state.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        removed.append(f"everything in {state}")
        progress(f"removed everything in {state}")
    return removed


def _kill_leftovers_in(netns: str) -> None:
    """Processes still inside a lab namespace (a pid file lost in a crash) are found by
    the namespace they are in, through `ip netns pids`, and stopped by pid."""
    proc = run(["ip", "netns", "pids", netns], check=False)
    pids = [int(p) for p in proc.stdout.split() if p.strip().isdigit()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)

    def gone() -> bool:
        pids[:] = [p for p in pids if Path(f"/proc/{p}").exists() and not is_zombie(p)]
        return not pids

    poll_within(gone, timeout_s=5, interruptible=False)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


# --- status -----------------------------------------------------------------------------


def status() -> dict[str, Any]:
    state = state_dir()
    procs = Processes(state)
    root = data_root(state)
    return {
        "state_dir": str(state),
        "data_root": str(root.path) if root else None,
        "descriptor": str(state / "lab.json") if (state / "lab.json").exists() else None,
        "namespaces": existing_namespaces(),
        "bridge": _link_exists(topo.BRIDGE),
        "processes": {name: procs.pid(name) for name in procs.names()},
    }
