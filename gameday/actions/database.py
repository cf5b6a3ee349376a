"""Database promotion by SQL, so it works the same on every lab.

Promotion is timed with a write loop, not with the promote call's return: pg_promote(wait
=> true) polls every 100 ms, while the server accepts writes about 30 ms after the signal
(DESIGN section 8). SQLSTATE 25006 (read-only transaction) means "not yet".
"""

import logging
import time
from typing import Any, Dict

import psycopg

from gameday.actions._common import activity, context
from gameday.errors import TargetError
from gameday.measure import run as runs

__all__ = ["promote"]

logger = logging.getLogger(f"chaostoolkit.{__name__}")

POLL_S = 0.005


@activity
def promote(region: str = "region-2", timeout_s: float = 30.0,
            configuration: Dict[str, Any] = None,
            secrets: Dict[str, Any] = None) -> Dict[str, Any]:
    """Promote the standby database of `region` and wait until it accepts a write. Its
    synchronous standby list is cleared, since its old primary is gone: otherwise every
    commit on the new primary would wait for a standby that does not exist."""
    _, lab = context(configuration, secrets)
    target = lab.region(region)
    dsn = lab.database.dsn(target.db_host, target.db_port, application_name="gameday-promote")
    run = runs.current()
    clock = run.now if run else time.monotonic
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise TargetError(f"cannot reach the database of {region} to promote it "
                          f"({type(exc).__name__})") from None
    with conn:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        if not in_recovery:
            raise TargetError(f"the database of {region} is already a primary: nothing to "
                              "promote (did a previous game day not fail back?)")
        t_request = clock()
        conn.execute("SELECT pg_promote(wait => false)")
        if run:
            run.event("promote-requested", region, t=t_request)
        deadline = time.monotonic() + timeout_s
        prev = t_request
        while True:
            attempt = clock()
            try:
                conn.execute("SELECT txid_current()")
                break
            except psycopg.errors.ReadOnlySqlTransaction:
                pass
            except psycopg.Error as exc:
                raise TargetError(f"promotion of {region} failed: {type(exc).__name__}") from None
            if time.monotonic() > deadline:
                raise TargetError(f"the database of {region} did not accept writes within "
                                  f"{timeout_s:g} s of pg_promote()")
            prev = attempt
            time.sleep(POLL_S)
        t_ready = clock()
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
        conn.execute("SELECT pg_reload_conf()")
    if run:
        run.event("promoted", region, t=t_ready, error_s=round(t_ready - prev, 4),
                  took_s=round(t_ready - t_request, 4))
    logger.info("gameday: %s promoted, writable %.0f ms after the request", region,
                (t_ready - t_request) * 1000)
    return {"region": region, "requested": t_request, "writable": t_ready,
            "took_s": t_ready - t_request}
