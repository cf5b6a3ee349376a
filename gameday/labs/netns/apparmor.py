"""AppArmor denials of the lab's programs, found in the kernel log and said in one line.

Why: Ubuntu (and Debian) load a profile for /usr/sbin/unbound in enforce mode when the unbound
package is installed. A program a profile denies fails in its own words (unbound: "Could not
open ..."), or not at all when only its log file was denied, and `lab up` then reported a DNS
timeout. The kernel records each denial (`apparmor="DENIED"`, with the profile, the operation
and the path), and that record is the cause to show.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(f"chaostoolkit.{__name__}")

_RECORD = re.compile(r'apparmor="DENIED"')
_STAMP = re.compile(r"audit\((\d+(?:\.\d+)?):\d+\)")
_FIELD = re.compile(r'(\w+)=("([^"]*)"|\S+)')


@dataclass(frozen=True, kw_only=True)
class Denial:
    """One `apparmor="DENIED"` audit record."""

    at: float  # the record's own time, seconds since the epoch
    profile: str
    comm: str
    operation: str
    name: str
    denied: str

    def line(self) -> str:
        path = f" {self.name}" if self.name else ""
        mask = f" ({self.denied})" if self.denied else ""
        return (f"AppArmor profile '{self.profile}' denied {self.comm} {self.operation}"
                f"{path}{mask}: move the file where the profile allows it, or allow it in "
                f"/etc/apparmor.d/local/ and reload the profile (apparmor_parser -r)")


def parse(text: str) -> list[Denial]:
    """The denial records in kernel log text (journalctl -k, dmesg, audit.log alike)."""
    found = []
    for line in text.splitlines():
        if not _RECORD.search(line):
            continue
        stamp = _STAMP.search(line)
        fields = {m.group(1): m.group(3) if m.group(3) is not None else m.group(2)
                  for m in _FIELD.finditer(line)}
        found.append(Denial(
            at=float(stamp.group(1)) if stamp else 0.0,
            profile=fields.get("profile", "?"),
            comm=fields.get("comm", "?"),
            operation=fields.get("operation", "?"),
            name=fields.get("name", ""),
            denied=fields.get("denied_mask", ""),
        ))
    return found


def kernel_log() -> str:
    """The kernel's recent log, from the journal or the kernel ring buffer (root), or ''
    when neither can be read: then no denial can be shown, and nothing is claimed."""
    for argv in (["journalctl", "-k", "-b", "--no-pager", "-o", "cat", "-n", "2000"],
                 ["dmesg"]):
        if shutil.which(argv[0]) is None:
            continue
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            logger.debug("%s: %s", argv[0], exc)
            continue
        if proc.returncode == 0 and proc.stdout:
            return proc.stdout
    return ""


def denied_line(programs: Iterable[str], *, since: float,
                read_log: Callable[[], str] | None = None) -> str | None:
    """One line naming the first denial of one of `programs` (paths or names) recorded at or
    after `since` (epoch seconds), or None when there is none to show. `read_log` defaults
    to `kernel_log`."""
    names = {Path(p).name for p in programs} | {str(p) for p in programs}
    for denial in parse((read_log or kernel_log)()):
        if denial.at >= since and (denial.comm in names or denial.profile in names):
            return denial.line()
    return None
