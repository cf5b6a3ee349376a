"""The bounded waits of the drill against a local storefront, fake databases and stored
timelines (no lab): each returns once what it waits for is there, fails naming what is
missing when its bound passes, and the hold judges only the rows stored since its last
check. The real lab runs them in tests/integration (test_game_day, test_long_drill,
test_autonomous)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from gameday.actions import wait
from gameday.drill import context as drills
from gameday.foundation.events import Kind
from gameday.measure import run as runs
from gameday.measure.store import timeline
from tests.unit import fakes


@pytest.fixture
def storefront() -> Iterator[dict[str, int]]:
    """A storefront whose /healthz answers `status["code"]`."""
    status = {"code": 200}
    answered: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            answered.append(status["code"])
            self.send_response(status["code"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    status["port"] = server.server_address[1]
    status["answered"] = answered  # type: ignore[assignment]
    yield status
    server.shutdown()
    server.server_close()


def lab_with(tmp_path: Path, storefront: dict[str, int]) -> Path:
    url = f"http://127.0.0.1:{storefront['port']}"
    return fakes.write_lab(tmp_path, storefront=(url, url))


def test_detection_returns_once_the_health_check_fails(tmp_path: Path,
                                                       storefront: dict[str, int]) -> None:
    lab_file = lab_with(tmp_path, storefront)
    stop = threading.Event()

    def fail_after_a_healthy_answer() -> None:
        # not on a timer: on a loaded machine the first request may come after any delay
        while not storefront["answered"] and not stop.wait(0.005):
            pass
        storefront["code"] = 503

    failer = threading.Thread(target=fail_after_a_healthy_answer)
    failer.start()
    try:
        out = wait.wait_for_detection("region-1", timeout_s=5,
                                      configuration={"lab_file": str(lab_file)})
    finally:
        stop.set()
        failer.join()
    answered = storefront["answered"]
    assert out["region"] == "region-1" and out["waited_s"] < 5
    # it asked while the region was healthy, and stopped at the first failed answer
    assert answered[0] == 200 and answered[-1] == 503 and answered.count(503) == 1


def test_detection_of_a_region_still_healthy_fails_at_its_bound(
        tmp_path: Path, storefront: dict[str, int]) -> None:
    lab_file = lab_with(tmp_path, storefront)
    with pytest.raises(ActivityFailed, match="region-1 still passes its health check after "
                                             "0.2 s: the fault did not take it down"):
        wait.wait_for_detection("region-1", timeout_s=0.2,
                                configuration={"lab_file": str(lab_file)})


def test_an_unreachable_storefront_counts_as_detected(tmp_path: Path) -> None:
    lab_file = fakes.write_lab(tmp_path)  # port 9: nothing listens
    out = wait.wait_for_detection("region-1", timeout_s=5,
                                  configuration={"lab_file": str(lab_file)})
    assert out["waited_s"] < 5


def test_the_waits_on_samples_need_the_control(tmp_path: Path) -> None:
    lab_file = fakes.write_lab(tmp_path)
    for action in (wait.wait_for_recovery, wait.hold_in_region):
        with pytest.raises(ActivityFailed, match="reads the recorder's samples: declare the "
                                                 "`gameday.control` control"):
            action(configuration={"lab_file": str(lab_file)})


# --- the standby after an HA manager's rejoin ---------------------------------------------


def test_wait_for_standby_returns_once_it_streams_and_records_the_rejoin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab_file = fakes.write_lab(tmp_path)
    dbs = fakes.FakeDatabases({"region-1": "standby", "region-2": "primary"}).install(monkeypatch)
    asked = []

    def streams_from(lab: Any, primary: Any, standby: Any, *, synchronous: bool = False) -> bool:
        asked.append((primary.name, standby.name, synchronous))
        return len(asked) >= 3

    monkeypatch.setattr(wait.postgres, "streams_from", streams_from)
    run = _run(tmp_path / "run", lab_file)
    out = wait.wait_for_standby("region-1", "region-2", timeout_s=5,
                                configuration={"lab_file": str(lab_file)})
    # the fake lab is sync: the standby must stream as the synchronous one
    assert asked == [("region-2", "region-1", True)] * 3
    assert (out["region"], out["source"]) == ("region-1", "region-2")
    (resynced,) = run.events(Kind.RESYNCED)
    assert '"method": "rejoin"' in resynced.detail
    assert dbs.calls == []


def test_wait_for_standby_that_never_streams_fails_naming_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab_file = fakes.write_lab(tmp_path)
    fakes.FakeDatabases({"region-1": "standby", "region-2": "primary"}).install(monkeypatch)
    with pytest.raises(ActivityFailed, match="region-1 does not stream from region-2 as its "
                                             "synchronous standby after 0.3 s: did its HA "
                                             "member rejoin?"):
        wait.wait_for_standby("region-1", "region-2", timeout_s=0.3,
                              configuration={"lab_file": str(lab_file)})


# --- the hold in the secondary region ---------------------------------------------------


def _run(run_dir: Path, lab_file: Path) -> runs.Run:
    run_dir.mkdir()
    timeline.create(run_dir, {"run_id": "r", "anchor_ns": 1})
    run = runs.Run(run_dir, timeline.Clock(1))
    drills.publish(fakes.drill(lab_file, run=run))
    return run


def _served(run: runs.Run, *, by: str = "region-2", ok: int = 1) -> None:
    """One global request and one canary write, served by `by`, stored now."""
    out = timeline.BatchWriter(run.dir)
    now = run.now()
    out.add(timeline.HttpSample(now, "global", ok, 200 if ok else None, by, "198.18.0.12", 0.01,
                                0.0, None if ok else "ConnectError"))
    out.add(timeline.CanaryAttempt(int(now * 1000), 0, now, now if ok else None,
                                   "ok" if ok else "failed", "127.0.0.1", None, None))
    out.flush()
    out.close()


def test_a_hold_served_throughout_passes_and_records_its_start_and_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gameday.measure.store import queries

    size = queries.size

    def slow_size(run_dir: Path) -> int:
        time.sleep(0.02)  # as a loaded machine may take: the start must not move with it
        return size(run_dir)

    monkeypatch.setattr(queries, "size", slow_size)
    lab_file = fakes.write_lab(tmp_path)
    run = _run(tmp_path / "run", lab_file)
    _served(run)
    stop = threading.Event()

    def serve() -> None:
        while not stop.wait(0.01):
            _served(run)

    feeder = threading.Thread(target=serve)
    feeder.start()
    try:
        out = wait.hold_in_region("region-2", hold_s=0.5, check_interval_s=0.25,
                                  max_outage_s=5, configuration={"lab_file": str(lab_file)})
    finally:
        stop.set()
        feeder.join()
    assert out["held_s"] >= 0.5 and out["checks"] >= 2 and out["failed"] == 0
    (start,) = run.events(Kind.HOLD_START)
    (end,) = run.events(Kind.HOLD_END)
    assert '"hold_s": 0.5' in start.detail and '"checks_failed": 0' in end.detail
    assert end.t - start.t == pytest.approx(out["held_s"], abs=1e-3)


def test_a_hold_counts_a_check_that_saw_failures_and_still_holds(tmp_path: Path) -> None:
    """Requests served elsewhere (or not at all) since the last check fail that check; the
    hold goes on while region-2 served something within max_outage_s."""
    lab_file = fakes.write_lab(tmp_path)
    run = _run(tmp_path / "run", lab_file)
    _served(run)  # stored before the hold: not the hold's to judge
    # after the hold starts, before its first check: a request region-1 served
    timer = threading.Timer(0.03, lambda: _served(run, by="region-1"))
    timer.start()
    try:
        out = wait.hold_in_region("region-2", hold_s="0.3", check_interval_s="0.1",
                                  max_outage_s="5", configuration={"lab_file": str(lab_file)})
    finally:
        timer.cancel()
    assert out["checks"] >= 2 and out["failed"] == out["checks"]
    end = run.events(Kind.HOLD_END)[0].detail
    # the first check failed, on the request region-1 served (the later ones saw nothing)
    assert '"first_failed_check_s": 0.1' in end


def test_a_hold_with_nothing_served_for_max_outage_fails_and_still_records_its_end(
        tmp_path: Path) -> None:
    lab_file = fakes.write_lab(tmp_path)
    run = _run(tmp_path / "run", lab_file)
    with pytest.raises(ActivityFailed, match="region-2 served no global request and "
                                             "acknowledged no canary write for 0 s during the "
                                             "hold \\(max_outage_s 0.15\\)"):
        wait.hold_in_region("region-2", hold_s=30, check_interval_s=0.1, max_outage_s=0.15,
                            configuration={"lab_file": str(lab_file)})
    assert len(run.events(Kind.HOLD_END)) == 1
