"""The health-check gate decides as Route 53 does: a threshold of checks in a row in both
directions, a region healthy while one endpoint is, the secondary only while the primary is
unhealthy and it is healthy. Its HTTP check runs against a real server here; the rounds run
with the checks and PowerDNS's reload stood in for (the lab's integration test runs it for
real, tests/integration/test_dns_profile.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.rdatatype
import dns.zone
import pytest

from gameday.labs.netns import dnsprofile, healthgate
from gameday.labs.netns.healthgate import EndpointHealth, active_region

# -- one endpoint --------------------------------------------------------------------------


def states(results: str, threshold: int) -> str:
    """The endpoint's state after each check ('+' passed, '-' failed): 'H' or 'U'."""
    health = EndpointHealth()
    out = ""
    for r in results:
        health.record(r == "+", "", threshold=threshold)
        out += "H" if health.healthy else "U"
    return out


def test_the_first_check_decides_then_a_threshold_in_a_row_in_both_directions():
    assert states("+--+---", 3) == "HHHHHHU"
    assert states("-++-+++", 3) == "UUUUUUH"
    assert states("+-+-+-+-", 3) == "HHHHHHHH"  # flapping never reaches the threshold
    assert states("+-", 1) == "HU"  # threshold 1: ifurlup's rule
    assert states("++--++", 2) == "HHHUUH"


def test_record_says_when_the_state_changed():
    health = EndpointHealth()
    assert health.record(True, "HTTP 200", threshold=2)  # unknown -> healthy
    assert not health.record(False, "refused", threshold=2)
    assert health.record(False, "refused", threshold=2)
    assert health.healthy is False and health.last == "refused"


def test_failover_record_rule():
    def active(r1: bool, r2: bool) -> str:
        return active_region({"region-1": r1, "region-2": r2}, primary="region-1",
                             secondary="region-2")

    assert active(True, True) == "region-1"
    assert active(True, False) == "region-1"
    assert active(False, True) == "region-2"
    assert active(False, False) == "region-1"  # Route 53: both unhealthy answers the primary


def test_a_region_is_healthy_while_one_endpoint_is():
    up, down = EndpointHealth(healthy=True), EndpointHealth(healthy=False)
    assert healthgate.region_healthy([down, up])
    assert not healthgate.region_healthy([down, down])
    assert not healthgate.region_healthy([EndpointHealth()])  # not checked yet


# -- one HTTP check, against a real server ---------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.hosts.append(self.headers.get("Host", ""))  # type: ignore[attr-defined]
        status, body = {"/ok": (200, b"ok"), "/down": (503, b"database not writable"),
                        "/other": (200, b"nope"), "/moved": (302, b"ok"),
                        "/big": (200, b"x" * 6000 + b"ok")}.get(self.path, (404, b""))
        if self.path == "/slow":
            time.sleep(1.0)
            status, body = 200, b"ok"
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the check gave up first (its timeout)


@pytest.fixture
def httpd() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.hosts = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(httpd: ThreadingHTTPServer) -> int:
    return int(httpd.server_address[1])


def _check(port: int, path: str, timeout_s: float = 0.5) -> tuple[bool, str]:
    return healthgate.check("127.0.0.1", port=port, path=path, host="shop.gameday.test",
                            match="ok", timeout_s=timeout_s)


def test_a_check_passes_on_2xx_or_3xx_with_the_string(server: int):
    assert _check(server, "/ok") == (True, "HTTP 200")
    assert _check(server, "/moved") == (True, "HTTP 302")


def test_a_check_fails_on_status_string_timeout_or_refusal(server: int):
    assert _check(server, "/down") == (False, "HTTP 503")
    assert _check(server, "/other") == (False, "HTTP 200 without 'ok'")
    assert _check(server, "/big") == (False, "HTTP 200 without 'ok'")  # past 5120 bytes
    started = time.monotonic()
    ok, reason = _check(server, "/slow", timeout_s=0.3)
    assert not ok and "Timeout" in reason
    assert time.monotonic() - started < 0.6  # the timeout bounds the whole check
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    ok, reason = _check(free, "/ok")
    assert not ok and "ConnectionRefused" in reason


def test_a_check_sends_the_global_name_as_host(httpd: ThreadingHTTPServer, server: int):
    _check(server, "/ok")
    assert httpd.hosts == [f"shop.gameday.test:{server}"]  # type: ignore[attr-defined]


# -- the zone ------------------------------------------------------------------------------


def _config(tmp_path: Path, *, database_ipv6: bool = True,
            **profile: Any) -> healthgate.GateConfig:
    return dnsprofile.gate_config(tmp_path, dnsprofile.DnsProfile(**profile), ttl_s=60,
                                  interval_s=30, database_ipv6=database_ipv6)


def _records(text: str) -> dict[tuple[str, str], set[str]]:
    zone = dns.zone.from_text(text, relativize=False)
    found: dict[tuple[str, str], set[str]] = {}
    for name, rdataset in zone.iterate_rdatasets():
        found[(str(name).rstrip("."), dns.rdatatype.to_text(rdataset.rdtype))] = \
            {r.to_text() for r in rdataset}
    return found


def test_the_zone_answers_the_active_region_with_every_address(tmp_path: Path):
    config = _config(tmp_path, region_addresses=2, ipv6=True, health_failures=3)
    records = _records(healthgate.render_zone(config, active="region-2", serial=7))
    assert records[("shop.gameday.test", "A")] == {"198.18.0.12", "198.18.0.201"}
    assert records[("shop.gameday.test", "AAAA")] == {"2001:2::12", "2001:2::201"}
    assert "7" in next(iter(records[("gameday.test", "SOA")])).split()
    assert ("region-1.shop.gameday.test", "A") not in records


def test_with_cname_the_global_name_points_at_the_region_name(tmp_path: Path):
    config = _config(tmp_path, cname=True)
    records = _records(healthgate.render_zone(config, active="region-1", serial=1))
    assert records[("shop.gameday.test", "CNAME")] == {"region-1.shop.gameday.test."}
    assert records[("region-1.shop.gameday.test", "A")] == {"198.18.0.11"}
    assert records[("region-2.shop.gameday.test", "A")] == {"198.18.0.12"}  # always there
    assert ("shop.gameday.test", "A") not in records
    flipped = _records(healthgate.render_zone(config, active="region-2", serial=2))
    assert flipped[("shop.gameday.test", "CNAME")] == {"region-2.shop.gameday.test."}


def test_the_ttl_is_the_lab_s(tmp_path: Path):
    zone = dns.zone.from_text(healthgate.render_zone(_config(tmp_path, cname=True),
                                                     active="region-1", serial=1),
                              relativize=False)
    ttls = {rdataset.ttl for _, rdataset in zone.iterate_rdatasets()}
    assert ttls == {60}


# -- rounds ----------------------------------------------------------------------------------


class Scripted:
    """Each round's check results per region ('+' passes), and PowerDNS's reloads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, config: healthgate.GateConfig) -> None:
        self.up = {region: True for region in config.regions}
        self.reloads = 0
        address_region = {a: r for r, addresses in config.regions.items() for a in addresses}

        def check(address: str, **_: Any) -> tuple[bool, str]:
            ok = self.up[address_region[address]]
            return ok, "HTTP 200" if ok else "ConnectionRefusedError"

        def reload_zone(_: healthgate.GateConfig) -> str | None:
            self.reloads += 1
            return None

        monkeypatch.setattr(healthgate, "check", check)
        monkeypatch.setattr(healthgate, "reload_zone", reload_zone)


def test_the_answer_flips_at_the_threshold_th_failed_round_and_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "dns").mkdir()
    config = _config(tmp_path, region_addresses=2, cname=True, health_failures=3)
    world = Scripted(monkeypatch, config)
    gate = healthgate.Gate(config)
    healthgate.write_zone(config, active="region-1", serial=1)
    zone = Path(config.zone_file)
    world.up["region-2"] = False  # a standby: its storefronts answer 503
    gate.check_round()
    assert gate.active == "region-1" and world.reloads == 0
    world.up = {"region-1": False, "region-2": True}  # region-1 lost, region-2 promoted
    actives = []
    for _ in range(4):
        gate.check_round()
        actives.append(gate.active)
    # region-1 unhealthy at its 3rd failure; region-2 healthy at its 3rd pass: round 4
    assert actives == ["region-1", "region-1", "region-2", "region-2"]
    assert world.reloads == 1
    assert "CNAME region-2.shop.gameday.test." in zone.read_text()
    status = healthgate.read_status(Path(config.status_file))
    assert status is not None and status["active"] == "region-2"
    assert [c["active"] for c in status["changes"]] == ["region-2"]
    assert status["changes"][0]["round"] == 4 and "reloaded_monotonic" in status["changes"][0]
    world.up = {"region-1": True, "region-2": True}
    actives = []
    for _ in range(3):
        gate.check_round()
        actives.append(gate.active)
    assert actives == ["region-2", "region-2", "region-1"]  # the primary again, when healthy
    assert "CNAME region-1.shop.gameday.test." in zone.read_text()


def test_both_regions_down_keeps_the_primary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "dns").mkdir()
    config = _config(tmp_path, health_failures=2)
    world = Scripted(monkeypatch, config)
    gate = healthgate.Gate(config)
    world.up = {"region-1": False, "region-2": False}
    for _ in range(5):
        gate.check_round()
    assert gate.active == "region-1" and world.reloads == 0


def test_a_failed_reload_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "dns").mkdir()
    config = _config(tmp_path, health_failures=1)
    world = Scripted(monkeypatch, config)
    answers = iter(["pdns_control: connection refused", None])
    monkeypatch.setattr(healthgate, "reload_zone", lambda _: next(answers))
    gate = healthgate.Gate(config)
    gate.check_round()
    world.up = {"region-1": False, "region-2": True}
    gate.check_round()
    assert gate.active == "region-2" and gate.reload_pending
    gate.check_round()
    assert not gate.reload_pending


def test_rounds_keep_the_interval_on_the_monotonic_clock(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "dns").mkdir()
    config = healthgate.GateConfig.from_dict({**_config(tmp_path).to_dict(),
                                              "interval_s": 0.1})
    Scripted(monkeypatch, config)
    gate = healthgate.Gate(config)
    rounds: list[float] = []
    real = gate.check_round

    def timed() -> None:
        rounds.append(time.monotonic())
        if len(rounds) == 5:
            gate.stopping.set()
        real()

    gate.check_round = timed  # type: ignore[method-assign]
    gate.run()
    gaps = [b - a for a, b in zip(rounds, rounds[1:], strict=False)]
    assert len(gaps) == 4 and all(0.08 < g < 0.15 for g in gaps), gaps
