"""The live view during `chaos run`: what the recorder sees, as it sees it.

Its mode is configuration `live_view`: `panel`, a rich panel refreshed about 4 times a
second; `lines`, one plain timestamped line about every second; `quiet`, for CI logs, one
line when the phase changes and one every `live_heartbeat_s` (an 8-hour drill prints a few
thousand lines, not 28,800); `off`; `auto` (the default), the panel on a terminal and quiet
lines otherwise. Except when off, a final summary panel when the run ends.

Which phase the drill waits for follows the phase registry (`gameday.measure.phases`):
each phase names the evidence it is `seen` by, and the reader tracks that evidence from the
samples as the summary measures it (the first writable answer from the secondary, not the
runner's own `promoted` event, which no command or HA manager records).

It reads the run's timeline SQLite (read-only, incrementally by rowid), runs in a daemon
thread, and never raises into the run: any error is logged and the view stops.

    handle = live.start(run.dir, run.now)      # before the method
    handle.stop(summary)                       # after the report is written

`start` also remembers the handle by run directory, so `live.stop(run_dir, summary)` works
from another hook. The view stops refreshing by itself once the `experiment-ended` event is
recorded.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.file_proxy import FileProxy
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from gameday.foundation.events import Kind
from gameday.measure import phases
from gameday.measure import rto as rtos
from gameday.measure.store import queries

logger = logging.getLogger(f"chaostoolkit.{__name__}")

TERMINAL_INTERVAL_S = 0.25
PLAIN_INTERVAL_S = 1.0
RATE_WINDOW_S = 1.0
HEARTBEAT_S = 30.0
MODES = ("auto", "panel", "lines", "quiet", "off")

# the evidence a phase is seen by (Phase.seen), each tracked by the Reader
EVIDENCE = ("primary-unhealthy", "leader-key-lost", "sentinel-odown", "secondary-writable",
            "dns-authoritative", "dns-resolver", "global-served", "secondary-write", "streak")


class Progress(StrEnum):
    """Where the drill is besides waiting for a phase of the registry (`Phase.waiting`)."""

    BEFORE_FAULT = "steady state, before the fault"
    NOT_READY = "not ready: no fault injected"
    RECOVERED = "recovered"
    ENDED = "ended"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Snapshot:
    now: float
    since_fault: float | None
    phase: str
    dns: dict[str, str]  # server -> answer (region name when known)
    http: dict[str, str]  # target -> "200 region-2" / "error: ..."
    canary_rate: float  # acknowledged writes per second over the last RATE_WINDOW_S
    last_ack: str | None
    canary_errors: int
    last_error: str | None
    lag_s: float | None


class Reader:
    """Incremental reader of one run's timeline: each `read` fetches only new rows."""

    def __init__(self, run_dir: Path) -> None:
        self.tail = queries.Tail(run_dir)
        self.meta: dict[str, Any] = {}
        self.t_fault: float | None = None
        self.ended = False
        self.seen = dict.fromkeys(EVIDENCE, False)
        self.has_ha: bool | None = None
        self.events: list[tuple[float, str, str | None]] = []
        self.dns: dict[str, str] = {}
        self.http: dict[str, str] = {}
        self.http_ok: dict[str, tuple[bool, str | None]] = {}
        self.streak: rtos.Streak | None = None  # the RTO rule, after the fault
        self.wrote = False  # a canary write acknowledged by the new primary after the fault
        self.acks: collections.deque[float] = collections.deque()
        self.last_ack: tuple[int, str | None, float] | None = None
        self.errors = 0
        self.last_error: str | None = None
        self.lag: float | None = None

    def close(self) -> None:
        self.tail.close()

    def _rows(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        return self.tail.new_rows(table, [c.strip() for c in columns.split(",")])

    def _region(self, address: str | None) -> str | None:
        for r in (self.meta.get("regions") or {}).values():
            if address in (r.get("address"), r.get("db_host")):
                return str(r["name"])
        return address

    def _role(self, role: str) -> dict[str, Any]:
        return (self.meta.get("regions") or {}).get(role) or {}

    def read(self, now: float) -> Snapshot:
        if not self.meta or "regions" not in self.meta:
            self.meta = self.tail.meta()
        primary, secondary = self._role("primary"), self._role("secondary")
        k = int(self.meta.get("k_consecutive", rtos.K_CONSECUTIVE))
        if self.streak is None:
            self.streak = rtos.Streak(str(secondary.get("name")), k)
        seen = self.seen
        for t, kind, region in self._rows("events", "t, kind, region"):
            self.events.append((t, kind, region))
            if kind == Kind.FAULT_APPLIED and self.t_fault is None:
                self.t_fault = t
            elif kind in (Kind.EXPERIMENT_ENDED, Kind.RECORDER_STOPPED):
                self.ended = True
        for server, ok, answer, error, region in self._rows(
                "dns", "server, ok, answer, error, region"):
            # the sampler's class of the whole answer: a region, mixed or unknown
            self.dns[server] = (region or self._region(answer) or "no answer") if ok \
                else f"error: {error}"
        for t, target, ok, status, region, error in self._rows(
                "http", "t, target, ok, status, region, error"):
            self.http[target] = f"{status} {region or ''}".strip() if ok else \
                f"{status or 'error'}: {error or 'failed'}"
            after = self.t_fault is not None and t >= self.t_fault
            if target == primary.get("name") and after and not ok:
                seen["primary-unhealthy"] = True
            if target == "global":
                self.http_ok[target] = (bool(ok), region)
                if after:
                    self.streak.add(t, ok, region)
        for seq, t_ack, outcome, server, error in self._rows(
                "canary", "seq, t_ack, outcome, server, error"):
            if outcome == "ok" and t_ack is not None:
                self.acks.append(t_ack)
                if self.t_fault is not None and t_ack >= self.t_fault and \
                        server == secondary.get("db_host"):
                    self.wrote = True
                    seen["secondary-write"] = seen["secondary-writable"] = True
                if self.last_ack is None or t_ack >= self.last_ack[2]:
                    self.last_ack = (seq, self._region(server), t_ack)
            else:
                self.errors += 1
                self.last_error = f"#{seq} {outcome}: {error or 'no detail'}"
        for t, server, ok, in_recovery, lag in self._rows(
                "replication", "t, server, ok, in_recovery, lag_s"):
            if server == secondary.get("name") and ok and in_recovery:
                self.lag = lag
            elif server == secondary.get("name") and ok and in_recovery == 0 and \
                    self.t_fault is not None and t >= self.t_fault:
                seen["secondary-writable"] = True  # it answered out of recovery
        if not (self.meta.get("configuration") or {}).get("database_canary", True) and \
                self.tail.has("app_canary"):
            # no SQL, no database canary: the first write is the application canary's
            for t_ack, outcome, region in self._rows("app_canary", "t_ack, outcome, region"):
                if outcome == "ok" and t_ack is not None and self.t_fault is not None and \
                        t_ack >= self.t_fault and region == secondary.get("name"):
                    self.wrote = True
                    seen["secondary-write"] = True
        if self._has_ha():
            for t, ok, leader, detail in self._rows("ha", "t, ok, leader, detail"):
                if not ok or self.t_fault is None or t < self.t_fault:
                    continue
                if leader != primary.get("name"):
                    seen["leader-key-lost"] = seen["sentinel-odown"] = True
                elif '"odown": true' in (detail or ""):  # a Sentinel's +odown
                    seen["sentinel-odown"] = True
        while self.acks and self.acks[0] < now - RATE_WINDOW_S:
            self.acks.popleft()
        rate = sum(1 for t in self.acks if t <= now) / RATE_WINDOW_S
        last_ack = None
        if self.last_ack is not None:
            seq, region, t_ack = self.last_ack
            last_ack = f"#{seq} by {region} {max(0.0, now - t_ack):.1f} s ago"
        return Snapshot(
            now=now, since_fault=None if self.t_fault is None else now - self.t_fault,
            phase=self._phase(secondary), dns=dict(sorted(self.dns.items())),
            http=dict(sorted(self.http.items())), canary_rate=rate, last_ack=last_ack,
            canary_errors=self.errors, last_error=self.last_error, lag_s=self.lag)

    def _has_ha(self) -> bool:
        if self.has_ha is None:
            self.has_ha = self.tail.has("ha")
        return self.has_ha

    def _phase(self, secondary: dict[str, Any]) -> str:
        """The first phase of the registry's chain not seen yet, by the evidence each phase
        names (`Phase.seen`)."""
        if self.ended:
            return Progress.ENDED.value
        if any(kind == Kind.GATE_FAILED for _t, kind, _r in self.events):
            return Progress.NOT_READY.value
        if self.t_fault is None:
            return Progress.BEFORE_FAULT.value
        address = secondary.get("address")
        name = secondary.get("name")
        seen = self.seen
        # the latest answers, not a first flip: a resolver flapping back is waiting again
        seen["dns-authoritative"] = self.dns.get("authoritative") in (address, name)
        seen["dns-resolver"] = self.dns.get("resolver") in (address, name)
        seen["global-served"] = self.http_ok.get("global") == (True, name)
        seen["streak"] = self.streak is not None and self.streak.reached
        for phase in phases.chain(self.meta.get("configuration")):
            if not seen[phase.seen]:
                return phase.waiting
        return Progress.RECOVERED.value


def _since(snap: Snapshot) -> str:
    return "no fault yet" if snap.since_fault is None else f"{snap.since_fault:+.1f} s"


def panel(snap: Snapshot, *, title: str = "gameday") -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("since fault", _since(snap))
    grid.add_row("phase", snap.phase)
    for server, answer in snap.dns.items():
        grid.add_row(f"DNS {server}", answer)
    for target, status in snap.http.items():
        grid.add_row(f"HTTP {target}", status)
    grid.add_row("canary", f"{snap.canary_rate:.0f} writes/s, last ack "
                 f"{snap.last_ack or 'none yet'}")
    grid.add_row("canary errors", f"{snap.canary_errors}"
                 + (f" (last {snap.last_error})" if snap.last_error else ""))
    grid.add_row("replication lag", "—" if snap.lag_s is None else f"{snap.lag_s:.3f} s")
    return Panel(grid, title=title, box=box.ROUNDED, expand=False)


def line(snap: Snapshot, anchor_utc: str | None) -> str:
    """One plain line: wall-clock UTC of the sample (anchor + run clock), then the state."""
    stamp = f"t={snap.now:.1f}s"
    if anchor_utc:
        try:
            at = datetime.fromisoformat(anchor_utc) + timedelta(seconds=snap.now)
            stamp = at.isoformat(timespec="milliseconds")
        except ValueError:
            pass
    dns = " ".join(f"{k}={v}" for k, v in snap.dns.items()) or "-"
    http = " ".join(f"{k}={v}" for k, v in snap.http.items()) or "-"
    lag = "-" if snap.lag_s is None else f"{snap.lag_s:.3f}s"
    return (f"{stamp} gameday since-fault={_since(snap)} phase={snap.phase!r} dns[{dns}] "
            f"http[{http}] canary={snap.canary_rate:.0f}/s last={snap.last_ack or '-'} "
            f"errors={snap.canary_errors} lag={lag}")


def final_panel(summary: Mapping[str, Any] | None, snap: Snapshot | None,
                run_name: str) -> Panel:
    if summary is None:
        body: RenderableType = "The run ended without a summary; see the log." if snap is None \
            else panel(snap, title="last state")
        return Panel(body, title=f"gameday {run_name}: no report", box=box.ROUNDED, expand=False)
    t = summary.get("targets") or {}
    w = summary.get("writes") or {}
    grid = Table("Measure", "Measured", "Target", box=box.SIMPLE)

    def sec(v: Any, err: Any = None) -> str:
        if v is None:
            return "not observed"
        return f"{v:.3f} s" + ("" if err is None else f" ± {err * 1000:.0f} ms")

    grid.add_row("RTO", sec(summary.get("rto_s"), summary.get("rto_error_s")),
                 f"≤ {t.get('rto_s', 0):g} s")
    grid.add_row("Write RTO", sec(summary.get("write_rto_s")), "—")
    grid.add_row("Downtime", sec(summary.get("downtime_s")), "—")
    grid.add_row("RPO", sec(summary.get("rpo_s"), summary.get("rpo_error_s")),
                 f"≤ {t.get('rpo_s', 0):g} s")
    grid.add_row("Lost writes", str(w.get("lost")), f"≤ {t.get('max_lost_writes')}")
    verdict = str(summary.get("verdict") or "?").upper()
    reasons = summary.get("reasons") or []
    body = Table.grid()
    body.add_row(grid)
    for r in reasons:
        body.add_row(f"• {r}")
    body.add_row(f"report: {run_name}/report.md")
    style = "green" if verdict == "PASS" else "red"
    return Panel(body, title=f"gameday {run_name}: {verdict}", border_style=style,
                 box=box.ROUNDED, expand=False)


class Quiet:
    """Quiet mode's decision: a line when the phase changes (the time and the phase), and a
    heartbeat with the whole state when `heartbeat_s` passed without one."""

    def __init__(self, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.heartbeat_s = heartbeat_s
        self.phase: str | None = None
        self.printed_at = float("-inf")

    def feed(self, snap: Snapshot, anchor_utc: str | None) -> str | None:
        if snap.phase != self.phase:
            self.phase, self.printed_at = snap.phase, snap.now
            return line(snap, anchor_utc).split(" dns[", 1)[0]
        if snap.now - self.printed_at >= self.heartbeat_s:
            self.printed_at = snap.now
            return line(snap, anchor_utc).replace(" gameday ", " gameday heartbeat ", 1)
        return None


class LiveView:
    def __init__(self, run_dir: Path, clock_now: Callable[[], float], *,
                 console: Console | None = None, terminal: bool | None = None,
                 interval_s: float | None = None, mode: str = "auto",
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self.run_dir = Path(run_dir)
        self.clock_now = clock_now
        self.console = console or Console()
        self.terminal = self.console.is_terminal if terminal is None else terminal
        if mode not in MODES:
            raise ValueError(f"live view mode {mode!r}: one of {', '.join(MODES)}")
        self.mode = mode if mode != "auto" else ("panel" if self.terminal else "quiet")
        self.heartbeat_s = heartbeat_s
        self.interval_s = interval_s or (TERMINAL_INTERVAL_S if self.mode == "panel"
                                         else PLAIN_INTERVAL_S)
        self.reader = Reader(self.run_dir)
        self.last: Snapshot | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gameday-live", daemon=True)
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> LiveView:
        if self.mode != "off":
            self._thread.start()
        return self

    def _snapshot(self) -> Snapshot | None:
        try:
            self.last = self.reader.read(self.clock_now())
        except queries.Unavailable as exc:  # busy or not yet created: next tick
            logger.debug("gameday: live view read failed: %s", exc)
        return self.last

    def _run(self) -> None:
        try:
            if self.mode == "panel":
                self._run_terminal()
            elif self.mode == "quiet":
                self._run_quiet()
            else:
                self._run_plain()
        except Exception:  # the view must never take the run down
            logger.exception("gameday: the live view stopped")
        finally:
            self.reader.close()

    def _run_plain(self) -> None:
        anchor = None
        while True:
            snap = self._snapshot()
            anchor = anchor or self.reader.meta.get("anchor_utc")
            if snap is not None:
                self.console.print(line(snap, anchor), markup=False, highlight=False,
                                   soft_wrap=True)
            if self.reader.ended or self._stop.wait(self.interval_s):
                return

    def _run_quiet(self) -> None:
        anchor = None
        quiet = Quiet(self.heartbeat_s)
        while True:
            snap = self._snapshot()
            anchor = anchor or self.reader.meta.get("anchor_utc")
            text = None if snap is None else quiet.feed(snap, anchor)
            if text is not None:
                self.console.print(text, markup=False, highlight=False, soft_wrap=True)
            if self.reader.ended or self._stop.wait(self.interval_s):
                return

    def _run_terminal(self) -> None:
        title = f"gameday {self.run_dir.name}"
        with Live(console=self.console, auto_refresh=False, transient=True) as live, \
                _logs_above(live):
            while True:
                snap = self._snapshot()
                if snap is not None:
                    live.update(panel(snap, title=title), refresh=True)
                if self.reader.ended or self._stop.wait(self.interval_s):
                    return

    def stop(self, summary: Mapping[str, Any] | None = None, *, timeout_s: float = 2.0) -> None:
        """Stop refreshing and print the final panel. Never raises; a second call does
        nothing."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            self._stop.set()
            if self._thread.is_alive():
                self._thread.join(timeout_s)
            if self.mode != "off":
                self.console.print(final_panel(summary, self.last, self.run_dir.name))
        except Exception:
            logger.exception("gameday: the live view could not print its summary")
        finally:
            _handles.pop(str(self.run_dir), None)


class _logs_above:
    """While the panel is live, the chaostoolkit logger's terminal handlers write through
    rich's proxy, so log lines appear above the panel instead of being overdrawn. Their
    streams are put back on exit."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.saved: list[tuple[logging.StreamHandler[Any], Any]] = []

    def __enter__(self) -> _logs_above:
        for handler in logging.getLogger("chaostoolkit").handlers:
            if type(handler) is logging.StreamHandler:
                stream = handler.stream
                if getattr(stream, "isatty", lambda: False)():
                    self.saved.append((handler, stream))
                    handler.setStream(FileProxy(self.live.console, stream))
        return self

    def __exit__(self, *exc: object) -> None:
        for handler, stream in self.saved:
            handler.flush()
            handler.setStream(stream)


_handles: dict[str, LiveView] = {}


def start(run_dir: Path, clock_now: Callable[[], float], *, console: Console | None = None,
          terminal: bool | None = None, interval_s: float | None = None, mode: str = "auto",
          heartbeat_s: float = HEARTBEAT_S) -> LiveView:
    """Start the live view of the run in `run_dir`; never raises (an unknown mode is
    settings' to refuse: here it falls back to auto)."""
    view = LiveView(run_dir, clock_now, console=console, terminal=terminal,
                    interval_s=interval_s, mode=mode if mode in MODES else "auto",
                    heartbeat_s=heartbeat_s)
    try:
        view.start()
    except Exception:
        logger.exception("gameday: could not start the live view")
    _handles[str(view.run_dir)] = view
    return view


def stop(run_dir: Path, summary: Mapping[str, Any] | None = None) -> None:
    """Stop the live view started for `run_dir`, if any, and print the final panel."""
    view = _handles.get(str(Path(run_dir)))
    if view is not None:
        view.stop(summary)
