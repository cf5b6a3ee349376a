"""One drill per lab: an exclusive lock on the lab, held for the whole `chaos run`.

Two drills on one lab undo each other's faults through the shared ledger and write the
same canary sequence numbers. So a run takes the lab before anything starts and keeps it
until its report is written; `gameday recover` and `gameday lab down` take it for what they
do. The lock is an flock on `drill.lock` beside the descriptor (the ledger and
`drill.json` are there too): the kernel drops it when its holder dies, however it dies, so
a killed run never leaves the lab locked. The file holds the holder's pid, for the one
line a refused command prints.

A dead holder can still hold it in one case: a process it forked without exec (a Chaos
Toolkit extension's worker) inherited the open file and lives on. `force=True` then takes
the lab anyway, and only then: while the recorded holder is alive, nothing overrides it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from gameday.foundation.errors import LabError

logger = logging.getLogger(f"chaostoolkit.{__name__}")

FILE = "drill.lock"

# the locks this process holds, by file: an flock is per open file, so a second open of
# the same file in this process would conflict with the first
_held: dict[Path, int] = {}


class LabBusy(LabError):
    """Another process holds the lab."""

    def __init__(self, message: str, *, pid: int | None, alive: bool) -> None:
        super().__init__(message)
        self.pid = pid
        self.alive = alive


def path(lab_path: str | os.PathLike[str]) -> Path:
    return Path(lab_path).absolute().parent / FILE


def holds(lab_path: str | os.PathLike[str]) -> bool:
    """Whether this process holds the lab."""
    return path(lab_path) in _held


def acquire(lab_path: str | os.PathLike[str], *, what: str = "a drill",
            force: bool = False) -> bool:
    """Take the lab for this process until `release` (or the process ends); a no-op when
    this process holds it already. LabBusy naming the holder's pid when another process
    holds it. With `force`, a lock whose recorded holder is dead is passed over (returns
    False: the lab is used without the lock); a live holder is never passed over."""
    p = path(lab_path)
    if p in _held:
        return True
    try:
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise LabError(f"cannot open the lab's lock {p}: {exc.strerror}") from None
    try:
        _lock(fd)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            os.close(fd)
            raise LabError(f"cannot lock {p}: {exc.strerror}") from None
        pid = _recorded_pid(fd)
        os.close(fd)
        alive = pid is None or _alive(pid)
        if force and not alive:
            logger.warning("gameday: %s is held, but its holder (pid %s) is dead: going on "
                           "without the lock (--force)", p, pid)
            return False
        raise _busy(p, pid, alive, what) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[p] = fd
    return True


def release(lab_path: str | os.PathLike[str]) -> None:
    _release(path(lab_path))


def release_all() -> None:
    """At the end of a run: every lab this process took."""
    for p in list(_held):
        _release(p)


def _release(p: Path) -> None:
    fd = _held.pop(p, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only open file of the lock drops it


@contextlib.contextmanager
def held(lab_path: str | os.PathLike[str], *, what: str,
         force: bool = False) -> Iterator[None]:
    """The lab for the block; released after, unless this process held it before."""
    already = holds(lab_path)
    acquire(lab_path, what=what, force=force)
    try:
        yield
    finally:
        if not already:
            release(lab_path)


def holder(lab_path: str | os.PathLike[str]) -> int | None:
    """The pid of another process holding the lab (0 when it wrote none yet), or None when
    none does. Read-only: takes nothing and creates no file."""
    p = path(lab_path)
    if p in _held:
        return None
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None  # no lock file: nobody ever took this lab
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _recorded_pid(fd) or 0
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return None


def _lock(fd: int, tries: int = 25) -> None:
    """flock, retried for half a second: `holder()` (a plan's read-only look) holds a
    shared lock for an instant, which must not turn a real run away."""
    for _ in range(tries - 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.02)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _busy(p: Path, pid: int | None, alive: bool, what: str) -> LabBusy:
    who = f"pid {pid}" if pid else "a process that has not written its pid yet"
    if alive:
        return LabBusy(f"the lab is in use by another drill ({who} holds {p}): {what} "
                       "must wait until it ends, or stop it (Ctrl-C rolls it back)",
                       pid=pid, alive=True)
    return LabBusy(f"the lab's lock {p} is held, but its holder ({who}) is dead: a process "
                   "it started still holds it; stop that process, or pass --force",
                   pid=pid, alive=False)


def _recorded_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    """Running: a zombie (dead, not yet reaped by its parent) holds no file."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc to ask: alive, as far as anyone can tell
    return stat[stat.rindex(")") + 2] != "Z"
