"""The walking skeleton on the real lab: lab up, the game day through `chaos run`, the
summary, and a `lab down` that leaves nothing behind."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.integration.conftest import ROOT, chaos, gameday, lab_pids, residue

SUMMARY_KEYS = {"schema", "experiment", "run_id", "started_at", "lab", "verdict", "reasons",
                "targets", "rto_s", "rto_error_s", "write_rto_s", "downtime_s", "rpo_s",
                "phases", "writes", "replication", "faults", "failback"}


def test_chaos_run_without_a_lab_says_to_bring_it_up(lab_env: dict[str, str]) -> None:
    reports = Path(lab_env["GAMEDAY_REPORTS"])
    before = set(reports.glob("*")) if reports.exists() else set()
    proc = chaos("game-day.json", env=lab_env, timeout=120)
    assert proc.returncode != 0
    assert "gameday lab up" in proc.stdout + proc.stderr
    after = set(reports.glob("*")) if reports.exists() else set()
    assert after - before <= {reports / "journal.json"}, after - before  # no run started


def test_game_day_on_the_real_lab(lab_env: dict[str, str]) -> None:
    started = time.monotonic()
    gameday("lab", "up", env=lab_env)
    up_s = time.monotonic() - started
    pids = lab_pids(lab_env)
    assert len(pids) >= 7, pids  # 2 databases, 2 proxies, 2 storefronts, pdns, unbound

    again = gameday("lab", "up", env=lab_env, check=False)
    assert again.returncode != 0 and "already up" in again.stderr

    proc = chaos("game-day.json", env=lab_env)
    output = proc.stdout + proc.stderr
    latest = Path(lab_env["GAMEDAY_REPORTS"]) / "latest"
    summary = json.loads((latest / "summary.json").read_text())
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["schema"] == "gameday.summary/v1" and summary["lab"] == "netns"
    # RTO measured from a real failover, under 30 s
    assert summary["rto_s"] is not None and 0 < summary["rto_s"] < 30, summary
    assert summary["rto_error_s"] is not None and summary["rto_error_s"] < 0.5
    phases = summary["phases"]
    assert phases["detection_s"] is not None and phases["promotion_s"] is not None
    # clients reach region-2 only after the resolver hands out its address
    assert phases["dns_resolver_s"] is not None and phases["dns_authoritative_s"] is not None
    assert phases["dns_resolver_s"] <= summary["rto_s"] + summary["rto_error_s"]
    assert phases["first_success_s"] <= summary["rto_s"]
    # the canary wrote through the failover; no integrity failure
    w = summary["writes"]
    assert w["acked"] > 100 and w["unexpected"] == 0 and w["duplicate"] == 0
    # known answer: synchronous replication loses no acknowledged write
    assert summary["replication"]["mode"] == "sync" and w["lost"] == 0
    assert {f["fault"] for f in summary["faults"]} == {"scale-to-zero", "cordon", "block-egress"}
    # the verdict agrees with the targets, and the exit code with the verdict
    t = summary["targets"]
    meets = (summary["rto_s"] <= t["rto_s"] and summary["rpo_s"] <= t["rpo_s"]
             and w["lost"] <= t["max_lost_writes"])
    assert summary["verdict"] == ("pass" if meets else "fail"), summary
    assert (proc.returncode == 0) == (summary["verdict"] == "pass"), output[-3000:]
    assert (latest / "report.md").read_text().startswith("# Game day ")
    # the rollback left region-1 fenced: its health check fails, DNS stays on region-2
    status = json.loads(gameday("lab", "status", env=lab_env).stdout)
    assert status["processes"]["postgres-region-1"], "region-1's database was not restarted"
    lab = json.loads(Path(lab_env["GAMEDAY_LAB"]).read_text())
    import httpx
    assert httpx.get(lab["regions"][0]["storefront_url"] + "/healthz",
                     trust_env=False).status_code == 503

    # the database password never leaves the descriptor: not in the run's files, the
    # journal, the logs or anything the run printed
    password = lab["database"]["password"].encode()
    outputs = [(p, p.read_bytes()) for p in latest.resolve().rglob("*") if p.is_file()]
    outputs += [(Path("chaos output"), output.encode())]
    for log in (Path(lab_env["GAMEDAY_REPORTS"]) / "journal.json", ROOT / "chaostoolkit.log"):
        if log.exists():
            outputs.append((log, log.read_bytes()))
    assert len(outputs) >= 6
    leaked = [str(p) for p, data in outputs if password in data]
    assert not leaked, f"the password appears in {leaked}"

    pids = lab_pids(lab_env)
    started = time.monotonic()
    gameday("lab", "down", env=lab_env)
    down_s = time.monotonic() - started
    assert residue(lab_env, pids) == []
    nft = __import__("subprocess").run(["nft", "list", "tables"], capture_output=True, text=True)
    assert "gameday" not in nft.stdout
    print(f"lab up {up_s:.1f} s, lab down {down_s:.1f} s, RTO {summary['rto_s']} s")
