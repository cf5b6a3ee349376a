"""PostgreSQL node operations of the netns lab that SQL cannot do: stop, fence, rewind or
re-clone, and start as a standby of a given upstream.

Every node keeps its own settings in `gameday-node.conf` (cluster name, primary_conninfo,
synchronous standby), which pg_rewind and pg_basebackup overwrite with the source's copy:
they are re-applied after each (docs/design.md, PostgreSQL facts). Settings that the drill sets with ALTER
SYSTEM on a primary (synchronous_standby_names, default_transaction_read_only) are removed
from postgresql.auto.conf before a node starts as a standby, so they cannot follow it into
its next promotion.
"""

from __future__ import annotations

import signal
from pathlib import Path

from psycopg.conninfo import make_conninfo

from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.errors import LabError
from gameday.foundation.poll import poll_within
from gameday.labs.netns import lab as netns_lab
from gameday.labs.netns import topology as topo
from gameday.labs.netns.dataroot import DataRoot
from gameday.labs.netns.processes import Processes, run

DRILL_SETTINGS = ("synchronous_standby_names", "default_transaction_read_only")


class NodeOps:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.state = Path(lab.state_dir or netns_lab.state_dir())
        self.procs = Processes(self.state)

    def data(self, region: Region) -> Path:
        return netns_lab.pg_data_root(self.state) / region.name

    def root(self) -> DataRoot:
        root = netns_lab.data_root(self.state)
        if root is None:
            raise LabError(f"{self.state} records no PostgreSQL data root: run `gameday lab "
                           "down` and `gameday lab up`")
        return root

    def stop(self, region: Region, *, timeout: float = 30.0) -> None:
        name = f"postgres-{region.name}"
        self.procs.stop(name, sig=signal.SIGINT, timeout=timeout)  # SIGINT: fast shutdown
        self._wait_pidfile_gone(region)

    def _wait_pidfile_gone(self, region: Region, timeout: float = 10.0) -> None:
        pidfile = self.data(region) / "postmaster.pid"

        def gone() -> bool:
            try:
                pid = int(pidfile.read_text().splitlines()[0])
            except (ValueError, IndexError, FileNotFoundError):
                return True
            return not Path(f"/proc/{pid}").exists()

        poll_within(gone, timeout_s=timeout, interruptible=False)

    def write_node_conf(self, region: Region, *, standby: bool, fenced: bool = False) -> None:
        root = self.root()
        netns_lab.write_node_conf(
            root, region=region.name, replication=self.lab.database.replication or "async",
            password=self.lab.database.password,
            delay_ms=self.lab.inter_region_delay_ms or 0, standby=standby, fenced=fenced)
        self._strip_drill_settings(root, region)

    def _strip_drill_settings(self, root: DataRoot, region: Region) -> None:
        auto = f"{region.name}/postgresql.auto.conf"
        text = root.read(auto)
        if text is None:
            return
        lines = text.splitlines()
        kept = [ln for ln in lines if not ln.strip().startswith(DRILL_SETTINGS)]
        if kept != lines:
            root.write(auto, "\n".join(kept) + "\n")

    def fence(self, region: Region) -> None:
        """A standby with no upstream: read-only, replays only its own WAL, so its rows stay
        readable for split-brain accounting and its storefront fails /healthz."""
        self.write_node_conf(region, standby=True, fenced=True)

    def is_fenced(self, region: Region) -> bool:
        conf = self.root().read(f"{region.name}/gameday-node.conf")
        return conf is not None and "# fenced by gameday" in conf

    def start(self, region: Region) -> None:
        self._wait_pidfile_gone(region)
        netns_lab.start_postgres(self.state, region.name)
        # checked from inside the region: it may be cut off from everything else
        netns_lab._wait_port_in(topo.REGIONS[region.name].name, region.db_port, 30,
                                f"PostgreSQL in {region.name}")

    def start_standby(self, region: Region, upstream: Region) -> None:
        if upstream.name != topo.other_region(region.name):
            raise LabError(f"{region.name} can only follow {topo.other_region(region.name)} "
                           "in the netns lab")
        self.write_node_conf(region, standby=True)
        self.start(region)

    def resync(self, region: Region, source: Region, *, basebackup: bool = False) -> str:
        """pg_rewind from the source through the cross-region proxy; a fresh base backup
        when rewind fails. The target must be stopped."""
        if self.procs.alive(f"postgres-{region.name}"):
            raise LabError(f"stop the database of {region.name} before resyncing it")
        data = self.data(region)
        # the password goes through the environment: pg_rewind's command line is in `ps`
        password = {"PGPASSWORD": self.lab.database.password}
        conninfo = make_conninfo(host="127.0.0.1", port=topo.PROXY_PORT, user=topo.DB_USER,
                               dbname=topo.DB_NAME, connect_timeout=5)
        bindir = netns_lab.pg_bindir()
        # the fenced node never finished recovery cleanly as a primary: pg_rewind needs a
        # cleanly shut-down target, which the fast stop of a standby gives us
        method = "rewind"
        rewound = False
        if not basebackup:
            proc = run([str(bindir / "pg_rewind"), f"--target-pgdata={data}",
                        f"--source-server={conninfo}", "--no-sync"],
                       netns=topo.REGIONS[region.name].name, user=netns_lab.PG_OS_USER,
                       env=password, check=False, timeout=300)
            log = self.state / "logs" / f"pg_rewind-{region.name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(proc.stdout + proc.stderr)
            rewound = proc.returncode == 0
        if not rewound:
            method = "basebackup"
            self.root().empty(region.name)
            run([str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(topo.PROXY_PORT),
                 "-U", topo.DB_USER, "-D", str(data), "-X", "stream", "-c", "fast"],
                netns=topo.REGIONS[region.name].name, user=netns_lab.PG_OS_USER,
                env=password, timeout=600)
        self.write_node_conf(region, standby=True)
        return method
