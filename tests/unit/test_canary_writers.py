"""The canary's writers (gameday/measure/canary.py) against a real PostgreSQL 15
(tests/unit/pg.py): numbering without gaps or repeats across threads, the rate cap, and
the watchdog that gives up an overdue write (a lock held, a commit waiting for a
synchronous standby that is gone, a server that does not answer the cancel).

The attempts go to a plain list instead of the recorder's BatchWriter (whose own tests are
in test_metrics_store.py): the writers only ever call its thread-safe `add`."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

import pytest

from gameday.measure import canary as canary_module
from gameday.measure.canary import Canary
from gameday.measure.store.timeline import CanaryAttempt, CanaryConnect, Clock
from gameday.postgres import canary as canary_table
from tests.unit import pg


class Rows(list):  # type: ignore[type-arg]
    """The attempts and connects the writers added, in order (list.append is atomic)."""

    def add(self, row: Any) -> None:
        self.append(row)

    def attempts(self) -> list[CanaryAttempt]:
        return [r for r in self if isinstance(r, CanaryAttempt)]

    def connects(self) -> list[CanaryConnect]:
        return [r for r in self if isinstance(r, CanaryConnect)]


def run_for(canary: Canary, seconds: float, *, until: Any = None) -> float:
    """Run the writers, stop them after `seconds` (or once `until()` holds, checked every
    10 ms, within those seconds); returns how long they took to end once stopped."""
    stopped: list[float] = []

    async def main() -> None:
        stop = asyncio.Event()

        async def stopper() -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not (until and until()):
                await asyncio.sleep(0.01)
            stopped.append(time.monotonic())
            stop.set()

        await asyncio.gather(canary.run(stop), stopper())

    asyncio.run(main())
    return time.monotonic() - stopped[0]


def _canary(cluster: pg.Cluster, rows: Rows, **kw: Any) -> Canary:
    lab = cluster.lab()
    return Canary(lab.writer_params(), lab.database.canary_table, Clock(time.monotonic_ns()),
                  rows, start_seq=canary_table.next_seq(lab), **kw)


def test_writers_number_every_write_once_and_the_table_holds_each_acknowledged_one(
        cluster: pg.Cluster) -> None:
    cluster.primary.sql("INSERT INTO gameday_canary (seq) VALUES (10)")  # an earlier run's
    rows = Rows()
    canary = _canary(cluster, rows, writers=4)
    assert canary.acked == 0 and canary.in_flight == 0
    took = run_for(canary, 5.0, until=lambda: canary.acked >= 200)

    attempts = rows.attempts()
    assert canary.acked >= 200 and took < 2.0  # each writer ends after its write in flight
    assert all(a.outcome == "ok" and a.server == pg.HOST and a.error is None for a in attempts)
    seqs = sorted(a.seq for a in attempts)
    assert seqs == list(range(11, 11 + len(seqs)))  # from the next number on, none twice
    assert {a.writer for a in attempts} == {0, 1, 2, 3}
    assert all(a.t_ack is not None and a.t_ack >= a.t_send >= 0 for a in attempts)
    stored = [r[0] for r in cluster.primary.sql("SELECT seq FROM gameday_canary ORDER BY 1")]
    assert stored == [10, *seqs]
    assert canary.last_ack_seq in seqs and canary.in_flight == 0
    assert sorted((c.writer, c.ok, c.server) for c in rows.connects()) == [
        (w, 1, pg.HOST) for w in range(4)]


def test_a_capped_canary_keeps_its_rate(cluster: pg.Cluster) -> None:
    rows = Rows()
    canary = _canary(cluster, rows, writers=2, max_rate=40.0)
    run_for(canary, 0.3)
    # 40 writes/s in 2 writers: each writes every 50 ms at most, and never bursts to catch
    # up a slow stretch (how many it wrote depends on this machine's load: not asserted)
    assert 2 <= canary.acked <= 14, canary.acked  # 12 in 0.3 s, and the stop's margin
    for writer in (0, 1):
        sends = sorted(a.t_send for a in rows.attempts() if a.writer == writer)
        # each write at its slot or later, on a schedule of slots 50 ms apart (a writer
        # that falls behind it starts a new one from now, never sends the missed slots):
        # n writes span at least n - 1 slots, less the first one's lateness (a slot at
        # most here)
        assert len(sends) >= 1 and sends[-1] - sends[0] >= (len(sends) - 2) * 0.05, sends


def test_no_primary_to_reach_is_counted_and_never_a_write(cluster: pg.Cluster) -> None:
    rows = Rows()
    lab = cluster.lab()
    down = {**lab.writer_params(), "host": pg.HOST, "port": str(pg.free_port())}
    canary = Canary(down, "gameday_canary", Clock(time.monotonic_ns()), rows, writers=2)
    run_for(canary, 0.15)
    assert canary.acked == 0 and rows.attempts() == []
    assert canary.connect_errors == len(rows.connects()) >= 2
    assert all(c.ok == 0 and c.error == "OperationalError" for c in rows.connects())
    assert canary.last_error == "OperationalError"


@pytest.fixture
def quick_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watchdog's deadlines, shortened from 3 s and 1 s: the same code, a quicker test."""
    monkeypatch.setattr(canary_module, "WRITE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(canary_module, "CANCEL_TIMEOUT_S", 0.1)


def test_a_write_past_its_deadline_is_cancelled_and_recorded_failed(
        cluster: pg.Cluster, quick_deadline: None) -> None:
    rows = Rows()
    canary = _canary(cluster, rows, writers=1)
    with cluster.primary.connect() as locker, locker.transaction():
        locker.execute("LOCK TABLE gameday_canary IN ACCESS EXCLUSIVE MODE")
        took = run_for(canary, 3.0, until=lambda: rows.attempts() != [])
    attempts = rows.attempts()
    # 57014: query_canceled, so not committed. The next write is held to its deadline too;
    # under load it may instead meet the cancel of the one before it, which the server can
    # deliver late (a cancel is per backend, not per statement): failed either way
    assert (attempts[0].outcome, attempts[0].t_ack, attempts[0].error) == (
        "failed", None, "TimeoutError: 57014")
    assert all(a.outcome == "failed" and a.t_ack is None and a.error in (
        "TimeoutError: 57014", "QueryCanceled: 57014") for a in attempts)
    assert [a.seq for a in attempts] == list(range(1, len(attempts) + 1))
    assert len(attempts) >= 2  # the write in flight when stopped is given up too
    assert attempts[1].t_send - attempts[0].t_send >= 0.2  # held to its deadline first
    assert took < 2.0  # the write in flight at the stop was given up too
    assert cluster.primary.sql("SELECT count(*) FROM gameday_canary") == [(0,)]
    assert len(rows.connects()) == 1  # a cancelled statement keeps its connection


def test_a_commit_waiting_for_a_gone_standby_is_acknowledged_with_the_servers_warning(
        cluster: pg.Cluster, quick_deadline: None) -> None:
    """The cancel of a commit waiting for its synchronous standby: committed on the primary
    alone, acknowledged with PostgreSQL's warning, which the write accounting counts as not
    durable."""
    cluster.primary.sql("ALTER SYSTEM SET synchronous_standby_names = '\"gone\"'")
    cluster.primary.sql("SELECT pg_reload_conf()")
    rows = Rows()
    canary = _canary(cluster, rows, writers=1)
    run_for(canary, 3.0, until=lambda: canary.acked >= 1)
    first = rows.attempts()[0]
    assert first.outcome == "ok" and first.error is None
    assert first.t_ack is not None and first.t_ack - first.t_send >= 0.2
    assert first.notice is not None and "canceling wait for synchronous replication" in (
        first.notice), first.notice
    assert (first.seq,) in cluster.primary.sql("SELECT seq FROM gameday_canary")


def test_a_server_that_does_not_answer_the_cancel_has_its_socket_shut(
        cluster: pg.Cluster, quick_deadline: None) -> None:
    """A cut-off region: the write's backend takes neither the write's answer nor the
    cancel (stopped here with SIGSTOP, by its pid). The watchdog shuts the socket, the
    write is recorded unknown (maybe committed) and the writer reconnects."""
    rows = Rows()
    canary = _canary(cluster, rows, writers=1)
    frozen: list[int] = []
    done = threading.Event()

    def freeze_the_writers_backend() -> None:
        while not done.is_set():
            found = cluster.primary.sql(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE 'INSERT INTO gameday_canary%%' AND pid <> pg_backend_pid()")
            if found:
                os.kill(int(found[0][0]), signal.SIGSTOP)
                frozen.append(int(found[0][0]))
                return
            time.sleep(0.01)

    with cluster.primary.connect() as locker, locker.transaction():
        locker.execute("LOCK TABLE gameday_canary IN ACCESS EXCLUSIVE MODE")
        freezer = threading.Thread(target=freeze_the_writers_backend, daemon=True)
        freezer.start()
        try:
            run_for(canary, 3.0, until=lambda: len(rows.connects()) >= 2)
        finally:
            done.set()
            freezer.join(5)
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
    first = rows.attempts()[0]
    assert frozen and first.outcome == "unknown" and first.t_ack is None
    assert first.error is not None and first.error.startswith("TimeoutError")
    assert len(rows.connects()) >= 2  # the writer reconnected after the shut socket
