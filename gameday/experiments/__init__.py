"""The experiments gameday ships, as package data: `experiments/` in a source checkout
points here, and an installed gameday finds them without one (`gameday experiments`)."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

from gameday.foundation.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class Shipped:
    name: str  # the file name without .json
    path: Path
    title: str


def directory() -> Path:
    return Path(str(resources.files("gameday.experiments")))


def shipped() -> list[Shipped]:
    out = []
    for file in sorted(directory().glob("*.json")):
        title = str(json.loads(file.read_text()).get("title") or "")
        out.append(Shipped(name=file.stem, path=file, title=title))
    return out


def path(name: str) -> Path:
    """The shipped experiment `name` (with or without .json); ConfigError naming the
    choices when there is none."""
    if name.endswith((".yaml", ".yml")):
        # the YAML copy (game-day.yaml) and the var files (vars/sync.yaml) are shipped too
        candidate = directory() / name
        if candidate.is_file():
            return candidate
    stem = name.removesuffix(".json")
    for item in shipped():
        if item.name == stem:
            return item.path
    names = ", ".join(item.name for item in shipped())
    raise ConfigError(f"no shipped experiment '{name}': choose from {names}")
