"""The run in progress: its directory, clock and recorder. The control starts it and hands
it to the activities of the same `chaos run` in the drill's context (gameday.drill.context)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from gameday.foundation.descriptor import Lab
from gameday.foundation.errors import LabError, TargetError
from gameday.foundation.events import Kind, Payload, RecorderDied, RecorderKilled
from gameday.foundation.poll import poll_until
from gameday.foundation.settings import GamedaySettings
from gameday.measure import app_canary, canary, recorder
from gameday.measure.store import queries, timeline
from gameday.postgres import canary as canary_rows
from gameday.postgres.connection import cause

logger = logging.getLogger(f"chaostoolkit.{__name__}")

# How long the runner waits for the recorder's last records after asking it to stop: its
# own bound, then its exit (closing connections, each bounded too)
RECORDER_STOP_S = recorder.STOP_S + recorder.CLOSE_S + 2.0


class Run:
    def __init__(self, run_dir: Path, clock: timeline.Clock) -> None:
        self.dir = run_dir
        self.clock = clock
        self.recorder: subprocess.Popen[bytes] | None = None
        # set once the runner asks the recorder to stop, or once its loss is recorded: the
        # watch and the stop then never both record it
        self._stopping = False
        self._lost = False
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.clock.now()

    def event(self, payload: Payload, *, t: float | None = None) -> float:
        """Record `payload` at `t` (default: now) on the run's clock; returns the instant."""
        at = self.now() if t is None else t
        timeline.record_event(self.dir, payload, at)
        return at

    def events(self, kind: Kind) -> list[timeline.Event]:
        return queries.events(self.dir, kind)

    def watch_recorder(self) -> None:
        """Notice at once a recorder that dies before it is told to stop: the drill goes on
        unmeasured from then, and its report must say so (summary: incomplete)."""
        proc = self.recorder
        if proc is None:
            return

        def watch() -> None:
            code = proc.wait()
            with self._lock:
                if self._stopping or self._lost:
                    return
                self._lost = True
            last = self._log_tail()
            self.event(RecorderDied(exit_code=code, last_line=last))
            logger.error("gameday: the recorder died mid-run (exit code %s: %s); the drill goes "
                         "on unmeasured and its report will be incomplete (see %s)", code, last,
                         self.dir / "recorder.log")

        threading.Thread(target=watch, name="recorder-watch", daemon=True).start()

    def stop_recorder(self, timeout: float = RECORDER_STOP_S) -> None:
        """Ask the recorder to stop and wait, at most `timeout`, for its last records: it
        writes them within its own bound (recorder.STOP_S), then `recorder-stopped`. One
        that had to be killed first, or that died, is recorded: its last records are
        missing, and the summary says the run is incomplete."""
        proc = self.recorder
        if proc is None:
            return
        with self._lock:
            self._stopping = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                if not self._claim_loss():
                    return
                self.event(RecorderKilled(waited_s=timeout))
                logger.error("gameday: the recorder did not write its last records within "
                             "%g s of the stop and was killed; the report will be incomplete",
                             timeout)
                return
        if self._claim_loss():
            self.event(RecorderDied(exit_code=proc.returncode, last_line=self._log_tail()))

    def _claim_loss(self) -> bool:
        """True once, for the caller that records the recorder's loss, when it has no
        `recorder-stopped` of its own."""
        with self._lock:
            if self._lost or self.events(Kind.RECORDER_STOPPED):
                return False
            self._lost = True
            return True

    def _log_tail(self) -> str:
        try:
            lines = (self.dir / "recorder.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "the recorder printed nothing"


def new_run_id(experiment: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    slug = "".join(c if c.isalnum() else "-" for c in experiment.lower()).strip("-")[:30]
    return f"{stamp}-{slug or 'run'}"


def prune_earlier_runs(run: Run, lab: Lab) -> int:
    """The canary table's retention rule (`postgres.canary.prune_canary`), run once the run
    is over and only when its readiness gate passed; returns the rows deleted. Not at the
    start, as it was: there its commit on a synchronous primary whose standby did not
    stream hung the run before the gate could refuse it. Not before the fault either:
    deleting an 8-hour drill's rows then put their WAL between the standby and the fault
    being measured. Its commit is local (housekeeping needs no standby), and a database
    that refuses it (no right to create the runs table) keeps its rows: the run is not
    failed for that."""
    if not run.events(Kind.GATE_PASSED) or lab.sql_database is None:
        return 0
    meta = timeline.read_meta(run.dir)
    started = time.monotonic()
    try:
        pruned = canary_rows.prune(lab, start_seq=int(meta.get("start_seq", 1)),
                                   run_id=str(meta.get("run_id", "")))
    except psycopg.Error as exc:
        logger.warning("gameday: canary rows of earlier runs not pruned (%s)", cause(exc))
        return 0
    if pruned:
        logger.info("gameday: pruned %d canary rows of runs no longer measured in %.1f s",
                    pruned, time.monotonic() - started)
    return pruned


def start(settings: GamedaySettings, lab: Lab, *, experiment: str, kind: str,
          experiment_id: str | None = None, game_day_run: str | None = None,
          ready_timeout: float = 30.0) -> Run:
    """Start recording a run: its directory and timeline (its meta: who, what, on which
    clock, and the settings it runs with, recorded once here), then the recorder, waited
    for until its canary has a write acknowledged."""
    why = canary.safe_cancel_missing()
    if why is not None:
        raise LabError(why)
    run_id = new_run_id(experiment)
    run_dir = (settings.reports_dir / run_id).absolute()
    # the database canary's first number (none runs on a store without SQL)
    start_seq = canary_rows.next_seq(lab) if lab.sql_database is not None else 1
    run_dir.mkdir(parents=True, exist_ok=False)
    anchor_ns, anchor_utc = timeline.Clock.new_anchor()
    source, target = lab.roles(settings.drill)
    timeline.create(run_dir, {
        "run_id": run_id, "experiment": experiment, "kind": kind, "anchor_ns": anchor_ns,
        "anchor_utc": anchor_utc, "lab": lab.lab, "start_seq": start_seq,
        "lab_file": str(Path(lab.path).absolute()),
        **settings.recorded(lab),
        "regions": {role: {"name": r.name, "address": r.address, "db_host": r.db_host,
                           "endpoints": lab.endpoints()[r.name].to_dict()}
                    for role, r in (("primary", source), ("secondary", target))},
        # every resolver sampled, each with a flip of its own (the slowest is the budget's)
        "dns_resolvers": [r.recorded() for r in lab.dns.sampled()],
        "experiment_id": experiment_id,
        "game_day_run": game_day_run,
        "replication": lab.replication_mode,
        "ha": lab.ha.recorded() if lab.ha is not None else None,
        # the application canary's first number: above every earlier run's (app_canary)
        **({"app_start_seq": app_canary.start_seq()} if settings.app_canary else {}),
    })
    run = Run(run_dir, timeline.Clock(anchor_ns))
    spawn_recorder(run, settings, lab)
    assert run.recorder is not None

    def ready() -> bool:
        if run.events(Kind.RECORDER_READY):
            return True
        if run.recorder is not None and run.recorder.poll() is not None:
            raise _RecorderGone
        return False

    try:
        poll_until(ready, timeout_s=ready_timeout, interval_s=0.02, interruptible=False)
    except (_RecorderGone, TargetError):
        run.stop_recorder()
        tail = (run_dir / "recorder.log").read_text(errors="replace").strip().splitlines()
        if lab.sql_database is None:
            raise LabError("the recorder's application canary had no write acknowledged "
                           f"within {ready_timeout:.0f} s "
                           f"({tail[-1] if tail else 'recorder printed nothing'}): does the "
                           "global name answer, and its canary endpoint take a write? "
                           f"(see {run_dir}/recorder.log and the timeline's app_canary "
                           "table)") from None
        raise LabError("the recorder's canary had no write acknowledged within "
                       f"{ready_timeout:.0f} s ({queries.canary_trouble(run_dir)}; "
                       f"{tail[-1] if tail else 'recorder printed nothing'}): is the "
                       "database writable and, in a sync lab, its standby streaming? "
                       f"(see {run_dir}/recorder.log)") from None
    except BaseException:
        # interrupted while it waited (SIGTERM, Ctrl-C): the recorder goes with the run, or
        # it would sample on, unwatched, after the runner exits (seen: a `chaos run` stopped
        # half-way left one writing for half an hour)
        run.stop_recorder()
        raise
    run.watch_recorder()
    logger.info("gameday: recording to %s", run_dir)
    return run


class _RecorderGone(Exception):
    """The recorder exited before it was ready."""


def spawn_recorder(run: Run, settings: GamedaySettings, lab: Lab) -> None:
    """Start the recorder process of `run`, which writes into its directory. It reads what
    to sample and how often from the run's meta (`GamedaySettings.recorded`)."""
    # a password from the experiment's secrets reaches the recorder through a pipe: never
    # on its command line (ps shows that) nor in a file of the run directory
    # the application canary's configuration with its headers' values (a token, perhaps)
    # takes the same way
    stdin: dict[str, Any] = {}
    if settings.db_password is not None:
        stdin["password"] = settings.db_password
    if settings.app_canary is not None:
        stdin["app_canary"] = settings.app_canary.as_config()
    secret = json.dumps(stdin) if stdin else None
    (run.dir / "recorder.json").write_text(json.dumps({
        "secrets_on_stdin": secret is not None,
        # the recorder dies with this process (PR_SET_PDEATHSIG), and exits at once if
        # this process is already gone when it asks for that
        "runner_pid": os.getpid(),
    }, indent=2))
    log = open(run.dir / "recorder.log", "ab")  # noqa: SIM115 (the child keeps it)
    # its own session: a Ctrl-C at the terminal reaches the runner's process group, whose
    # rollbacks the recorder then goes on measuring until the runner stops it (it dies with
    # the runner all the same: PR_SET_PDEATHSIG)
    run.recorder = subprocess.Popen(
        [sys.executable, "-m", "gameday.measure.recorder", str(run.dir)],
        stdin=subprocess.PIPE if secret is not None else subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    if secret is not None and run.recorder.stdin is not None:
        try:
            run.recorder.stdin.write(secret.encode())
            run.recorder.stdin.close()
        except BrokenPipeError:
            pass  # it died at start: the wait for it reports it with its log
