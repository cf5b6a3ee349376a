"""Faults on the netns lab.

- scale-to-zero: the region's storefront and database processes stop at once (the database
  with an immediate shutdown, as a crash would), by pid.
- block-egress: an nftables table in the region's namespace drops every new outbound
  connection.
- blackhole: the same table drops all traffic in and out but loopback, while the region's
  processes keep running (the split-brain case).
- cordon: not applicable (no nodes).

Reverting scale-to-zero restarts the region's processes, but its database comes back
*fenced* (a standby with no upstream: read-only, so its storefront fails /healthz and DNS
cannot flip back to stale data) whenever the other region's database is writable.

Under the Redis profile (`lab up --store redis-sentinel`) the fault table is that
profile's (`_redis_faults`): scale-to-zero, replication-cut and blackhole's revert go to
redis_sentinel.py, so Redis and its Sentinel die with the storefront, and come back as the
Sentinels expect.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gameday import postgres
from gameday import redis as redis_store
from gameday.foundation import drill_state
from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.driver import FaultOps, FaultTable
from gameday.foundation.errors import ConfigError, LabError, TargetError
from gameday.foundation.faults import Fault
from gameday.foundation.poll import poll_until, poll_within
from gameday.foundation.settings import GamedaySettings
from gameday.labs.netns import lab as netns_lab
from gameday.labs.netns import patroni as patroni_profile
from gameday.labs.netns import redis_sentinel
from gameday.labs.netns import topology as topo
from gameday.labs.netns.database import NodeOps
from gameday.labs.netns.processes import Processes, connects, run, wait_port

logger = logging.getLogger(f"chaostoolkit.{__name__}")
# how long the lab's standby may take to stream again after its primary restarted, before
# it is resynced: it retries every 200 ms (wal_retrieve_retry_interval, configs.py), so a
# healthy one streams within a second; one that has not in 3 s did not in 10 either (the
# old bound), and a resync of a healthy one would only cost its copy
STANDBY_FOLLOWS_S = 3.0
# the same under Patroni, which also needs a loop (1 s) to point its replica at the leader
PATRONI_FOLLOWS_S = 8.0
# how long a database scale-to-zero crashed (SIGQUIT) may take to end before its revert
# gives up; a process it SIGKILLed ends within KILLED_ENDS_S, or was never signalled
CRASH_ENDS_S = 15.0
KILLED_ENDS_S = 0.5

EGRESS_RULES = """table inet gameday {
    chain output {
        type filter hook output priority 0; policy accept;
        oif "lo" accept
        ct state established,related accept
        counter drop comment "gameday block-egress"
    }
}
"""
BLACKHOLE_RULES = """table inet gameday {
    chain input {
        type filter hook input priority 0; policy accept;
        iif "lo" accept
        counter drop comment "gameday blackhole"
    }
    chain output {
        type filter hook output priority 0; policy accept;
        oif "lo" accept
        counter drop comment "gameday blackhole"
    }
}
"""


# `python -c CONNECT_PROBE HOST PORT` exits 0 when it can open a TCP connection to HOST:PORT
CONNECT_PROBE = """import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.3).close()
except OSError:
    sys.exit(1)
"""


class NetnsDriver(FaultTable):
    kind = "netns"

    def __init__(self, lab: Lab) -> None:
        if not lab.state_dir:
            raise ConfigError("the netns lab descriptor has no 'state_dir': regenerate it "
                              "with `gameday lab down && gameday lab up`")
        self.lab = lab
        self.state = Path(lab.state_dir)
        self.procs = Processes(self.state)
        self.nodes = NodeOps(lab)
        self.ha = lab.ha is not None and lab.ha.manager == "patroni"
        # the Redis profile's facts, None on the PostgreSQL lab
        self.redis = redis_sentinel.Profile.load(self.state)

    @classmethod
    def for_lab(cls, lab: Lab, settings: GamedaySettings | None = None) -> NetnsDriver:
        """The registry's factory (gameday.foundation.lab_kinds): the netns lab reads
        nothing from the settings."""
        return cls(lab)

    # -- plan / inject / verify / revert -------------------------------------------------

    def faults(self) -> Mapping[Fault, FaultOps | str]:
        return self._faults

    @functools.cached_property
    def _faults(self) -> dict[Fault, FaultOps | str]:
        if self.redis is not None:
            return self._redis_faults()
        return {
            Fault.SCALE_TO_ZERO: FaultOps(plan=self._plan_stop, inject=self._stop_processes,
                                          is_effective=self._stopped,
                                          revert=self._restart_processes),
            Fault.CORDON: "the netns lab has no nodes to cordon",
            Fault.BLOCK_EGRESS: FaultOps(plan=self._plan_rules, inject=self._block_egress,
                                         is_effective=self._egress_blocked,
                                         revert=self._remove_rules),
            Fault.BLACKHOLE: FaultOps(plan=self._plan_blackhole, inject=self._blackhole,
                                      is_effective=self._blackholed, revert=self._remove_rules),
            Fault.REPLICATION_CUT: FaultOps(plan=self._plan_cut, inject=self._cut,
                                            is_effective=self._cut_off, revert=self._uncut),
        }

    # scale-to-zero: the region's processes killed as a crash would, by pid

    def _plan_stop(self, region: Region) -> dict[str, Any]:
        if self.ha:
            # Patroni first: killed, it cannot start its PostgreSQL again
            names = [n for n in (f"patroni-{region.name}",
                                 *netns_lab.storefront_names(self.state, region.name))
                     if self.procs.alive(n)]
            return {"applicable": True, "stopped": names, "postmaster": True,
                    "pids": {n: self.procs.pid(n) for n in names}}
        # every storefront of the region (one per address with --region-addresses)
        names = [n for n in (*netns_lab.storefront_names(self.state, region.name),
                             f"postgres-{region.name}") if self.procs.alive(n)]
        return {"applicable": True, "stopped": names,
                "pids": {n: self.procs.pid(n) for n in names}}

    def _stop_processes(self, region: Region, undo: dict[str, Any]) -> None:
        """scale-to-zero: every process the record lists, killed as a crash would."""
        for name in undo["stopped"]:
            # SIGQUIT is PostgreSQL's immediate shutdown: no checkpoint, like a crash
            sig = signal.SIGQUIT if name.startswith("postgres") else signal.SIGKILL
            self.procs.signal(name, sig)
            if name.startswith("patroni"):
                # its PostgreSQL, found by postmaster.pid, crashes the same way
                patroni_profile.kill_postmaster(self.nodes.data(region), signal.SIGQUIT)

    def _stopped(self, region: Region, undo: dict[str, Any]) -> bool:
        if any(self.procs.alive(n) for n in undo["stopped"]):
            return False
        if undo.get("postmaster") and \
                patroni_profile.postmaster_pid(self.nodes.data(region)) is not None:
            return False
        return not connects(region.address, region.db_port, 0.2) and not connects(
            region.address, topo.STOREFRONT_PORT, 0.2)

    # block-egress and blackhole: an nftables table in the region's namespace

    def _plan_rules(self, region: Region) -> dict[str, Any]:
        return {"applicable": True, "netns": region.netns, "table": topo.NFT_TABLE}

    def _plan_blackhole(self, region: Region) -> dict[str, Any]:
        return {**self._plan_rules(region), "local_writer": f"local-writer-{region.name}"}

    def _add_rules(self, region: Region, rules: str) -> None:
        if self._table_present(region):
            raise LabError(f"an nftables table '{topo.NFT_TABLE}' is already in "
                           f"{region.netns}: run `gameday recover` first")
        run(["nft", "-f", "-"], netns=region.netns, input=rules)

    def _block_egress(self, region: Region, undo: dict[str, Any]) -> None:
        self._add_rules(region, EGRESS_RULES)

    def _blackhole(self, region: Region, undo: dict[str, Any]) -> None:
        """All traffic dropped while the region's processes run on, and users inside it go
        on writing to its database (the writes a split brain costs)."""
        self._add_rules(region, BLACKHOLE_RULES)
        if undo.get("local_writer"):  # none when only the cut is wanted (a standby's region)
            self._start_local_writer(region, undo["local_writer"])

    def _egress_blocked(self, region: Region, undo: dict[str, Any]) -> bool:
        return self._table_present(region) and not self._can_connect_out(region)

    def _blackholed(self, region: Region, undo: dict[str, Any]) -> bool:
        return self._table_present(region) and not connects(
            region.address, topo.STOREFRONT_PORT, 0.3)

    def _remove_rules(self, region: Region, undo: dict[str, Any]) -> None:
        """The table goes; a blackholed region that kept running as a primary is fenced
        first."""
        if undo.get("local_writer"):
            self.procs.stop(undo["local_writer"])
            # the region kept running as a primary: fence it while it is still cut
            # off, so it never serves again next to the new primary
            if not self.ha and self.procs.alive(f"postgres-{region.name}") and \
                    not self.nodes.is_fenced(region) and \
                    self._other_serves_or_was_promoted(region):
                self.nodes.stop(region)
                self.nodes.fence(region)
                self.nodes.start(region)
        if self._table_present(region):
            run(["nft", "delete", "table", "inet", topo.NFT_TABLE], netns=region.netns)

    # replication-cut: the region's only path to the other region's database is its delay
    # proxy; stopping it cuts the standby's stream (and any other cross-region client)

    def _plan_cut(self, region: Region) -> dict[str, Any]:
        return {"applicable": True, "proxy": f"delay-{region.name}",
                "delay_ms": self.lab.inter_region_delay_ms or 0}

    def _cut(self, region: Region, undo: dict[str, Any]) -> None:
        self.procs.stop(undo["proxy"])

    def _cut_off(self, region: Region, undo: dict[str, Any]) -> bool:
        return not self.procs.alive(undo["proxy"])

    def _uncut(self, region: Region, undo: dict[str, Any]) -> None:
        if not self.procs.alive(undo["proxy"]):
            netns_lab.start_delay_proxy(self.state, region.name, undo["delay_ms"])

    def _restart_processes(self, region: Region, undo: dict[str, Any]) -> None:
        """scale-to-zero undone: what the record lists starts again, the database fenced
        when another region serves or was promoted."""
        password = self.lab.database.password
        self._wait_crashed(region, undo)
        if f"patroni-{region.name}" in undo["stopped"]:
            # Patroni is the fence: it starts its PostgreSQL as a replica (pg_rewind
            # first) when the other member holds the leader key
            self.start_database(region)
        if f"postgres-{region.name}" in undo["stopped"] and \
                not self.procs.alive(f"postgres-{region.name}"):
            fenced = self._other_serves_or_was_promoted(region)
            if fenced:
                self.fence(region)
            self._start_postgres(region)
            if not fenced:
                self._standby_follows(region)
        storefronts = netns_lab.storefront_names(self.state, region.name)
        if any(n in undo["stopped"] and not self.procs.alive(n) for n in storefronts):
            netns_lab.start_storefront(self.state, region.name, password)
            netns_lab.wait_storefronts(self.state, region.name)

    def _wait_crashed(self, region: Region, undo: dict[str, Any]) -> None:
        """The crash the fault began may not be over: a postmaster's immediate shutdown takes
        a moment. A revert that looked before it ended would find the process alive and
        start nothing (seen in CI: a stop condition fired while the drill waited for the
        fault to take effect, and region-1's database stayed down after the rollback).

        The fault may also never have been injected (a drill interrupted between recording
        its plan and sending the signal): a database that still answers queries was never
        stopped, and there is nothing to wait for. Only the postmaster's SIGQUIT ends
        slowly; SIGKILL (storefronts, Patroni) ends a process at once."""
        for name, pid in (undo.get("pids") or {}).items():  # none in an older ledger's line
            if pid is None:
                continue
            if not name.startswith("postgres-"):
                self.procs.wait_gone(name, pid, KILLED_ENDS_S)
                continue
            began = time.monotonic()

            def over(name: str = name, pid: int = pid, began: float = began) -> bool:
                if self.procs.pid(name) != pid:
                    return True
                # after a moment in which a signal just sent is surely handled
                return time.monotonic() - began >= KILLED_ENDS_S and self._serves(region)

            if not poll_within(over, timeout_s=CRASH_ENDS_S, interval_s=0.05,
                               interruptible=False):
                raise LabError(f"{name} (pid {pid}) still runs {CRASH_ENDS_S:g} s after "
                               "scale-to-zero stopped it, and answers no query: stop it, "
                               "then run `gameday recover`")

    def _serves(self, region: Region) -> bool:
        """The region's database answers a query (not one ending its immediate shutdown,
        which refuses every connection)."""
        return postgres.role(self.lab, _direct(region)) is not None

    # -- the Redis profile's faults ---------------------------------------------------------

    def _redis_faults(self) -> dict[Fault, FaultOps | str]:
        """The Redis profile's table: Redis and its Sentinel die with the storefront and
        come back as the Sentinels expect (redis_sentinel.py); block-egress is the same
        nftables table as on PostgreSQL, and blackhole is without PostgreSQL's region-local
        writer."""
        state = self.state
        return {
            Fault.SCALE_TO_ZERO: FaultOps(
                plan=lambda region: redis_sentinel.plan_stop(state, region.name),
                inject=lambda region, undo: redis_sentinel.stop(state, undo),
                is_effective=lambda region, undo: redis_sentinel.stopped(state, region.name,
                                                                         undo),
                revert=lambda region, undo: redis_sentinel.restart(
                    state, region.name, undo, self._start_storefront)),
            Fault.CORDON: "the netns lab has no nodes to cordon",
            Fault.BLOCK_EGRESS: FaultOps(plan=self._plan_rules, inject=self._block_egress,
                                         is_effective=self._egress_blocked,
                                         revert=self._remove_rules),
            Fault.BLACKHOLE: FaultOps(
                plan=lambda region: {**self._plan_rules(region),
                                     "store": redis_sentinel.STORE},
                inject=lambda region, undo: self._add_rules(region, BLACKHOLE_RULES),
                is_effective=self._blackholed, revert=self._redis_unblackhole),
            Fault.REPLICATION_CUT: FaultOps(
                plan=lambda region: redis_sentinel.plan_cut(region.name),
                inject=lambda region, undo: redis_sentinel.cut(state, region.name, undo),
                is_effective=lambda region, undo: redis_sentinel.is_cut(state, region.name,
                                                                        undo),
                revert=lambda region, undo: redis_sentinel.uncut(undo)),
        }

    def _redis_unblackhole(self, region: Region, undo: dict[str, Any]) -> None:
        """A Redis that went on as a master while cut off is demoted before its traffic
        flows again."""
        redis_sentinel.demote_if_superseded(self.state, region.name)
        self._remove_rules(region, undo)

    def _start_redis_region(self, region: Region) -> bool:
        """Under the Redis profile, recovery's "start the member that is down": the region's
        Redis (as a replica of the master the other Sentinels agree on), its Sentinel and
        its storefront, whichever of them is not running. False when all run."""
        down = [n for n in (f"storefront-{region.name}", f"sentinel-{region.name}",
                            f"redis-{region.name}") if not self.procs.alive(n)]
        if not down:
            return False
        redis_sentinel.restart(self.state, region.name, {"stopped": down},
                               self._start_storefront)
        return True

    def _redis_replica_follows(self, primary: Region) -> str | None:
        """Under the Redis profile, after a recovery: the other region's Redis must stream
        from the master. The Sentinels reconfigure an old master that came back claiming
        to be one (8 s after they see it so, at their next INFO: 10-20 s); they are waited
        for, not bypassed. None when it streams; LabError when it does not in 40 s."""
        other = next(r for r in self.lab.regions if r.name != primary.name)

        def streams() -> bool:
            return redis_store.streams_from(self.lab, primary, other)

        poll_until(streams, timeout_s=40, interval_s=0.2, interruptible=False,
                   error=lambda _: LabError(f"the Redis in {other.name} does not stream from "
                                            f"{primary.name} 40 s after recovery"))
        return None

    def _start_storefront(self, region: str) -> None:
        netns_lab.start_storefront(self.state, region, "")
        wait_port(topo.address(region), topo.STOREFRONT_PORT, 15,
                            f"storefront in {region}")

    def switch_master(self, region: Region) -> dict[str, Any]:
        """The Redis profile's failback: the Sentinels make `region`'s Redis the master
        (SENTINEL FAILOVER, once it is a replica in sync)."""
        if self.redis is None:
            raise LabError("switch_master is the Redis profile's failback: this lab runs "
                           "PostgreSQL (failback goes through stop, resync and start)")
        return redis_sentinel.failover_to(self.state, region.name)

    def _postgresql_only(self, what: str) -> None:
        if self.redis is not None:
            raise LabError(f"{what} is PostgreSQL's: this lab runs Redis with Sentinel, "
                           "which fails back through switch_master (SENTINEL FAILOVER)")

    # -- helpers ---------------------------------------------------------------------------

    def fence(self, region: Region) -> None:
        self.nodes.fence(region)

    def _start_postgres(self, region: Region) -> None:
        self.nodes.start(region)
        self._wait_accepting(region, timeout=30)

    def _wait_accepting(self, region: Region, *, timeout: float) -> None:
        def accepts() -> bool:
            with postgres.connect(self.lab, _direct(region), "check it is up"):
                return True

        poll_until(accepts, timeout_s=timeout, interval_s=0.1, retry_on=(TargetError,),
                   interruptible=False,
                   error=lambda last: LabError(f"PostgreSQL in {region.name} did not accept "
                                               f"connections after restart ({last})"))

    # -- database operations for failback (DatabaseOps) -----------------------------------

    def stop_database(self, region: Region) -> None:
        self._postgresql_only("stop_database")
        if self.ha:
            patroni_profile.stop_member(self.state, self.nodes.data(region), region.name)
            return
        self.nodes.stop(region)

    def resync_database(self, region: Region, source: Region) -> str:
        self._postgresql_only("resync_database")
        if self.ha:
            return "patroni"  # Patroni rewinds (or re-clones) the member as it starts it
        return self.nodes.resync(region, source)

    def start_standby(self, region: Region, upstream: Region) -> None:
        self._postgresql_only("start_standby")
        if self.ha:
            self.start_database(region)  # Patroni follows whoever holds the leader key
            return
        self.nodes.start_standby(region, upstream)

    def start_database(self, region: Region) -> bool:
        """Start a database that is down, as its data directory says (primary, standby or
        fenced; under Patroni, as Patroni decides). False when it was already running."""
        if self.redis is not None:
            return self._start_redis_region(region)
        self._postgresql_only("start_database")
        if self.ha:
            if self.procs.alive(f"patroni-{region.name}"):
                return False
            # a postmaster left by a killed Patroni would stop the new one from starting
            patroni_profile.stop_member(self.state, self.nodes.data(region), region.name)
            patroni_profile.start_member(self.state, netns_lab.pg_data_root(self.state),
                                         region.name, netns_lab.PG_OS_USER)
            # not waited for: Patroni starts its PostgreSQL once it reaches the DCS, which a
            # fault still to be reverted (block-egress) may prevent; whoever needs the
            # database waits for it (wait_for_standby, recovery)
            return True
        if self.procs.alive(f"postgres-{region.name}"):
            return False
        self._start_postgres(region)
        return True

    def rejoin_standby(self, primary: Region) -> str | None:
        """Under Patroni, after a recovery, the replica must stream from the one primary.
        Seen in CI after a runner killed mid-outage and `gameday recover`: Patroni reported
        region-2 "a secondary, following a leader (region-1)" for 90 s while its
        PostgreSQL never started a WAL receiver again. Patroni is asked, not bypassed:
        first to restart the replica's PostgreSQL, then to re-clone it from the leader
        (it may hold WAL a crashed leader lost). A replica that streams is left alone."""
        if self.redis is not None:
            return self._redis_replica_follows(primary)
        if not self.ha:
            return None
        other = next(r for r in self.lab.regions if r.name != primary.name)

        def streams() -> bool:
            return postgres.streams_from(self.lab, _direct(primary), _direct(other))

        if poll_within(streams, timeout_s=PATRONI_FOLLOWS_S, interval_s=0.2,
                       interruptible=False):
            return None
        logger.warning("gameday: %s does not stream from %s %.0f s after recovery: "
                       "restarting it through Patroni", other.name, primary.name,
                       PATRONI_FOLLOWS_S)
        patroni_profile.restart(self.state, other.name)
        if poll_within(streams, timeout_s=30, interval_s=0.2, interruptible=False):
            return f"restarted {other.name} through Patroni: it did not stream from {primary.name}"
        logger.warning("gameday: %s still does not stream: re-cloning it through Patroni",
                       other.name)
        patroni_profile.reinit(self.state, other.name)
        poll_until(streams, timeout_s=60, interval_s=0.2, interruptible=False,
                   error=lambda last: LabError(f"{other.name} re-cloned by Patroni does not "
                                               f"stream from {primary.name} within 60 s"))
        return f"re-cloned {other.name} through Patroni: it did not stream from {primary.name}"

    def failback_unsupported(self, region: Region) -> str | None:
        if self.redis is not None:
            return ("the Redis profile fails back through the Sentinels (switch_master: "
                    "SENTINEL FAILOVER), not by stopping and rewinding a database")
        return None  # the netns lab owns its databases (and, under Patroni, the manager does)

    def _standby_follows(self, primary: Region, timeout: float = STANDBY_FOLLOWS_S) -> None:
        """After a crashed primary restarts as the primary, its standby must stream again.
        It cannot when it holds WAL the primary lost in the crash (a record flushed only in
        part is cut off in crash recovery and the primary writes new WAL over that place):
        it asks for a position the primary has not reached, and in a sync lab every commit
        then waits for it forever. Seen in CI after interrupted drills. Rewind it then."""
        other = next(r for r in self.lab.regions if r.name != primary.name)
        try:
            poll_until(lambda: postgres.streams_from(self.lab, _direct(primary), _direct(other)),
                       timeout_s=timeout, interval_s=0.2, interruptible=False)
            return
        except TargetError:
            pass
        logger.warning("gameday: %s does not stream from the restarted %s: resyncing it",
                       other.name, primary.name)
        # same timeline, so pg_rewind would see nothing to rewind: copy it afresh
        self.nodes.stop(other)
        self.nodes.resync(other, primary, basebackup=True)
        self.nodes.start_standby(other, primary)

    def _other_serves_or_was_promoted(self, region: Region) -> bool:
        """Fence unless we know no other primary exists. The promote action records the
        promotion before it sends it: a run interrupted just after pg_promote() would
        otherwise restart this region as a primary while the other finishes promoting,
        two writable primaries (seen in CI: the canary's sync commits then hung)."""
        state = drill_state.read(self.lab.path)
        if state is not None and state.promoted_other_than(region.name):
            return True
        return self._other_is_writable(region)

    def _other_is_writable(self, region: Region) -> bool:
        """A primary answers elsewhere (read-only or not: a switchover's source counts)."""
        return any(postgres.role(self.lab, _direct(other)) in ("primary", "read-only")
                   for other in self.lab.regions if other.name != region.name)

    def _start_local_writer(self, region: Region, name: str) -> None:
        params = self.lab.database.params("127.0.0.1", region.db_port,
                                          application_name="gameday-local-writer")
        self.procs.start(
            name,
            [sys.executable, "-m", "gameday.labs.netns.localwriter",
             str(self.state / "logs" / f"{name}.acks")],
            netns=region.netns,
            env={"LOCAL_WRITER_CONNECT": json.dumps(params),
                 "LOCAL_WRITER_TABLE": self.lab.database.canary_table,
                 "PYTHONPATH": netns_lab._package_root()},
        )

    def _table_present(self, region: Region) -> bool:
        proc = run(["nft", "list", "table", "inet", topo.NFT_TABLE], netns=region.netns,
                   check=False)
        return proc.returncode == 0

    def _can_connect_out(self, region: Region) -> bool:
        target = next(r for r in self.lab.regions if r.name != region.name)
        # the descriptor's address is data: an argument of the probe, never part of its code
        return run([sys.executable, "-c", CONNECT_PROBE, target.address,
                    str(topo.STOREFRONT_PORT)], netns=region.netns, check=False).returncode == 0


def _direct(region: Region) -> Region:
    """The region with its database reached at the lab's own address of the region, where
    the lab's PostgreSQL listens: the lab's own checks never depend on a resolver. With
    --db-hostnames, db_host is a name only the lab's DNS knows, and `gameday recover` may
    run without it: a name that does not resolve would read as a database that is down (a
    scale-to-zero taken as done, or a fence left out)."""
    return dataclasses.replace(region, db_host=region.address)


def verify_running(lab: Lab) -> None:
    """The lab kind's check before a drill (gameday.foundation.lab_kinds): the netns lab's
    namespaces and services must be up, or faults and measurements would hit the wrong (or
    no) target."""
    if lab.lab == "netns" and lab.state_dir:
        netns_lab.verify_running(lab.state_dir,
                                 ha=lab.ha is not None and lab.ha.manager == "patroni",
                                 store=lab.store)
