"""gameday/postgres/ against a real PostgreSQL 15 (tests/unit/pg.py): what a region's
database is, read-only and back, replication as both ends see it, promotion, and the canary
table's numbering and retention. Each answer here is the server's, not a fake's."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from gameday import postgres
from gameday.foundation.descriptor import Lab
from gameday.foundation.errors import ConfigError, LabError, TargetError
from gameday.postgres import canary, replication
from tests.unit import pg


def _until(what: str, check: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.02)


def _setting(server: pg.Server, name: str) -> str:
    return str(server.sql("SELECT current_setting(%s)", (name,))[0][0])


# --- role -----------------------------------------------------------------------------------


def test_a_primary_a_standby_and_a_region_that_is_down(cluster: pg.Cluster) -> None:
    lab = cluster.lab(cluster.standby())
    one, two = lab.regions
    assert postgres.role(lab, one) == "primary"
    assert postgres.role(lab, two) == "standby"
    assert (postgres.is_writable(lab, one), postgres.is_writable(lab, two)) == (True, False)
    assert (postgres.is_primary(lab, one), postgres.is_primary(lab, two)) == (True, False)

    down = cluster.lab()  # region-2 at a port nothing listens on
    assert postgres.role(down, down.regions[1]) is None
    assert postgres.is_writable(down, down.regions[1]) is None
    assert postgres.is_primary(down, down.regions[1]) is None


def test_read_only_cuts_the_clients_off_and_writable_again_lets_them_write(
        cluster: pg.Cluster) -> None:
    lab = cluster.lab()
    one = lab.primary
    client = cluster.primary.connect()  # an application's session, open before
    try:
        postgres.make_read_only(lab, one)
        assert postgres.role(lab, one) == "read-only"
        assert postgres.is_writable(lab, one) is False
        assert postgres.is_primary(lab, one) is True  # still no place for a second primary
        with pytest.raises(psycopg.OperationalError):
            client.execute("SELECT 1")  # terminated: it cannot commit after our WAL read
    finally:
        client.close()
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        cluster.primary.sql("INSERT INTO gameday_canary (seq) VALUES (1)")

    assert postgres.make_writable_again(lab, one) is True
    assert postgres.role(lab, one) == "primary"
    cluster.primary.sql("INSERT INTO gameday_canary (seq) VALUES (1)")
    # nothing left to undo: a recovery that only started a database says no more than that
    assert postgres.make_writable_again(lab, one) is False


def test_writable_again_leaves_a_standby_and_a_region_down_alone(cluster: pg.Cluster) -> None:
    standby = cluster.standby()
    lab = cluster.lab(standby)
    assert postgres.make_writable_again(lab, lab.secondary) is False
    assert postgres.role(lab, lab.secondary) == "standby"
    down = cluster.lab()
    assert postgres.make_writable_again(down, down.secondary) is False
    with pytest.raises(TargetError, match="cannot reach the database of region-2 to make it "
                                          r"read-only \(OperationalError\)"):
        postgres.make_read_only(down, down.secondary)


# --- replication ----------------------------------------------------------------------------


def test_streaming_as_the_standby_and_as_its_primary_see_it(cluster: pg.Cluster) -> None:
    lab = cluster.lab(cluster.standby("region-2"))
    one, two = lab.regions
    assert replication.standby_streams(lab, two) is True
    assert replication.standby_streams(lab, one) is False  # a primary receives nothing
    assert postgres.streams_from(lab, one, two) is True
    assert postgres.streams_from(lab, one, two, synchronous=True) is False  # asynchronous
    assert postgres.streams_from(lab, two, one) is False  # a standby has no standby
    down = cluster.lab()
    assert postgres.streams_from(down, down.secondary, down.primary) is False


def test_the_replication_mode_is_put_back_by_the_name_the_standby_streams_under(
        cluster: pg.Cluster) -> None:
    standby = cluster.standby("region-2")
    lab = cluster.lab(standby, replication="sync")
    one, two = lab.regions
    postgres.make_read_only(lab, one)
    postgres.restore_replication_mode(lab, one)
    assert _setting(cluster.primary, "synchronous_standby_names") == '"region-2"'
    assert _setting(cluster.primary, "default_transaction_read_only") == "off"
    _until("region-2 is the synchronous standby",
           lambda: postgres.streams_from(lab, one, two, synchronous=True))
    cluster.primary.sql("INSERT INTO gameday_canary (seq) VALUES (1)")  # committed on both

    postgres.restore_replication_mode(cluster.lab(standby, replication="async"), one)
    assert _setting(cluster.primary, "synchronous_standby_names") == ""
    _until("region-2 asynchronous again",
           lambda: not postgres.streams_from(lab, one, two, synchronous=True))


def test_replay_lag_and_waiting_until_replayed(cluster: pg.Cluster) -> None:
    standby = cluster.standby("region-2")
    lab = cluster.lab(standby)
    one, two = lab.regions
    cluster.primary.sql("INSERT INTO gameday_canary (seq) SELECT generate_series(1, 100)")
    took = postgres.wait_replayed(lab, two, one, 10.0, "catch up")
    assert 0 <= took < 10
    assert standby.sql("SELECT count(*) FROM gameday_canary") == [(100,)]
    assert sorted(s for s, _ in postgres.canary_rows(lab, two, "count")) == list(range(1, 101))

    _until("nothing left to replay", lambda: (postgres.replay_lag(lab, one, two) or (1,))[0] == 0)
    behind, lag = postgres.replay_lag(lab, one, two) or (None, None)
    assert behind == 0.0 and (lag is None or lag >= 0)
    assert postgres.replay_lag(lab, one, dataclasses.replace(two, name="region-3")) is None
    down = cluster.lab()
    with pytest.raises(TargetError, match="cannot reach the primary database in region-2"):
        postgres.replay_lag(down, down.secondary, down.primary)


def test_waiting_for_a_standby_that_does_not_replay_times_out_naming_its_receiver(
        cluster: pg.Cluster) -> None:
    standby = cluster.standby("region-2")
    lab = cluster.lab(standby)
    standby.sql("SELECT pg_wal_replay_pause()")
    cluster.primary.sql("INSERT INTO gameday_canary (seq) VALUES (1)")
    started = time.monotonic()
    with pytest.raises(TargetError, match=r"region-2 did not catch up within 0.2 s "
                                          r"\(receiver: streaming\)"):
        postgres.wait_replayed(lab, lab.secondary, lab.primary, 0.2, "catch up")
    assert time.monotonic() - started < 3
    standby.sql("SELECT pg_wal_replay_resume()")
    postgres.wait_replayed(lab, lab.secondary, lab.primary, 10.0, "catch up")
    assert standby.sql("SELECT seq FROM gameday_canary") == [(1,)]


def test_a_checkpoint_moves_the_redo_point(cluster: pg.Cluster) -> None:
    lab = cluster.lab()
    before = cluster.primary.sql("SELECT redo_lsn FROM pg_control_checkpoint()")[0][0]
    cluster.primary.sql("INSERT INTO gameday_canary (seq) VALUES (1)")
    postgres.checkpoint(lab, lab.primary)
    after = cluster.primary.sql("SELECT redo_lsn FROM pg_control_checkpoint()")[0][0]
    assert after != before


# --- promotion ------------------------------------------------------------------------------


def test_promotion_is_timed_by_the_first_write_and_leaves_a_writable_primary(
        cluster: pg.Cluster) -> None:
    """The switchover's order: the primary made read-only, then its standby promoted. The
    standby was copied with the primary's read-only and synchronous settings
    (postgresql.auto.conf): the promoted server must still take writes, and wait for no
    standby (its old primary is gone)."""
    lab = cluster.lab()
    cluster.primary.sql("ALTER SYSTEM SET synchronous_standby_names = '\"region-1\"'")
    postgres.make_read_only(lab, lab.primary)
    standby = cluster.standby("region-2", fresh=True)
    lab = cluster.lab(standby)
    assert _setting(standby, "default_transaction_read_only") == "on"
    requested: list[float] = []

    promoted = postgres.promote(lab, lab.secondary, 30.0, clock=time.monotonic,
                                on_requested=requested.append)

    assert promoted.region == "region-2" and promoted.timeline == 2
    assert requested == [promoted.requested]
    assert 0 < promoted.took_s < 30
    # the error bar is rounded to 0.1 ms: when the first write after the request already
    # went through, it is the whole wait, rounded (0.0197 for 0.019681 s)
    assert 0 <= promoted.error_s <= round(promoted.took_s, 4)
    assert postgres.role(lab, lab.secondary) == "primary"
    assert _setting(standby, "synchronous_standby_names") == ""
    # a new session commits at once: no synchronous standby waited for, not read-only
    standby.sql("INSERT INTO gameday_canary (seq) VALUES (1)")
    assert postgres.role(lab, lab.primary) == "read-only"  # the old one is left as it was


def test_promoting_a_primary_a_region_down_or_without_a_bound_is_refused(
        cluster: pg.Cluster) -> None:
    lab = cluster.lab()
    with pytest.raises(TargetError, match="region-1 is already a primary: nothing to promote"):
        postgres.promote(lab, lab.primary, 5.0, clock=time.monotonic)
    with pytest.raises(TargetError, match="cannot reach the database of region-2 to promote"):
        postgres.promote(lab, lab.secondary, 5.0, clock=time.monotonic)
    with pytest.raises(ConfigError, match="a timeout of inf s: give a finite number"):
        postgres.promote(lab, lab.primary, float("inf"), clock=time.monotonic)
    assert postgres.role(lab, lab.primary) == "primary"


# --- the canary table -----------------------------------------------------------------------


def _reversed(lab: Lab) -> Lab:
    """The same lab with the standby's host listed first in the writer's DSN."""
    return Lab(lab=lab.lab, regions=lab.regions[::-1], dns=lab.dns, sql_database=lab.database)


def test_numbering_continues_after_the_highest_number_on_the_writable_primary(
        cluster: pg.Cluster) -> None:
    standby = cluster.standby()
    lab = _reversed(cluster.lab(standby))  # the standby first: read-write skips it
    assert canary.next_seq(lab) == 1
    cluster.primary.sql("INSERT INTO gameday_canary (seq) VALUES (1), (2), (41)")
    cluster.primary.sql("INSERT INTO gameday_canary (seq, writer) VALUES (-7, -1)")  # split brain
    assert canary.next_seq(lab) == 42
    rows, server = canary.stored_since(lab, 2)
    assert rows == [(2, 1), (41, 1)] and server == pg.HOST

    # only the standby among the hosts: no writable primary to follow
    lab = Lab(lab=lab.lab, regions=lab.regions[:1], dns=lab.dns, sql_database=lab.database)
    with pytest.raises(LabError, match=r"cannot reach the writable database through the "
                                       r"lab descriptor \(.*session is read-only\): check its"):
        canary.next_seq(lab)
    with pytest.raises(TargetError, match="cannot read the canary table from the writable "
                                          r"primary \(OperationalError\)"):
        canary.stored_since(lab, 1)


def test_retention_keeps_the_run_starting_and_the_one_before(cluster: pg.Cluster) -> None:
    lab = cluster.lab()

    def write(first: int, last: int) -> None:
        cluster.primary.sql("INSERT INTO gameday_canary (seq) SELECT generate_series(%s::bigint, %s)",
                            (first, last))

    def stored() -> list[int]:
        return [r[0] for r in cluster.primary.sql("SELECT seq FROM gameday_canary ORDER BY 1")]

    write(1, 3)  # rows from before retention was kept (no runs table yet)
    assert canary.prune(lab, start_seq=4, run_id="a") == 0
    write(4, 6)
    assert canary.prune(lab, start_seq=7, run_id="b") == 3  # the old rows, once 2 runs are kept
    assert stored() == [4, 5, 6]
    write(7, 9)
    assert canary.prune(lab, start_seq=10, run_id="c") == 3  # run a's
    assert stored() == [7, 8, 9]
    # a run that wrote nothing leaves the next its start: re-registered, nothing of b's lost
    assert canary.prune(lab, start_seq=10, run_id="d") == 0
    assert stored() == [7, 8, 9]
    runs = cluster.primary.sql("SELECT start_seq, run_id FROM gameday_canary_runs ORDER BY 1")
    assert runs == [(7, "b"), (10, "d")]
    with cluster.primary.connect() as conn, pytest.raises(ValueError, match="at least 1"):
        canary.prune_canary(conn, "gameday_canary", start_seq=11, run_id="e", keep_runs=0)


def test_retention_commits_without_waiting_for_a_standby_that_is_gone(
        cluster: pg.Cluster) -> None:
    """A failback's housekeeping on a synchronous primary whose standby is down: the commit
    is local, not held until the standby returns (or the statement's 120 s run out)."""
    lab = cluster.lab()
    cluster.primary.sql("ALTER SYSTEM SET synchronous_standby_names = '\"gone\"'")
    cluster.primary.sql("SELECT pg_reload_conf()")
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(
        canary.prune(lab, start_seq=1, run_id="a")), daemon=True)
    thread.start()
    thread.join(10)
    assert done == [0], "prune waited for the synchronous standby"


# --- the suite's own server -----------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process: the pair tells a process
    from a later one given the same pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[19])


def _processes_of(pid: int) -> dict[int, int | None]:
    """The server at `pid` and its children: pid -> start time."""
    found = {pid: (_stat(pid) or (0, None))[1]}
    for entry in Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None and stat[0] == pid:
            found[int(entry.name)] = stat[1]
    return found


def test_a_failing_test_leaves_no_server_and_no_directory_behind() -> None:
    """What the session fixture does when a test fails in it: every postmaster stopped by
    its pid (their backends with them), the temporary directory removed."""
    processes: dict[int, int | None] = {}
    with pytest.raises(RuntimeError, match="a test failed"), pg.cluster() as made:
        for server in (made.primary, made.standby()):
            assert server.proc is not None
            processes |= _processes_of(server.proc.pid)
        assert len(processes) >= 8  # 2 postmasters, checkpointers, walsender, walreceiver...
        raise RuntimeError("a test failed")
    left = [pid for pid, started in processes.items()
            if started is not None and (_stat(pid) or (0, None))[1] == started]
    assert left == []
    assert not made.base.exists()
