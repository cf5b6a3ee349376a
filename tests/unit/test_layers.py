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
      measure.timeline
"""

from __future__ import annotations

import ast
from pathlib import Path

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


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("gameday")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gameday"):
            for a in node.names:
                # `from gameday import postgres` names a module; `from x import Name` a member
                candidate = f"{node.module}.{a.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py") \
                    .exists() or (PACKAGE.parent / candidate.replace(".", "/")).is_dir()
                found.append((node.lineno, candidate if is_module else node.module))
    return found


def test_every_import_goes_down_or_stays_level() -> None:
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        for line, target in imports(path):
            if layer(target) > layer(me):
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {me} "
                                  f"(layer {layer(me)}) imports {target} (layer {layer(target)})")
    assert not violations, "\n".join(violations)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule can fail: a lab module importing an action is caught."""
    assert layer("gameday.labs.netns.driver") < layer("gameday.actions.database")
    assert layer("gameday.measure.metrics") < layer("gameday.report.summary")
    assert layer("gameday.labs.kubernetes.faults") == layer("gameday.labs")
