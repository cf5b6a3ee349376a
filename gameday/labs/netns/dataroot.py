"""The PostgreSQL data root of the netns lab: the one directory that holds everything a
process running as the postgres user needs (both data directories, Patroni's
configuration, its passfiles and sockets).

Why it is made this way:
- It is created fresh for each `lab up` by mkdtemp under /var/tmp (mode 0700, a name
  nobody can guess or take first), then handed to the postgres user. So the lab works from
  a checkout anywhere, also inside a 0700 home directory, and no other local user can
  read it or put anything in it. Its path is recorded in the state directory, never
  derived from a name (a predictable `/var/tmp/gameday-pg-<hash>` that was accepted when
  it already existed let any local user prepare it).
- Root reads and writes inside it only through file descriptors opened without following
  symbolic links, below a root it checked is a directory owned by the postgres user, and
  only into regular files with one link. A link the postgres user plants there cannot make
  root write, chmod or chown anything else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from gameday.foundation.errors import LabError

PARENT = Path("/var/tmp")
PREFIX = "gameday-pg-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class DataRoot:
    """A data root owned by `owner` (the postgres OS user)."""

    def __init__(self, path: Path, owner: str) -> None:
        self.path = path
        pw = pwd.getpwnam(owner)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid

    @classmethod
    def create(cls, owner: str, parent: Path = PARENT) -> DataRoot:
        """A new, empty data root, 0700 and owned by `owner`."""
        path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        root = cls(path, owner)
        fd = os.open(path, _DIR_FLAGS)
        try:
            os.fchown(fd, root.uid, root.gid)
        finally:
            os.close(fd)
        return root

    def __truediv__(self, rel: str) -> Path:
        """The path of `rel` inside, to hand to a program that runs as the owner."""
        return self.path / rel

    @contextlib.contextmanager
    def _parent_fd(self, rel: str) -> Iterator[tuple[int, str]]:
        """A descriptor of the directory holding `rel` and `rel`'s last name, reached
        without following a link at any step."""
        parts = PurePosixPath(rel).parts
        if not parts or any(p in ("..", "/") for p in parts):
            raise ValueError(f"not a relative path inside the data root: {rel!r}")
        try:
            fd = os.open(self.path, _DIR_FLAGS)
        except OSError as exc:
            raise _refused(str(self.path), exc) from None
        try:
            st = os.fstat(fd)
            if st.st_uid != self.uid or st.st_mode & 0o022:
                raise LabError(f"{self.path} is not the lab's data root any more (owner or "
                               "mode changed): run `gameday lab down` and `gameday lab up`")
            for name in parts[:-1]:
                try:
                    nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise _refused(rel, exc) from None
                os.close(fd)
                fd = nfd
            yield fd, parts[-1]
        finally:
            os.close(fd)

    def write(self, rel: str, text: str, *, mode: int = 0o600, append: bool = False) -> None:
        """Write (or append to) the regular file `rel`, owned by the owner with `mode`."""
        with self._parent_fd(rel) as (dfd, name):
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                             | os.O_CLOEXEC, mode, dir_fd=dfd)
            except OSError as exc:
                raise _refused(rel, exc) from None
            with os.fdopen(fd, "w") as f:
                _only_regular(fd, rel)
                if not append:
                    os.ftruncate(fd, 0)
                else:
                    f.seek(0, os.SEEK_END)
                os.fchmod(fd, mode)
                os.fchown(fd, self.uid, self.gid)
                f.write(text)

    def read(self, rel: str) -> str | None:
        """The text of the regular file `rel`, None when there is none."""
        try:
            with self._parent_fd(rel) as (dfd, name):
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                                 | os.O_CLOEXEC, dir_fd=dfd)
                except OSError as exc:
                    raise _refused(rel, exc) from None
                with os.fdopen(fd) as f:
                    _only_regular(fd, rel)
                    return f.read()
        except FileNotFoundError:
            return None

    def unlink(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError), self._parent_fd(rel) as (dfd, name):
            os.unlink(name, dir_fd=dfd)

    def mkdir(self, rel: str, *, mode: int = 0o700) -> None:
        """The directory `rel`, owned by the owner (kept if it is there)."""
        with self._parent_fd(rel) as (dfd, name):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, mode, dir_fd=dfd)
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError as exc:
                raise _refused(rel, exc) from None
            try:
                os.fchown(fd, self.uid, self.gid)
            finally:
                os.close(fd)

    def empty(self, rel: str) -> None:
        """Remove everything inside the directory `rel`, and keep it (a base backup may
        go into an existing empty directory, and only the owner may make a new one)."""
        with self._parent_fd(rel) as (dfd, name):
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError as exc:
                raise _refused(rel, exc) from None
            try:
                for entry in os.listdir(fd):
                    st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        shutil.rmtree(entry, dir_fd=fd)
                    else:
                        os.unlink(entry, dir_fd=fd)
            finally:
                os.close(fd)

    def remove(self) -> bool:
        """Remove the whole data root (never through a link); False when it was gone."""
        try:
            fd = os.open(self.path, _DIR_FLAGS)
        except FileNotFoundError:
            return False
        try:
            if os.fstat(fd).st_uid not in (self.uid, 0):
                raise LabError(f"{self.path} is not owned by the postgres user: left in place")
        finally:
            os.close(fd)
        # shutil.rmtree works through descriptors here and never follows a link
        shutil.rmtree(self.path)
        return True


def _refused(rel: str, exc: OSError) -> OSError | LabError:
    """A link where a file or directory should be is refused; a missing file stays
    FileNotFoundError (callers decide what that means); anything else is the OSError."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return LabError(f"{rel} in the lab's data root is a link or not a directory: "
                        "refusing to follow it (run `gameday lab down` and `gameday lab up`)")
    return exc


def _only_regular(fd: int, rel: str) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        raise LabError(f"{rel} in the lab's data root is not a plain file: refusing to use "
                       "it (run `gameday lab down` and `gameday lab up`)")


def is_data_root(path: Path) -> bool:
    """Only a directory with our prefix directly in PARENT can be a data root."""
    return path.parent == PARENT and path.name.startswith(PREFIX)
