"""The write-sequence canary: strictly increasing numbers, one INSERT per transaction,
through a DSN that follows the writable primary (libpq multi-host,
target_session_attrs=read-write), as an application would.

Every attempt is recorded with its outcome, so the metrics can apply Jepsen set semantics:
`ok` (acknowledged), `failed` (the server answered with an error: not committed), or
`unknown` (the connection broke before an answer: maybe committed, resolved later by
reading the table). Server notices during a write are kept: a commit whose synchronous
replication wait was cancelled is acknowledged but exists only on the primary.

Each writer is a thread with a blocking psycopg connection, not a coroutine: the write
being measured then costs what it costs an application's plain loop (bench/bench_canary.py
compares the two), while the recorder's other samplers keep their asyncio schedule. The
threads hand their attempts to the recorder's BatchWriter, which is thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
import psycopg.errors

from gameday.foundation import endpoints
from gameday.foundation.descriptor import Lab
from gameday.foundation.endpoints import Endpoints
from gameday.foundation.poll import poll_within
from gameday.measure.store.timeline import BatchWriter, CanaryAttempt, CanaryConnect, Clock
from gameday.postgres.canary import insert_sql

# A write that has not been answered in this long is given up (cancelled on the server, or,
# when the server does not answer, its connection cut: outcome unknown, resolved by reading
# later, and the writer reconnects through the multi-host DSN): without it, a region that
# drops packets holds every writer forever. The kernel gives up on the connection
# sooner still (tcp_user_timeout in the DSN, see recorder.py), but only while data is
# unacknowledged: a server that took the write and never answers is caught by this one.
WRITE_TIMEOUT_S = 3.0
# The writers run this much nicer than the recorder's loop: on a busy machine (the canary
# flat out on 2 cores) the kernel then prefers the samplers' thread, whose schedule is
# what their lateness measures (bench/bench_recorder.py: DNS lateness p99 4.7-9.3 ms with
# the writers at the loop's priority, 2.7-5.9 ms with them 10 nicer, at the same rate).
NICER = 10
# how often the watchdog looks for a write past its deadline, and how soon a writer
# notices the stop while it waits
WATCH_S = 0.05
# how long a server is given to answer the cancel of an overdue write, and then the write
CANCEL_TIMEOUT_S = 1.0
# How long the writers take at most to end once stopped, each after its write in flight:
# given up after WRITE_TIMEOUT_S, its cancel answered within CANCEL_TIMEOUT_S, then the
# write's own answer within as long again before its socket is shut (a writer connecting
# meanwhile waits at most its connect_timeout, 2 s for each address of each region's
# db_host: 4 s for two one-address regions, twice that for names with A and AAAA). The recorder
# waits this long for their last attempts before it writes its own last records.
STOP_S = WRITE_TIMEOUT_S + 2 * CANCEL_TIMEOUT_S + 4 * WATCH_S


def safe_cancel_missing() -> str | None:
    """Why the watchdog's cancel of an overdue write would block, or None when it will not.

    `cancel_safe` is non-blocking only with libpq 17 or newer; with an older libpq psycopg
    falls back to PQcancel, a blocking call that holds the GIL, so a cancel sent to a
    cut-off region froze every sampler of the recorder. psycopg[binary] 3.2.0-3.2.2 bundle
    libpq 16; a psycopg using the system's libpq (PSYCOPG_IMPL=python, or the C build) has
    whatever the system has."""
    caps = getattr(psycopg, "capabilities", None)  # psycopg >= 3.2
    if caps is not None and caps.has_cancel_safe():
        return None
    v = psycopg.pq.version()
    return (f"the canary needs libpq 17 or newer to cancel an overdue write without "
            f"blocking, and psycopg {psycopg.__version__} ({psycopg.pq.__impl__}) uses libpq "
            f"{v // 10000}.{v % 10000}: install psycopg[binary]>=3.2.3, which bundles it "
            "(pip install -U 'psycopg[binary]>=3.2.3'), and leave PSYCOPG_IMPL unset")


# the server's own address on this connection (NULL over a Unix socket): behind a proxy
# such as PgBouncer the address the client dialled is the proxy's, this one is the server's
SERVER_ADDRESS_SQL = "SELECT host(inet_server_addr())"


class Attribution:
    """Which region's database acknowledged a write, by the server's own identity: the
    address it answers inet_server_addr() with, among each region's database addresses
    (Lab.database_identities: `db_addresses`, or what `db_host` resolves to). A write is
    recorded as acknowledged by that region's `db_host`, the name every measure knows the
    region's database by (a host name stays a host name); an address no region holds, or
    two hold alike, is recorded as it is, so the write is attributed to no region."""

    def __init__(self, identities: Mapping[str, Endpoints], labels: Mapping[str, str]) -> None:
        self.identities, self.labels = identities, labels

    @classmethod
    def of(cls, lab: Lab) -> Attribution:
        return cls(lab.database_identities(), {r.name: r.db_host for r in lab.regions})

    def __call__(self, own: str | None, dialled: str | None) -> str | None:
        if not own:
            return dialled  # a Unix socket: the server has no address of its own to give
        region = endpoints.owner(own, self.identities)
        return self.labels[region] if region is not None else own


class _Slot:
    """What the watchdog needs to know about one writer's write in flight. The writer
    sets `since` before the write and clears it after, without a lock (one assignment);
    the lock only keeps the watchdog from cancelling on, or shutting the socket of, a
    connection the writer is closing."""

    __slots__ = ("lock", "conn", "since", "expired")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: psycopg.Connection | None = None
        self.since: float | None = None
        self.expired: float | None = None



def start_writers(body: Callable[[int], None], count: int, *, name: str, nicer: int,
                  halt: threading.Event, crashed: list[BaseException]) -> list[threading.Thread]:
    """Start `count` writer threads running `body(w)`, each `nicer` than its process (a
    thread's own nice value, Linux: the samplers come first on a busy machine). A writer
    that raises halts the others and leaves its exception in `crashed`, for the caller to
    re-raise as a coroutine's would be. The database and the application canary both."""
    def writer(w: int) -> None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           os.getpriority(os.PRIO_PROCESS, 0) + nicer)
        try:
            body(w)
        except BaseException as exc:
            crashed.append(exc)
            halt.set()

    threads = [threading.Thread(target=writer, args=(w,), name=f"{name}-{w}", daemon=True)
               for w in range(count)]
    for thread in threads:
        thread.start()
    return threads

class Canary:
    def __init__(self, params: Mapping[str, Any], table: str, clock: Clock, out: BatchWriter,
                 *, writers: int = 4, start_seq: int = 1, max_rate: float = 0.0,
                 attribution: Attribution | None = None) -> None:
        """`params`: psycopg.connect's keyword arguments (Lab.writer_params).
        `attribution`: each connection's server asked who it is (one query per connection,
        not per write), and its writes recorded as that region's; without it, the address
        the client dialled is recorded."""
        self.params, self.table, self.clock, self.out = params, table, clock, out
        self.attribution = attribution
        self.writers = writers
        # each writer's slot when capped (max_rate writes/s in all): a drift-free schedule
        # that never bursts to catch up, so a slow stretch is not followed by a flood
        self.interval = writers / max_rate if max_rate > 0 else 0.0
        self._seq = itertools.count(start_seq)  # next() is atomic under the GIL
        self._acked = [0] * writers  # one counter per thread: `+=` on a shared one races
        self._connect_errors = [0] * writers
        self._slots = [_Slot() for _ in range(writers)]
        self._halt = threading.Event()
        # a round trip of writer 0's (its second write), over which uncapped writers start
        self._first_rtt: float | None = None
        self._first_ack = threading.Event()
        self.last_ack_seq: int | None = None
        self.last_error: str | None = None

    @property
    def acked(self) -> int:
        return sum(self._acked)

    @property
    def connect_errors(self) -> int:
        return sum(self._connect_errors)

    @property
    def in_flight(self) -> int:
        """Writes sent and neither answered nor given up yet."""
        return sum(slot.since is not None for slot in self._slots)

    async def run(self, stop: asyncio.Event) -> None:
        """Run the writers until `stop` is set, watching their deadlines from the loop."""
        crashed: list[BaseException] = []
        threads = start_writers(self._writer, self.writers, name="canary", nicer=NICER,
                                halt=self._halt, crashed=crashed)
        try:
            while any(t.is_alive() for t in threads):
                self._expire_overdue()
                if stop.is_set():
                    # a writer stops after its write in flight, which the watchdog bounds
                    self._halt.set()
                    await asyncio.sleep(0.01)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), WATCH_S)
        finally:
            self._halt.set()
        if crashed:
            raise crashed[0]

    def _expire_overdue(self) -> None:
        """Give up every write past its deadline, each in a thread of its own so that the
        loop never waits on a server (see _give_up)."""
        deadline = time.monotonic() - WRITE_TIMEOUT_S
        for slot in self._slots:
            since = slot.since
            if since is None or since > deadline or slot.expired == since:
                continue
            slot.expired = since
            threading.Thread(target=self._give_up, args=(slot, since), daemon=True,
                             name="canary-give-up").start()

    @staticmethod
    def _give_up(slot: _Slot, since: float) -> None:
        """First ask the server to cancel the write, as an application's statement timeout
        would. A statement cancelled before its commit is not committed (the writer records
        it `failed`); a commit waiting for a synchronous standby stops waiting and is
        acknowledged with a warning (counted not durable). Merely dropping the connection
        would leave that backend waiting, its row invisible until the standby returns,
        perhaps after a later run has taken the same sequence number. A server that does not
        answer the cancel (a cut-off region) gets its socket shut: the writer wakes with a
        broken connection, records the write `unknown` and reconnects."""
        with slot.lock:  # the writer closes its connection under this lock, never meanwhile
            conn = slot.conn
            if slot.since != since or conn is None or conn.closed:
                return
            with contextlib.suppress(psycopg.Error, OSError):
                conn.cancel_safe(timeout=CANCEL_TIMEOUT_S)
        time.sleep(CANCEL_TIMEOUT_S)  # the answer to the cancelled write is on its way
        with slot.lock:
            if slot.since != since or slot.conn is not conn or conn.closed:
                return
            with contextlib.suppress(OSError, psycopg.Error):
                # a duplicate descriptor: the one psycopg owns is never closed here
                sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _connect(self, writer: int, notices: list[str]
                 ) -> tuple[psycopg.Connection, str | None] | None:
        """A connection to the writable primary and the server its writes are recorded as
        acknowledged by; None when none was made (recorded)."""
        slot = self._slots[writer]
        try:
            # each host of the multi-host parameters is given its connect_timeout (2 s in
            # the descriptor's), so a cut-off first region delays reaching the second by
            # that much, not more
            conn = psycopg.connect(**self.params, autocommit=True)
            server: str | None = conn.info.hostaddr
            if self.attribution is not None:
                # one round trip more per connection, before its first write, under a
                # write's deadline (the watchdog gives it up like a write)
                with slot.lock:
                    slot.conn = conn
                slot.since = time.monotonic()
                try:
                    row = conn.execute(SERVER_ADDRESS_SQL).fetchone()
                finally:
                    slot.since = None
                server = self.attribution(row[0] if row else None, server)
        except (psycopg.Error, OSError) as exc:
            # every failed attempt bounds when the new primary began to accept writes:
            # the error bar of the write RTO
            self._close(slot)
            self._connect_errors[writer] += 1
            self.last_error = type(exc).__name__
            self.out.add(CanaryConnect(self.clock.now(), writer, 0, None, type(exc).__name__))
            return None
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        self.out.add(CanaryConnect(self.clock.now(), writer, 1, server, None))
        return conn, server

    def _close(self, slot: _Slot) -> None:
        with slot.lock:
            conn, slot.conn = slot.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _wait_turn(self, writer: int) -> None:
        """Uncapped writers that start together stay together under synchronous
        replication: their commits wait for the same standby flush and are acknowledged in
        one burst, a round trip apart, so 4 writers place the instant writes stopped no
        better than one (21 ms off on average across the lab's 20 ms link,
        bench/bench_canary.py). Writer w starts w/writers of a round trip after writer 0's
        second answer; the spacing then mostly holds (10.5 ms off)."""
        # the condition itself waits on the event, so the first answer is seen at once
        if poll_within(lambda: self._first_ack.wait(WATCH_S) or self._halt.is_set(),
                       timeout_s=WRITE_TIMEOUT_S, interval_s=0, interruptible=False):
            self._halt.wait((self._first_rtt or 0.0) * writer / self.writers)

    def _writer(self, writer: int) -> None:
        """One writer's loop. Its cost per write is what bench/bench_canary.py compares
        with a bare psycopg loop: one cursor per connection, the INSERT prepared on the
        server once, the deadline kept by the watchdog (no timer per write), and the
        attempt queued for the recorder's next batch. Each write is its own round trip,
        acknowledged before the next is sent: a pipeline would measure something else."""
        sql = insert_sql(self.table)
        slot = self._slots[writer]
        halt = self._halt
        notices: list[str] = []
        now, add, monotonic = self.clock.now, self.out.add, time.monotonic
        acked = self._acked
        interval = self.interval
        next_slot = monotonic() + interval * writer / self.writers  # writers staggered
        conn: psycopg.Connection | None = None
        cur: psycopg.Cursor[Any] | None = None
        server: str | None = None
        if writer > 0 and not interval:
            self._wait_turn(writer)
        try:
            while not halt.is_set():
                if conn is None or cur is None:
                    connected = self._connect(writer, notices)
                    if connected is None:
                        halt.wait(0.01)
                        continue
                    conn, server = connected
                    with slot.lock:
                        slot.conn = conn
                    cur = conn.cursor()
                if interval:
                    next_slot += interval
                    wait = next_slot - monotonic()
                    if wait > 0:
                        if halt.wait(wait):
                            break
                    else:
                        next_slot = monotonic()
                seq = next(self._seq)
                if notices:
                    notices.clear()
                t_send = now()
                slot.since = since = monotonic()
                try:
                    cur.execute(sql, (seq, writer), prepare=True)
                    t_ack = now()
                    slot.since = None
                    add(CanaryAttempt(seq, writer, t_send, t_ack, "ok", server, None,
                                      "; ".join(notices) if notices else None))
                    acked[writer] += 1
                    self.last_ack_seq = seq
                    if self._first_rtt is None and acked[writer] == 2:
                        # the second write: the first also prepared the statement
                        self._first_rtt = t_ack - t_send
                        self._first_ack.set()
                except psycopg.Error as exc:
                    slot.since = None
                    # a broken connection (or one that stopped answering: a cut-off region
                    # drops packets, so nothing ever fails by itself) leaves the outcome
                    # unknown; a server error reply in autocommit means no commit
                    timed_out = slot.expired == since
                    broken = conn is None or conn.closed or conn.broken or (
                        timed_out and not isinstance(exc, psycopg.errors.QueryCanceled))
                    name = "TimeoutError" if timed_out else type(exc).__name__
                    sqlstate = getattr(exc, "sqlstate", None) or ""
                    add(CanaryAttempt(seq, writer, t_send, None,
                                      "unknown" if broken else "failed", server,
                                      f"{name}: {sqlstate}".strip(),
                                      "; ".join(notices) or None))
                    self.last_error = name
                    if broken:
                        self._close(slot)
                        conn = cur = None
        finally:
            self._close(slot)

