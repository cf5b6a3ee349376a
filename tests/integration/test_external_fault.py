"""A fault from another Chaos Toolkit extension: a plain `process` action marked
`"gameday": {"fault": true, "region": "region-1"}` kills region-1's storefront and database
by pid. gameday injects nothing itself, yet t_fault exists, the fault is seen in effect by
the region's failed health check, and RTO is measured; the report says whose job the
rollback is."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from tests.integration.conftest import ROOT, chaos, gameday


def test_a_process_action_marked_as_a_fault_is_measured(lab_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    gameday("lab", "up", env=lab_env)
    try:
        pids = json.loads(gameday("lab", "status", env=lab_env).stdout)["processes"]
        exp = copy.deepcopy(json.loads((ROOT / "experiments" / "game-day.json").read_text()))
        exp["title"] = "Region-1 is lost to another extension's fault"
        outage = {
            "type": "action", "name": "kill-region-1",
            "gameday": {"fault": True, "region": "region-1"},
            "provider": {"type": "process", "path": "sh", "arguments": [
                "-c", f"kill -KILL {pids['storefront-region-1']}; "
                      f"kill -QUIT {pids['postgres-region-1']}"]},
        }
        exp["method"] = [outage if a["name"] == "region-1-outage" else a for a in exp["method"]]
        assert [a["name"] for a in exp["method"]][0] == "kill-region-1"
        path = tmp_path / "external-fault.json"
        path.write_text(json.dumps(exp))

        proc = chaos(str(path), env=lab_env)
        latest = Path(lab_env["GAMEDAY_REPORTS"]) / "latest"
        summary = json.loads((latest / "summary.json").read_text())
        assert proc.returncode == 0, proc.stdout[-3000:]
        [fault] = summary["faults"]
        assert fault["fault"] == "kill-region-1" and fault["external"] is True
        assert fault["region"] == "region-1" and fault["applied_s"] == 0.0
        # in effect when region-1's /healthz first failed: the recorder's own evidence
        assert fault["effective_s"] is not None and 0 <= fault["effective_s"] < 2
        assert summary["rto_s"] is not None and 0 < summary["rto_s"] < 30
        assert summary["writes"]["lost"] == 0 and summary["verdict"] == "pass"
        # gameday injected nothing: its ledger is empty
        ledger = Path(lab_env["GAMEDAY_HOME"]) / "faults.jsonl"
        assert not ledger.exists() or not ledger.read_text().strip()
        report = (latest / "report.md").read_text()
        assert "Injected by another Chaos Toolkit extension: kill-region-1" in report
        assert "that extension's job" in report
    finally:
        gameday("lab", "down", env=lab_env, check=False)
