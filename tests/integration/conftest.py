"""Fixtures for tests on the real netns lab: root, real PostgreSQL, PowerDNS, unbound and
nftables. Without root these tests fail with the reason instead of skipping, so CI can never
pass without them.

One lab at a time (its names are fixed). A test that needs the default lab (`gameday lab
up`: synchronous replication, no HA manager) in its starting state takes `shared_lab`: one
lab serves all of them, checked to be in its starting state before each and after each (a
test that leaves it changed fails, and the next gets a fresh lab). A test that brings up a
lab of its own (another replication mode, Patroni, one whose `lab up` or `lab down` it
checks) takes `lab_env`, and the shared lab is taken down first. The tests that share it run
first, together, so it comes up once."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import psycopg
import pytest
from click.testing import CliRunner

from gameday import cli
from gameday.labs.netns.configs import UNBOUND_DIR
from gameday.labs.netns.resolvers import dnsmasq_files

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAMESPACES = ("gd-region-1", "gd-region-2", "gd-dns", "gd-witness")
# The lab's names are fixed (gd-region-1, ...), so two test sessions on one machine (a CI
# run beside a developer's) must take turns: each holds this lock for its whole session.
LAB_LOCK = Path("/run/gameday-lab.lock")
LAB_LOCK_WAIT_S = 1500


def checkout(env: dict[str, str]) -> Path:
    """The checkout a test runs gameday from: this one, or the copy its env names
    (GAMEDAY_TEST_CHECKOUT, e.g. one inside a 0700 directory)."""
    return Path(env.get("GAMEDAY_TEST_CHECKOUT") or ROOT)


def gameday(*args: str, env: dict[str, str], check: bool = True,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / "gameday"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=checkout(env))
    if check and proc.returncode != 0:
        raise AssertionError(f"gameday {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def chaos(experiment: str, *, env: dict[str, str], timeout: float = 600,
          extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "chaos"), "--no-version-check", "run", *extra,
         "--journal-path", str(Path(env["GAMEDAY_REPORTS"]) / "journal.json"),
         experiment if experiment.startswith("/")
         else str(checkout(env) / "experiments" / experiment)],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=checkout(env))


def lab_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines()
            if line.strip() and line.split()[0] in NAMESPACES]


def residue(env: dict[str, str], pids: list[int]) -> list[str]:
    """What a lab left behind: namespaces, live processes, links, files."""
    left = [f"namespace {ns}" for ns in lab_namespaces()]
    left += [f"process {pid}" for pid in pids if Path(f"/proc/{pid}").exists()
             and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    left += [f"link {name}" for name in ("gd-br0", "gdv-region-1", "gdv-region-2", "gdv-dns",
                                         "gdv-witness")
             if f" {name}:" in links or f" {name}@" in links]
    left += [f"dir /etc/netns/{ns}" for ns in NAMESPACES if Path(f"/etc/netns/{ns}").exists()]
    if UNBOUND_DIR.exists():  # the resolver's files, where AppArmor lets unbound read them
        left.append(f"dir {UNBOUND_DIR}")
    # dnsmasq's (lab up --resolvers dnsmasq), where AppArmor lets it read them
    left += [f"file {path}" for path in dnsmasq_files().values() if path.exists()]
    if Path(env["GAMEDAY_HOME"]).exists():
        left.append(f"state dir {env['GAMEDAY_HOME']}")
    return left


@pytest.fixture(scope="session")
def lab_env() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.fail("the netns lab tests need root: run `sudo make test`")
    lock = _take_lab_lock()
    if lab_namespaces():
        lock.close()  # an open file left to the collector fails the session as unraisable
        pytest.fail(f"a netns lab is already up ({', '.join(lab_namespaces())}): "
                    "run `make lab-down` before the tests")
    base = Path(tempfile.mkdtemp(prefix="gameday-it-"))
    os.chmod(base, 0o755)
    env = {
        **os.environ,
        "GAMEDAY_HOME": str(base / "state"),
        "GAMEDAY_LAB": str(base / "state" / "lab.json"),
        "GAMEDAY_REPORTS": str(base / "reports"),
        # a run that hangs shows where on SIGABRT (test_interruptions sends it at its bound)
        "PYTHONFAULTHANDLER": "1",
    }
    try:
        yield env
    finally:
        gameday("lab", "down", env=env, check=False)
        shutil.rmtree(base, ignore_errors=True)
        lock.close()


def _take_lab_lock() -> TextIO:
    """Wait for another test session on this machine to finish with the lab. A lab that is
    up while nobody holds the lock is someone's own lab: that still fails, below."""
    handle = LAB_LOCK.open("a")
    deadline = time.monotonic() + LAB_LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                pytest.fail(f"another test session held {LAB_LOCK} for {LAB_LOCK_WAIT_S} s")
            time.sleep(1)


class SharedLab:
    """The session's default lab, brought up when a test first needs it and taken down when
    a test needs none (or its own), or when one left it changed."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.up = False
        self.checked = False  # found in its starting state since it was last handed out

    def get(self) -> dict[str, str]:
        """The lab, up and in its starting state."""
        if self.up and not self.checked and self.problems():
            self.down()
        if not self.up:
            started = time.monotonic()
            gameday("lab", "up", env=self.env)
            self.up = True
            print(f"shared lab up: {time.monotonic() - started:.1f} s")
            problems = self.problems()
            assert not problems, f"a fresh lab is not in its starting state: {problems}"
        self.checked = False
        return self.env

    def down(self) -> None:
        """Taken down (also by a test that leaves the lab changed on purpose, which may then
        check what `lab down` left behind)."""
        if self.up:
            self.up = False
            gameday("lab", "down", env=self.env)

    def problems(self, settle_s: float = 30) -> list[str]:
        """What differs from the starting state, after up to `settle_s` for what settles by
        itself once a drill ended (DNS flipping back after a health interval and a TTL, a
        restarted primary's standby reconnecting)."""
        deadline = time.monotonic() + settle_s
        found = starting_state_problems(self.env)
        while found and time.monotonic() < deadline:
            time.sleep(0.2)
            found = starting_state_problems(self.env)
        self.checked = not found
        return found


def starting_state_problems(env: dict[str, str]) -> list[str]:
    """How the lab differs from how `gameday lab up` left it (none: []): region-1 the
    writable primary with region-2 streaming from it in the configured mode, both DNS
    servers answering with region-1, every process running, no fault in place or recorded
    unsettled, no drill on record, no nftables table of ours."""
    import dns.message
    import dns.query
    import dns.rdatatype

    problems: list[str] = []
    lab = json.loads(Path(env["GAMEDAY_LAB"]).read_text())
    db = lab["database"]
    r1, r2 = lab["regions"]

    def ask(region: dict, sql: str) -> tuple | None:
        try:
            with psycopg.connect(host=region["db_host"], port=db["port"], user=db["user"],
                                 password=db["password"], dbname=db["name"], autocommit=True,
                                 connect_timeout=3) as conn:
                return conn.execute(sql).fetchone()
        except psycopg.Error as exc:
            problems.append(f"{region['name']}: {type(exc).__name__}: {exc}")
            return None

    primary = ask(r1, "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only'),"
                      " (SELECT array_agg(sync_state) FROM pg_stat_replication)")
    want = "sync" if db["replication"] == "sync" else "async"
    if primary is not None and primary != (False, "off", [want]):
        problems.append(f"region-1 is not the writable primary with region-2 streaming "
                        f"{want}: (in recovery, read-only, standbys) = {primary}")
    standby = ask(r2, "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)")
    if standby is not None and standby != (True, "streaming"):
        problems.append(f"region-2 is not a streaming standby: {standby}")
    for server in ("authoritative", "resolver"):
        try:
            answer = dns.query.udp(dns.message.make_query(lab["dns"]["name"], dns.rdatatype.A),
                                   lab["dns"][server]["address"],
                                   port=int(lab["dns"][server].get("port", 53)), timeout=2)
            got = [rr.address for rrset in answer.answer for rr in rrset]
        except Exception as exc:  # noqa: BLE001 - any failure is a difference to report
            got = [type(exc).__name__]
        if got != [r1["address"]]:
            problems.append(f"the {server} DNS answers {got}, not region-1's {r1['address']}")
    status = lab_status(env)
    stopped = [name for name, pid in status["processes"].items() if not pid]
    if stopped:
        problems.append(f"not running: {stopped}")
    home = Path(env["GAMEDAY_LAB"]).parent
    ledger = home / "faults.jsonl"
    faults: dict[str, dict] = {}  # a fault's first line names it, later ones change its state
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        rec = json.loads(line)
        faults.setdefault(rec["id"], {}).update(rec)
    problems += [f"fault {f.get('fault')} on {f.get('region')}: {f.get('state')}"
                 for f in faults.values() if f.get("state") != "reverted"]
    if (home / "drill.json").exists():
        problems.append(f"drill.json: {(home / 'drill.json').read_text()}")
    for ns in NAMESPACES:
        tables = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"],
                                capture_output=True, text=True).stdout
        if "gameday" in tables:
            problems.append(f"nftables in {ns}: {tables.strip()}")
    return problems


_SHARED = pytest.StashKey[SharedLab]()


@pytest.fixture(scope="session")
def labs(lab_env: dict[str, str], request: pytest.FixtureRequest) -> SharedLab:
    shared = request.session.stash[_SHARED] = SharedLab(lab_env)
    return shared


@pytest.fixture
def shared_lab(labs: SharedLab) -> Iterator[dict[str, str]]:
    """The default lab in its starting state; the test must leave it so (or take it down
    with `labs.down()`)."""
    env = labs.get()
    yield env
    if labs.up:
        problems = labs.problems()
        if problems:
            _print_lab_logs(env)  # `lab down` removes them: what they say is all we get
            labs.down()  # the next test gets a fresh one
            pytest.fail(f"the test left the shared lab changed: {problems}")


def _print_lab_logs(env: dict[str, str], lines: int = 60) -> None:
    """The tail of each database's log and of the last chaos run's gameday lines, printed
    (pytest shows it with the failure): a CI run's failure is otherwise read from its
    symptom alone."""
    logs = Path(env["GAMEDAY_HOME"]) / "logs"
    for log in [*sorted(logs.glob("postgres-*.log")), *sorted(logs.glob("patroni-*.log")),
                checkout(env) / "chaostoolkit.log"]:
        if log.is_file():
            text = log.read_text(errors="replace").splitlines()
            if log.name == "chaostoolkit.log":
                text = [line for line in text if "gameday" in line]
            print(f"---- {log} (last {min(lines, len(text))} lines)", *text[-lines:], sep="\n")


def _shared_lab_down(session: pytest.Session) -> None:
    shared = session.stash.get(_SHARED, None)
    if shared is not None:
        shared.down()


@pytest.fixture(scope="module")
def no_shared_lab(request: pytest.FixtureRequest) -> None:
    """The shared lab taken down, for a module-scoped fixture that brings up a lab of its
    own: it is set up before the function-scoped `_one_lab_at_a_time`. (A fixture, not a
    function to import: pytest loads this file as a module of its own, whose stash key
    an import of tests.integration.conftest would not share.)"""
    _shared_lab_down(request.session)


@pytest.fixture(autouse=True)
def _one_lab_at_a_time(request: pytest.FixtureRequest) -> None:
    """A test that brings up its own lab (it takes `lab_env` and not `labs`) finds none."""
    if "lab_env" in request.fixturenames and "labs" not in request.fixturenames:
        _shared_lab_down(request.session)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The quick tests first, then the tests on the shared lab, together (so it comes up
    once; those that take it down at their end last of them, each then needing a fresh
    one), then those that bring up their own; each module's in its order."""
    here = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        if here not in Path(str(item.fspath)).parents:
            return 0
        if "labs" not in getattr(item, "fixturenames", ()):
            return 3
        return 2 if item.get_closest_marker("takes_shared_lab_down") else 1

    items.sort(key=rank)


class PackageInstall:
    """`pip install .` of this checkout into a fresh venv outside it, started in the
    background once the session is under way (pip needs no lab, and most of the lab suite's
    time is spent waiting), so test_game_day finds it done instead of spending
    half a minute on it with the lab held. Niced, and started `delay_s` after the session
    (`make test` runs the unit suite beside the lab suite's first minute), so the drills
    keep the CPU first."""

    def __init__(self, delay_s: float = 0) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="gameday-pip-"))
        os.chmod(self.base, 0o755)
        self.venv = self.base / "venv"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.log = (self.base / "install.log").open("w")
        self.proc = subprocess.Popen(
            ["nice", "-n", "10", "sh", "-c",
             f'sleep {delay_s:g} && "{sys.executable}" -m venv "{self.venv}" && '
             f'"{self.venv}/bin/pip" install --quiet --disable-pip-version-check "{ROOT}"'],
            cwd=self.base, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: close() stops sleep and pip too

    def wait(self, timeout: float = 600) -> Path:
        """The venv, once pip is done: a failed install fails the test with pip's output."""
        rc = self.proc.wait(timeout)
        self.log.flush()
        assert rc == 0, f"pip install . failed:\n{(self.base / 'install.log').read_text()[-3000:]}"
        return self.venv

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this Popen started, by its id
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)


_INSTALL = pytest.StashKey[PackageInstall]()
# the unit suite beside the lab suite in `make test` takes about a minute here
INSTALL_DELAY_S = 90


def pytest_collection_finish(session: pytest.Session) -> None:
    if any("installed_venv" in getattr(item, "fixturenames", ()) for item in session.items) \
            and os.geteuid() == 0:
        session.stash[_INSTALL] = PackageInstall(delay_s=INSTALL_DELAY_S)


def pytest_sessionfinish(session: pytest.Session) -> None:
    install = session.stash.get(_INSTALL, None)
    if install is not None:
        install.close()


@pytest.fixture(scope="session")
def installed_venv(request: pytest.FixtureRequest) -> Path:
    """A venv with this checkout installed by pip, outside the checkout."""
    install = request.session.stash.get(_INSTALL, None)
    if install is None:
        install = request.session.stash[_INSTALL] = PackageInstall()
    return install.wait()


def lab_descriptor(env: dict[str, str]) -> dict:
    return json.loads(Path(env["GAMEDAY_LAB"]).read_text())


def lab_conn(lab: dict, region: int) -> psycopg.Connection:
    db = lab["database"]
    return psycopg.connect(host=lab["regions"][region]["db_host"], port=db["port"],
                           user=db["user"], password=db["password"], dbname=db["name"],
                           autocommit=True, connect_timeout=3)


def canary_rows(lab: dict, region: int, start: int, table: str = "gameday_canary") -> set[int]:
    """The canary numbers from `start` on that `region`'s database holds in `table` (the
    database canary's, or the storefront's application canary's), read by the test itself
    (a known answer's side of the count)."""
    with lab_conn(lab, region) as c:
        return {r[0] for r in c.execute(f"SELECT seq FROM {table} WHERE seq >= %s",  # noqa: S608
                                        (start,))}


@dataclass(frozen=True)
class LatestRun:
    """The newest run of `GAMEDAY_REPORTS`: what a known answer compares with its own count
    (the summary's numbers, the run's meta, the canary writes it acknowledged)."""

    dir: Path
    summary: dict
    meta: dict
    acked: set[int]


def latest_run(env: dict[str, str]) -> LatestRun:
    run_dir = (Path(env["GAMEDAY_REPORTS"]) / "latest").resolve()
    db = sqlite3.connect(run_dir / "timeline.sqlite")
    try:
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
        acked = {r[0] for r in db.execute("SELECT seq FROM canary WHERE outcome = 'ok'")}
    finally:
        db.close()
    return LatestRun(run_dir, json.loads((run_dir / "summary.json").read_text()), meta, acked)


def assert_starting_topology(env: dict[str, str]) -> None:
    lab = lab_descriptor(env)
    with lab_conn(lab, 0) as c1:
        assert c1.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        assert c1.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
        # the replication mode survives the cycle: a sync lab stays synchronous
        modes = [r[0] for r in c1.execute("SELECT sync_state FROM pg_stat_replication")]
        want = "sync" if lab["database"]["replication"] == "sync" else "async"
        assert modes == [want], modes
    with lab_conn(lab, 1) as c2:
        row = c2.execute("SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)"
                         ).fetchone()
        assert row == (True, "streaming"), row
    import dns.message
    import dns.query
    import dns.rdatatype
    for server in (lab["dns"]["authoritative"]["address"], lab["dns"]["resolver"]["address"]):
        r = dns.query.udp(dns.message.make_query(lab["dns"]["name"], dns.rdatatype.A), server,
                          timeout=2)
        assert [rr.address for rrset in r.answer for rr in rrset] == ["198.18.0.11"], server


@contextmanager
def lab_up(env: dict[str, str], *args: str) -> Iterator[None]:
    """A lab for one test, taken down whatever the test does, so the next starts clean."""
    gameday("lab", "up", *args, env=env)
    try:
        yield
    finally:
        gameday("lab", "down", env=env, check=False)


def lab_status(env: dict[str, str]) -> dict:
    """`gameday lab status`, run in this process (a tenth of the time of the command's own
    process, most of which is its imports: about 0.4 s a call, and the lab suite asks
    dozens of times), unless the test runs another checkout's code (GAMEDAY_TEST_CHECKOUT):
    then that checkout's command."""
    if env.get("GAMEDAY_TEST_CHECKOUT"):
        return json.loads(gameday("lab", "status", env=env).stdout)
    result = CliRunner().invoke(cli.main, ["lab", "status"], env={
        k: env[k] for k in ("GAMEDAY_HOME", "GAMEDAY_LAB")}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def lab_pids(env: dict[str, str]) -> list[int]:
    return [pid for pid in lab_status(env)["processes"].values() if pid]
