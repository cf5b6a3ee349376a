"""A netns lab of the benchmark's own: up in a temporary state directory, down at the end.
Benchmarks need root, like the lab; they refuse to run next to a lab that is already up."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gameday.foundation import descriptor
from gameday.foundation.descriptor import Lab

BIN = Path(sys.executable).parent


@contextlib.contextmanager
def lab(replication: str) -> Iterator[tuple[Lab, Path]]:
    if os.geteuid() != 0:
        sys.exit("benchmarks bring the netns lab up: run them as root (sudo make bench)")
    base = Path(tempfile.mkdtemp(prefix="gameday-bench-"))
    base.chmod(0o755)
    env = {**os.environ, "GAMEDAY_HOME": str(base / "state")}
    up = subprocess.run([str(BIN / "gameday"), "lab", "up", "--replication", replication],
                        env=env, capture_output=True, text=True)
    try:
        if up.returncode != 0:
            sys.exit(f"lab up failed: {up.stderr.strip().splitlines()[-1]}")
        yield descriptor.load(base / "state" / "lab.json"), base
    finally:
        subprocess.run([str(BIN / "gameday"), "lab", "down"], env=env, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
