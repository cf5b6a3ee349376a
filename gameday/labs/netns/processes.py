"""Start lab processes inside namespaces and stop them by pid, never by name.

Each pid file also records the process start time from /proc, so a recycled pid is never
signalled by mistake after a reboot or a long pause.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal as signals
import socket
import stat
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gameday.foundation.errors import LabError
from gameday.foundation.poll import poll_until, poll_within


def command(argv: Sequence[str], *, netns: str | None = None, user: str | None = None) -> list[str]:
    """`argv` inside `netns` as `user`: `ip netns exec` and `setpriv` both exec their
    command, so the pid of the result is the program's own."""
    cmd: list[str] = []
    if netns:
        cmd += ["ip", "netns", "exec", netns]
    if user:
        cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
    return cmd + list(argv)


def _cwd(user: str | None, cwd: str | None) -> str | None:
    """A program run as another user starts in `/` unless told otherwise: it may not be
    able to enter ours (a checkout in a 0700 home directory), and some fail then. Patroni
    starts PostgreSQL through a `spawn` multiprocessing child, which changes into its
    parent's working directory first and dies when it cannot."""
    return cwd if cwd is not None or user is None else "/"


def unreachable(path: Path, user: str, *, read: bool = True,
                execute: bool = False) -> str | None:
    """Why `user` cannot reach `path` (read it, and run or search it when `execute`), None
    when it can: the first directory on the way it may not search, or the mode of `path`
    itself. Decided
    from the modes, owners and groups, as the kernel does without ACLs, for the path as
    given and for the one its links lead to."""
    pw = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, pw.pw_gid))

    def allowed(st: os.stat_result, bit: int) -> bool:
        """`bit` is the "other" permission bit (4 read, 1 search/execute)."""
        if st.st_uid == pw.pw_uid:
            return bool(st.st_mode & (bit << 6))
        if st.st_gid in groups:
            return bool(st.st_mode & (bit << 3))
        return bool(st.st_mode & bit)

    for candidate in dict.fromkeys([Path(os.path.abspath(path)), Path(os.path.realpath(path))]):
        for parent in reversed(candidate.parents):
            try:
                st = parent.stat()
            except OSError as exc:
                return f"{parent}: {exc.strerror}"
            if not allowed(st, 1):
                return (f"{parent} is mode {stat.S_IMODE(st.st_mode):04o}, owned by "
                        f"{_name(st.st_uid)}:{_group(st.st_gid)}")
        try:
            st = candidate.stat()
        except OSError as exc:
            return f"{candidate}: {exc.strerror}"
        if (read and not allowed(st, 4)) or (execute and not allowed(st, 1)):
            return (f"{candidate} is mode {stat.S_IMODE(st.st_mode):04o}, owned by "
                    f"{_name(st.st_uid)}:{_group(st.st_gid)}")
    return None


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # field 22 (starttime) comes after the parenthesised command name, which may hold spaces
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


class Processes:
    """The pid files of one lab, under `<state>/pids/`."""

    def __init__(self, state_dir: Path) -> None:
        self.pid_dir = state_dir / "pids"
        self.log_dir = state_dir / "logs"

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        netns: str | None = None,
        user: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> int:
        """Start `argv` (in `netns`, as `user`) with its output in logs/<name>.log."""
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.alive(name):
            raise LabError(f"{name} is already running (pid {self.pid(name)})")
        cmd = command(argv, netns=netns, user=user)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            # ip netns exec and setpriv exec their command, so the pid is the service's own
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                cwd=_cwd(user, cwd),
            )
        record = {"pid": proc.pid, "start_time": _start_time(proc.pid), "argv": cmd}
        tmp = self.pid_dir / f".{name}.json.tmp"
        tmp.write_text(json.dumps(record))
        tmp.replace(self.pid_dir / f"{name}.json")
        # The Popen object is dropped on purpose: the lab outlives this process. Keep a
        # reference so Python does not warn about an unwaited child while we run.
        _children.append(proc)
        return proc.pid

    def _record(self, name: str) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads((self.pid_dir / f"{name}.json").read_text())
            return record
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def pid(self, name: str) -> int | None:
        record = self._record(name)
        if record is None:
            return None
        pid = int(record["pid"])
        if _start_time(pid) != record.get("start_time") or is_zombie(pid):
            return None
        return pid

    def alive(self, name: str) -> bool:
        return self.pid(name) is not None

    def names(self) -> list[str]:
        if not self.pid_dir.is_dir():
            return []
        return sorted(p.stem for p in self.pid_dir.glob("*.json"))

    def signal(self, name: str, sig: int) -> bool:
        pid = self.pid(name)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        return True

    def stop(self, name: str, *, sig: int = signals.SIGTERM, timeout: float = 10.0) -> bool:
        """Signal the recorded pid, wait for it to go, SIGKILL after `timeout`.

        Returns True when a live process was stopped. The pid file is removed either way."""
        return bool(self.stop_all([name], sig=sig, timeout=timeout))

    def stop_all(self, names: Sequence[str], *, sig: int = signals.SIGTERM,
                 timeout: float = 10.0) -> list[str]:
        """`stop` for several at once: every one is signalled first, then each waited for
        (SIGKILL after `timeout`, counted from the signal), so they shut down side by side
        and `lab down` waits for the slowest, not for their sum. Returns the names of the
        live processes stopped; their pid files are removed either way."""
        signalled: dict[str, int] = {}
        for name in names:
            pid = self.pid(name)
            if pid is not None:
                signalled[name] = pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        for name, pid in signalled.items():
            if not self.wait_gone(name, pid, max(0.0, deadline - time.monotonic())):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signals.SIGKILL)
                self.wait_gone(name, pid, 5.0)
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                (self.pid_dir / f"{name}.json").unlink()
        return [name for name in names if name in signalled]

    def wait_gone(self, name: str, pid: int, timeout: float) -> bool:
        def gone() -> bool:
            _reap()
            return self.pid(name) != pid

        return poll_within(gone, timeout_s=timeout, interval_s=0.01, interruptible=False)


_children: list[subprocess.Popen[bytes]] = []


def _reap() -> None:
    """Collect our own exited children so they do not linger as zombies."""
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)


def run(argv: Sequence[str], *, netns: str | None = None, user: str | None = None,
        check: bool = True, input: str | None = None, timeout: float = 60.0,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short command (optionally in a namespace / as a user) and capture its output."""
    cmd = command(argv, netns=netns, user=user)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, input=input, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=_cwd(user, None),
    )
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"`{' '.join(argv[:3])}` failed: {msg[-1] if msg else proc.returncode}")
    return proc


def connects(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to host:port is accepted within `timeout` (from the host's
    namespace: the lab's addresses are routed there)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float, what: str) -> None:
    """Until host:port accepts a connection; LabError naming `what` after `timeout`."""
    poll_until(lambda: connects(host, port, 0.5), timeout_s=timeout, interval_s=0.05,
               interruptible=False,
               error=lambda _: LabError(f"{what} did not listen on {host}:{port} within "
                                        f"{timeout:.0f} s"))
