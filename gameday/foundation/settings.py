"""The experiment's configuration, parsed once into a typed object (CONTRIBUTING.md, convention 6).

Chaos Toolkit hands every activity the raw `configuration` dict; key names, defaults and
coercion live here and nowhere else, and a bad value is a ConfigError naming the key. The
run records its configuration in its timeline from here too (`GamedaySettings.recorded`),
under the keys the experiment sets, so a report reads the names a user wrote.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gameday.foundation import descriptor, stopconditions
from gameday.foundation.errors import ConfigError
from gameday.foundation.stopconditions import StopConditions


@dataclasses.dataclass(frozen=True, kw_only=True)
class Targets:
    rto_s: float = 30.0
    rpo_s: float = 0.0
    max_lost_writes: int = 0


PROMOTION_STRATEGIES = ("runner", "command", "none", "manager")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Promotion:
    """Who promotes the standby: gameday by SQL (`runner`), a user-given command such as
    `patronictl failover` or a cloud CLI (`command`), the system itself (`none`: an HA
    manager), or the lab's HA manager asked through its own API (`manager`: Redis's
    Sentinels, SENTINEL FAILOVER for a switchover; in a failover they promote by
    themselves, as with `none`). In every case the promoted instant is observed by the
    recorder, not taken from whoever promoted."""

    strategy: str = "runner"
    command: tuple[str, ...] = ()
    timeout_s: float = 60.0


LIVE_VIEWS = ("auto", "panel", "lines", "quiet", "off")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rates:
    """How often the recorder samples, and how hard its canary writes."""

    dns_s: float = 0.05
    http_s: float = 0.05
    replication_s: float = 0.25
    timeout_s: float = 0.5
    canary_writers: int = 4
    # acknowledged canary writes per second, all writers together; 0: as fast as the
    # database answers. A long drill caps it: flat out on a primary with no synchronous
    # standby the canary wrote ~5,000 rows/s, 674 MB of timeline an hour, and more WAL
    # than the old primary could catch up on for the failback
    canary_max_rate: float = 0.0


def rates(c: Mapping[str, Any]) -> Rates:
    """The sampling rates under their configuration keys: also how the recorder reads them
    back from the run's recorded configuration (`GamedaySettings.recorded`)."""
    return Rates(
        dns_s=number(c, "dns_interval_s", 0.05, minimum=0.005),
        http_s=number(c, "http_interval_s", 0.05, minimum=0.005),
        replication_s=number(c, "replication_interval_s", 0.25, minimum=0.01),
        canary_writers=int(number(c, "canary_writers", 4, integer=True, minimum=1)),
        canary_max_rate=number(c, "canary_max_rate", 0.0, minimum=0.0),
    )


KUBE_ALLOWLIST_KEY = "kube_context_allowlist"
KUBE_ALLOWLIST_ENV = "GAMEDAY_KUBE_CONTEXT_ALLOWLIST"
KUBE_TIMEOUT_KEY = "kube_request_timeout_s"
DEFAULT_KUBE_CONTEXTS: tuple[str, ...] = ("kind-*",)
DEFAULT_KUBE_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class KubeAccess:
    """The kubernetes driver's section: the contexts a run may touch (so that a game day
    cannot scale a production cluster to zero by a typo in a descriptor) and the time one
    API request may take (a paused node completes the TCP handshake and never answers)."""

    allowed_contexts: tuple[str, ...] = DEFAULT_KUBE_CONTEXTS
    request_timeout_s: float = DEFAULT_KUBE_TIMEOUT_S


def kube_access(c: Mapping[str, Any] | None) -> KubeAccess:
    """`kube_context_allowlist` (or env GAMEDAY_KUBE_CONTEXT_ALLOWLIST): shell-style context
    patterns, a list or a comma-separated string, added to `kind-*`; and
    `kube_request_timeout_s` (default 10)."""
    c = c or {}
    raw: Any = c.get(KUBE_ALLOWLIST_KEY)
    if raw is None:
        raw = os.environ.get(KUBE_ALLOWLIST_ENV, "")
    if isinstance(raw, str):
        extra = [p.strip() for p in raw.split(",")]
    elif isinstance(raw, Sequence):
        extra = [str(p).strip() for p in raw]
    else:
        raise ConfigError(
            f"configuration '{KUBE_ALLOWLIST_KEY}': expected a list or a comma-separated string "
            f"of context patterns, got {type(raw).__name__}"
        )
    timeout: Any = c.get(KUBE_TIMEOUT_KEY, DEFAULT_KUBE_TIMEOUT_S)
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(
            f"configuration '{KUBE_TIMEOUT_KEY}' must be a number of seconds > 0, got "
            f"{timeout!r}: fix it in the experiment or pass --var {KUBE_TIMEOUT_KEY}=10"
        )
    return KubeAccess(allowed_contexts=DEFAULT_KUBE_CONTEXTS + tuple(p for p in extra if p),
                      request_timeout_s=seconds)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hold:
    """A long drill's hold in the secondary (`hold_in_region`), as the experiment's
    configuration sets it for the step's arguments: checked before anything starts."""

    hold_s: float = 60.0
    check_interval_s: float = 5.0
    max_outage_s: float = 60.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class GateLimits:
    """The longest DNS TTL and health-check interval the readiness gate accepts. The
    defaults admit a production edge (Route 53's failover record: TTL 60 s, checks every
    30 s); beyond them a drill measures mostly the wait for a cache or a check, and the
    gate also refuses an RTO target that the TTL and checks leave no room for."""

    max_ttl_s: float = 300.0
    max_health_interval_s: float = 30.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Budget:
    """The allowances of the RTO budget that no other setting gives (docs/runbook.md):
    recorded with the run, so its report's budget uses the drill's own values."""

    promotion_s: float = 1.0
    write_reconnect_s: float = 1.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Results:
    """What happens to the numbers after the run: the trend's regression factor, where the
    metrics are pushed, how the live view prints, and the stable identity that keys the
    run's trend and its metric labels (the title is prose that people reword)."""

    experiment_id: str | None = None
    regression_factor: float = 1.5
    pushgateway_url: str | None = dataclasses.field(default=None, repr=False)
    live_view: str = "auto"
    live_heartbeat_s: float = 30.0


APP_CANARY_KEY = "app_canary"
WRITE_METHODS = ("POST", "PUT", "PATCH")
WRITE_FIELDS = ("seq", "writer")
READ_BACK_FIELDS = ("since", "limit")
MAX_APP_SEQ = 2**53 - 1  # exact as a JSON number in every client
# `{name}` as a template names a field; JSON's own braces (`{"seq": {seq}}`) are not one
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill(template: str, values: Mapping[str, object]) -> str:
    """`template` with each `{name}` of `values` replaced by its value: plain replacement,
    so a JSON body's own braces stay as they are (str.format would read them as fields)."""
    return _FIELD.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values
                      else m.group(0), template)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WriteTemplate:
    """One application-canary write as an HTTP request: `target` is a path on the global
    name (`/canary/{seq}`) or a whole URL; `{seq}` (its idempotency key) and `{writer}` are
    filled in per attempt, in the target, the body and the headers' values."""

    method: str = "POST"
    target: str = "/canary/{seq}"
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def render(self, seq: int, writer: object) -> tuple[str, str, dict[str, str], bytes | None]:
        """(method, target, headers, body) of the attempt numbered `seq` by `writer`."""
        values = {"seq": seq, "writer": writer}
        body = None if self.body is None else fill(self.body, values).encode()
        return (self.method, fill(self.target, values),
                {k: fill(v, values) for k, v in self.headers}, body)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReadBack:
    """The application's read-back, paged: `target` (a path on the global name or a URL)
    with `{since}` (the numbers above it) and `{limit}` (at most `page_size` of them); the
    answer is `{"seqs": [...], "next": SEQ | null}` (docs/app-canary.md)."""

    target: str = "/canary?since={since}&limit={limit}"
    page_size: int = 1000
    headers: tuple[tuple[str, str], ...] = ()

    def page(self, since: int) -> str:
        return fill(self.target, {"since": since, "limit": self.page_size})


@dataclasses.dataclass(frozen=True, kw_only=True)
class AppCanary:
    """The canary through the application's own API (issue 23): its write template, its
    read-back, and its own writers and deadline (a write unanswered after `deadline_s` is
    an attempt of unknown outcome, as the database canary's is after 3 s)."""

    write: WriteTemplate
    read_back: ReadBack
    writers: int = 2
    deadline_s: float = 3.0

    def as_config(self, *, header_values: bool = True) -> dict[str, Any]:
        """The configuration this was parsed from (`app_canary(...)` reads it back): how the
        recorder is given it. Without `header_values` (what the run's meta records, where
        anyone reading the report directory would see a token) each header's value is
        left out."""

        def target(t: str) -> dict[str, str]:
            return {"path": t} if t.startswith("/") else {"url": t}

        def headers(h: tuple[tuple[str, str], ...]) -> dict[str, str]:
            return {k: v if header_values else "(not recorded)" for k, v in h}

        write: dict[str, Any] = {"method": self.write.method, **target(self.write.target),
                                 "headers": headers(self.write.headers)}
        if self.write.body is not None:
            write["body"] = self.write.body
        return {"write": write,
                "read_back": {**target(self.read_back.target),
                              "page_size": self.read_back.page_size,
                              "headers": headers(self.read_back.headers)},
                "writers": self.writers, "deadline_s": self.deadline_s}


def app_canary(c: Mapping[str, Any]) -> AppCanary | None:
    """The `app_canary` configuration (None: no application canary): an object with
    `write` ({"method", "path" or "url", "body", "headers"}), `read_back` ({"path" or
    "url", "page_size", "headers"}), `writers` and `deadline_s`. Each mistake is one
    ConfigError naming the key and the fix."""
    raw = c.get(APP_CANARY_KEY)
    if raw is None or raw == {}:
        return None
    key = APP_CANARY_KEY
    if not isinstance(raw, Mapping):
        raise ConfigError(f"configuration '{key}' must be an object with 'write' and "
                          f"'read_back' (docs/app-canary.md), got {raw!r}")
    _known(raw, key, ("write", "read_back", "writers", "deadline_s"))
    write, read = raw.get("write"), raw.get("read_back")
    if not isinstance(write, Mapping):
        raise ConfigError(f"configuration '{key}.write' must be an object such as "
                          '{"method": "POST", "path": "/canary/{seq}"}: the request each '
                          "canary write sends")
    if not isinstance(read, Mapping):
        raise ConfigError(f"configuration '{key}.read_back' must be an object such as "
                          '{"path": "/canary?since={since}&limit={limit}"}: where the '
                          "acknowledged writes are read back")
    return AppCanary(
        write=_write_template(write, f"{key}.write"),
        read_back=_read_back(read, f"{key}.read_back"),
        writers=int(number(raw, "writers", 2, integer=True, minimum=1, where=key)),
        deadline_s=_positive(raw, "deadline_s", 3.0, where=key),
    )


def _known(raw: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        raise ConfigError(f"configuration '{key}' has no key '{unknown[0]}': choose from "
                          f"{', '.join(allowed)}")


def _target(raw: Mapping[str, Any], key: str) -> str:
    path, url = raw.get("path"), raw.get("url")
    if (path is None) == (url is None):
        raise ConfigError(f"configuration '{key}' needs 'path' (on the global name, "
                          "e.g. /canary/{seq}) or 'url' (a whole http:// or https:// URL), "
                          "one of them")
    if path is not None and not (isinstance(path, str) and path.startswith("/")):
        raise ConfigError(f"configuration '{key}.path' must start with '/' (a path on the "
                          f"global name), got {path!r}")
    if url is not None and not (isinstance(url, str) and re.match(r"https?://[^/\s]+", url)):
        raise ConfigError(f"configuration '{key}.url' must be an http:// or https:// URL, "
                          f"got {url!r}")
    return str(path if path is not None else url)


def _headers(raw: Mapping[str, Any], key: str) -> tuple[tuple[str, str], ...]:
    headers = raw.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str | int) for k, v in headers.items()):
        raise ConfigError(f"configuration '{key}.headers' must map header names to text, "
                          f"e.g. {{\"X-Canary-Writer\": \"{{writer}}\"}}, got {headers!r}")
    return tuple((k, str(v)) for k, v in headers.items())


def _fields(texts: Mapping[str, str | None], key: str, allowed: tuple[str, ...]) -> set[str]:
    """The fields the templates name; ConfigError for one not in `allowed`."""
    named: set[str] = set()
    for where, text in texts.items():
        for field in _FIELD.findall(text or ""):
            if field not in allowed:
                raise ConfigError(f"configuration '{key}.{where}' names {{{field}}}: a "
                                  f"template may name only "
                                  f"{' and '.join('{' + a + '}' for a in allowed)}")
            named.add(field)
    return named


def _write_template(raw: Mapping[str, Any], key: str) -> WriteTemplate:
    _known(raw, key, ("method", "path", "url", "body", "headers"))
    method = str(raw.get("method") or "POST").upper()
    if method not in WRITE_METHODS:
        raise ConfigError(f"configuration '{key}.method' must be one of "
                          f"{', '.join(WRITE_METHODS)} (a write), got {raw.get('method')!r}")
    target = _target(raw, key)
    body = raw.get("body")
    if body is not None and not isinstance(body, str):
        raise ConfigError(f"configuration '{key}.body' must be text (JSON as a string, "
                          f'e.g. "{{\"seq\": {{seq}}}}"), got {body!r}')
    headers = _headers(raw, key)
    named = _fields({"path" if "path" in raw else "url": target, "body": body,
                     **{f"headers.{k}": v for k, v in headers}}, key, WRITE_FIELDS)
    if "seq" not in named:
        raise ConfigError(f"configuration '{key}' has no {{seq}} in its path, body or "
                          "headers: put the sequence number in it (e.g. path /canary/{seq}): "
                          "it is the write's idempotency key, the number the read-back "
                          "returns")
    return WriteTemplate(method=method, target=target, body=body, headers=headers)


def _read_back(raw: Mapping[str, Any], key: str) -> ReadBack:
    _known(raw, key, ("path", "url", "page_size", "headers"))
    target = _target(raw, key)
    headers = _headers(raw, key)
    named = _fields({"path" if "path" in raw else "url": target,
                     **{f"headers.{k}": v for k, v in headers}}, key, READ_BACK_FIELDS)
    if "since" not in named:
        raise ConfigError(f"configuration '{key}' has no {{since}}: page the read-back by "
                          "the last number read (e.g. path /canary?since={since}&limit="
                          "{limit})")
    page_size = int(number(raw, "page_size", 1000, integer=True, minimum=1, where=key))
    return ReadBack(target=target, page_size=page_size, headers=headers)


def _positive(c: Mapping[str, Any], key: str, default: float, *, where: str) -> float:
    value = number(c, key, default, where=where)
    if value <= 0:
        raise ConfigError(f"configuration '{where}.{key}' must be a number of seconds > 0, "
                          f"got {c.get(key)!r}")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class GamedaySettings:
    lab_file: Path
    drill: str = "failover"
    reports_dir: Path = Path("reports")
    targets: Targets = dataclasses.field(default_factory=Targets)
    max_lag_s: float = 5.0
    # how long the readiness gate waits for the lab to be ready (drill/gate.py)
    ready_timeout_s: float = 20.0
    gate: GateLimits = dataclasses.field(default_factory=GateLimits)
    k_consecutive: int = 5
    rates: Rates = dataclasses.field(default_factory=Rates)
    kube: KubeAccess = dataclasses.field(default_factory=KubeAccess)
    hold: Hold = dataclasses.field(default_factory=Hold)
    promotion: Promotion = dataclasses.field(default_factory=Promotion)
    budget: Budget = dataclasses.field(default_factory=Budget)
    results: Results = dataclasses.field(default_factory=Results)
    stop: StopConditions = dataclasses.field(default_factory=StopConditions)
    # the canary through the application's API; None: the database canary alone
    app_canary: AppCanary | None = None
    # from the experiment's secrets; override the descriptor (never printed: repr=False)
    db_password: str | None = dataclasses.field(default=None, repr=False)
    kube_credentials: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)

    @classmethod
    def from_chaos(cls, configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> GamedaySettings:
        c = dict(configuration or {})
        drill = str(c.get("drill") or "failover")
        if drill not in ("failover", "failback"):
            raise ConfigError(f"configuration 'drill' must be 'failover' or 'failback', got {drill!r}")
        return cls(
            lab_file=descriptor.lab_file(c),
            drill=drill,
            reports_dir=Path(str(c.get("reports_dir") or "reports")),
            targets=Targets(
                rto_s=number(c, "rto_target_s", 30.0),
                rpo_s=number(c, "rpo_target_s", 0.0),
                max_lost_writes=int(number(c, "max_lost_writes", 0, integer=True)),
            ),
            max_lag_s=number(c, "max_lag_s", 5.0),
            ready_timeout_s=number(c, "ready_timeout_s", 20.0),
            gate=GateLimits(max_ttl_s=number(c, "max_ttl_s", 300.0),
                            max_health_interval_s=number(c, "max_health_interval_s", 30.0,
                                                         minimum=0.001)),
            k_consecutive=int(number(c, "k_consecutive", 5, integer=True, minimum=1)),
            rates=rates(c),
            kube=kube_access(c),
            hold=Hold(hold_s=number(c, "hold_s", 60.0),
                      check_interval_s=number(c, "hold_check_interval_s", 5.0),
                      max_outage_s=number(c, "hold_max_outage_s", 60.0)),
            promotion=_promotion(c),
            budget=Budget(promotion_s=number(c, "promotion_budget_s", 1.0),
                          write_reconnect_s=number(c, "write_reconnect_s", 1.0)),
            results=_results(c),
            stop=stopconditions.parse(c),
            app_canary=app_canary(c),
            **_secrets(secrets),
        )

    def load_lab(self) -> descriptor.Lab:
        return descriptor.load(self.lab_file, password=self.db_password,
                               kube_credentials=dict(self.kube_credentials))

    def k(self, consecutive: Any = 0) -> int:
        """The K of a wait for recovery: its `consecutive` argument (Chaos Toolkit
        substitutes `${var}` as text, so it may arrive as a string), or 0 for the
        configuration's `k_consecutive`, the rule the report's RTO is measured by."""
        return int(number({"consecutive": consecutive}, "consecutive", 0, integer=True)) \
            or self.k_consecutive

    def recorded(self, lab: descriptor.Lab) -> dict[str, Any]:
        """What the run records of its settings (meta `targets`, `k_consecutive`, `drill`,
        `promotion` and `configuration`), each number under the key the experiment sets it
        by: the report's budget, the trend and the recorder read them back from there."""
        return {
            "targets": {"rto_s": self.targets.rto_s, "rpo_s": self.targets.rpo_s,
                        "max_lost_writes": self.targets.max_lost_writes},
            "k_consecutive": self.k_consecutive,
            "drill": self.drill,
            "promotion": {"strategy": self.promotion.strategy,
                          "command": list(self.promotion.command)},
            "configuration": {
                "dns_ttl_s": lab.dns.ttl_s, "health_interval_s": lab.dns.health_interval_s,
                "inter_region_delay_ms": lab.inter_region_delay_ms,
                "replication": lab.replication_mode,
                # a store without SQL (redis-sentinel) runs no database canary: the
                # application canary measures the RPO
                **({"store": lab.store, "database_canary": False}
                   if lab.sql_database is None else {}),
                "canary_writers": self.rates.canary_writers,
                "k_consecutive": self.k_consecutive,
                "http_interval_s": self.rates.http_s,
                "dns_interval_s": self.rates.dns_s,
                "replication_interval_s": self.rates.replication_s,
                # the authority's health checks (`dns.health`); without them, PowerDNS
                # ifurlup's defaults: one failure marks a region down, within 1 s
                **_health_checks(lab.dns.health),
                **_ttl_floor(lab.dns),
                "promotion": self.promotion.strategy,
                "promotion_budget_s": self.budget.promotion_s,
                "write_reconnect_s": self.budget.write_reconnect_s,
                "regression_factor": self.results.regression_factor,
                **({"ha_manager": lab.ha.manager, "ha_ttl_s": lab.ha.ttl_s,
                    "ha_loop_wait_s": lab.ha.loop_wait_s,
                    "ha_retry_timeout_s": lab.ha.retry_timeout_s}
                   if lab.ha and lab.redis is None else {}),
                **({"ha_manager": lab.ha.manager, "sentinel_down_after_s": lab.ha.ttl_s}
                   if lab.ha and lab.redis is not None else {}),
                # only when capped: the configuration of other runs stays as it was
                **({"canary_max_rate": self.rates.canary_max_rate}
                   if self.rates.canary_max_rate else {}),
            },
            # only when configured; its header values go to the recorder on its stdin
            **({"app_canary": self.app_canary.as_config(header_values=False)}
               if self.app_canary is not None else {}),
        }


def _health_checks(health: descriptor.Health | None) -> dict[str, float]:
    """The detection budget's failure threshold and check timeout, as the descriptor gives
    them (measure/phases.py: interval × failures + timeout)."""
    return {
        "health_failures": health.failures if health is not None else 1,
        "health_timeout_s": health.timeout_s if health is not None and
        health.timeout_s is not None else 1.0,
    }


def _ttl_floor(dns: descriptor.Dns) -> dict[str, float]:
    """The highest TTL floor among the resolvers the drill samples, when one has a floor
    (the DNS phase's budget: measure/phases.py); nothing otherwise, so runs without one
    record what they always did."""
    floors = [r.min_ttl_s for r in dns.sampled() if r.min_ttl_s]
    return {"dns_ttl_floor_s": max(floors)} if floors else {}


KUBE_SECRET_KEYS = ("KUBERNETES_API_KEY", "KUBERNETES_API_KEY_PREFIX", "KUBERNETES_CERT_FILE",
                    "KUBERNETES_KEY_FILE", "KUBERNETES_CA_CERT_FILE", "KUBERNETES_VERIFY_SSL")


def _secrets(secrets: dict[str, Any] | None) -> dict[str, Any]:
    """The password and Kubernetes credentials in Chaos Toolkit secrets. A control gets
    every scope (`{"gameday": {"db_password": ...}, "k8s": {...}}`); an activity gets the
    scopes it declares (`"secrets": ["gameday", "k8s"]`) merged into one flat mapping."""
    s = dict(secrets or {})
    gameday = s["gameday"] if isinstance(s.get("gameday"), dict) else s
    k8s = s["k8s"] if isinstance(s.get("k8s"), dict) else s
    password = gameday.get("db_password")
    if password is not None and (not isinstance(password, str) or not password):
        raise ConfigError("secret 'db_password' (scope gameday) must be a non-empty string: "
                          "check the variable or vault path it is read from")
    unknown = sorted(k for k in k8s if k.startswith("KUBERNETES_") and k not in KUBE_SECRET_KEYS)
    if unknown:
        raise ConfigError(f"secret {unknown[0]!r} (scope k8s) is not one gameday uses: choose "
                          f"from {', '.join(KUBE_SECRET_KEYS)} (each region keeps its "
                          "kubeconfig context's server)")
    kube = tuple(sorted((k, str(v)) for k, v in k8s.items() if k in KUBE_SECRET_KEYS))
    return {"db_password": password, "kube_credentials": kube}


def _promotion(c: dict[str, Any]) -> Promotion:
    strategy = str(c.get("promotion") or "runner")
    if strategy not in PROMOTION_STRATEGIES:
        raise ConfigError(f"configuration 'promotion' must be one of "
                          f"{', '.join(PROMOTION_STRATEGIES)}, got {strategy!r}: runner promotes "
                          "by SQL, command runs 'promotion_command', none lets the system do it, "
                          "manager asks the lab's HA manager (SENTINEL FAILOVER)")
    raw = c.get("promotion_command") or ()
    if isinstance(raw, str):
        command = tuple(shlex.split(raw))
    elif isinstance(raw, list | tuple) and all(isinstance(a, str | int | float) for a in raw):
        command = tuple(str(a) for a in raw)
    else:
        raise ConfigError("configuration 'promotion_command' must be a command line or a list "
                          f"of arguments, got {raw!r}")
    if strategy == "command" and not command:
        raise ConfigError("configuration 'promotion' is 'command' but 'promotion_command' is "
                          "empty: set it to the command that promotes (e.g. "
                          "[\"patronictl\", \"failover\", ...]) or use promotion 'runner'")
    return Promotion(strategy=strategy, command=command,
                     timeout_s=number(c, "promotion_timeout_s", 60.0, minimum=0.1))


def _results(c: dict[str, Any]) -> Results:
    experiment_id = _text(c, "experiment_id")
    if experiment_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", experiment_id):
        raise ConfigError(f"configuration 'experiment_id' must be a short name of letters, digits, "
                          f"'.', '_' or '-' (it keys the trend and labels the metrics), got "
                          f"{experiment_id!r}")
    url = _text(c, "pushgateway_url")
    if url is not None and not re.match(r"https?://[^/\s]+", url):
        raise ConfigError("configuration 'pushgateway_url' must be an http:// or https:// URL "
                          "of a Prometheus Pushgateway, e.g. http://pushgateway:9091")
    live = _text(c, "live_view") or "auto"
    if live not in LIVE_VIEWS:
        raise ConfigError(f"configuration 'live_view' must be one of {', '.join(LIVE_VIEWS)}, "
                          f"got {live!r}: quiet prints a line per phase change and a heartbeat")
    return Results(experiment_id=experiment_id,
                   regression_factor=number(c, "regression_factor", 1.5, minimum=1.0),
                   pushgateway_url=url, live_view=live,
                   live_heartbeat_s=number(c, "live_heartbeat_s", 30.0, minimum=1.0))


def _text(c: dict[str, Any], key: str) -> str | None:
    """An optional string setting; empty means unset (an env variable set to nothing). A
    Chaos Toolkit env reference not resolved yet (a configuration read straight from the
    experiment file) is resolved as `chaos run` would."""
    raw = c.get(key)
    if isinstance(raw, dict) and raw.get("type") == "env" and isinstance(raw.get("key"), str):
        raw = os.environ.get(raw["key"], raw.get("default"))
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise ConfigError(f"configuration '{key}' must be a string, got {raw!r}")
    return raw


def argument(value: Any, key: str, default: float, *, minimum: float = 0.0) -> float:
    """An activity's numeric argument: Chaos Toolkit substitutes `${var}` as text, so a
    number may arrive as a string; checked as the configuration key it usually comes from."""
    return number({key: value}, key, default, minimum=minimum)


def number(c: Mapping[str, Any], key: str, default: float, *, integer: bool = False,
           minimum: float = 0.0, where: str | None = None) -> float:
    """The number under `key`, or ConfigError naming it. Finite only: YAML's `.nan` and
    `.inf`, JSON's `NaN` and `Infinity` and `--var key=inf` all parse as floats, and a
    timeout of NaN never ends (every comparison with it is false) while int(inf) raises
    OverflowError."""
    raw = c.get(key, default)
    if where is not None:  # a key inside an object of the configuration
        key = f"{where}.{key}"
    try:
        value = float(raw)
    except (TypeError, ValueError):
        # --var sets a top-level key only: a key inside an object is fixed in the experiment
        fix = "fix it in the experiment" + ("" if where else f" or pass --var {key}=NUMBER")
        raise ConfigError(f"configuration '{key}' must be a number, got {raw!r}: "
                          f"{fix}") from None
    if not math.isfinite(value) or value < minimum or (integer and value != int(value)):
        kind = "a whole number" if integer else "a finite number"
        raise ConfigError(f"configuration '{key}' must be {kind} >= {minimum:g}, got {raw!r}")
    return value
