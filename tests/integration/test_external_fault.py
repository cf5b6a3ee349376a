"""A fault from another Chaos Toolkit extension: a plain `process` action marked
`"gameday": {"fault": true, "region": "region-1"}` kills region-1's storefront and database
by pid. gameday injects nothing itself, yet t_fault exists, the fault is seen in effect by
the region's failed health check, and RTO is measured; the report says whose job the
rollback is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import experiments as composed
from tests.integration.conftest import SharedLab, chaos, lab_status


@pytest.mark.takes_shared_lab_down
def test_a_process_action_marked_as_a_fault_is_measured(shared_lab: dict[str, str],
                                                        labs: SharedLab, tmp_path: Path) -> None:
    lab_env = shared_lab
    ledger = Path(lab_env["GAMEDAY_HOME"]) / "faults.jsonl"
    before = ledger.read_text() if ledger.exists() else ""
    try:
        pids = lab_status(lab_env)["processes"]
        exp = composed.game_day(
            title="Region-1 is lost to another extension's fault",
            outage=composed.process_outage(
                "kill-region-1", "sh", "-c", f"kill -KILL {pids['storefront-region-1']}; "
                                             f"kill -QUIT {pids['postgres-region-1']}"))
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
        # gameday injected nothing: not a line more in its ledger
        assert (ledger.read_text() if ledger.exists() else "") == before
        report = (latest / "report.md").read_text()
        assert "Injected by another Chaos Toolkit extension: kill-region-1" in report
        assert "that extension's job" in report
    finally:
        labs.down()  # region-1's processes were killed by the test's own fault
