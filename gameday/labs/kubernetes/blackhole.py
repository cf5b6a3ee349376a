"""The blackhole fault: `docker pause` of a region's node containers (kind only).

A paused node stops answering without refusing: connections to it hang, with no RST, until
the client's timeouts, which is what a region cut off by the network looks like to its
clients. Revert unpauses only the containers this fault paused.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence

from gameday.foundation.errors import LabError, TargetError

logger = logging.getLogger(f"chaostoolkit.{__name__}")

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_docker(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which(args[0]) is None:
        raise LabError(f"'{args[0]}' not found: the blackhole fault needs the docker CLI here")
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


class Docker:
    """The docker CLI, or a stand-in with the same calling convention."""

    def __init__(self, runner: Runner | None = None) -> None:
        self._run = runner or run_docker

    def paused(self, containers: Sequence[str]) -> dict[str, bool]:
        result = self._run(["docker", "inspect", "--format", "{{.State.Paused}}", *containers])
        if result.returncode != 0:
            raise TargetError(
                f"docker inspect {' '.join(containers)} failed: {result.stderr.strip()}: "
                "check the region's node_containers in the lab descriptor"
            )
        states = result.stdout.split()
        if len(states) != len(containers):
            raise TargetError(f"docker inspect: unexpected output {result.stdout!r}")
        return {c: s.strip().lower() == "true" for c, s in zip(containers, states, strict=True)}

    def each(self, verb: str, containers: Sequence[str]) -> None:
        for container in containers:
            result = self._run(["docker", verb, container])
            if result.returncode != 0:
                raise TargetError(f"docker {verb} {container} failed: {result.stderr.strip()}")
            logger.info("blackhole: docker %s %s", verb, container)


def still_paused_by_us(docker: Docker, containers: Sequence[str], before: Sequence[str]) -> list[str]:
    """The containers this fault paused that are still paused."""
    ours = [c for c in containers if c not in set(before)]
    paused = docker.paused(ours) if ours else {}
    return [c for c in ours if paused.get(c)]


def control_planes_first(containers: Sequence[str]) -> tuple[list[str], list[str]]:
    """(control planes, the rest): the API comes back before the nodes that run the pods."""
    first = [c for c in containers if c.endswith("-control-plane")]
    return first, [c for c in containers if c not in first]
