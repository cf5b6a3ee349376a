"""The documented webhook carries the numbers: chaoslib's own notifier, configured from
experiments/chaostoolkit-settings.yaml, POSTs a run's journal to a local HTTP receiver, and
the received payload holds RTO/RPO in the gameday extension. The same settings file drives
a real `chaos --settings ... run` in tests/integration/test_ctk_native.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from chaoslib.notification import RunFlowEvent, notify

from gameday.report import outputs
from tests.fixtures.report import fixture_run

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "experiments" / "chaostoolkit-settings.yaml"


class Receiver:
    """A webhook receiver on 127.0.0.1: keeps every JSON body it was POSTed."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/game-day"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def settings_for(url: str) -> dict[str, Any]:
    """The documented settings, pointed at `url`."""
    settings = yaml.safe_load(SETTINGS.read_text())
    (channel,) = settings["notifications"]
    assert channel["type"] == "http"
    assert set(channel["events"]) == {"run-completed", "run-failed", "run-deviated"}
    channel["url"] = url
    return settings


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_the_webhook_payload_carries_rto_and_rpo(tmp_path: Path, receiver: Receiver) -> None:
    run_dir = fixture_run.build(tmp_path / "reports" / fixture_run.RUN_ID)
    journal: dict[str, Any] = {"status": "completed", "deviated": False}
    summary = outputs.write_run_outputs(run_dir, journal)
    notify(settings_for(receiver.url), RunFlowEvent.RunCompleted, journal)
    notify(settings_for(receiver.url), RunFlowEvent.RunStarted, journal)  # not subscribed
    assert [b["name"] for b in receiver.bodies] == ["run-completed"]
    (ours,) = [e for e in receiver.bodies[0]["payload"]["extensions"] if e["name"] == "gameday"]
    assert ours["rto_s"] == summary["rto_s"] is not None
    assert ours["rpo_s"] == summary["rpo_s"] and ours["lost_writes"] == 0
    assert ours["verdict"] == "pass"
