"""One vocabulary: an event kind or a fault name is written once, in its enum, and the
timeline is touched only by its store. Read from the source (as a grep would, but knowing
a docstring from a string and an enum's body from other code), so a kind or a name typed
by hand again, or a query on the timeline written outside the store, fails here.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from gameday.foundation.events import PAYLOADS, Kind, Payload
from gameday.foundation.faults import Fault

PACKAGE = Path(__file__).resolve().parents[2] / "gameday"
STORE = PACKAGE / "measure" / "store"
NAMES = {k.value for k in Kind} | {f.value for f in Fault}


def _is_enum(node: ast.ClassDef) -> bool:
    return any((getattr(b, "id", None) or getattr(b, "attr", "")).endswith("Enum")
               for b in node.bases)


def literals(package: Path = PACKAGE) -> list[str]:
    """Every string constant in the code (not a docstring, not an enum's body, not a
    module's `__all__` or the function a provider names after its module, which name
    functions) that is an event kind or a fault name, or a
    comma-separated list holding one."""
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                          | ast.AsyncFunctionDef) and node.body \
                    and isinstance(node.body[0], ast.Expr) \
                    and isinstance(node.body[0].value, ast.Constant):
                skip.add(id(node.body[0].value))
            if isinstance(node, ast.ClassDef) and _is_enum(node) or isinstance(
                    node, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                              for t in node.targets):
                skip |= {id(n) for n in ast.walk(node)}
            if isinstance(node, ast.Call):  # a provider's (module, func): func names a function
                skip |= {id(b) for a, b in zip(node.args, node.args[1:], strict=False)
                         if isinstance(a, ast.Constant) and str(a.value).startswith("gameday.")}
                skip |= {id(k.value) for k in node.keywords if k.arg == "func"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in skip \
                    and (node.value in NAMES or "," in node.value and any(
                        part.strip() in NAMES for part in node.value.split(","))):
                found.append(f"{path.relative_to(package.parent)}:{node.lineno}: "
                             f"{node.value!r}")
    return found


def store_breaches(package: Path = PACKAGE) -> list[str]:
    """Code outside the store (measure/store/) that could run SQL on the timeline: an
    import of sqlite3, a connection to the timeline opened, or the connection a stored run
    keeps (`Timeline._store`, `Timeline._db`) read."""
    store = package / "measure" / "store"
    found = []
    for path in sorted(package.rglob("*.py")):
        if store in path.parents:
            continue
        where = path.relative_to(package.parent)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "sqlite3" for a in node.names) \
                    or isinstance(node, ast.ImportFrom) and node.module == "sqlite3":
                found.append(f"{where}:{node.lineno}: imports sqlite3")
            elif isinstance(node, ast.Attribute) and node.attr in ("_store", "_db"):
                found.append(f"{where}:{node.lineno}: reads .{node.attr}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "connect" \
                    and getattr(node.func.value, "id", None) in ("timeline", "timelines"):
                found.append(f"{where}:{node.lineno}: opens the timeline")
    return found


def test_no_event_kind_or_fault_name_is_written_by_hand() -> None:
    found = literals()
    assert not found, "\n".join(found)


def test_only_the_store_touches_the_timeline() -> None:
    found = store_breaches()
    assert not found, "\n".join(found)


def test_the_checks_see_a_name_by_hand_and_a_query_outside_the_store(tmp_path: Path) -> None:
    package = tmp_path / "gameday"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    assert literals(package) == [] and store_breaches(package) == []
    wait = package / "actions" / "wait.py"
    wait.write_text(wait.read_text() + '\n\ndef _late(run, t):\n'
                    '    import sqlite3\n'
                    '    sqlite3.connect(run.dir / "timeline.sqlite").execute("SELECT 1")\n'
                    '    return run.events("fault-applied"), "scale-to-zero,cordon"\n')
    live = package / "report" / "live.py"
    live.write_text(live.read_text() + "\n\ndef _peek(tl):\n    return tl._store\n")
    assert sorted(line.rsplit(": ", 1)[1] for line in literals(package)) == [
        "'fault-applied'", "'scale-to-zero,cordon'"]
    assert sorted(line.split(": ", 1)[1] for line in store_breaches(package)) == [
        "imports sqlite3", "reads ._store"]


def test_every_kind_has_one_frozen_payload() -> None:
    assert set(PAYLOADS) == set(Kind)
    for kind, payload in PAYLOADS.items():
        assert payload.KIND is kind and issubclass(payload, Payload)
        assert payload.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert len(set(PAYLOADS.values())) == len(Kind)
