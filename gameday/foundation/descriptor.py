"""The lab descriptor: loaded once, validated against the schema, turned into typed records.

Both labs (netns and kind) and hand-written descriptors for real clusters go through
`load()`, so an experiment never sees a half-valid descriptor.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import socket
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from gameday.foundation import lab_kinds
from gameday.foundation.endpoints import NOT_REGIONS, Endpoints
from gameday.foundation.errors import ConfigError, LabError

DEFAULT_LAB_FILE = ".gameday/lab.json"
SCHEMA_ID = "gameday.lab/v1"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Region:
    name: str
    role: str
    driver: str
    address: str
    storefront_url: str
    db_host: str
    db_port: int = 5432
    # what its PostgreSQL servers answer inet_server_addr() with (addresses or CIDRs);
    # empty: every address db_host resolves to (see Lab.database_identities)
    db_addresses: tuple[str, ...] = ()
    netns: str | None = None
    kube_context: str | None = None
    namespace: str | None = None
    node_selector: str | None = None
    node_containers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class DnsServer:
    address: str  # IPv4, IPv6 or a name
    port: int = 53

    def ip(self) -> str:
        """The address to send queries to: a name is resolved once, here (a DNS server is
        asked by address; which of its addresses is asked is part of the drill's setup)."""
        try:
            ipaddress.ip_address(self.address)
            return self.address
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(self.address, self.port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise ConfigError(f"the DNS server name {self.address!r} does not resolve "
                              f"({exc.strerror or exc}): give its address in the descriptor") from None
        return str(infos[0][4][0])


@dataclasses.dataclass(frozen=True, kw_only=True)
class Resolver(DnsServer):
    """One resolver users sit behind (`dns.resolvers`): sampled like `dns.resolver`, with a
    flip of its own. `stream` is its name in the timeline's `dns` table."""

    name: str
    stream: str
    kind: str | None = None
    min_ttl_s: float | None = None  # the TTL floor it caches with
    serve_stale_s: float | None = None  # how long past expiry it may answer (0: never)

    def recorded(self) -> dict[str, Any]:
        """What a run records of it (meta `dns_resolvers`)."""
        return {"name": self.name, "stream": self.stream, "kind": self.kind,
                "address": self.address, "port": self.port, "min_ttl_s": self.min_ttl_s,
                "serve_stale_s": self.serve_stale_s}


RESOLVER_STREAM = "resolver"  # the `dns` stream of `dns.resolver`, the one clients use


@dataclasses.dataclass(frozen=True, kw_only=True)
class Health:
    """The authority's health checks (`dns.health`), as Route 53 has them: a check every
    `interval_s`, each allowed `timeout_s`, an endpoint unhealthy after `failures` failed
    in a row. They set the detection phase's budget (interval × failures + timeout)."""

    interval_s: float
    failures: int
    timeout_s: float | None = None
    checker: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dns:
    name: str
    authoritative: DnsServer
    resolver: DnsServer
    zone: str = ""
    ttl_s: float | None = None
    # `dns.health_interval_s`, or `dns.health.interval_s` when only that is given
    health_interval_s: float | None = None
    health: Health | None = None
    # `dns.endpoints`: per region name, what its answers are made of
    endpoints: tuple[tuple[str, Endpoints], ...] = ()
    # `dns.resolvers`, as given (`sampled` adds `resolver` when it is not among them)
    resolvers: tuple[Resolver, ...] = ()

    def sampled(self) -> tuple[Resolver, ...]:
        """Every resolver the drill samples, each with a flip of its own: `resolver` (the
        one the global request sampler resolves through), then each of `dns.resolvers`
        that is another server. A listed resolver that is `resolver` lends it its name and
        kind, so the same server is not sampled twice."""
        same = next((r for r in self.resolvers if _same_server(r, self.resolver)), None)
        main = Resolver(address=self.resolver.address, port=self.resolver.port,
                        name=same.name if same else RESOLVER_STREAM, stream=RESOLVER_STREAM,
                        kind=same.kind if same else None,
                        min_ttl_s=same.min_ttl_s if same else None,
                        serve_stale_s=same.serve_stale_s if same else None)
        return (main, *(r for r in self.resolvers if r is not same))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Database:
    name: str
    user: str
    password: str = dataclasses.field(repr=False)
    port: int = 5432
    replication: str | None = None
    canary_table: str = "gameday_canary"

    def params(self, host: str, port: int | str | None = None,
               **extra: str | int) -> dict[str, Any]:
        """psycopg.connect's keyword arguments for this database at `host`. Keywords, not a
        connection string: libpq's quoting rules are easy to get wrong (a tab or newline
        in an unquoted password ends it, and what follows becomes keywords of its own).
        Callers must never log them (they hold the password)."""
        return {
            "host": host,
            "port": port or self.port,
            "dbname": self.name,
            "user": self.user,
            "password": self.password,
            "connect_timeout": 2,
            **extra,
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dcs:
    kind: str
    address: str
    port: int
    namespace: str = "/service/"
    # etcd's authentication, when it is on: a user that may read the manager's keys
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ha:
    """An HA manager that promotes by itself (Patroni here), which gameday observes."""

    manager: str
    scope: str = ""
    dcs: Dcs | None = None
    ttl_s: float | None = None
    loop_wait_s: float | None = None
    retry_timeout_s: float | None = None
    maximum_lag_on_failover: int | None = None
    command_env: tuple[tuple[str, str], ...] = ()

    @property
    def leader_key(self) -> str:
        namespace = (self.dcs.namespace if self.dcs else "/service/").rstrip("/")
        return f"{namespace}/{self.scope}/leader"

    def recorded(self) -> dict[str, Any]:
        """What a run records of its HA manager for the report (never its command
        environment, which may hold credentials)."""
        return {"manager": self.manager, "scope": self.scope, "ttl_s": self.ttl_s,
                "loop_wait_s": self.loop_wait_s, "retry_timeout_s": self.retry_timeout_s,
                "maximum_lag_on_failover": self.maximum_lag_on_failover,
                "leader_key": self.leader_key if self.dcs else None}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RedisNode:
    region: str
    address: str
    port: int = 6379


@dataclasses.dataclass(frozen=True, kw_only=True)
class SentinelNode:
    site: str  # a region's name, or witness
    address: str
    port: int = 26379


@dataclasses.dataclass(frozen=True, kw_only=True)
class RedisStore:
    """The datastore of a lab whose store is Redis with Sentinel (`lab up --store
    redis-sentinel`): a Redis per region and the Sentinels that promote by themselves.
    Such a lab has no SQL database: the application canary measures its RPO."""

    master_name: str
    password: str = dataclasses.field(repr=False)
    nodes: tuple[RedisNode, ...]
    sentinels: tuple[SentinelNode, ...]
    quorum: int
    canary_key: str
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)
    durability: str = "async"
    down_after_ms: int | None = None
    failover_timeout_ms: int | None = None

    def node(self, region: str) -> RedisNode:
        for node in self.nodes:
            if node.region == region:
                return node
        raise ConfigError(f"the lab descriptor's store names no Redis node in {region!r}")


STORE_POSTGRESQL = "postgresql"
STORE_REDIS_SENTINEL = "redis-sentinel"
# the HA manager of a redis-sentinel store: its Sentinels (Ha.manager)
SENTINEL = "sentinel"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Lab:
    lab: str
    regions: tuple[Region, ...]
    dns: Dns
    # the SQL database (None when the store is Redis with Sentinel: `redis`)
    sql_database: Database | None = None
    redis: RedisStore | None = None
    state_dir: str | None = None
    inter_region_delay_ms: float | None = None
    path: str = ""
    ha: Ha | None = None
    ca_bundle: str | None = None
    # Kubernetes credentials the experiment's secrets gave (scope k8s), laid over each
    # region's kubeconfig context by the kubernetes driver
    kube_credentials: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)

    @property
    def database(self) -> Database:
        """The PostgreSQL database; a ConfigError naming the store on a lab that has none
        (a question only PostgreSQL can answer asked of Redis fails in one line)."""
        if self.sql_database is None:
            raise ConfigError(f"{self.path or 'this lab'} keeps its data in Redis with Sentinel: "
                              "it has no SQL database (the application canary measures "
                              "its RPO)")
        return self.sql_database

    @property
    def replication_mode(self) -> str | None:
        """The replication as configured: sync or async (PostgreSQL), async or wait (a
        Redis store's durability: WAIT for a replica after each canary write)."""
        if self.redis is not None:
            return self.redis.durability
        return self.database.replication

    @property
    def store(self) -> str:
        """The datastore's kind: postgresql or redis-sentinel."""
        return STORE_REDIS_SENTINEL if self.redis is not None else STORE_POSTGRESQL

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        known = ", ".join(r.name for r in self.regions)
        raise ConfigError(f"unknown region '{name}': the lab descriptor names {known}")

    @property
    def primary(self) -> Region:
        return next(r for r in self.regions if r.role == "primary")

    @property
    def secondary(self) -> Region:
        return next(r for r in self.regions if r.role == "secondary")

    def roles(self, drill: str) -> tuple[Region, Region]:
        """(the region service moves from, the region it moves to): a failover moves it
        from the lab's primary to its secondary, a failback back."""
        if drill == "failback":
            return self.secondary, self.primary
        return self.primary, self.secondary

    def endpoints(self) -> dict[str, Endpoints]:
        """Each region's endpoint set: `dns.endpoints`, or its `address` without one."""
        given = dict(self.dns.endpoints)
        return {r.name: given.get(r.name) or Endpoints.of_address(r.address)
                for r in self.regions}

    def database_identities(self) -> dict[str, Endpoints]:
        """Each region's database servers by their own address, as inet_server_addr()
        answers on a connection to them: the region's `db_addresses` when the descriptor
        gives them (behind a proxy such as PgBouncer, the address a client dials is the
        proxy's, not the server's), else every address its `db_host` resolves to now (an
        address, or a host name through the resolver libpq uses); a name that does not
        resolve gives none, so no write is attributed to that region by guess."""
        out: dict[str, Endpoints] = {}
        for r in self.regions:
            if r.db_addresses:
                out[r.name] = Endpoints.parse(_split_addresses(r.db_addresses))
                continue
            try:
                infos = socket.getaddrinfo(r.db_host, r.db_port, type=socket.SOCK_STREAM)
            except OSError:
                infos = []
            out[r.name] = Endpoints.parse({"addresses": sorted({str(i[4][0]) for i in infos})})
        return out

    def region_of_address(self, address: str | None) -> str | None:
        for region in self.regions:
            if address in (region.address, region.db_host):
                return region.name
        return None

    def writer_params(self, **extra: str | int) -> dict[str, Any]:
        """Follows the writable primary across failover, as an application would: every
        region's host and port, in libpq's multi-host form."""
        hosts = ",".join(r.db_host for r in self.regions)
        ports = ",".join(str(r.db_port) for r in self.regions)
        return self.database.params(hosts, ports, target_session_attrs="read-write", **extra)


def schema() -> dict[str, Any]:
    text = resources.files("gameday.foundation").joinpath("descriptor.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(data: Any, *, source: str = "lab descriptor") -> None:
    """Raise ConfigError naming the first bad field, so the fix is obvious."""
    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"{source}: field '{where}': {err.message}")
    store = data.get("store") or {}
    if "database" not in data and store.get("kind") != STORE_REDIS_SENTINEL:
        raise ConfigError(f"{source}: field '(top level)': 'database' is a required property "
                          "(a lab without one keeps its data in Redis: store.kind "
                          "redis-sentinel)")
    taken = sorted({r["name"] for r in data["regions"]} & set(NOT_REGIONS))
    if taken:
        raise ConfigError(f"{source}: a region may not be called '{taken[0]}': gameday calls "
                          "a DNS answer that is no one region's so; rename the region")
    roles = sorted(r["role"] for r in data["regions"])
    if roles != ["primary", "secondary"]:
        raise ConfigError(f"{source}: regions need one 'primary' and one 'secondary' role")
    names = {r["name"] for r in data["regions"]}
    if len(names) != 2:
        raise ConfigError(f"{source}: the two regions need distinct names")
    for i, r in enumerate(data["regions"]):
        if r["driver"] not in lab_kinds.names():
            raise ConfigError(f"{source}: field 'regions/{i}/driver': unknown driver "
                              f"{r['driver']!r}: choose from {', '.join(lab_kinds.names())}")
        _check_host(r["address"], f"{source}: field 'regions/{i}/address'")
    dcs = (data.get("ha") or {}).get("dcs")
    if dcs:
        _check_host(dcs["address"], f"{source}: field 'ha/dcs/address'")


# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _check_host(value: str, where: str) -> None:
    """An IP address or a host name, nothing else: the address reaches probes and
    commands, and must never be able to carry anything but a place to connect to."""
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    if 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split(".")):
        return
    raise ConfigError(f"{where}: {value!r} is neither an IP address nor a host name: "
                      "give the address DNS answers with (e.g. 203.0.113.10 or "
                      "eu-west.shop.example.com)")


NO_PASSWORD = ("no database password: give it in the experiment's secrets "
               '("secrets": {"gameday": {"db_password": {"type": "env", "key": '
               '"GAMEDAY_DB_PASSWORD"}}}) or as database.password in the descriptor; '
               '`gameday recover` reads the secrets with --experiment FILE')


def from_dict(data: dict[str, Any], *, path: str = "", password: str | None = None,
              kube_credentials: Mapping[str, str] | None = None) -> Lab:
    """`password` (from the experiment's secrets) overrides the descriptor's; one of them
    must give it."""
    source = path or "lab descriptor"
    validate(data, source=source)
    redis = _redis(data.get("store"))
    database: dict[str, Any] | None = None
    if redis is None:
        database = dict(data["database"])
        if password is not None:
            database["password"] = password
        if not database.get("password"):
            raise ConfigError(f"{source}: {NO_PASSWORD}")
    elif "database" in data or "ha" in data:
        raise ConfigError(f"{source}: a redis-sentinel store has no 'database' and no 'ha' "
                          "block (its Sentinels are its HA manager): remove them")
    regions = tuple(
        Region(**{**r, "node_containers": tuple(r.get("node_containers", ())),
                  "db_addresses": tuple(r.get("db_addresses", ()))})
        for r in data["regions"]
    )
    for r in regions:
        try:
            Endpoints.parse(_split_addresses(r.db_addresses), where=f"{r.name}.db_addresses")
        except ValueError as exc:
            raise ConfigError(f"{path or 'lab descriptor'}: regions: {exc}") from None
    dns = data["dns"]
    health = _health(dns, path)
    return Lab(
        lab=data["lab"],
        regions=regions,
        dns=Dns(
            name=dns["name"],
            zone=dns.get("zone", ""),
            authoritative=DnsServer(**dns["authoritative"]),
            resolver=DnsServer(**dns["resolver"]),
            ttl_s=dns.get("ttl_s"),
            health_interval_s=dns.get("health_interval_s", health and health.interval_s),
            health=health,
            endpoints=_endpoints(dns, regions, path),
            resolvers=_resolvers(dns, path),
        ),
        sql_database=Database(**database) if database is not None else None,
        redis=redis,
        state_dir=data.get("state_dir"),
        inter_region_delay_ms=data.get("inter_region_delay_ms"),
        path=path,
        ha=_ha(data.get("ha")) if redis is None else _sentinel_ha(redis),
        ca_bundle=(data.get("tls") or {}).get("ca_bundle"),
        kube_credentials=tuple(sorted((kube_credentials or {}).items())),
    )


def _split_addresses(texts: tuple[str, ...]) -> dict[str, list[str]]:
    """`db_addresses` as Endpoints.parse takes them: CIDRs apart from addresses."""
    return {"addresses": [t for t in texts if "/" not in t],
            "cidrs": [t for t in texts if "/" in t]}


def _same_server(a: DnsServer, b: DnsServer) -> bool:
    return (a.address.strip().lower(), a.port) == (b.address.strip().lower(), b.port)


def _resolvers(dns: Mapping[str, Any], path: str) -> tuple[Resolver, ...]:
    """`dns.resolvers`, each named once (its name is its stream's and its flip's)."""
    out: list[Resolver] = []
    for raw in dns.get("resolvers") or ():
        name = str(raw["name"])
        if name == RESOLVER_STREAM or any(r.name == name for r in out):
            raise ConfigError(f"{path or 'lab descriptor'}: dns.resolvers names "
                              f"'{name}' twice (or as '{RESOLVER_STREAM}', the name of "
                              "dns.resolver): give each resolver a name of its own")
        out.append(Resolver(address=raw["address"], port=raw.get("port", 53), name=name,
                            stream=f"{RESOLVER_STREAM}:{name}", kind=raw.get("kind"),
                            min_ttl_s=raw.get("min_ttl_s"),
                            serve_stale_s=raw.get("serve_stale_s")))
    return tuple(out)


def _endpoints(dns: Mapping[str, Any], regions: tuple[Region, ...],
               path: str) -> tuple[tuple[str, Endpoints], ...]:
    where = path or "lab descriptor"
    names = [r.name for r in regions]
    out = []
    for name, raw in (dns.get("endpoints") or {}).items():
        if name not in names:
            raise ConfigError(f"{where}: dns.endpoints names '{name}', which is not a region "
                              f"of the lab ({', '.join(names)})")
        try:
            out.append((name, Endpoints.parse(raw, where=f"dns.endpoints.{name}")))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(out)


def _health(dns: Mapping[str, Any], path: str) -> Health | None:
    raw = dns.get("health")
    if raw is None:
        return None
    health = Health(interval_s=raw["interval_s"], failures=raw["failures"],
                    timeout_s=raw.get("timeout_s"), checker=raw.get("checker"))
    flat = dns.get("health_interval_s")
    if flat is not None and flat != health.interval_s:
        raise ConfigError(f"{path or 'lab descriptor'}: dns.health_interval_s ({flat:g} s) and "
                          f"dns.health.interval_s ({health.interval_s:g} s) disagree: give "
                          "the interval the health checks run at in dns.health only")
    return health


def _ha(raw: dict[str, Any] | None) -> Ha | None:
    if raw is None:
        return None
    dcs = raw.get("dcs")
    return Ha(manager=raw["manager"], scope=raw.get("scope", ""),
              dcs=Dcs(**dcs) if dcs else None, ttl_s=raw.get("ttl_s"),
              loop_wait_s=raw.get("loop_wait_s"), retry_timeout_s=raw.get("retry_timeout_s"),
              maximum_lag_on_failover=raw.get("maximum_lag_on_failover"),
              command_env=tuple(sorted((raw.get("command_env") or {}).items())))


def _redis(raw: dict[str, Any] | None) -> RedisStore | None:
    if not raw or raw.get("kind") != STORE_REDIS_SENTINEL:
        return None
    sentinel = raw["sentinel"]
    return RedisStore(
        master_name=raw["master_name"], password=raw["password"],
        nodes=tuple(RedisNode(**n) for n in raw["nodes"]),
        sentinels=tuple(SentinelNode(**n) for n in sentinel["sentinels"]),
        quorum=sentinel["quorum"], canary_key=raw["canary_key"],
        sentinel_password=sentinel.get("password"),
        durability=raw.get("durability", "async"),
        down_after_ms=sentinel.get("down_after_ms"),
        failover_timeout_ms=sentinel.get("failover_timeout_ms"))


def _sentinel_ha(redis: RedisStore) -> Ha:
    """The Sentinels are a redis-sentinel store's HA manager: they promote by themselves,
    and gameday observes them (their view of the master, sampled) as it observes Patroni's
    leader key. Their down-after time plays the leader key's TTL in the report's budget."""
    return Ha(manager=SENTINEL, scope=redis.master_name,
              ttl_s=redis.down_after_ms / 1000 if redis.down_after_ms else None)


def lab_file(configuration: dict[str, Any] | None = None) -> Path:
    configured = (configuration or {}).get("lab_file")
    return Path(configured or os.environ.get("GAMEDAY_LAB") or DEFAULT_LAB_FILE)


def load(path: str | os.PathLike[str] | None = None, *, password: str | None = None,
         kube_credentials: Mapping[str, str] | None = None) -> Lab:
    """Read and validate a descriptor; a missing one means the lab is not up. `password`
    and `kube_credentials` come from the experiment's secrets (`GamedaySettings`)."""
    p = Path(path) if path is not None else lab_file()
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise LabError(
            f"no lab descriptor at {p}: run `gameday lab up` (or kind-lab/up.sh), "
            "or point configuration 'lab_file' / env GAMEDAY_LAB at yours"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON (line {exc.lineno}): fix or regenerate it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a lab descriptor is a JSON object")
    return from_dict(data, path=str(p), password=password, kube_credentials=kube_credentials)
