"""The netns lab on its own host (issue 18, local-host hardening; issue 25): what root does
on the machine must not be steerable by another local user, a descriptor or a password.

- a password reaches libpq intact: a tab or a newline in it cannot add connection keywords;
- no password on a command line (`ps` shows it to every user);
- a descriptor's region address is a place to connect to, never code;
- root writes into the postgres user's data root without following a link planted there;
- who may reach what, decided as the kernel would, for the up-front check of `lab up`.

The real lab's side of these (a 0700 checkout, a planted data root, etcd and Patroni's
REST API asking for passwords, `lab down` keeping what is not the lab's) is in
tests/integration/test_lab_host.py and test_autonomous.py.
"""

from __future__ import annotations

import contextlib
import copy
import getpass
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gameday import postgres
from gameday.foundation import descriptor
from gameday.foundation.errors import ConfigError, LabError, TargetError
from gameday.labs.kubernetes import database as kube_database
from gameday.labs.netns import database, dataroot, driver, processes
from gameday.labs.netns import lab as netns_lab
from tests.unit.test_descriptor import GOOD

# a newline ends an unquoted value in a libpq connection string: what follows it would be
# read as keywords of their own, a host and a database of the password's choosing
EVIL = "s3cret\nhost=203.0.113.66\ndbname=other"


def _lab(tmp_path: Path, password: str = EVIL, **changes: Any) -> descriptor.Lab:
    data = copy.deepcopy(GOOD)
    data["database"]["password"] = password
    data["state_dir"] = str(tmp_path / "state")
    data.update(changes)
    return descriptor.from_dict(data, path=str(tmp_path / "lab.json"))


class Captured:
    """psycopg.connect as libpq would see it: the effective keywords of each call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    def __call__(self, conninfo: str = "", **kwargs: Any) -> Any:
        for option in ("autocommit", "prepare_threshold", "row_factory", "cursor_factory",
                       "context"):
            kwargs.pop(option, None)
        self.calls.append(conninfo_to_dict(make_conninfo(conninfo, **kwargs)))
        raise psycopg.OperationalError("not connecting in a unit test")


CONNECTS: dict[str, Callable[[descriptor.Lab], object]] = {
    "role": lambda lab: postgres.role(lab, lab.primary),
    "connect": lambda lab: postgres.connect(lab, lab.primary, "test"),
    "streams_from": lambda lab: postgres.streams_from(lab, lab.primary, lab.secondary),
    "replay_lag": lambda lab: postgres.replay_lag(lab, lab.primary, lab.secondary),
    "kubernetes primary check": lambda lab: kube_database.sql_is_primary(lab)(lab.primary),
}


@pytest.mark.parametrize("name", list(CONNECTS))
def test_a_newline_in_the_password_adds_no_keyword(tmp_path: Path, name: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    captured = Captured()
    monkeypatch.setattr(psycopg, "connect", captured)
    lab = _lab(tmp_path)
    with contextlib.suppress(TargetError):
        CONNECTS[name](lab)
    assert captured.calls, "no connection was attempted"
    for seen in captured.calls:
        assert seen["password"] == EVIL
        assert seen["host"] == lab.primary.db_host and seen["dbname"] == "storefront"


def test_the_writer_follows_both_regions_with_the_password_intact(tmp_path: Path) -> None:
    params = _lab(tmp_path).writer_params(tcp_user_timeout=1500)
    seen = conninfo_to_dict(make_conninfo(**params))
    assert seen["password"] == EVIL and seen["host"] == "198.18.0.11,198.18.0.12"
    assert seen["port"] == "5432,5432" and seen["target_session_attrs"] == "read-write"
    assert seen["tcp_user_timeout"] == "1500"


def test_lab_processes_get_their_connection_as_keywords(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The storefront and the region-local writer are other processes: they get JSON
    keywords in their environment, never a connection string to parse, nor argv."""
    started: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(processes.Processes, "start",
                        lambda self, name, argv, **kw: started.append((list(argv), kw["env"])))
    netns_lab.start_storefront(tmp_path, "region-1", EVIL)
    lab = _lab(tmp_path)
    driver.NetnsDriver(lab)._start_local_writer(lab.primary, "local-writer-region-1")
    (store_argv, store_env), (writer_argv, writer_env) = started
    assert EVIL not in " ".join(store_argv + writer_argv)
    assert json.loads(store_env["STOREFRONT_CONNECT"])["password"] == EVIL
    assert json.loads(writer_env["LOCAL_WRITER_CONNECT"])["password"] == EVIL


def test_pg_rewind_gets_the_password_from_its_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command line is visible to every user of the machine (`ps`); a process's
    environment only to its owner and root."""
    lab = _lab(tmp_path, password="rewind-password")
    state = Path(lab.state_dir or "")
    state.mkdir()
    monkeypatch.setattr(dataroot, "PARENT", tmp_path)
    (tmp_path / f"{dataroot.PREFIX}x").mkdir()
    (state / netns_lab.OWN_MARK).write_text(json.dumps(
        {"created": True, "data_root": str(tmp_path / f"{dataroot.PREFIX}x")}))
    monkeypatch.setenv("GAMEDAY_PG_BINDIR", "/usr/lib/postgresql/15/bin")
    ran: list[tuple[list[str], dict[str, str] | None]] = []

    def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        ran.append((list(argv), kw.get("env")))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(database, "run", run)
    monkeypatch.setattr(database.NodeOps, "write_node_conf", lambda *a, **kw: None)
    assert database.NodeOps(lab).resync(lab.primary, lab.secondary) == "rewind"
    (argv, env), = ran
    assert argv[0].endswith("pg_rewind")
    assert not [a for a in argv if "rewind-password" in a], argv
    assert env == {"PGPASSWORD": "rewind-password"}


BAD_ADDRESSES = [
    "198.18.0.12', 8080)); import os; os.system('id'); ('",
    "198.18.0.12\n",
    "shop example.com",
    "-h",
    "",
]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_a_region_address_is_an_ip_or_a_host_name(tmp_path: Path, address: str) -> None:
    data = copy.deepcopy(GOOD)
    data["regions"][1]["address"] = address
    with pytest.raises(ConfigError, match=r"field 'regions/1/address'.*neither an IP address "
                                          r"nor a host name"):
        descriptor.from_dict(data)


@pytest.mark.parametrize("address", ["203.0.113.10", "2001:db8::10", "eu-west.shop.example.com",
                                     "localhost", "shop.example.com."])
def test_addresses_and_names_still_load(address: str) -> None:
    data = copy.deepcopy(GOOD)
    data["regions"][1]["address"] = address
    assert descriptor.from_dict(data).secondary.address == address


def test_the_egress_probe_takes_the_address_as_an_argument(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe runs as root inside the region: its code is fixed, the address is argv."""
    ran: list[list[str]] = []
    monkeypatch.setattr(driver, "run", lambda argv, **kw: ran.append(list(argv))
                        or subprocess.CompletedProcess(argv, 1, "", ""))
    lab = _lab(tmp_path)
    assert driver.NetnsDriver(lab)._can_connect_out(lab.primary) is False
    (argv,) = ran
    code = argv[argv.index("-c") + 1]
    assert lab.secondary.address not in code
    assert argv[argv.index("-c") + 2:] == [lab.secondary.address, "8080"]


def test_the_egress_probe_connects_to_its_arguments() -> None:
    """The probe itself, run for real: it connects (exit 0) and fails (exit 1)."""
    import socket
    import sys

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        ok = subprocess.run([sys.executable, "-c", driver.CONNECT_PROBE, "127.0.0.1",
                             str(port)], timeout=10)
    closed = subprocess.run([sys.executable, "-c", driver.CONNECT_PROBE, "127.0.0.1",
                             str(port)], timeout=10)
    assert (ok.returncode, closed.returncode) == (0, 1)


# --- the data root ------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> dataroot.DataRoot:
    """A data root owned by whoever runs the tests (root or not)."""
    made = dataroot.DataRoot.create(getpass.getuser(), parent=tmp_path)
    made.mkdir("region-1")
    return made


def test_a_new_data_root_is_private_and_unpredictable(tmp_path: Path) -> None:
    a = dataroot.DataRoot.create(getpass.getuser(), parent=tmp_path)
    b = dataroot.DataRoot.create(getpass.getuser(), parent=tmp_path)
    assert a.path != b.path and a.path.name.startswith(dataroot.PREFIX)
    assert (a.path.stat().st_mode & 0o777) == 0o700


def test_a_planted_link_is_not_followed(root: dataroot.DataRoot, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.chmod(victim, 0o644)
    (root / "region-1/gameday-node.conf").symlink_to(victim)
    with pytest.raises(LabError, match="not a plain file|link"):
        root.write("region-1/gameday-node.conf", "primary_conninfo = 'evil'\n")
    assert victim.read_text() == "precious\n" and (victim.stat().st_mode & 0o777) == 0o644
    with pytest.raises(LabError, match="link"):
        root.read("region-1/gameday-node.conf")


def test_a_planted_directory_link_is_not_followed(root: dataroot.DataRoot,
                                                  tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "region-2").symlink_to(elsewhere)
    with pytest.raises(LabError, match="link"):
        root.write("region-2/standby.signal", "")
    with pytest.raises(LabError, match="link"):
        root.empty("region-2")
    assert not list(elsewhere.iterdir())


def test_a_hard_link_is_not_written_through(root: dataroot.DataRoot, tmp_path: Path) -> None:
    victim = root / "victim"
    victim.write_text("precious\n")
    os.link(victim, root / "region-1/postgresql.auto.conf")
    with pytest.raises(LabError, match="not a plain file"):
        root.write("region-1/postgresql.auto.conf", "")
    assert victim.read_text() == "precious\n"


def test_files_are_written_private_to_the_owner(root: dataroot.DataRoot) -> None:
    root.write("region-1/gameday-node.conf", "a\n")
    root.write("region-1/gameday-node.conf", "b\n", append=True)
    path = root / "region-1/gameday-node.conf"
    assert path.read_text() == "a\nb\n" and (path.stat().st_mode & 0o777) == 0o600
    assert path.stat().st_uid == pwd.getpwnam(getpass.getuser()).pw_uid
    root.unlink("region-1/gameday-node.conf")
    root.unlink("region-1/gameday-node.conf")  # gone already: nothing to do
    assert root.read("region-1/gameday-node.conf") is None


def test_a_data_root_given_to_someone_else_is_refused(root: dataroot.DataRoot) -> None:
    os.chmod(root.path, 0o777)
    with pytest.raises(LabError, match="not the lab's data root any more"):
        root.write("region-1/x", "")


# --- who may reach what ---------------------------------------------------------------------


def test_a_closed_directory_on_the_way_is_named() -> None:
    # not under pytest's tmp_path: its parent is private to the user running the tests
    base = Path(tempfile.mkdtemp(prefix="gameday-unit-"))
    try:
        _closed_directory_on_the_way(base)
    finally:
        shutil.rmtree(base)


def _closed_directory_on_the_way(tmp_path: Path) -> None:
    closed = tmp_path / "home"
    (closed / "checkout").mkdir(parents=True)
    program = closed / "checkout" / "initdb"
    program.write_text("#!/bin/sh\n")
    os.chmod(program, 0o755)
    os.chmod(tmp_path, 0o755)
    os.chmod(closed, 0o700)
    other = next(u for u in ("nobody", "postgres", "daemon")
                 if _exists(u) and pwd.getpwnam(u).pw_uid != os.geteuid())
    why = processes.unreachable(program, other, execute=True)
    assert why is not None and why.startswith(f"{closed} is mode 0700")
    os.chmod(closed, 0o711)
    assert processes.unreachable(program, other, execute=True) is None
    os.chmod(program, 0o700)
    assert processes.unreachable(program, other, execute=True) == \
        f"{program} is mode 0700, owned by {_owner(program)}"
    # through a link: the directory the link leads into counts too
    link = tmp_path / "bin"
    link.symlink_to(closed / "checkout")
    os.chmod(program, 0o755)
    os.chmod(closed, 0o700)
    assert processes.unreachable(link / "initdb", other, execute=True) is not None


def test_another_user_starts_in_a_directory_it_can_reach() -> None:
    assert processes.command(["true"], user="postgres")[-1] == "true"
    assert processes._cwd("postgres", None) == "/"
    assert processes._cwd(None, None) is None
    assert processes._cwd("postgres", "/srv") == "/srv"


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _owner(path: Path) -> str:
    import grp

    st = path.stat()
    return f"{pwd.getpwuid(st.st_uid).pw_name}:{grp.getgrgid(st.st_gid).gr_name}"


def test_a_members_most_telling_error_is_quoted(tmp_path: Path) -> None:
    """PostgreSQL's FATAL names the cause; Patroni's traceback after it only says it quit."""
    from gameday.labs.netns import patroni

    log = tmp_path / "patroni-region-1.log"
    log.write_text("2026-01-01 INFO: trying to bootstrap a new cluster\n"
                   "FATAL:  could not bind IPv4 address \"0.0.0.0\": Address in use\n"
                   "2026-01-01 INFO: removing initialize key after failed attempt\n"
                   "Traceback (most recent call last):\n"
                   "patroni.exceptions.PatroniFatalException: 'Failed to bootstrap cluster'\n")
    assert patroni.last_error(log) == 'FATAL: could not bind IPv4 address "0.0.0.0": ' \
                                      "Address in use"
    log.write_text("2026-01-01 ERROR: failed to connect to etcd\n"
                   "patroni.exceptions.PatroniFatalException: 'Failed to bootstrap cluster'\n")
    assert patroni.last_error(log) == "2026-01-01 ERROR: failed to connect to etcd"
    log.write_text("2026-01-01 INFO: all well\n")
    assert patroni.last_error(log) is None
    assert patroni.last_error(tmp_path / "missing.log") is None


def test_a_state_dir_holding_only_a_drill_lock_file_is_claimed(tmp_path: Path) -> None:
    """`lab down` or `recover` with no lab up may leave the drill lock's file behind; that
    directory is still empty of anything of the user's, so `lab up` takes it. A file of the
    user's beside it is refused."""
    from gameday.foundation import lock

    state = tmp_path / "state"
    state.mkdir()
    (state / lock.FILE).write_text("")
    netns_lab._claim_state_dir(state)
    assert (state / netns_lab.OWN_MARK).exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / lock.FILE).write_text("")
    (other / "thesis.tex").write_text("")
    with pytest.raises(LabError, match="already holds files"):
        netns_lab._claim_state_dir(other)
