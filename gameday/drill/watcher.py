"""The stop conditions at work: each evaluated on its schedule in a thread of its own, from
the start of the run to the end of the method, and the run aborted on the first that fires
(what they are and how they are written: gameday.foundation.stopconditions and README, "Stop
conditions").

When one fires, the watcher records an `aborted` event with the reason and interrupts the
run as SIGTERM does (`interrupt.abort`): the running step stops, the rollbacks run, the
verdict is ABORTED with the reason, and `chaos run` exits non-zero.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
from collections.abc import Callable

import httpx

from gameday.foundation import interrupt
from gameday.foundation.events import Aborted, Kind
from gameday.foundation.stopconditions import Condition, StopConditions
from gameday.measure import rto as rtos
from gameday.measure.run import Run
from gameday.measure.store import queries

logger = logging.getLogger(f"chaostoolkit.{__name__}")


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

    def __init__(self, stop: StopConditions, run: Run, *, target: str, k: int,
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
                    self.run.event(Aborted(reason=reason))
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
        faults = self.run.events(Kind.FAULT_APPLIED)
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
        with queries.Samples(self.run.dir) as samples:
            rows = samples.last_global(t_fault, self.k)
        streak = rtos.Streak(self.target, self.k)
        for t, ok, region in rows:
            streak.add(t, ok, region)
        return streak.reached


_watcher: Watcher | None = None


def watch(stop: StopConditions, run: Run, *, target: str, k: int) -> Watcher | None:
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
