"""The canary's writers against the lab's real PostgreSQL (synchronous replication, 20 ms
one way): they start spread over the first write's round trip; a write the server takes
and does not answer is cancelled after WRITE_TIMEOUT_S and recorded `failed` (a cancelled
statement is not committed), and the writer goes on; and every sequence number drawn
reaches the timeline exactly once although several writer threads add to one BatchWriter.
Each acknowledged write is attributed to a region by the server's own address
(inet_server_addr()), also through a TCP proxy and a host name, as behind PgBouncer."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from gameday.foundation import descriptor
from gameday.measure.canary import NICER, WRITE_TIMEOUT_S, Attribution, Canary
from gameday.measure.store import timeline

LOCK_S = WRITE_TIMEOUT_S + 1.5


def _hold_table_lock(dsn: dict[str, Any], table: str, held: threading.Event, seconds: float) -> None:
    """Block every INSERT on the server (they wait for the lock, their clients for an
    answer) for `seconds`: a primary that takes writes and does not answer."""
    with psycopg.connect(**dsn) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        held.set()
        time.sleep(seconds)
        conn.rollback()


def _nice(tid: int | None) -> int:
    return int(Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _next_seq(dsn: dict[str, Any], table: str) -> int:
    with psycopg.connect(**dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {table}").fetchone()
    return int(row[0]) if row else 1


def _servers_seen(lab: descriptor.Lab, writes: int = 20) -> tuple[set[str], set[str]]:
    """Run one attributing writer for `writes` acknowledged writes: (the servers its
    acknowledged writes were recorded as, and its connections)."""
    run_dir = Path(tempfile.mkdtemp(prefix="gameday-canary-test-"))
    anchor, _ = timeline.Clock.new_anchor()
    timeline.create(run_dir, {"anchor_ns": anchor})
    out = timeline.BatchWriter(run_dir)
    dsn, table = lab.writer_params(), lab.database.canary_table
    canary = Canary(dsn, table, timeline.Clock(anchor), out, writers=1,
                    start_seq=_next_seq(dsn, table), attribution=Attribution.of(lab))

    async def drive() -> None:
        stop = asyncio.Event()

        async def until_written() -> None:
            while canary.acked < writes:
                await asyncio.sleep(0.01)
            stop.set()

        await asyncio.wait_for(asyncio.gather(canary.run(stop), until_written()), 30)

    asyncio.run(drive())
    out.close()
    db = timeline.connect(run_dir)
    acked = {s for (s,) in db.execute("SELECT DISTINCT server FROM canary WHERE outcome = 'ok'")}
    connected = {s for (s,) in db.execute("SELECT DISTINCT server FROM canary_connect "
                                          "WHERE ok = 1")}
    db.close()
    return acked, connected


def _behind_a_proxy(lab_file: str) -> tuple[set[str], set[str], set[str], set[str]]:
    """Region-1's database reached as `localhost` through a TCP proxy (the dialled address
    is the proxy's, 127.0.0.1, as behind PgBouncer): with its server's own address in
    `db_addresses`, and without (then no region lists it)."""
    data = json.loads(Path(lab_file).read_text())
    server = (data["regions"][0]["db_host"], data["regions"][0].get("db_port", 5432))
    with socket.socket() as probe:  # a free port for the proxy
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = subprocess.Popen([sys.executable, "-m", "gameday.labs.netns.delayproxy",
                              f"127.0.0.1:{port}", f"{server[0]}:{server[1]}", "0"])
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and proxy.poll() is None, "no proxy"
            time.sleep(0.05)
        data["regions"][0].update(db_host="localhost", db_port=port)
        named = _servers_seen(descriptor.from_dict(
            {**data, "regions": [{**data["regions"][0], "db_addresses": [server[0]]},
                                 data["regions"][1]]}))
        unlisted = _servers_seen(descriptor.from_dict(data))
    finally:
        proxy.terminate()  # by its pid; it stops on SIGTERM
        proxy.wait(10)
    return named + unlisted


def test_write_deadline_and_every_attempt_recorded(shared_lab: dict[str, str]) -> None:
    lab = descriptor.load(shared_lab["GAMEDAY_LAB"])
    dsn, table = lab.writer_params(), lab.database.canary_table
    run_dir = Path(tempfile.mkdtemp(prefix="gameday-canary-test-"))
    anchor, _ = timeline.Clock.new_anchor()
    clock = timeline.Clock(anchor)
    timeline.create(run_dir, {"anchor_ns": anchor})
    out = timeline.BatchWriter(run_dir)
    # after the rows earlier drills on the shared lab left (seq is the table's key)
    with psycopg.connect(**dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {table}").fetchone()
    start = int(row[0]) if row else 1
    canary = Canary(dsn, table, clock, out, writers=4, start_seq=start,
                    attribution=Attribution.of(lab))
    held = threading.Event()
    marks: dict[str, Any] = {}

    async def drive() -> None:
        stop = asyncio.Event()

        async def script() -> None:
            while canary.acked < 200:
                await asyncio.sleep(0.01)
            marks["nice"] = [_nice(t.native_id) for t in threading.enumerate()
                             if t.name.startswith("canary-")]
            locker = threading.Thread(target=_hold_table_lock,
                                      args=(dsn, table, held, LOCK_S))
            locker.start()
            await asyncio.to_thread(held.wait, 10)
            marks["locked"] = clock.now()
            await asyncio.to_thread(locker.join)
            marks["released"] = clock.now()
            acked = canary.acked
            while canary.acked < acked + 200:
                await asyncio.sleep(0.01)
            stop.set()
            marks["stopped"] = clock.now()

        async def flusher() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.25)
                out.flush()

        await asyncio.wait_for(asyncio.gather(canary.run(stop), script(), flusher()), 60)
        marks["ended"] = clock.now()

    asyncio.run(drive())
    out.close()

    db = timeline.connect(run_dir)
    rows = db.execute("SELECT seq, outcome, error, t_send, t_ack, writer FROM canary"
                      ).fetchall()
    reconnects = [t for (t,) in db.execute(
        "SELECT t FROM canary_connect WHERE ok = 1 AND t > ? ORDER BY t", (marks["locked"],))]
    servers = {s for (s,) in db.execute("SELECT DISTINCT server FROM canary WHERE "
                                        "outcome = 'ok'")}
    db.close()
    # each acknowledged write attributed by its server's own address: region-1's
    assert servers == {lab.primary.db_host}, servers
    # writer w's first write goes w/4 of a round trip after writer 0's second answer
    second = sorted((r for r in rows if r[5] == 0), key=lambda r: r[3])[1]
    rtt = second[4] - second[3]
    assert rtt > 0.030  # two crossings of the 20 ms link: the stagger is measurable
    firsts: dict[int, float] = {}
    for r in rows:
        firsts[r[5]] = min(firsts.get(r[5], r[3]), r[3])
    for writer, t in sorted(firsts.items())[1:]:
        assert t >= second[4] + rtt * writer / 4 - 0.001, (writer, t, second, rtt)
    # the writers yield the CPU to the samplers' loop
    assert marks["nice"] == [os.getpriority(os.PRIO_PROCESS, 0) + NICER] * 4, marks["nice"]
    seqs = sorted(r[0] for r in rows)
    # every number drawn was recorded once: no attempt lost between threads and flushes
    assert seqs == list(range(start, start + len(seqs)))
    given_up = [r for r in rows if (r[2] or "").startswith("TimeoutError")]
    # the four writes blocked by the lock, cancelled by the deadline, not sooner
    assert len(given_up) >= 4, given_up
    assert all(r[1] == "failed" and r[2] == "TimeoutError: 57014" for r in given_up)
    assert all(r[3] >= marks["locked"] - 0.5 and r[3] < marks["released"] for r in given_up)
    # each writer's next write went once its write had waited WRITE_TIMEOUT_S (the
    # watchdog looks every 50 ms), on the same connection: the server had answered
    for _, _, _, t_send, _, writer in given_up:
        later = min(r[3] for r in rows if r[5] == writer and r[3] > t_send)
        assert WRITE_TIMEOUT_S <= later - t_send < WRITE_TIMEOUT_S + 0.5, later - t_send
    assert not reconnects, reconnects
    assert sum(r[1] == "ok" and r[3] > marks["released"] for r in rows) >= 200
    # a stopped canary's writers end promptly: none was left blocked
    assert marks["ended"] - marks["stopped"] < 1.0
    # acknowledged means committed: every `ok` is in the table
    with psycopg.connect(**dsn, autocommit=True) as conn:
        stored = {r[0] for r in conn.execute(f"SELECT seq FROM {table}")}
    assert {r[0] for r in rows if r[1] == "ok"} <= stored

    # behind a proxy, by a host name: the writes are region-1's (recorded by its db_host,
    # `localhost`) when its server's own address is among its db_addresses, whatever
    # address was dialled (127.0.0.1); without it, the server's address as it is (the
    # address dialled would have made them nobody's, or the proxy's)
    named_acked, named_connected, acked, connected = _behind_a_proxy(shared_lab["GAMEDAY_LAB"])
    assert named_acked == named_connected == {"localhost"}, (named_acked, named_connected)
    assert acked == connected == {lab.primary.db_host}, (acked, connected)
