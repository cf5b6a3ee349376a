"""Running an operator's command as a drill step (`promotion: command`): a `kubectl cnpg
promote`, a `patronictl failover`, a cloud CLI. Bounded by a timeout, its output kept in
the run's timeline so the report shows what the runbook did, and a failure one line.

The command runs without a shell (arguments as given, or split like a shell would), with
the environment the descriptor's `ha.command_env` adds (e.g. PATRONICTL_CONFIG_FILE).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Mapping, Sequence

from gameday.foundation.errors import TargetError

OUTPUT_TAIL = 2000  # characters of output kept in the timeline


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ran:
    argv: tuple[str, ...]
    returncode: int | None  # None: killed at its timeout
    took_s: float
    output: str  # the tail of stdout and stderr together


def run(argv: Sequence[str], *, timeout_s: float,
        env: Mapping[str, str] | None = None) -> Ran:
    """Run `argv` to its end or its timeout (returncode None: killed at the timeout)."""
    started = time.monotonic()
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return Ran(argv=tuple(argv), returncode=127, took_s=0.0,
                   output=f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        err = exc.stderr or b""
        text = (out.decode(errors="replace") if isinstance(out, bytes) else out) + \
            (err.decode(errors="replace") if isinstance(err, bytes) else err)
        return Ran(argv=tuple(argv), returncode=None, took_s=round(time.monotonic() - started, 3),
                   output=text[-OUTPUT_TAIL:])
    output = ((proc.stdout or "") + (proc.stderr or ""))[-OUTPUT_TAIL:]
    return Ran(argv=tuple(argv), returncode=proc.returncode,
               took_s=round(time.monotonic() - started, 3), output=output)


def check(ran: Ran, *, timeout_s: float, what: str = "the promotion command") -> None:
    """TargetError naming the fix when the command could not run, timed out or failed."""
    name = " ".join(ran.argv[:3])
    if ran.returncode == 127 and ran.output.endswith("command not found"):
        raise TargetError(f"{what} `{ran.argv[0]}` was not found: install it or fix "
                          "'promotion_command'")
    if ran.returncode is None:
        raise TargetError(f"{what} `{name}` did not finish within {timeout_s:g} s "
                          "('promotion_timeout_s')")
    if ran.returncode != 0:
        last = ran.output.strip().splitlines()[-1] if ran.output.strip() else "no output"
        raise TargetError(f"{what} `{name}` exited {ran.returncode}: {last}")
