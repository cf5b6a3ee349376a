"""The write-sequence canary: strictly increasing numbers, one INSERT per transaction,
through a DSN that follows the writable primary (libpq multi-host,
target_session_attrs=read-write), as an application would.

Every attempt is recorded with its outcome, so the metrics can apply Jepsen set semantics:
`ok` (acknowledged), `failed` (the server answered with an error: not committed), or
`unknown` (the connection broke before an answer: maybe committed, resolved later by
reading the table). Server notices during a write are kept: a commit whose synchronous
replication wait was cancelled is acknowledged but exists only on the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import psycopg

from gameday.measure.timeline import BatchWriter, CanaryAttempt, CanaryConnect, Clock

# A write that has not been answered in this long is given up (outcome unknown, resolved by
# reading later) and the writer reconnects through the multi-host DSN: without it, a region
# that drops packets holds every writer forever. The kernel gives up on the connection
# sooner still (tcp_user_timeout in the DSN, see recorder.py).
WRITE_TIMEOUT_S = 3.0


class Canary:
    def __init__(self, dsn: str, table: str, clock: Clock, out: BatchWriter, *,
                 writers: int = 4, start_seq: int = 1, max_rate: float = 0.0) -> None:
        self.dsn, self.table, self.clock, self.out = dsn, table, clock, out
        self.writers = writers
        # each writer's slot when capped (max_rate writes/s in all): a drift-free schedule
        # that never bursts to catch up, so a slow stretch is not followed by a flood
        self.interval = writers / max_rate if max_rate > 0 else 0.0
        self._seq = itertools.count(start_seq)
        self.acked = 0
        self.last_ack_seq: int | None = None
        self.connect_errors = 0
        self.last_error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._writer(w, stop) for w in range(self.writers)))

    async def _writer(self, writer: int, stop: asyncio.Event) -> None:
        """One writer's loop. Its cost per write is what bench/bench_canary.py compares
        with a bare psycopg loop: one cursor per connection, the INSERT prepared on the
        server once, the timeout a deadline on the running task (`asyncio.timeout`) rather
        than a task of its own per write (`wait_for`), and the attempt queued for the
        recorder's next batch. Each write is still its own round trip, acknowledged before
        the next is sent: a pipeline would measure something else."""
        sql = f"INSERT INTO {self.table} (seq, writer) VALUES (%s, %s)"
        conn: psycopg.AsyncConnection | None = None
        cur: psycopg.AsyncCursor[Any] | None = None
        notices: list[str] = []
        now, add = self.clock.now, self.out.add
        loop = asyncio.get_running_loop()
        interval = self.interval
        slot = loop.time() + interval * writer / self.writers  # writers staggered
        try:
            while not stop.is_set():
                if conn is None or cur is None:
                    try:
                        conn = await asyncio.wait_for(
                            psycopg.AsyncConnection.connect(self.dsn, autocommit=True), 3)
                        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
                        cur = conn.cursor()
                        server = conn.info.hostaddr
                        self.out.add(CanaryConnect(self.clock.now(), writer, 1, server, None))
                    except (TimeoutError, psycopg.Error, OSError) as exc:
                        # every failed attempt bounds when the new primary began to accept
                        # writes: the error bar of the write RTO
                        self.connect_errors += 1
                        self.last_error = type(exc).__name__
                        self.out.add(CanaryConnect(self.clock.now(), writer, 0, None,
                                                        type(exc).__name__))
                        conn = None
                        await asyncio.sleep(0.01)
                        continue
                if interval:
                    slot += interval
                    wait = slot - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    else:
                        slot = loop.time()
                seq = next(self._seq)
                if notices:
                    notices.clear()
                t_send = now()
                try:
                    async with asyncio.timeout(WRITE_TIMEOUT_S):
                        await cur.execute(sql, (seq, writer), prepare=True)
                    t_ack = now()
                    add(CanaryAttempt(seq, writer, t_send, t_ack, "ok", server, None,
                                      "; ".join(notices) if notices else None))
                    self.acked += 1
                    self.last_ack_seq = seq
                except (psycopg.Error, TimeoutError) as exc:
                    # a broken connection (or one that stopped answering: a cut-off region
                    # drops packets, so nothing ever fails by itself) leaves the outcome
                    # unknown; a server error reply in autocommit means no commit
                    broken = isinstance(exc, TimeoutError) or conn.closed or conn.broken
                    outcome = "unknown" if broken else "failed"
                    sqlstate = getattr(exc, "sqlstate", None) or ""
                    self.out.add(CanaryAttempt(seq, writer, t_send, None, outcome, server,
                                            f"{type(exc).__name__}: {sqlstate}".strip(),
                                            "; ".join(notices) or None))
                    self.last_error = type(exc).__name__
                    if broken:
                        with contextlib.suppress(Exception):
                            await conn.close()
                        conn = cur = None
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
