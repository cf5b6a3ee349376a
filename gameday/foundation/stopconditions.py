"""Stop conditions: the user's own reasons to roll a drill back at once.

A drill against production needs what AWS FIS calls stop conditions, Steadybit an
emergency stop and Chaos Mesh `abortWithStatusCheck`: "if the secondary is failing too, or
the error budget burns, or the outage passes N seconds, put everything back now". gameday's
own bounded waits end a stuck step; these end the drill on the user's signal.

Configuration (each condition fires when its check says so; see README, "Stop conditions"):

    "abort_when": [
      {"name": "error-budget", "type": "promql", "url": "http://prometheus:9090",
       "query": "sum(rate(http_requests_total{code=~'5..'}[1m])) > 5"},
      {"name": "secondary-health", "type": "http", "url": "https://eu.example.com/healthz",
       "expect_status": [200]},
      {"name": "pager", "type": "command", "command": ["./alarm-is-clear.sh"]}
    ],
    "abort_check_interval_s": 1,
    "max_outage_s": 300

- `http`: fires when the URL answers a status not in `expect_status` (default [200]).
- `promql`: an instant query (`/api/v1/query`, as chaostoolkit-prometheus asks it; `url`
  defaults to the configuration's `prometheus_base_url`, that extension's key), written
  like an alerting rule: fires when it returns a sample whose value is not 0.
- `command`: fires when the command exits non-zero (it passes while the alarm is clear).
- `max_outage_s`: fires when the service has not recovered (K consecutive global
  successes served by the drill's target region) that long after the fault, whatever
  state the failover is in.

A check that cannot be evaluated (timeout, refused, bad answer) fires too, unless the
condition says `"on_error": "ignore"`: a stop condition that cannot be read is no
protection (fail closed). Every check is bounded by its `timeout_s` (default 5 s).

This module is their configuration, parsed with the rest (GamedaySettings): a
bad condition is refused before anything starts. Evaluating them during the drill is
gameday.drill.watcher's.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Mapping
from typing import Any

from gameday.foundation.errors import ConfigError

KINDS = ("http", "promql", "command")
FIELDS = {
    "http": {"name", "type", "url", "expect_status", "timeout_s", "on_error"},
    "promql": {"name", "type", "url", "query", "timeout_s", "on_error"},
    "command": {"name", "type", "command", "timeout_s", "on_error"},
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Condition:
    name: str
    kind: str  # http, promql or command
    url: str | None = dataclasses.field(default=None, repr=False)  # may hold credentials
    expect_status: tuple[int, ...] = (200,)
    query: str | None = None
    command: tuple[str, ...] = ()
    timeout_s: float = 5.0
    on_error: str = "abort"  # or "ignore"


@dataclasses.dataclass(frozen=True, kw_only=True)
class StopConditions:
    conditions: tuple[Condition, ...] = ()
    interval_s: float = 1.0
    max_outage_s: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.conditions) or self.max_outage_s is not None


def parse(c: Mapping[str, Any]) -> StopConditions:
    """`abort_when`, `abort_check_interval_s` and `max_outage_s` of the configuration; a
    ConfigError names the key and the fix (nothing has started yet)."""
    raw = c.get("abort_when") or []
    if isinstance(raw, str):  # `--var abort_when='[...]'`
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ConfigError("configuration 'abort_when' must be a list of conditions (JSON "
                              "when given with --var)") from None
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError("configuration 'abort_when' must be a list of conditions like "
                          '{"type": "http", "url": "https://.../healthz"}')
    conditions = tuple(_condition(item, n, c) for n, item in enumerate(raw, 1))
    names = [x.name for x in conditions]
    if len(set(names)) != len(names):
        raise ConfigError(f"configuration 'abort_when': two conditions are named alike ({names})")
    interval = _number(c, "abort_check_interval_s", 1.0, 0.1)
    outage = c.get("max_outage_s")
    return StopConditions(conditions=conditions, interval_s=interval,
                          max_outage_s=None if outage in (None, "", 0, "0")
                          else _number(c, "max_outage_s", 0.0, 0.1))


def _number(c: Mapping[str, Any], key: str, default: float, minimum: float) -> float:
    raw = c.get(key, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"configuration '{key}' must be a number of seconds, got {raw!r}") \
            from None
    if not value >= minimum:
        raise ConfigError(f"configuration '{key}' must be at least {minimum:g} s, got {raw!r}")
    return value


def _condition(item: Any, n: int, c: Mapping[str, Any]) -> Condition:
    where = f"configuration 'abort_when' #{n}"
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be an object like "
                          '{"type": "http", "url": "https://.../healthz"}')
    kind = item.get("type")
    if kind not in KINDS:
        raise ConfigError(f"{where}: 'type' must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = sorted(set(item) - FIELDS[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} for a {kind} condition "
                          f"(it takes {', '.join(sorted(FIELDS[kind]))})")
    name = str(item.get("name") or f"{kind} #{n}")
    where = f"{where} ({name})"
    timeout = _number(item, "timeout_s", 5.0, 0.1)
    on_error = item.get("on_error", "abort")
    if on_error not in ("abort", "ignore"):
        raise ConfigError(f"{where}: 'on_error' must be abort or ignore, got {on_error!r}")
    if kind == "command":
        command = item.get("command")
        argv = tuple(shlex.split(command)) if isinstance(command, str) else \
            tuple(str(a) for a in command) if isinstance(command, list) else ()
        if not argv:
            raise ConfigError(f"{where}: 'command' must be a command line or a list of "
                              "arguments that exits 0 while all is well")
        return Condition(name=name, kind=kind, command=argv, timeout_s=timeout, on_error=on_error)
    url = item.get("url") or (c.get("prometheus_base_url") if kind == "promql" else None)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: 'url' must be an http:// or https:// URL"
                          + (" (or set configuration 'prometheus_base_url')"
                             if kind == "promql" else ""))
    if kind == "promql":
        query = item.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ConfigError(f"{where}: 'query' must be a PromQL expression that returns a "
                              "non-zero sample when the drill must stop")
        return Condition(name=name, kind=kind, url=url.rstrip("/"), query=query,
                         timeout_s=timeout, on_error=on_error)
    expect = item.get("expect_status", [200])
    expect = [expect] if isinstance(expect, int) else expect
    if not isinstance(expect, list) or not expect or \
            not all(isinstance(x, int) and 100 <= x <= 599 for x in expect):
        raise ConfigError(f"{where}: 'expect_status' must be a list of HTTP statuses, "
                          f"got {item.get('expect_status')!r}")
    return Condition(name=name, kind=kind, url=url, expect_status=tuple(expect),
                     timeout_s=timeout, on_error=on_error)
