"""Imports go down the layers, never up: the CLI and the control drive the activities,
activities drive the core, and the labs and measurements never reach back into the drill.
Checked on the source (every import, also those inside functions), so a violation fails
here with the offending line, not as a circular import at some later run.

    7 cli
    6 control
    5 actions, probes                      the Chaos Toolkit activities
    4 recovery, report                     putting the lab back; rendering a run
    3 measure, settings, hypothesis,       recorder, metrics, phases; the parsed configuration;
      stopconditions                       tolerances bound to its targets; the user's stop
                                           conditions, watched during the drill
    2 labs (drivers, netns, kubernetes)     what a lab provides
    1 postgres                             every SQL question and change
    0 errors, interrupt, poll, labs.descriptor, labs.driver (the protocols and the registry,
      whose factories are imported by name only when used), labs.drill, labs.ledger,
      labs.lock, measure.timeline
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gameday"

LAYERS: dict[str, int] = {
    "gameday.cli": 7, "gameday.__main__": 7,
    "gameday.control": 6, "gameday.planning": 6,
    "gameday.actions": 5, "gameday.probes": 5,
    "gameday.recovery": 4, "gameday.report": 4,
    "gameday.measure": 3, "gameday.settings": 3, "gameday.hypothesis": 3,
    "gameday.stopconditions": 3,
    "gameday.labs": 2,
    "gameday.postgres": 1, "gameday.dcs": 1,
    "gameday": 0, "gameday.errors": 0, "gameday.interrupt": 0, "gameday.poll": 0,
    "gameday.labs.descriptor": 0, "gameday.labs.drill": 0, "gameday.labs.ledger": 0,
    "gameday.labs.lock": 0,
    "gameday.labs.driver": 0,
    "gameday.measure.timeline": 0,
}


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("gameday")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gameday"):
            for a in node.names:
                # `from gameday import postgres` names a module; `from x import Name` a member
                candidate = f"{node.module}.{a.name}"
                is_module = (package.parent / candidate.replace(".", "/")).with_suffix(".py") \
                    .exists() or (package.parent / candidate.replace(".", "/")).is_dir()
                found.append((node.lineno, candidate if is_module else node.module))
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import in `package` (a directory named gameday) that goes up a layer."""
    out = []
    for path in sorted(package.rglob("*.py")):
        me = module_name(path, package)
        for line, target in imports(path, package):
            if layer(target) > layer(me):
                out.append(f"{path.relative_to(package.parent)}:{line}: {me} "
                           f"(layer {layer(me)}) imports {target} (layer {layer(target)})")
    return out


def test_every_import_goes_down_or_stays_level() -> None:
    found = violations()
    assert not found, "\n".join(found)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule can fail: a copy of the package in which a lab module imports an action
    (inside a function, too) and the timeline imports the metrics is caught, naming each
    offending line; the package as it is, copied, is clean."""
    package = tmp_path / "gameday"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(package) == []
    lab = package / "labs" / "netns" / "driver.py"
    lab.write_text(lab.read_text() + "\n\ndef _late():\n"
                   "    from gameday.actions import region  # noqa: F401\n")
    timeline = package / "measure" / "timeline.py"
    timeline.write_text("from gameday.measure.metrics import Instant  # noqa: F401\n"
                        + timeline.read_text())
    found = violations(package)
    assert len(found) == 2, found
    assert found[0].startswith("gameday/labs/netns/driver.py:")
    assert found[0].endswith("gameday.labs.netns.driver (layer 2) imports "
                             "gameday.actions.region (layer 5)")
    assert found[1] == ("gameday/measure/timeline.py:1: gameday.measure.timeline (layer 0) "
                        "imports gameday.measure.metrics (layer 3)")


def test_an_unknown_module_is_named() -> None:
    with pytest.raises(AssertionError, match="gameday_extra.thing is in no layer"):
        layer("gameday_extra.thing")
