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

When one fires, the watcher records an `aborted` event with the reason and interrupts the
run as SIGTERM does (`interrupt.abort`): the running step stops, the rollbacks run, the
verdict is ABORTED with the reason, and `chaos run` exits non-zero. The watcher runs in
its own thread from the start of the run to the end of the method.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import subprocess
import threading
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from gameday import interrupt
from gameday.errors import ConfigError
from gameday.measure import metrics, timeline

logger = logging.getLogger(f"chaostoolkit.{__name__}")

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


class CheckError(Exception):
    """The condition could not be evaluated."""


def check(cond: Condition) -> str | None:
    """Why `cond` fires now, or None. A CheckError when it cannot be evaluated."""
    if cond.kind == "command":
        try:
            proc = subprocess.run(cond.command, capture_output=True, text=True,
                                  timeout=cond.timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CheckError(f"`{shlex.join(cond.command)}` took longer than "
                             f"{cond.timeout_s:g} s") from None
        except OSError as exc:
            raise CheckError(f"`{shlex.join(cond.command)}` did not start: {exc.strerror}") \
                from None
        if proc.returncode == 0:
            return None
        said = (proc.stdout + proc.stderr).strip().splitlines()
        return (f"`{shlex.join(cond.command)}` exited {proc.returncode}"
                + (f": {said[-1][:200]}" if said else ""))
    assert cond.url is not None
    try:
        with httpx.Client(trust_env=False, timeout=cond.timeout_s) as client:
            if cond.kind == "http":
                status = client.get(cond.url).status_code
                if status in cond.expect_status:
                    return None
                return (f"{_where(cond.url)} answered {status}, expected "
                        f"{' or '.join(map(str, cond.expect_status))}")
            response = client.get(f"{cond.url}/api/v1/query", params={"query": cond.query})
    except httpx.HTTPError as exc:
        raise CheckError(f"{_where(cond.url)}: {type(exc).__name__}") from None
    return _promql_fires(cond, response)


def _promql_fires(cond: Condition, response: httpx.Response) -> str | None:
    try:
        body = response.json()
        data = body["data"]
        if body.get("status") != "success":
            raise CheckError(f"Prometheus refused the query: {body.get('error')}")
        if data["resultType"] == "vector":
            values = [(s.get("metric") or {}, float(s["value"][1])) for s in data["result"]]
        elif data["resultType"] == "scalar":
            values = [({}, float(data["result"][1]))]
        else:
            raise CheckError(f"a {data['resultType']} result: write an instant vector query")
    except (ValueError, KeyError, TypeError, IndexError):
        raise CheckError(f"Prometheus at {_where(cond.url or '')} answered "
                         f"{response.status_code} with no query result") from None
    firing = [(labels, v) for labels, v in values if v != 0]
    if not firing:
        return None
    labels, value = firing[0]
    shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")
    return f"`{cond.query}` returned {value:g}" + (f" ({shown})" if shown else "")


def _where(url: str) -> str:
    """The URL without credentials or query, for the report and the log."""
    parts = httpx.URL(url)
    return str(parts.copy_with(username=None, password=None, query=None))


class Watcher:
    """Evaluates the stop conditions every `interval_s` in a daemon thread and aborts the
    run once, on the first that fires."""

    def __init__(self, stop: StopConditions, run: Any, *, target: str, k: int,
                 fire: Callable[[str], None] = interrupt.abort) -> None:
        self.stop_conditions = stop
        self.run = run
        self.target = target  # the region the drill moves service to (its RTO streak)
        self.k = k
        self.fire = fire
        self.fired: str | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gameday-stop-conditions",
                                        daemon=True)
        self._recovered = False
        self._errors: dict[str, str] = {}

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        try:
            while not self._stopped.wait(self.stop_conditions.interval_s):
                reason = self.evaluate()
                if reason is not None and not self._stopped.is_set():
                    self.fired = reason
                    self.run.event("aborted", reason=reason)
                    logger.error("gameday: stop condition: %s", reason)
                    self.fire(reason)
                    return
        except Exception:  # the watcher must never take the run down silently
            logger.exception("gameday: the stop conditions stopped being evaluated: aborting")
            self.fire("the stop conditions could not be evaluated (see the log)")

    def evaluate(self) -> str | None:
        """The reason to abort now, or None."""
        outage = self._outage()
        if outage is not None:
            return outage
        for cond in self.stop_conditions.conditions:
            try:
                fired = check(cond)
            except CheckError as exc:
                if cond.on_error == "abort":
                    return f"stop condition {cond.name} could not be evaluated: {exc}"
                if self._errors.get(cond.name) != str(exc):
                    logger.warning("gameday: stop condition %s not evaluated (ignored): %s",
                                   cond.name, exc)
                self._errors[cond.name] = str(exc)
                continue
            self._errors.pop(cond.name, None)
            if fired is not None:
                return f"stop condition {cond.name}: {fired}"
        return None

    def _outage(self) -> str | None:
        limit = self.stop_conditions.max_outage_s
        if limit is None or self._recovered:
            return None
        faults = self.run.events("fault-applied")
        if not faults:
            return None
        t_fault = faults[0].t
        if self._recovered_since(t_fault):
            self._recovered = True  # the outage is over: the limit no longer applies
            return None
        elapsed = self.run.now() - t_fault
        if elapsed <= limit:
            return None
        return (f"max_outage_s: {self.target} has not served {self.k} consecutive global "
                f"requests {elapsed:.1f} s after the fault (limit {limit:g} s)")

    def _recovered_since(self, t_fault: float) -> bool:
        conn = timeline.connect(self.run.dir)
        try:
            rows = conn.execute("SELECT t, ok, region FROM http WHERE target = 'global' AND "
                                "t >= ? ORDER BY t DESC LIMIT ?", (t_fault, self.k)).fetchall()
        finally:
            conn.close()
        streak = metrics.Streak(self.target, self.k)
        for t, ok, region in reversed(rows):
            streak.add(t, ok, region)
        return streak.reached


_watcher: Watcher | None = None


def watch(stop: StopConditions, run: Any, *, target: str, k: int) -> Watcher | None:
    """Start watching for the run (the control, at its start); None when nothing is set."""
    global _watcher
    halt()
    if not stop.active:
        return None
    _watcher = Watcher(stop, run, target=target, k=k).start()
    logger.info("gameday: watching %d stop condition(s)%s", len(stop.conditions),
                f" and max_outage_s {stop.max_outage_s:g}" if stop.max_outage_s else "")
    return _watcher


def halt() -> None:
    """Stop watching (the control, once the method is over, and at the end of the run)."""
    global _watcher
    if _watcher is not None:
        _watcher.stop()
        _watcher = None
