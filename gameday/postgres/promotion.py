"""Promotion by SQL, timed by the first write the promoted server accepts."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.errors import ConfigError, TargetError
from gameday.foundation.poll import poll_until
from gameday.postgres.connection import connect
from gameday.postgres.role import in_recovery

POLL_S = 0.005


@dataclasses.dataclass(frozen=True, kw_only=True)
class Promotion:
    """When a promotion was asked for and when the first write was accepted (run clock),
    with the gap to the attempt before it (the error bar)."""

    region: str
    requested: float
    writable: float
    error_s: float
    timeline: int
    writable_utc: str

    @property
    def took_s(self) -> float:
        return self.writable - self.requested


def promote(lab: Lab, target: Region, timeout_s: float, *, clock: Callable[[], float],
            on_requested: Callable[[float], None] = lambda t: None) -> Promotion:
    """pg_promote() `target` and time the first write it accepts. Timed with a write loop,
    not with the call's return: pg_promote(wait => true) polls every 100 ms, while the
    server accepts writes about 30 ms after the signal. SQLSTATE 25006 (read-only
    transaction) means "not yet". The synchronous standby list is cleared: its old primary
    is gone, and every commit would wait for it forever (the probe's own, txid_current(),
    writes no WAL and never waits for a standby)."""
    if not math.isfinite(timeout_s):
        raise ConfigError(f"the promotion of {target.name} was given a timeout of "
                          f"{timeout_s!r} s: give a finite number of seconds")
    with connect(lab, target, "promote it") as conn:
        if not in_recovery(conn):
            raise TargetError(f"the database of {target.name} is already a primary: nothing to "
                              "promote (did a previous game day not fail back?)")
        t_request = clock()
        conn.execute("SELECT pg_promote(wait => false)")
        on_requested(t_request)
        attempts = [t_request]  # each write's start: the last refused one bounds the error

        def writable() -> bool:
            attempts.append(clock())
            try:
                conn.execute("SELECT txid_current()")
            except psycopg.errors.ReadOnlySqlTransaction:
                return False
            except psycopg.Error as exc:
                raise TargetError(f"promotion of {target.name} failed: "
                                  f"{type(exc).__name__}") from None
            return True

        poll_until(writable, timeout_s=timeout_s, interval_s=POLL_S,
                   error=lambda _last: TargetError(
                       f"the database of {target.name} did not accept writes within "
                       f"{timeout_s:g} s of pg_promote()"))
        t_ready = clock()
        prev = attempts[-2]
        ready_utc = datetime.now(UTC)  # the same instant on the wall clock, for split brain
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
        conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        conn.execute("SELECT pg_reload_conf()")
        # the timeline WAL is written on now, from the name of its current file: the last
        # checkpoint's (pg_control_checkpoint) is the old timeline's until the checkpoint
        # that promotion only requests has run, seen in most promotions here
        row = conn.execute("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"
                           ).fetchone()
    assert row is not None
    return Promotion(region=target.name, requested=t_request, writable=t_ready,
                     error_s=round(t_ready - prev, 4), timeline=int(row[0], 16),
                     writable_utc=ready_utc.isoformat())
