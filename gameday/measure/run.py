"""The run in progress: its directory, clock and recorder, shared by the control and the
activities of one `chaos run` (they live in the same process)."""

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

from gameday import postgres
from gameday.errors import LabError
from gameday.labs.descriptor import Lab
from gameday.measure import canary, recorder, timeline
from gameday.settings import GamedaySettings

logger = logging.getLogger(f"chaostoolkit.{__name__}")

ENV = "GAMEDAY_RUN_DIR"
_current: Run | None = None
# How long the runner waits for the recorder's last records after asking it to stop: its
# own bound, then its exit (closing connections, each bounded too)
RECORDER_STOP_S = recorder.STOP_S + recorder.CLOSE_S + 2.0
# `chaos run --dry`: the plan the control made instead of a run (gameday.planning)
_dry: dict[str, Any] | None = None
# why the control refused this `chaos run` before it started (its rollbacks then undo
# nothing: a refused run changes nothing, and the lab may be another drill's)
_refused: str | None = None


def set_dry(plan: dict[str, Any] | None) -> None:
    global _dry
    _dry = plan


def dry_plan() -> dict[str, Any] | None:
    """The plan when this `chaos run` is a dry run: activities return it and change nothing."""
    return _dry


def set_refused(reason: str | None) -> None:
    global _refused
    _refused = reason


def refused() -> str | None:
    """Why this `chaos run` was refused before it started; its activities change nothing."""
    return _refused


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

    def event(self, kind: str, region: str | None = None, *, t: float | None = None,
              **detail: Any) -> float:
        at = self.now() if t is None else t
        timeline.record_event(self.dir, at, kind, region, **detail)
        return at

    def events(self, kind: str) -> list[timeline.Event]:
        conn = timeline.connect(self.dir)
        try:
            return [timeline.Event(*row) for row in conn.execute(
                f"SELECT {timeline.select_list('events')} FROM events WHERE kind = ? "
                "ORDER BY t", (kind,))]
        finally:
            conn.close()

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
            self.event("recorder-died", exit_code=code, last_line=last)
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
                self.event("recorder-killed", waited_s=timeout)
                logger.error("gameday: the recorder did not write its last records within "
                             "%g s of the stop and was killed; the report will be incomplete",
                             timeout)
                return
        if self._claim_loss():
            self.event("recorder-died", exit_code=proc.returncode, last_line=self._log_tail())

    def _claim_loss(self) -> bool:
        """True once, for the caller that records the recorder's loss, when it has no
        `recorder-stopped` of its own."""
        with self._lock:
            if self._lost or self.events("recorder-stopped"):
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


# Canary rows kept in the lab's database: those of the run starting and of the run before
# it (a failback reads its game day's rows, the split-brain count among them). Older runs
# are no longer measured; without a bound an 8-hour drill's millions of rows would stay
# forever, and every failback reads the whole table from the old primary.
CANARY_KEEP_RUNS = 2


def _next_seq(lab: Lab) -> int:
    """Canary numbers continue after the highest one already stored, so every run's
    writes are told apart from earlier runs' writes. Only a read: nothing is committed
    before the readiness gate (a commit on a synchronous primary whose standby does not
    stream would wait for it)."""
    try:
        with psycopg.connect(**lab.writer_params(), autocommit=True, **postgres.bounds()) as conn:
            row = conn.execute(
                f"SELECT coalesce(max(seq), 0) + 1 FROM {lab.database.canary_table}").fetchone()
            return int(row[0]) if row else 1
    except psycopg.errors.QueryCanceled:
        raise LabError(f"the writable database did not read its canary table "
                       f"{lab.database.canary_table} within {postgres.STATEMENT_TIMEOUT_S:g} s: "
                       "is the table locked (pg_locks) or the server overloaded?") from None
    except psycopg.Error as exc:
        raise LabError(f"cannot reach the writable database through the lab descriptor "
                       f"({postgres.cause(exc)}): check its database password and hosts, and that "
                       "the lab is up (`gameday lab status`)") from None


def prune_earlier_runs(run: Run, lab: Lab) -> int:
    """The canary table's retention rule (`prune_canary`), run once the run is over and
    only when its readiness gate passed; returns the rows deleted. Not at the start, as it
    was: there its commit on a synchronous primary whose standby did not stream hung the
    run before the gate could refuse it. Not before the fault either: deleting an 8-hour
    drill's rows then put their WAL between the standby and the fault being measured. Its
    commit is local (housekeeping needs no standby), and a database that refuses it (no
    right to create the runs table) keeps its rows: the run is not failed for that."""
    if not run.events("gate-passed"):
        return 0
    meta = timeline.read_meta(run.dir)
    started = time.monotonic()
    try:
        with psycopg.connect(**lab.writer_params(), autocommit=True,
                             **postgres.bounds(statement_timeout_s=postgres.BULK_TIMEOUT_S)) as conn:
            conn.execute("SET synchronous_commit = local")
            pruned = prune_canary(conn, lab.database.canary_table,
                                  start_seq=int(meta.get("start_seq", 1)),
                                  run_id=str(meta.get("run_id", "")), keep_runs=CANARY_KEEP_RUNS)
    except psycopg.Error as exc:
        logger.warning("gameday: canary rows of earlier runs not pruned (%s)", postgres.cause(exc))
        return 0
    if pruned:
        logger.info("gameday: pruned %d canary rows of runs no longer measured in %.1f s",
                    pruned, time.monotonic() - started)
    return pruned


def prune_canary(conn: psycopg.Connection[Any], table: str, *, start_seq: int, run_id: str,
                 keep_runs: int = CANARY_KEEP_RUNS) -> int:
    """Register the run starting at `start_seq` in `<table>_runs` and delete the canary rows
    of every run but the newest `keep_runs` (this one included); returns the rows deleted.

    The canary table is keyed by seq alone and each run writes numbers from its start_seq
    up, so a run's rows are those from its start_seq to the next run's. Only rows below the
    oldest kept run's start_seq go: never a row of the run starting, nor of the run before
    it, which a failback is still measuring. Rows from before the first registered run
    (tables older than this rule) go once `keep_runs` runs are registered."""
    if keep_runs < 1:
        raise ValueError("keep_runs must be at least 1: the run starting is being measured")
    runs = f"{table}_runs"
    with conn.transaction():
        conn.execute(f"CREATE TABLE IF NOT EXISTS {runs} (start_seq bigint PRIMARY KEY, "
                     "run_id text NOT NULL, started_at timestamptz NOT NULL "
                     "DEFAULT clock_timestamp())")
        # a run that wrote nothing leaves the next one the same start_seq: it holds no row
        conn.execute(f"INSERT INTO {runs} (start_seq, run_id) VALUES (%s, %s) "
                     "ON CONFLICT (start_seq) DO UPDATE SET run_id = EXCLUDED.run_id, "
                     "started_at = clock_timestamp()", (start_seq, run_id))
        row = conn.execute(f"SELECT start_seq FROM {runs} WHERE start_seq <= %s "
                           "ORDER BY start_seq DESC OFFSET %s LIMIT 1",
                           (start_seq, keep_runs - 1)).fetchone()
        if row is None:
            return 0
        keep_from = min(int(row[0]), start_seq)
        deleted = conn.execute(f"DELETE FROM {table} WHERE seq < %s", (keep_from,)).rowcount
        conn.execute(f"DELETE FROM {runs} WHERE start_seq < %s", (keep_from,))
    return max(deleted, 0)


def start(settings: GamedaySettings, lab: Lab, *, experiment: str, kind: str,
          ready_timeout: float = 30.0) -> Run:
    global _current
    why = canary.safe_cancel_missing()
    if why is not None:
        raise LabError(why)
    run_id = new_run_id(experiment)
    run_dir = (settings.reports_dir / run_id).absolute()
    start_seq = _next_seq(lab)
    run_dir.mkdir(parents=True, exist_ok=False)
    anchor_ns, anchor_utc = timeline.Clock.new_anchor()
    timeline.create(run_dir, {
        "run_id": run_id, "experiment": experiment, "kind": kind, "anchor_ns": anchor_ns,
        "anchor_utc": anchor_utc, "lab": lab.lab, "start_seq": start_seq,
        "lab_file": str(Path(lab.path).absolute()),
    })
    run = Run(run_dir, timeline.Clock(anchor_ns))
    spawn_recorder(run, settings, lab, start_seq=start_seq)
    assert run.recorder is not None
    deadline = time.monotonic() + ready_timeout
    while not run.events("recorder-ready"):
        if run.recorder.poll() is not None or time.monotonic() > deadline:
            run.stop_recorder()
            tail = (run_dir / "recorder.log").read_text(errors="replace").strip().splitlines()
            raise LabError("the recorder's canary had no write acknowledged within "
                           f"{ready_timeout:.0f} s ({_canary_trouble(run_dir)}; "
                           f"{tail[-1] if tail else 'recorder printed nothing'}): is the "
                           "database writable and, in a sync lab, its standby streaming? "
                           f"(see {run_dir}/recorder.log)")
        time.sleep(0.05)
    run.watch_recorder()
    _current = run
    os.environ[ENV] = str(run_dir)
    logger.info("gameday: recording to %s", run_dir)
    return run


def spawn_recorder(run: Run, settings: GamedaySettings, lab: Lab, *, start_seq: int) -> None:
    """Start the recorder process of `run`, which writes into its directory."""
    # a password from the experiment's secrets reaches the recorder through a pipe: never
    # on its command line (ps shows that) nor in a file of the run directory
    secret = settings.db_password
    (run.dir / "recorder.json").write_text(json.dumps({
        "lab_file": str(Path(lab.path).absolute()),
        "password_on_stdin": secret is not None,
        "start_seq": start_seq,
        "rates": {
            "dns_s": settings.rates.dns_s, "http_s": settings.rates.http_s,
            "replication_s": settings.rates.replication_s,
            "canary_writers": settings.rates.canary_writers,
            "canary_max_rate": settings.rates.canary_max_rate,
        },
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


def _canary_trouble(run_dir: Path) -> str:
    """What the canary saw: its last failed connection or write, from the timeline."""
    conn = timeline.connect(run_dir)
    try:
        row = conn.execute("SELECT error FROM canary_connect WHERE ok = 0 ORDER BY t DESC "
                           "LIMIT 1").fetchone()
        writes = conn.execute("SELECT count(*), max(error) FROM canary").fetchone()
        connected = conn.execute("SELECT count(*) FROM canary_connect WHERE ok = 1").fetchone()
    finally:
        conn.close()
    return (f"{connected[0]} connections, {writes[0]} attempts"
            + (f", last connection error {row[0]}" if row else "")
            + (f", last write error {writes[1]}" if writes[1] else ""))


def current() -> Run | None:
    return _current


def clear() -> None:
    global _current
    _current = None
    os.environ.pop(ENV, None)
