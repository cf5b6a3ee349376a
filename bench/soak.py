"""Soak: N full drills (game day + failback) back to back on one lab; after each, the lab
must be in its starting state and nothing may have leaked. Prints the counts per drill.

Run: sudo .venv/bin/python bench/soak.py --drills 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from _lab import BIN, lab  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMESPACES = ("gd-region-1", "gd-region-2", "gd-dns")


def chaos(experiment: str, env: dict[str, str]) -> int:
    return subprocess.run([str(BIN / "chaos"), "--no-version-check", "run", "--journal-path",
                           os.devnull, str(ROOT / "experiments" / experiment)], env=env,
                          capture_output=True, cwd=ROOT).returncode


def pids_in(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def counts(state: Path, pg_root: Path) -> dict[str, int]:
    pids = [p for ns in NAMESPACES for p in pids_in(ns)]
    # the lab's own processes (databases' backends come and go with connections: they are
    # children of a postmaster and are not counted)
    top = [p for p in pids if _ppid(p) not in pids]
    fds = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            fds += len(os.listdir(f"/proc/{pid}/fd"))
    tables = sum("gameday" in subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"],
                                             capture_output=True, text=True).stdout
                 for ns in NAMESPACES)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    roots = [state] if pg_root.is_relative_to(state) else [state, pg_root]
    disk = sum(f.stat().st_size for root in roots for f in root.rglob("*") if f.is_file())
    return {"processes": len(top), "namespaces": sum(ns in netns for ns in NAMESPACES),
            "nft_tables": tables, "open_files": fds, "disk_mb": round(disk / 2**20)}


def starting_topology(lab_json: dict) -> bool:
    db = lab_json["database"]

    def state(i: int) -> tuple:
        r = lab_json["regions"][i]
        with psycopg.connect(host=r["db_host"], port=db["port"], user=db["user"],
                             password=db["password"], dbname=db["name"], autocommit=True) as c:
            return c.execute("SELECT pg_is_in_recovery(), current_setting("
                             "'default_transaction_read_only'), (SELECT status FROM "
                             "pg_stat_wal_receiver)").fetchone()

    r1 = lab_json["regions"][0]
    with psycopg.connect(host=r1["db_host"], port=db["port"], user=db["user"],
                         password=db["password"], dbname=db["name"], autocommit=True) as c:
        modes = [r[0] for r in c.execute("SELECT sync_state FROM pg_stat_replication")]
    want = "sync" if db.get("replication") == "sync" else "async"
    return (state(0) == (False, "off", None) and state(1)[0] is True
            and state(1)[2] == "streaming" and modes == [want])


def why(reports: Path, name: str) -> str:
    kind = "failback" if name == "failback" else "region-1"
    runs = sorted(p for p in reports.glob("2*") if kind in p.name)
    try:
        summary = json.loads((runs[-1] / "summary.json").read_text())
        return "; ".join(summary["reasons"]) or "no reason recorded"
    except (IndexError, FileNotFoundError, json.JSONDecodeError):
        return "no summary written"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drills", type=int, default=3)
    args = parser.parse_args()
    failed = 0
    with lab("sync") as (the_lab, base):
        env = {**os.environ, "GAMEDAY_HOME": str(base / "state"),
               "GAMEDAY_LAB": the_lab.path, "GAMEDAY_REPORTS": str(base / "reports")}
        from gameday.labs.netns.lab import pg_data_root

        state = base / "state"
        pg_root = pg_data_root(state)
        lab_json = json.loads(Path(the_lab.path).read_text())
        first = counts(state, pg_root)
        print(f"start: {first}")
        for i in range(1, args.drills + 1):
            started = time.monotonic()
            gd, fb = chaos("game-day.json", env), chaos("failback.json", env)
            for name, code in (("game-day", gd), ("failback", fb)):
                if code != 0:
                    print(f"  {name} failed: {why(base / 'reports', name)}")
            ok = gd == 0 and fb == 0 and starting_topology(lab_json)
            now = counts(state, pg_root)
            leak = (now["processes"] != first["processes"] or now["namespaces"] != 3
                    or now["nft_tables"] or now["open_files"] > first["open_files"] * 1.5 + 20)
            failed += (not ok) or leak
            print(f"drill {i:2d}: game day exit {gd}, failback exit {fb}, starting topology "
                  f"{'yes' if ok else 'NO'}, {now}, {time.monotonic() - started:.1f} s"
                  + ("  LEAK" if leak else ""))
    print(f"{args.drills} drills, {failed} failed or leaked")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
