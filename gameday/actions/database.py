"""Database promotion, split-brain accounting, resync and planned switchover.

Promotion is timed with a write loop, not with the promote call's return: pg_promote(wait
=> true) polls every 100 ms, while the server accepts writes about 30 ms after the signal
(DESIGN section 8). SQLSTATE 25006 (read-only transaction) means "not yet". Everything here
is SQL except stopping, rewinding and starting a database, which the lab's driver does.
"""

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any, Dict

import psycopg

from gameday import interrupt
from gameday.actions._common import context, rollback, step
from gameday.errors import LabError, TargetError
from gameday.labs import drill
from gameday.labs.descriptor import Lab, Region
from gameday.labs.driver import for_region
from gameday.measure import run as runs

__all__ = ["promote", "count_split_brain", "resync", "switchover", "ensure_writable_primary",
           "cut_replication"]

logger = logging.getLogger(f"chaostoolkit.{__name__}")

POLL_S = 0.005


def _connect(lab: Lab, region: Region, what: str) -> psycopg.Connection:
    try:
        return psycopg.connect(lab.database.dsn(region.db_host, region.db_port,
                                                application_name="gameday-drill"),
                               autocommit=True)
    except psycopg.Error as exc:
        raise TargetError(f"cannot reach the database of {region.name} to {what} "
                          f"({type(exc).__name__})") from None


def is_writable(lab: Lab, region: Region) -> bool | None:
    """True for a writable primary, False for a standby or read-only one, None when down."""
    try:
        with psycopg.connect(lab.database.dsn(region.db_host, region.db_port, connect_timeout="1"),
                             autocommit=True) as conn:
            in_recovery, read_only = conn.execute(
                "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')"
            ).fetchone()
            return not in_recovery and read_only == "off"
    except psycopg.Error:
        return None


def _promote(lab: Lab, target: Region, timeout_s: float) -> Dict[str, Any]:
    run = runs.current()
    clock = run.now if run else time.monotonic
    with _connect(lab, target, "promote it") as conn:
        if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise TargetError(f"the database of {target.name} is already a primary: nothing to "
                              "promote (did a previous game day not fail back?)")
        t_request = clock()
        conn.execute("SELECT pg_promote(wait => false)")
        if run:
            run.event("promote-requested", target.name, t=t_request)
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
                raise TargetError(f"promotion of {target.name} failed: {type(exc).__name__}") from None
            if time.monotonic() > deadline:
                raise TargetError(f"the database of {target.name} did not accept writes within "
                                  f"{timeout_s:g} s of pg_promote()")
            prev = attempt
            interrupt.pause(POLL_S)
        t_ready = clock()
        ready_utc = datetime.now(UTC)  # the same instant on the wall clock, for split brain
        # its standby is gone (or not yet back): a synchronous standby list would make every
        # commit wait for it forever
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
        conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        conn.execute("SELECT pg_reload_conf()")
        timeline = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
    if run:
        run.event("promoted", target.name, t=t_ready, error_s=round(t_ready - prev, 4),
                  took_s=round(t_ready - t_request, 4))
    logger.info("gameday: %s promoted, writable %.0f ms after the request", target.name,
                (t_ready - t_request) * 1000)
    return {"region": target.name, "requested": t_request, "writable": t_ready,
            "took_s": t_ready - t_request, "timeline": timeline,
            "writable_utc": ready_utc.isoformat()}


@step
def promote(region: str = "region-2", timeout_s: float = 30.0,
            configuration: Dict[str, Any] = None,
            secrets: Dict[str, Any] = None) -> Dict[str, Any]:
    """Promote the standby database of `region` and wait until it accepts a write. Its
    synchronous standby list is cleared, since its old primary is gone: otherwise every
    commit on the new primary would wait for a standby that does not exist."""
    _, lab = context(configuration, secrets)
    target = lab.region(region)
    for other in lab.regions:
        if other.name != region and is_writable(lab, other) is True:
            raise LabError(f"{other.name} still accepts writes: promoting {region} now would "
                           "make two writable primaries (did the outage not take it down?)")
    run = runs.current()
    state = {
        "promoted": region,
        "old_primary": next(r.name for r in lab.regions if r.name != region),
        "promoted_at_utc": datetime.now(UTC).isoformat(),
        "timeline": None,
        "game_day_run": str(run.dir) if run else None,
    }
    # written before the promotion is requested: a run interrupted half-way must still
    # leave failback (and `gameday recover`) the record that a promotion may have happened
    drill.write(lab.path, state)
    result = _promote(lab, target, timeout_s)
    drill.write(lab.path, {**state, "promoted_at_utc": result["writable_utc"],
                           "timeline": result["timeline"]})
    return result


@step
def count_split_brain(old_primary: str = "region-1", new_primary: str = "region-2",
                      configuration: Dict[str, Any] = None,
                      secrets: Dict[str, Any] = None) -> Dict[str, Any]:
    """Before the old primary is touched: read its canary rows and compare them with the new
    primary's. Rows only the old primary has, written after the promotion, are split-brain
    writes (acknowledged there while the new primary served): they are lost at failback.
    Rows it has that were written before the promotion were acknowledged but never
    replicated: lost at failover."""
    _, lab = context(configuration, secrets)
    state = drill.read(lab.path)
    if not state or state.get("promoted") != new_primary:
        raise LabError(f"no game day promoted {new_primary}: run experiments/game-day.json first")
    promoted_at = datetime.fromisoformat(state["promoted_at_utc"])
    old, new = lab.region(old_primary), lab.region(new_primary)
    table = lab.database.canary_table
    with _connect(lab, old, "read its canary rows") as conn:
        old_rows = conn.execute(f"SELECT seq, written_at FROM {table}").fetchall()
    with _connect(lab, new, "read its canary rows") as conn:
        new_seqs = {r[0] for r in conn.execute(f"SELECT seq FROM {table}")}
    only_old = [(seq, at) for seq, at in old_rows if seq not in new_seqs]
    split = sorted(at for _, at in only_old if at > promoted_at)
    unreplicated = sum(1 for _, at in only_old if at <= promoted_at)
    result = {
        "old_primary": old_primary, "split_brain_writes": len(split),
        "unreplicated_writes": unreplicated,
        "window_utc": [split[0].isoformat(), split[-1].isoformat()] if split else None,
        "promoted_at_utc": state["promoted_at_utc"],
    }
    run = runs.current()
    if run:
        run.event("split-brain-counted", old_primary, **result)
    logger.info("gameday: %d split-brain writes on %s, %d never replicated", len(split),
                old_primary, unreplicated)
    return result


def _lsn(conn: psycopg.Connection, sql: str) -> str:
    return conn.execute(sql).fetchone()[0]


def _wait_replayed(lab: Lab, standby: Region, primary: Region, timeout_s: float,
                   what: str) -> float:
    """Wait until `standby` has replayed everything `primary` had written when we started
    waiting; returns the seconds it took."""
    started = time.monotonic()
    with _connect(lab, primary, "read its WAL position") as conn:
        target = _lsn(conn, "SELECT pg_current_wal_lsn()::text")
    deadline = started + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(lab.database.dsn(standby.db_host, standby.db_port,
                                                  connect_timeout="1"), autocommit=True) as c:
                row = c.execute("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn), "
                                "(SELECT status FROM pg_stat_wal_receiver)", (target,)).fetchone()
                last = row[1]
                if row[0] is not None and row[0] >= 0:
                    return time.monotonic() - started
        except psycopg.Error as exc:
            last = type(exc).__name__
        interrupt.pause(0.02)
    raise TargetError(f"{standby.name} did not {what} within {timeout_s:g} s (receiver: {last})")


@step
def resync(region: str = "region-1", source: str = "region-2", timeout_s: float = 300.0,
           configuration: Dict[str, Any] = None,
           secrets: Dict[str, Any] = None) -> Dict[str, Any]:
    """Turn the old primary `region` into a streaming standby of `source`: stop it, rewind
    it onto the source's timeline (pg_rewind after a CHECKPOINT on the source; a fresh base
    backup when rewind fails), start it as a standby and wait until it has replayed
    everything the source had written (bounded by `timeout_s`)."""
    _, lab = context(configuration, secrets)
    target, upstream = lab.region(region), lab.region(source)
    if is_writable(lab, upstream) is not True:
        raise LabError(f"{source} is not the writable primary: nothing to resync from "
                       "(run experiments/game-day.json first)")
    driver = for_region(lab, target, configuration)
    run = runs.current()
    started = time.monotonic()
    # without a checkpoint right after promotion, pg_rewind can answer "no rewind required"
    # and leave the target looping on "new timeline forked off" (DESIGN section 8)
    with _connect(lab, upstream, "checkpoint it") as conn:
        conn.execute("CHECKPOINT")
    driver.stop_database(target)
    method = driver.resync_database(target, upstream)
    driver.start_standby(target, upstream)
    copied_s = time.monotonic() - started
    catch_up_s = _wait_replayed(lab, target, upstream, timeout_s, "catch up")
    result = {"standby": region, "source": source, "method": method,
              "resync_s": round(copied_s, 3), "catch_up_s": round(catch_up_s, 3)}
    if run:
        run.event("resynced", region, **result)
    logger.info("gameday: %s resynced from %s by %s in %.1f s, caught up in %.2f s", region,
                source, method, copied_s, catch_up_s)
    return result


def restore_replication_mode(lab: Lab, primary: Region) -> None:
    """Once the other region streams again from `primary`, make it the synchronous standby
    again in a sync lab (found by the name it streams under), or leave replication
    asynchronous. Seen in a 20-drill soak: leaving this to the node's configuration files
    made the lab silently asynchronous after the first failback (a rewound node carries
    standby settings), and the next game day lost acknowledged writes."""
    with _connect(lab, primary, "restore its settings") as conn:
        conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        names = [r[0] for r in conn.execute(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")]
        if lab.database.replication == "sync" and names:
            quoted = ", ".join('"' + n.replace('"', "") + '"' for n in names)
            conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{quoted}'")
        else:
            conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("SELECT pg_reload_conf()")


@step
def switchover(to: str = "region-1", timeout_s: float = 60.0,
               configuration: Dict[str, Any] = None,
               secrets: Dict[str, Any] = None) -> Dict[str, Any]:
    """Planned switchover to `to`, with zero loss: make the current primary read-only (its
    clients are disconnected and may not write again), wait until `to` has replayed all of
    it, stop it (its shutdown checkpoint reaches the standby), promote `to`, and restart the
    old primary as a standby of `to`."""
    _, lab = context(configuration, secrets)
    target = lab.region(to)
    current = next(r for r in lab.regions if r.name != to)
    if is_writable(lab, current) is not True:
        raise LabError(f"{current.name} is not the writable primary: no switchover to do")
    if is_writable(lab, target) is not False:
        raise LabError(f"{to} is not a standby: resync it first")
    driver = for_region(lab, current, configuration)
    run = runs.current()
    t_start = run.event("fault-applied", current.name, fault="switchover") if run else 0.0
    progress = {**(drill.read(lab.path) or {}), "switchover": {"to": to, "from": current.name}}

    def stage(name: str) -> None:
        # each stage on disk first, so a rollback or `gameday recover` after an
        # interruption knows whether to undo the switchover or to complete it
        progress["switchover"]["stage"] = name
        drill.write(lab.path, progress)

    stage("read-only")
    with _connect(lab, current, "make it read-only") as conn:
        conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        conn.execute("SELECT pg_reload_conf()")
        # sessions pick the setting up at their next statement; cut them off so no
        # transaction that started writable can commit after we read the WAL position
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
    if run:
        run.event("fault-effective", current.name, fault="switchover")
    replay_s = _wait_replayed(lab, target, current, timeout_s, "replay the old primary")
    stage("stopping")
    driver.stop_database(current)
    stage("promoting")
    promoted = _promote(lab, target, timeout_s)
    stage("promoted")
    driver.start_standby(current, target)
    _wait_replayed(lab, current, target, timeout_s, "follow the new primary")
    restore_replication_mode(lab, target)
    drill.clear(lab.path)
    result = {"to": to, "from_region": current.name, "replay_wait_s": round(replay_s, 3),
              "promotion_s": round(promoted["took_s"], 4), "t_start": t_start}
    if run:
        run.event("switched-over", to, **{k: v for k, v in result.items() if k != "t_start"})
    return json.loads(json.dumps(result))


@rollback
def ensure_writable_primary(configuration: Dict[str, Any] = None,
                            secrets: Dict[str, Any] = None) -> Dict[str, Any]:
    """Rollback of an interrupted switchover; see `restore_writable_primary`."""
    _, lab = context(configuration, secrets)
    return restore_writable_primary(lab, configuration)


def restore_writable_primary(lab: Lab, configuration: Dict[str, Any] = None) -> Dict[str, Any]:
    """If no region accepts writes: start a database that is down (unless fenced), then make
    a primary that a switchover left read-only writable again. Never creates a second
    writable primary; does nothing when one region is writable."""
    states = {r.name: is_writable(lab, r) for r in lab.regions}
    changed: list = []
    switching = (drill.read(lab.path) or {}).get("switchover")
    if switching and switching.get("stage") == "promoting":
        # pg_promote may have been sent: let it settle before deciding, or the old primary
        # could be made writable next to a new one
        target = lab.region(switching["to"])
        deadline = time.monotonic() + 15
        while is_writable(lab, target) is not True and time.monotonic() < deadline:
            time.sleep(0.1)
        states = {r.name: is_writable(lab, r) for r in lab.regions}
    if switching and states.get(switching["to"]) is True:
        # interrupted after the promotion: complete the switchover, the old primary
        # (stopped cleanly, its shutdown checkpoint replicated) follows the new one
        old, new = lab.region(switching["from"]), lab.region(switching["to"])
        if states.get(old.name) is None:
            for_region(lab, old, configuration).start_standby(old, new)
            changed.append(f"{old.name} follows {new.name} (switchover completed)")
        _wait_replayed(lab, old, new, 60, "follow the new primary")
        restore_replication_mode(lab, new)
        drill.clear(lab.path)
        return {"changed": changed or None, "states": states}
    if any(v is True for v in states.values()):
        return {"changed": None, "states": states}
    for r in lab.regions:
        if states[r.name] is None:
            driver = for_region(lab, r, configuration)
            start = getattr(driver, "start_database", None)
            if start is not None and start(r):
                changed.append(f"started the database of {r.name}")
    promoted = (drill.read(lab.path) or {}).get("promoted")
    if promoted and not switching:
        # a promotion was sent (the old primary is fenced because of it): finish it rather
        # than leave no primary at all
        target = lab.region(promoted)
        deadline = time.monotonic() + 15
        while is_writable(lab, target) is False and time.monotonic() < deadline:
            time.sleep(0.1)
        if is_writable(lab, target) is False:
            with _connect(lab, target, "check it") as conn:
                in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            if in_recovery:
                _promote(lab, target, 30)
                changed.append(f"promoted {target.name} (its promotion was requested)")
                return {"changed": changed, "states": states}
    for r in lab.regions:
        try:
            with _connect(lab, r, "check it") as conn:
                if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    continue
                conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
                conn.execute("SELECT pg_reload_conf()")
                logger.warning("gameday: switchover interrupted: %s is writable again", r.name)
                changed.append(f"made {r.name} writable again")
                break
        except TargetError:
            continue
    return {"changed": changed or None, "states": states}


@step
def cut_replication(region: str = "region-2", hold_s: float = 1.0,
                    configuration: Dict[str, Any] = None,
                    secrets: Dict[str, Any] = None) -> Dict[str, Any]:
    """Cut the standby in `region` off its primary and hold it so for `hold_s` seconds:
    with asynchronous replication every write acknowledged meanwhile exists only on the
    primary, a known amount of data for a later outage to lose. Recorded in the fault
    ledger (rolled back by restore_region on `region`), and as a `replication-cut` event,
    not as the outage's fault."""
    from gameday.labs.ledger import Ledger

    _, lab = context(configuration, secrets)
    target = lab.region(region)
    driver = for_region(lab, target, configuration)
    undo = driver.plan("replication-cut", target)
    ledger = Ledger(lab.path)
    fault_id = ledger.plan(region, "replication-cut", undo)
    run = runs.current()
    driver.inject("replication-cut", target, undo)
    ledger.mark(fault_id, "applied")
    deadline = time.monotonic() + 10
    while not driver.is_effective("replication-cut", target, undo):
        if time.monotonic() > deadline:
            raise TargetError(f"the replication path of {region} is still up")
        interrupt.pause(0.01)
    t = run.event("replication-cut", region, hold_s=hold_s) if run else None
    interrupt.pause(hold_s)
    return {"region": region, "cut_at": t, "hold_s": hold_s}
