"""Folders are layers: a folder's name says what its modules may import, one rule per
folder and no exception for any module. The entry points drive the activities, the
activities drive the drill, the drill reads the measures and the labs through the
foundation, and nothing reaches back up. Checked on the source (every import, also those
inside functions and under TYPE_CHECKING), so a violation fails here with the offending
line, not as a circular import at some later run. And no module imports itself back
through others: the import graph has no cycle.

    gameday/ (cli, control)    the entry points: anything below
    actions/, probes/          the Chaos Toolkit activities the experiments name
    drill/                     one drill: its context, plan, preflight, gate, recovery,
                               stop conditions' watcher, the activities' plumbing
    report/                    rendering a run
    measure/                   the recorder, its store, the measures and the verdict
    labs/                      the lab kinds' implementations (netns, kubernetes)
    postgres/                  every SQL question and change
    foundation/                the vocabulary every layer shares
    experiments/               the shipped experiment files
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gameday"

# folder -> the folders its modules may import, besides their own
EVERYTHING = frozenset({"actions", "probes", "drill", "report", "measure", "labs", "postgres",
                        "foundation", "experiments"})
RULES: dict[str, frozenset[str]] = {
    "": EVERYTHING,
    "actions": frozenset({"drill", "measure", "postgres", "foundation"}),
    "probes": frozenset({"drill", "measure", "postgres", "foundation"}),
    "drill": frozenset({"measure", "postgres", "foundation"}),
    "report": frozenset({"measure", "foundation"}),
    "measure": frozenset({"postgres", "foundation"}),
    "labs": frozenset({"postgres", "foundation"}),
    "postgres": frozenset({"foundation"}),
    "foundation": frozenset(),
    "experiments": frozenset({"foundation"}),
}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def folder(module: str) -> str:
    """The folder (top-level package of gameday) a module lives in; "" for the root."""
    parts = module.split(".")
    if parts[0] != "gameday":
        raise AssertionError(f"{module} is in no layer: it is not gameday's")
    if len(parts) == 1 or parts[1] not in RULES:
        if len(parts) > 2:
            raise AssertionError(f"{module} is in no layer: add its folder to RULES")
        return ""
    return parts[1]


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
                base = package.parent / candidate.replace(".", "/")
                is_module = base.with_suffix(".py").exists() or base.is_dir()
                found.append((node.lineno, candidate if is_module else node.module))
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import in `package` (a directory named gameday) that its folder's rule does
    not allow."""
    out = []
    for path in sorted(package.rglob("*.py")):
        me = module_name(path, package)
        mine = folder(me)
        for line, target in imports(path, package):
            theirs = folder(target)
            if theirs != mine and theirs not in RULES[mine]:
                out.append(f"{path.relative_to(package.parent)}:{line}: {me} ({mine or 'root'}/) "
                           f"imports {target} ({theirs or 'root'}/)")
    return out


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the modules of the package it imports (a name imported from a package is
    the package's)."""
    modules = {module_name(p, package) for p in package.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        me = module_name(path, package)
        deps = set()
        for _, target in imports(path, package):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != me:
                deps.add(target)
        out[me] = deps
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_import_keeps_its_folders_rule() -> None:
    found = violations()
    assert not found, "\n".join(found)


def test_the_rules_are_layers() -> None:
    """The folders' rules themselves form no cycle, and each names only folders there are."""
    assert set(RULES) - {""} == {p.name for p in PACKAGE.iterdir()
                                 if p.is_dir() and (p / "__init__.py").exists()}
    for name, allowed in RULES.items():
        assert allowed <= set(RULES) - {""}, name
    assert cycles({k: set(v) for k, v in RULES.items()}) == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(graph()) == []


def test_the_check_sees_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    """The rules can fail: a copy of the package in which a lab module imports an action
    (inside a function, too) and the store imports the verdict is caught, naming each
    offending line; two modules importing each other are a cycle. The package as it is,
    copied, is clean."""
    package = tmp_path / "gameday"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(package) == [] and cycles(graph(package)) == []
    lab = package / "labs" / "netns" / "driver.py"
    lab.write_text(lab.read_text() + "\n\ndef _late():\n"
                   "    from gameday.actions import region  # noqa: F401\n")
    store = package / "postgres" / "role.py"
    store.write_text("from gameday.measure import summary  # noqa: F401\n" + store.read_text())
    found = violations(package)
    assert len(found) == 2, found
    assert found[0].startswith("gameday/labs/netns/driver.py:")
    assert found[0].endswith("gameday.labs.netns.driver (labs/) imports gameday.actions.region "
                             "(actions/)")
    assert found[1] == ("gameday/postgres/role.py:1: gameday.postgres.role (postgres/) imports "
                        "gameday.measure.summary (measure/)")
    errors = package / "foundation" / "errors.py"
    errors.write_text("from gameday.foundation import poll  # noqa: F401\n" + errors.read_text())
    assert ["gameday.foundation.errors", "gameday.foundation.poll"] in [
        [m for m in c if m in ("gameday.foundation.errors", "gameday.foundation.poll")]
        for c in cycles(graph(package))]


def test_an_unknown_module_is_named() -> None:
    with pytest.raises(AssertionError, match="gameday_extra.thing is in no layer"):
        folder("gameday_extra.thing")
    with pytest.raises(AssertionError, match="gameday.extra.thing is in no layer"):
        folder("gameday.extra.thing")
