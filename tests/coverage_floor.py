"""Every module of gameday/ is at least 60% covered by the unit suite alone: `make
test-fast` runs the unit suite under coverage (pytest-cov), prints each module's lines,
then runs this, which fails naming each module under the floor.

A module that needs what no unit test may have (root, network namespaces, the lab's
processes, the recorder's own child process) is listed in UNIT_UNTESTABLE with the reason,
and is exempt: the integration suite runs it on the real lab. (A real PostgreSQL is not
such a reason: the unit suite starts its own, tests/unit/pg.py.) Keep the list short:
a module that could be tested with a fake at a seam gets tests instead. A listed module
that reaches the floor anyway fails here too, so the list never outlives its reason.

    python tests/coverage_floor.py [DATA_FILE]      # default .coverage
"""

from __future__ import annotations

import sys
from pathlib import Path

import coverage

FLOOR = 60.0
PACKAGE = Path(__file__).resolve().parents[1] / "gameday"

UNIT_UNTESTABLE: dict[str, str] = {
    # root and network namespaces: `lab up`/`lab down` and what runs inside the lab
    "labs/netns/lab.py": "brings the netns lab up and down (root, namespaces, nftables)",
    "labs/netns/driver.py": "injects faults with nftables and signals inside the namespaces",
    "labs/netns/patroni.py": "starts and stops Patroni and etcd members in the namespaces",
    "labs/netns/database.py": "pg_ctl, pg_rewind and pg_basebackup as postgres in the lab",
    "labs/netns/localwriter.py": "a program the lab runs inside a region, against its database",
    "labs/storefront.py": "the storefront server the labs run, against the region's database",
    # the recorder's child process: its main and its replication and HA samplers
    "measure/recorder.py": "the recorder child process (started by the runner, by pid)",
}


def percentages(data_file: str = ".coverage") -> dict[str, float]:
    """module path under gameday/ -> percent of its statements the unit suite ran."""
    if not Path(data_file).is_file():
        raise SystemExit(f"no coverage data at {data_file}: run `make test-fast`")
    cov = coverage.Coverage(data_file=data_file)
    cov.load()
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        _, statements, _, missing, _ = cov.analysis2(str(path))
        if statements:
            out[str(path.relative_to(PACKAGE))] = 100.0 * (len(statements) - len(missing)) \
                / len(statements)
    return out


def verdict(covered: dict[str, float]) -> list[str]:
    problems = [f"{m}: {p:.0f}% of its lines from unit tests (floor {FLOOR:.0f}%): test it, or "
                "list it in tests/coverage_floor.py with the reason it cannot be"
                for m, p in covered.items() if p < FLOOR and m not in UNIT_UNTESTABLE]
    problems += [f"{m}: listed as not unit-testable, yet {covered[m]:.0f}% covered: take it "
                 "off the list" for m in UNIT_UNTESTABLE if covered.get(m, 0.0) >= FLOOR]
    problems += [f"{m}: listed, but no such module" for m in UNIT_UNTESTABLE
                 if m not in covered]
    return problems


def main(argv: list[str]) -> int:
    covered = percentages(argv[0] if argv else ".coverage")
    problems = verdict(covered)
    exempt = ", ".join(f"{m} {covered.get(m, 0):.0f}%" for m in UNIT_UNTESTABLE)
    print(f"unit coverage floor {FLOOR:.0f}%: {len(covered) - len(UNIT_UNTESTABLE)} modules "
          f"checked, {len(UNIT_UNTESTABLE)} exempt ({exempt})")
    for line in problems:
        print(f"  {line}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
