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
# the core rules of issue 26 (the measures, the store's readers and write accounting, the
# phases, the trend, the ledger). From measure/summary.py only the verdict: `compute`
# (which sections make the verdict) and `_reasons` (why it fails).
CORE = (
    "gameday.measure.instants.*",
    "gameday.measure.rto.*",
    "gameday.measure.stats.*",
    "gameday.measure.hold.*",
    "gameday.measure.store.reader.*",
    "gameday.measure.store.seqsets.*",
    "gameday.measure.store.writes.*",
    "gameday.measure.phases.*",
    "gameday.report.trend.*",
    "gameday.foundation.ledger.*",
    "gameday.measure.summary.x__reasons__*",
    "gameday.measure.summary.x_compute__*",
)
TARGET = 0.90
DETECTED = {"killed", "timeout"}

# Survivors no test can kill: the mutant behaves exactly as the original. Two kinds are
# recognised from the mutation itself (`kind_of`); the others are named here, by mutant
# (a `*` names every mutant of a function that no call can reach). Mutant numbers follow
# the source: after a change to these modules, `make mutate` says which entries went stale.
# (numbered before measure/metrics.py was split by concern: `make mutate` names the
# entries that went stale)
IN, ST = "gameday.measure.instants.", "gameday.measure.stats."
R, Q, W = "gameday.measure.store.reader.", "gameday.measure.store.seqsets.", \
    "gameday.measure.store.writes."
S, T = "gameday.measure.summary.", "gameday.report.trend."
_REASONS: dict[str, list[str]] = {
    "unreachable: nothing calls _SeqSet(seqs); every set is made by `filling`": [
        Q + "xǁSeqSetǁ__init____mutmut_*"],
    "unreachable: `add` is called only on a sparse set (a dense one is filled by `_mark` "
    "directly), so its dense branch never runs": [
        Q + f"xǁSeqSetǁadd__mutmut_{n}" for n in (1, 3, 4, 5, 6)],
    "runs only while phases.py is imported (it builds PHASES), before mutmut switches a "
    "mutant on; the closures it returns are tested (test_phases.py measure_all)": [
        "gameday.measure.phases.x__dns__mutmut_*"],
    "dense or sparse is only how the set is held: both hold the same numbers (the "
    "property and edge tests read the same answers from either)": [
        Q + f"xǁSeqSetǁ_dense__mutmut_{n}" for n in (1, 2, 3, 4, 9, 10, 11)],
    "the in-order fast path of `_mark`: every live call passes in_order=True, and each "
    "mutated guard only sends a window to the general path (it can never pass a window "
    "that is not one range), which marks the same numbers": [
        Q + f"xǁSeqSetǁ_mark__mutmut_{n}" for n in (1, 6, 7, 9, 10, 14, 15, 17, 18, 24, 25, 26)],
    "the deque only drains the map(); its maxlen bounds memory, not what is marked": [
        Q + f"xǁSeqSetǁ_mark__mutmut_{n}" for n in (34, 36, 52)],
    "how the stored set is read (window size, where the windows start, when a window is "
    "halved or read as rows, in_order hints): every variant visits each rowid once and "
    "marks the same numbers": [
        Q + f"xǁSeqSetǁstored__mutmut_{n}" for n in (7, 8, 13, 16, 81, 82, 91, 92, 94, 96,
                                                      104, 106)],
    "a name after a closing parenthesis is an SQL alias: `max(seq - rowid)XXXX` is valid "
    "SQL with the same value": [
        Q + "xǁSeqSetǁstored__mutmut_1", W + "x_account_stored_writes__mutmut_24"],
    "an empty set's bounds: (1, 1) with no byte set, or both None together (min and max "
    "of one query), answer every question as (1, 0) does; `_pending` '' is never read "
    "once the set is dense": [
        Q + f"xǁSeqSetǁfilling__mutmut_{n}" for n in (7, 8, 12)],
    "an SQL table name in capitals (SQLite names are case-insensitive)": [
        Q + "x_never_attempted__mutmut_8", W + "x_account_stored_writes__mutmut_23",
        W + "x_account_stored_writes__mutmut_35", W + "x_account_stored_writes__mutmut_51",
        W + "x_account_stored_writes__mutmut_100", R + "x_load__mutmut_42",
        R + "x_load__mutmut_52", R + "x_load__mutmut_69", R + "xǁStreamǁtimes__mutmut_7"],
    "dropping the temporary tables at the end: a wrong name leaves one behind, and the "
    "next count drops and recreates it before use": [
        W + f"x_account_stored_writes__mutmut_{n}" for n in range(212, 220)],
    "the set of numbers attempted is the run's own, cached or computed again": [
        W + "x_account_stored_writes__mutmut_121", W + "x_account_stored_writes__mutmut_125",
        Q + "x_never_attempted__mutmut_11"],
    "fewer than two acknowledgements give no gaps, and the percentile of none is None": [
        W + "x_account_stored_writes__mutmut_203", W + "x_account_stored_writes__mutmut_210"],
    "the memo's label: any constant keys the same answers": [
        IN + "x_first_write__mutmut_2", IN + "x_first_write__mutmut_3"],
    "the gaps' bins: any power-of-two scale bins them exactly, and values the widened "
    "upper bound lets in are larger, so they sort after the rank wanted": [
        ST + f"x_gap_percentiles__mutmut_{n}" for n in (4, 5, 111, 113, 116)],
    "a rank is at most n - 1 for p <= 100, so the bound of min() never applies": [
        ST + "x_gap_percentiles__mutmut_63", ST + "x_percentile__mutmut_9"],
    "zip's strict=False, None or its default are the same": [
        ST + "x_intervals__mutmut_6", ST + "x_intervals__mutmut_9"],
    "a loaded timeline answers from its database (`store` is the run's connection): the "
    "row fields left empty are not read": [
        R + f"x_load__mutmut_{n}" for n in (18, 19, 20)],
    "one in-memory connection: whether Python opens transactions changes nothing it "
    "reads": [R + "x_memory_store__mutmut_4"],
    "only instants that were seen reach min(), so the key's None branch is never taken; "
    "the sampler's own reason is replaced by the promotion's when neither was seen": [
        IN + "x_promotion__mutmut_42", IN + "x_promotion__mutmut_6"],
    "an empty stream is never read (no connection, no rows): its table name and select "
    "list are unused": [R + f"xǁStreamǁempty__mutmut_{n}" for n in (1, 3, 10, 11)],
    "which columns a stream copies: reading them all gives the same values, and a name "
    "after the FROM table is an SQL alias": [
        R + f"xǁTimelineǁ_copy__mutmut_{n}" for n in (9, 10, 19)],
    "read only in a failback, where they are assigned first": [
        S + "x_compute__mutmut_44", S + "x_compute__mutmut_45"],
    "None and False are both false where they are tested": [
        T + "x_record__mutmut_7", T + "x_record__mutmut_17"],
    "the temporary file's name: it is renamed over the history at once": [
        T + "x_record__mutmut_42", T + "x_record__mutmut_43"],
    "with nothing observed the bounds are never used (every run is drawn as ·)": [
        T + "x_sparkline__mutmut_8", T + "x_sparkline__mutmut_9"],
}
EQUIVALENT: dict[str, str] = {name: why for why, names in _REASONS.items() for name in names}


def equivalent(name: str) -> str | None:
    return EQUIVALENT.get(name) or next(
        (why for pattern, why in EQUIVALENT.items() if "*" in pattern and
         fnmatch.fnmatchcase(name, pattern)), None)

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
        why = equivalent(name) or kind_of(root, name)
        explained += why is not None
        print(f"  {name} ({status}): {why or 'NOT EXPLAINED'}")
    if survivors:
        print(f"\n{explained} of {len(survivors)} explained as equivalent")
    left = [n for n, _ in survivors]
    stale = sorted(e for e in EQUIVALENT if not any(fnmatch.fnmatchcase(n, e) for n in left))
    if stale:
        print("\nlisted as equivalent but killed or gone (update EQUIVALENT):", *stale,
              sep="\n  ")
    if unchecked:
        print(f"\n{len(unchecked)} mutants not checked: run `mutmut run` to the end")
        return 1
    return 0 if score >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
