"""The mutation score of the core rules, from mutmut's results (`make mutate` runs it after
`mutmut run`): per module and in all, each mutant not killed listed with why it may stay.
Exit 1 below TARGET, or when a selected mutant was not checked.

Killed means a test failed (or hung: a timeout) with the mutant in place. A survivor
counts against the score even when it is equivalent; EQUIVALENT says why each known one
cannot be told apart by any test, so a new survivor stands out as "NOT EXPLAINED".

    .venv/bin/python tests/mutation_score.py [PATTERN ...]   # the score (of those mutants)
    .venv/bin/python tests/mutation_score.py --patterns      # the mutants `make mutate` runs
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import functools
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

# What `make mutate` measures (mutmut's names: module, then x_ or xǁClassǁ, the function):
# the core rules of issue 26. From report/summary.py only the verdict: `compute` (which
# sections make the verdict) and `_reasons` (why it fails).
CORE = (
    "gameday.measure.metrics.*",
    "gameday.measure.phases.*",
    "gameday.report.trend.*",
    "gameday.labs.ledger.*",
    "gameday.report.summary.x__reasons__*",
    "gameday.report.summary.x_compute__*",
)
TARGET = 0.90
DETECTED = {"killed", "timeout"}

# Survivors no test can kill: the mutant behaves exactly as the original. Two kinds are
# recognised from the mutation itself (`kind_of`); the others are named here.
EQUIVALENT: dict[str, str] = {}

# SQL as this code base writes it: keywords in capitals, inside double-quoted strings
SQL = re.compile(r"\b(SELECT|FROM|WHERE|AND|OR|NOT|IN|IS|NULL|LIMIT|CASE|WHEN|THEN|ELSE|END|"
                 r"PRAGMA|BEGIN|INSERT|CREATE|TABLE|ORDER|GROUP|BY|VALUES|DISTINCT)\b")
DOUBLE_QUOTED = re.compile(r'"([^"]*)"')


def changed_lines(root: Path, name: str) -> tuple[list[str], list[str]]:
    """The lines the mutant `name` removes and adds, read from mutmut's copy of the module."""
    module, _, func = name.rpartition(".")
    source = _functions(root / "mutants" / (module.replace(".", "/") + ".py"))
    base = func.rsplit("__mutmut_", 1)[0]
    old, new = source.get(base + "__mutmut_orig", ""), source.get(func, "")
    diff = list(difflib.unified_diff(old.replace(base + "__mutmut_orig", "F").splitlines(),
                                     new.replace(func, "F").splitlines(), lineterm="", n=0))
    return ([d[1:].strip() for d in diff if d.startswith("-") and not d.startswith("---")],
            [d[1:].strip() for d in diff if d.startswith("+") and not d.startswith("+++")])


@functools.cache
def _functions(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    text = path.read_text()
    lines = text.splitlines()
    return {node.name: "\n".join(lines[node.lineno - 1:node.end_lineno])
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def kind_of(root: Path, name: str) -> str | None:
    """Why a mutant is equivalent, when the mutation itself shows it."""
    old, new = changed_lines(root, name)
    if not old or len(old) != len(new):
        return None
    quoted = re.compile(r"'[^']*'")
    if all(o != n and o.lower() == n.lower() and quoted.findall(o) == quoted.findall(n) and
           any(SQL.search(q) for q in DOUBLE_QUOTED.findall(o))
           for o, n in zip(old, new, strict=True)):
        return ("the case of SQL text: SQLite keywords, functions and names are "
                "case-insensitive (quoted values are unchanged)")
    if all(re.sub(r"fetchmany\([^)]*\)", "", o) == re.sub(r"fetchmany\([^)]*\)", "", n)
           for o, n in zip(old, new, strict=True)):
        return "how many rows one fetchmany() returns: only the batching changes"
    return None


def results(root: Path) -> dict[str, str]:
    out = subprocess.run([str(Path(sys.executable).parent / "mutmut"), "results", "--all",
                          "true"], cwd=root, capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.fullmatch(r"\s*(\S+): (.+)", line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


def module_of(name: str) -> str:
    return re.split(r"\.x(?:_|ǁ)", name, maxsplit=1)[0]


def main(argv: list[str]) -> int:
    if argv == ["--patterns"]:  # what `make mutate` has mutmut run
        print(" ".join(CORE))
        return 0
    patterns = argv or list(CORE)
    root = Path(__file__).resolve().parents[1]
    selected = {n: s for n, s in results(root).items()
                if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
    if not selected:
        print("no mutants: run `mutmut run` first (make mutate)")
        return 1
    per_module: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in selected.items():
        per_module[module_of(name)][status] += 1
    print(f"{'module':32} {'mutants':>8} {'killed':>7} {'score':>7}")
    for module, counts in sorted(per_module.items()):
        total, killed = sum(counts.values()), sum(counts[s] for s in DETECTED)
        print(f"{module:32} {total:8d} {killed:7d} {killed / total:7.1%}")
    total = len(selected)
    killed = sum(1 for s in selected.values() if s in DETECTED)
    score = killed / total
    print(f"{'all':32} {total:8d} {killed:7d} {score:7.1%}  (target {TARGET:.0%})")
    unchecked = sorted(n for n, s in selected.items() if s == "not checked")
    survivors = sorted((n, s) for n, s in selected.items()
                       if s not in DETECTED and s != "not checked")
    if survivors:
        print(f"\n{len(survivors)} not killed:")
    explained = 0
    for name, status in survivors:
        why = EQUIVALENT.get(name) or kind_of(root, name)
        explained += why is not None
        print(f"  {name} ({status}): {why or 'NOT EXPLAINED'}")
    if survivors:
        print(f"\n{explained} of {len(survivors)} explained as equivalent")
    stale = sorted(set(EQUIVALENT) - {n for n, _ in survivors})
    if stale:
        print("\nlisted as equivalent but killed or gone (update EQUIVALENT):", *stale,
              sep="\n  ")
    if unchecked:
        print(f"\n{len(unchecked)} mutants not checked: run `mutmut run` to the end")
        return 1
    return 0 if score >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
