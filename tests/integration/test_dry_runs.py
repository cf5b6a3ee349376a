"""Dry means dry, on the real netns lab (issue 18). Every shipped experiment, plus one with
an ordinary `process` action whose arguments is a string and one with a foreign action
marked as the gameday fault, runs under `chaos run --dry actions|probes|activities` and
`gameday plan`, all on one lab. After each: no fault ledger row, no drill record, no canary
row, no run directory, every namespace's nftables ruleset unchanged, both databases in their
starting roles, the foreign fault not run. `--dry actions` walks each method whole (the
steady state judged from the plan); the failback experiments are refused on a lab where no
game day ran, as their real runs would be, and `--dry probes` (Chaos Toolkit runs actions
there) refuses the foreign fault before it runs.

About 36 commands on the shared lab (conftest.shared_lab): budget under 90 s."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from gameday import experiments as shipped
from tests.fixtures import experiments as composed
from tests.integration.conftest import BIN, ROOT, SharedLab, gameday, lab_pids

MODES = ("actions", "probes", "activities", "plan")
# a failback needs a game day behind it: on a fresh lab its real run refuses, so does the plan
# failback-redis.json asks the Sentinels (promotion 'manager'): refused on a PostgreSQL lab
REFUSED_ON_A_FRESH_LAB = {"failback.json", "failback-autonomous.json", "failback-redis.json"}
NAMESPACES = ("gd-region-1", "gd-region-2", "gd-dns")


def _experiments() -> list[str]:
    return [f"{s.name}.json" for s in shipped.shipped()] + ["game-day.yaml", "hello", "foreign"]


@pytest.fixture(scope="module")
def lab(labs: SharedLab, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[dict[str, Any]]:
    """The shared lab for every dry run, its state taken once before them, and the two
    composed experiments (tests/fixtures/experiments.py)."""
    started = time.monotonic()
    here = tmp_path_factory.mktemp("dry")
    evidence = here / "the-foreign-fault-ran"
    files = {
        "hello": here / "hello.json",
        "foreign": here / "foreign.json",
    }
    files["hello"].write_text(json.dumps(composed.game_day(composed.say_hello(),
                                                           title="Game day with a hello")))
    files["foreign"].write_text(json.dumps(composed.game_day(
        composed.foreign_fault(evidence), title="Game day with a foreign fault")))
    lab_env = labs.get()
    pids = sorted(lab_pids(lab_env))
    yield {"env": lab_env, "files": files, "evidence": evidence, "before": _state(lab_env)}
    # nothing was stopped and started again behind the roles' backs
    assert sorted(lab_pids(lab_env)) == pids
    print(f"dry runs on one lab: {time.monotonic() - started:.1f} s in all")


def _state(env: dict[str, str]) -> dict[str, Any]:
    """Everything a dry run must leave as it found it."""
    home = Path(env["GAMEDAY_LAB"]).parent
    lab = json.loads(Path(env["GAMEDAY_LAB"]).read_text())
    db = lab["database"]
    roles, canary = {}, None
    for region in lab["regions"]:
        with psycopg.connect(host=region["db_host"], port=db["port"], user=db["user"],
                             password=db["password"], dbname=db["name"], autocommit=True,
                             connect_timeout=5) as conn:
            roles[region["name"]] = conn.execute(
                "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')"
            ).fetchone()
            if region["role"] == "primary":
                canary = conn.execute(
                    f"SELECT count(*), coalesce(max(seq), 0) FROM "
                    f"{db.get('canary_table', 'gameday_canary')}").fetchone()
    reports = Path(env["GAMEDAY_REPORTS"])
    return {
        "ledger": (home / "faults.jsonl").exists(),
        "drill": (home / "drill.json").exists(),
        "nft": {ns: subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"],
                                   capture_output=True, text=True, check=True).stdout
                for ns in NAMESPACES},
        "roles": roles,
        "canary": canary,
        "runs": sorted(p.name for p in reports.glob("*") if not p.name.startswith("journal"))
        if reports.exists() else [],
    }


def _method(path: Path) -> list[str]:
    loaded = yaml.safe_load(path.read_text())  # JSON is YAML
    return [a["name"] for a in loaded["method"] if a.get("type") == "action"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", _experiments())
def test_a_dry_run_changes_nothing(lab: dict[str, Any], name: str, mode: str) -> None:
    env = lab["env"]
    path = lab["files"].get(name) or ROOT / "experiments" / name
    journal = Path(env["GAMEDAY_REPORTS"]).parent / f"journal-dry-{mode}.json"
    if mode == "plan":
        proc = gameday("plan", str(path), env=env, check=False, timeout=120)
    else:
        proc = subprocess.run([str(BIN / "chaos"), "--no-version-check", "run", "--dry", mode,
                               "--journal-path", str(journal), str(path)],
                              env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    out = proc.stdout + proc.stderr
    refused = name in REFUSED_ON_A_FRESH_LAB or (name == "foreign" and mode == "probes")
    if refused:
        assert proc.returncode == 1, out[-3000:]
        if name == "foreign":
            assert "foreign-fault: it is marked as a gameday fault, and `--dry probes` runs " \
                   "actions: it would inject for real" in out
        else:
            assert "no game day ran" in out or "is not the writable primary" in out or \
                "only Redis's Sentinels are asked so" in out, out[-3000:]
    else:
        assert proc.returncode == 0, out[-3000:]
        assert "plan: ready; nothing was injected, no canary row written" in out
    if mode != "plan":
        ran = json.loads(journal.read_text())
        if refused:
            # stopped with one line before the first activity
            assert ran["run"] == [] and ran["status"] == "failed"
            assert "gameday: the real run would refuse: " in out
        else:
            # the whole method walked, each step's result the plan where it ran
            assert [r["activity"]["name"] for r in ran["run"]] == _method(path)
            assert all(r["status"] == "succeeded" for r in ran["run"]), ran["run"]
            if mode == "actions":
                assert ran["steady_states"]["before"]["steady_state_met"] is True
        (ours,) = [e for e in ran["extensions"] if e["name"] == "gameday"]
        assert ours["dry"] is True and ours["plan"]["mode"] == mode
    assert not lab["evidence"].exists(), "the foreign fault ran"
    assert _state(env) == lab["before"], f"{name} under {mode} changed the lab"
