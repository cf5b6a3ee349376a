"""Chaos Toolkit-native results on the real netns lab, in one lab session:

1. `gameday plan experiments/game-day.json` prints each fault's change and undo and changes
   nothing: the fault ledger, every lab namespace's nftables ruleset, the lab's process ids
   and the canary table's row count are the same before and after.
2. A real game day from the YAML experiment with the sync var file, the database password
   given only through the experiment's `secrets` (the descriptor it reads has none), and
   the documented webhook settings pointed at a local HTTP receiver: the journal has RTO/RPO
   in the verdict probes' outputs and in its `gameday` extension, the webhook received them,
   and the password is in no file of the run, the journal, the log, the output or the
   notification."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from gameday import cli
from tests.integration.conftest import BIN, ROOT, SharedLab, gameday, lab_pids, residue
from tests.unit.test_notifications import Receiver, settings_for


def _state(env: dict[str, str]) -> dict[str, Any]:
    """Everything a plan must leave as it found it."""
    lab = json.loads(Path(env["GAMEDAY_LAB"]).read_text())
    ledger = Path(env["GAMEDAY_LAB"]).parent / "faults.jsonl"
    nft = {}
    for ns in ("gd-region-1", "gd-region-2", "gd-dns"):
        nft[ns] = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"],
                                 capture_output=True, text=True, check=True).stdout
    db = lab["database"]
    dsn = (f"host={lab['regions'][0]['db_host']} port={db['port']} dbname={db['name']} "
           f"user={db['user']} password={db['password']} connect_timeout=5")
    with psycopg.connect(dsn, autocommit=True) as conn:
        table = db.get("canary_table", "gameday_canary")
        row = conn.execute(f"SELECT count(*), coalesce(max(seq), 0) FROM {table}").fetchone()
    return {"ledger": ledger.read_text() if ledger.exists() else None, "nft": nft,
            "pids": sorted(lab_pids(env)), "canary": tuple(row or ())}


@pytest.mark.takes_shared_lab_down
def test_plan_changes_nothing_then_a_secrets_only_yaml_run_reports_numbers(
        shared_lab: dict[str, str], labs: SharedLab, tmp_path: Path) -> None:
    lab_env = shared_lab

    # 1. plan mode on the real lab
    before = _state(lab_env)
    plan = gameday("plan", "experiments/game-day.json", env=lab_env, check=False, timeout=120)
    print(plan.stdout)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "check: readiness gate passed" in plan.stdout
    assert "fault scale-to-zero on region-1:" in plan.stdout
    assert '"stopped": ["storefront-region-1", "postgres-region-1"]' in plan.stdout
    assert "fault block-egress on region-1:" in plan.stdout
    assert "fault cordon on region-1: not applicable here" in plan.stdout
    after = _state(lab_env)
    assert after == before, "the plan changed the lab"
    assert before["canary"][0] >= 0 and len(before["pids"]) >= 7
    print(f"plan: ledger {before['ledger']!r}, pids {before['pids']}, canary rows "
          f"{before['canary']}, nft rules per namespace "
          f"{ {ns: len(r.splitlines()) for ns, r in before['nft'].items()} } (unchanged)")

    # 2. the password only through secrets: a descriptor without it, beside the lab's
    lab_file = Path(lab_env["GAMEDAY_LAB"])
    descriptor = json.loads(lab_file.read_text())
    password = descriptor["database"].pop("password")
    no_password = lab_file.with_name("lab-without-password.json")
    no_password.write_text(json.dumps(descriptor, indent=2))
    experiment = yaml.safe_load((ROOT / "experiments" / "game-day.yaml").read_text())
    experiment["secrets"] = {"gameday": {"db_password": {"type": "env",
                                                         "key": "GAMEDAY_DB_PASSWORD"}}}
    experiment_file = tmp_path / "game-day-secrets.yaml"
    experiment_file.write_text(yaml.safe_dump(experiment, sort_keys=False))
    receiver = Receiver()
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump(settings_for(receiver.url)))
    journal_path = Path(lab_env["GAMEDAY_REPORTS"]) / "journal-secrets.json"
    env = {**lab_env, "GAMEDAY_LAB": str(no_password), "GAMEDAY_DB_PASSWORD": password}
    try:
        proc = subprocess.run(
            [str(BIN / "chaos"), "--no-version-check", "--settings", str(settings), "run",
             "--var-file", str(ROOT / "experiments" / "vars" / "sync.yaml"),
             "--journal-path", str(journal_path), str(experiment_file)],
            env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    finally:
        receiver.close()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]

    journal = json.loads(journal_path.read_text())
    (ours,) = [e for e in journal["extensions"] if e["name"] == "gameday"]
    summary = json.loads((Path(ours["run_dir"]) / "summary.json").read_text())
    assert ours["rto_s"] == summary["rto_s"] and 0 < ours["rto_s"] < 30
    assert ours["rpo_s"] == summary["rpo_s"] == 0 and ours["lost_writes"] == 0
    outputs = {p["activity"]["name"]: (p["output"], p["activity"]["tolerance"])
               for p in journal["steady_states"]["after"]["probes"]}
    rto, rto_tolerance = outputs["rto-within-target"]
    assert rto == summary["rto_s"] and rto_tolerance["range"] == [0, 30]
    assert outputs["rpo-within-target"][0] == 0 and outputs["lost-writes-within-target"][0] == 0
    assert outputs["no-unexpected-or-duplicate-rows"][0] == 0
    assert journal["steady_states"]["before"]["probes"][2]["output"] == 0  # RTO before a fault
    print("journal after-probes:", json.dumps({k: v[0] for k, v in outputs.items()}))
    print("journal extension:", json.dumps({k: ours[k] for k in (
        "verdict", "rto_s", "rto_error_s", "write_rto_s", "rpo_s", "lost_writes", "targets")}))

    # the real run as JUnit (schema-checked) and as a node-exporter textfile
    from tests.unit.test_junit_prometheus import _families, _xmllint

    xml, prom = tmp_path / "junit.xml", tmp_path / "gameday.prom"
    gameday("report", ours["run_dir"], "--junit", str(xml), "--prometheus", str(prom),
            env=lab_env)
    check = _xmllint(xml)
    print(xml.read_text(), check.stderr)
    assert check.returncode == 0 and "validates" in check.stderr, check.stderr
    assert 'failures="0"' in xml.read_text()
    metrics = {}
    for name, samples in _families(prom.read_text()).items():
        if name in ("gameday_phase_seconds", "gameday_dns_resolver_flip_seconds"):
            continue  # a sample per phase, per resolver (a label of their own)
        (sample,) = samples  # labelled with this run's drill and experiment (the YAML game day)
        assert sample.labels == {"lab": "netns", "drill": "failover", "experiment": "game-day"}
        metrics[name] = sample.value
    assert metrics["gameday_rto_seconds"] == ours["rto_s"] and metrics["gameday_verdict"] == 1

    # the webhook got the journal, numbers included
    events = [b["name"] for b in receiver.bodies]
    assert events == ["run-completed"], events
    (hooked,) = [e for e in receiver.bodies[0]["payload"]["extensions"] if e["name"] == "gameday"]
    assert hooked["rto_s"] == ours["rto_s"] and hooked["rpo_s"] == 0

    # the password, given only through secrets, is nowhere
    secret = password.encode()
    places = [(p, p.read_bytes()) for p in Path(ours["run_dir"]).rglob("*") if p.is_file()]
    places += [(journal_path, journal_path.read_bytes()), (no_password, no_password.read_bytes()),
               (Path("chaos output"), output.encode()),
               (Path("webhook"), json.dumps(receiver.bodies).encode())]
    log = ROOT / "chaostoolkit.log"
    if log.exists():
        places.append((log, log.read_bytes()))
    assert len(places) >= 8
    leaked = [str(p) for p, data in places if secret in data]
    assert not leaked, f"the password appears in {leaked}"
    # and never on a command line: the recorder read it from its stdin
    assert json.loads((Path(ours["run_dir"]) / "recorder.json").read_text())["secrets_on_stdin"]
    assert os.environ.get("GAMEDAY_DB_PASSWORD") is None

    # `gameday recover` after such a run: the descriptor alone has no password, so it stops
    # with one line naming the way; with the experiment it reads the password from its
    # secrets and reaches both databases (one writable primary, nothing to undo)
    refused = gameday("recover", env=env, check=False)
    assert refused.returncode == cli.EXIT_CONFIG and "--experiment FILE" in refused.stderr, \
        refused.stderr  # a configuration error: exit 3
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    recovered = gameday("recover", "--experiment", str(experiment_file), env=env)
    assert recovered.stdout.strip() == "recover: nothing to undo", recovered.stdout
    assert password not in refused.stderr + recovered.stdout + recovered.stderr

    # region-2 serves now: the lab goes down (the next test gets a fresh one), all of it
    pids = lab_pids(lab_env)
    labs.down()
    assert residue(lab_env, pids) == []
