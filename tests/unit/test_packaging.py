"""What `pip install` of the distribution gets: a name that is ours on PyPI, every package
the code imports declared (not arriving by luck with another one), and a reason beside each
pin, so the next person knows when it may move."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from click.testing import CliRunner

from gameday import __version__, cli

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _imported_top_level() -> dict[str, str]:
    """Every top-level module the package imports (also inside functions) -> where."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "gameday").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                found.setdefault(top, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_the_distribution_is_not_named_like_an_unrelated_pypi_package() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    # "gameday" on PyPI is a 2014 package of MLB data
    assert project["name"] == "chaostoolkit-gameday"


def test_every_imported_package_is_declared() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    owners = importlib.metadata.packages_distributions()
    missing = []
    for module, where in sorted(_imported_top_level().items()):
        if module in sys.stdlib_module_names or module in ("gameday", "__future__"):
            continue
        dists = {_name(d) for d in owners.get(module, [])}
        if not dists & declared:
            missing.append(f"{module} ({where}; from {', '.join(sorted(dists)) or '?'})")
    assert not missing, "imported but not in [project] dependencies: " + "; ".join(missing)


def test_each_pin_has_a_reason_beside_it() -> None:
    """A requirement with an upper bound or an exact version has a comment right above it."""
    lines = PYPROJECT.read_text().splitlines()
    unexplained = []
    for n, line in enumerate(lines):
        m = re.match(r'\s*"([^"]+)",?\s*(#.*)?$', line)
        if not m or not re.search(r"==|~=|<", m.group(1)):
            continue
        above = lines[n - 1].strip()
        shared = re.match(r'\s*"[^"]+",?$', lines[n - 1]) and lines[n - 2].strip().startswith("#")
        if not (above.startswith("#") or m.group(2) or shared):
            unexplained.append(m.group(1))
    assert not unexplained, f"pins without a reason: {unexplained}"


def test_the_version_comes_from_the_package() -> None:
    result = CliRunner().invoke(cli.main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
