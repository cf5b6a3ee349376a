"""Reading the HA manager's keys (postgres/dcs.py, and the recorder's leader-key sampler)
against a small stand-in for etcd v3's JSON gateway on loopback (etcd itself runs only in
the lab's witness namespace: tests/integration/test_autonomous.py), and the recorder's
schedule and DNS sampler against a real UDP responder. No root, no lab."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import dns.message
import dns.rrset
import pytest

from gameday.foundation.descriptor import Dcs, Ha
from gameday.foundation.errors import TargetError
from gameday.measure import samplers
from gameday.measure.store.timeline import DnsSample, HaSample
from gameday.postgres import dcs
from tests.unit import fakes


class Etcd:
    """What the fake etcd holds and was asked."""

    def __init__(self, *, auth: bool) -> None:
        self.auth = auth
        self.keys: dict[str, str] = {}
        self.tokens: set[str] = set()
        self.authenticated = 0
        self.ranges = 0


@pytest.fixture
def etcd() -> Iterator[tuple[Etcd, int]]:
    state = Etcd(auth=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/v3/auth/authenticate":
                if (body["name"], body["password"]) != ("gameday-reader", "s3cret"):
                    return self._reply(400, {"error": "authentication failed"})
                state.authenticated += 1
                token = f"token-{state.authenticated}"
                state.tokens.add(token)
                return self._reply(200, {"token": token})
            if state.auth and self.headers.get("Authorization") not in state.tokens:
                return self._reply(401, {"error": "invalid auth token"})
            state.ranges += 1
            key = base64.b64decode(body["key"]).decode()
            if key not in state.keys:
                return self._reply(200, {"header": {}})
            return self._reply(200, {"kvs": [{
                "key": body["key"], "value": base64.b64encode(state.keys[key].encode()).decode(),
                "mod_revision": "7", "lease": "99"}]})

        def _reply(self, code: int, data: dict[str, Any]) -> None:
            raw = json.dumps(data).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    dcs._tokens.clear()
    yield state, server.server_address[1]
    server.shutdown()
    server.server_close()
    dcs._tokens.clear()


def ha(port: int, *, user: str | None = "gameday-reader", password: str = "s3cret") -> Ha:
    return Ha(manager="patroni", scope="gameday",
              dcs=Dcs(kind="etcd3", address="127.0.0.1", port=port, username=user,
                      password=password if user else None))


def test_a_key_is_read_with_one_token_kept_across_reads(etcd: tuple[Etcd, int]) -> None:
    state, port = etcd
    state.keys["/service/gameday/leader"] = "region-1"
    assert dcs.read(ha(port), "/service/gameday/leader") == "region-1"
    assert dcs.read(ha(port), "/service/gameday/nothing") is None
    assert (state.authenticated, state.ranges) == (1, 2)


def test_an_expired_token_is_replaced_once(etcd: tuple[Etcd, int]) -> None:
    state, port = etcd
    state.keys["/service/gameday/leader"] = "region-2"
    dcs.read(ha(port), "/service/gameday/leader")
    state.tokens.clear()  # etcd forgot it (a restart, a TTL)
    assert dcs.read(ha(port), "/service/gameday/leader") == "region-2"
    assert state.authenticated == 2


def test_a_dcs_without_authentication_is_read_without_a_token(etcd: tuple[Etcd, int]) -> None:
    state, port = etcd
    state.auth = False
    state.keys["/service/gameday/leader"] = "region-1"
    assert dcs.auth_request(ha(port, user=None)) is None
    assert dcs.read(ha(port, user=None), "/service/gameday/leader") == "region-1"
    assert state.authenticated == 0


def test_a_dcs_that_refuses_or_does_not_answer_is_a_target_error(
        etcd: tuple[Etcd, int]) -> None:
    _, port = etcd
    with pytest.raises(TargetError, match=f"the DCS at 127.0.0.1:{port} does not answer "
                                          r"\(HTTPStatusError\)"):
        dcs.read(ha(port, password="wrong"), "/service/gameday/leader")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    free = closed.getsockname()[1]
    closed.close()
    with pytest.raises(TargetError, match="does not answer"):
        dcs.read(ha(free), "/service/gameday/leader", timeout_s=0.5)
    with pytest.raises(TargetError, match="names no DCS to read"):
        dcs.read(Ha(manager="external"), "/x")


def test_patronis_sync_key_names_its_synchronous_standby(etcd: tuple[Etcd, int]) -> None:
    state, port = etcd
    assert dcs.patroni_sync(ha(port)) == {}
    state.keys["/service/gameday/sync"] = json.dumps({"leader": "region-2",
                                                      "sync_standby": "region-1"})
    assert dcs.patroni_sync(ha(port))["sync_standby"] == "region-1"
    state.keys["/service/gameday/sync"] = "not json"
    assert dcs.patroni_sync(ha(port)) == {}


# --- the recorder's samplers --------------------------------------------------------------


class Rows(list):  # type: ignore[type-arg]
    """Stands in for the timeline's BatchWriter: the rows a sampler added, in order."""

    def add(self, row: Any) -> None:
        self.append(row)


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()


def _lab_with_etcd(port: int) -> Any:
    class Lab:
        pass

    lab = Lab()
    lab.ha = ha(port)  # type: ignore[attr-defined]
    return lab


def test_the_leader_key_sampler_records_who_holds_it_and_when_no_one_does(
        etcd: tuple[Etcd, int]) -> None:
    state, port = etcd
    state.keys["/service/gameday/leader"] = "region-1"
    rows = Rows()

    async def sample_three() -> None:
        sampler = samplers.LeaderKeySampler(_lab_with_etcd(port), MonotonicClock(), rows, 2.0)
        await sampler.sample(1.0, 0.0)
        del state.keys["/service/gameday/leader"]
        await sampler.sample(2.0, 0.0)
        state.tokens.clear()  # an expired token: this sample fails, the next gets a new one
        await sampler.sample(3.0, 0.0)
        await sampler.sample(4.0, 0.0)
        await sampler.close()

    asyncio.run(sample_three())
    assert rows == [
        HaSample(1.0, "etcd", 1, "region-1", '{"mod_revision": "7", "lease": "99"}', None),
        HaSample(2.0, "etcd", 1, None, None, None),
        HaSample(3.0, "etcd", 0, None, None, "HTTPStatusError"),
        HaSample(4.0, "etcd", 1, None, None, None),
    ]
    assert state.authenticated == 2


@pytest.fixture
def dns_server() -> Iterator[tuple[int, list[str]]]:
    """A UDP responder for any name: the A records in the list (none: an empty answer)."""
    answer = ["198.18.0.12"]

    def reply(data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        if answer:
            response.answer.append(dns.rrset.from_text_list(
                query.question[0].name, 1, "IN", "A", answer))
        return response.to_wire()

    with fakes.udp_responder(reply) as port:
        yield port, answer


def test_the_dns_sampler_records_the_answer_an_empty_one_and_no_answer(
        dns_server: tuple[int, list[str]]) -> None:
    port, answer = dns_server
    rows = Rows()
    sampler = samplers.DnsSampler("resolver", "127.0.0.1", port, "shop.gameday.test",
                                  MonotonicClock(), rows, 1.0)
    asyncio.run(sampler.sample(1.0, 0.001))
    answer.clear()
    asyncio.run(sampler.sample(2.0, 0.0))
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # receives, never answers
    try:
        mute = samplers.DnsSampler("authoritative", "127.0.0.1", silent.getsockname()[1],
                                   "shop.gameday.test", MonotonicClock(), rows, 0.2)
        asyncio.run(mute.sample(3.0, 0.0))
    finally:
        silent.close()
    first, empty, timeout = rows
    assert (first.t, first.server, first.ok, first.answer, first.rcode, first.ttl,
            first.lateness) == (1.0, "resolver", 1, "198.18.0.12", "NOERROR", 1, 0.001)
    assert (empty.ok, empty.answer, empty.rcode) == (0, "", "NOERROR")
    assert isinstance(timeout, DnsSample) and (timeout.ok, timeout.error) == (0, "Timeout")


def test_every_keeps_a_drift_free_schedule_and_skips_the_slots_it_missed() -> None:
    """Samples are due at start + k × interval whatever each one takes (the due instant is
    the sample's time minus its lateness); a sample that blocks the loop past several slots
    makes the schedule skip them, not bunch them up."""
    seen: list[tuple[float, float]] = []

    async def drill() -> None:
        stop = asyncio.Event()
        clock = MonotonicClock()

        async def sample(t: float, lateness: float) -> None:
            seen.append((t, lateness))
            if len(seen) == 3:
                time.sleep(0.12)  # blocks the loop for six slots and more
            if len(seen) == 6:
                stop.set()

        await asyncio.wait_for(samplers.every(0.02, clock, sample, stop), 5)

    asyncio.run(drill())
    assert len(seen) == 6
    start = seen[0][0] - seen[0][1]
    slots = [(t - lateness - start) / 0.02 for t, lateness in seen]
    assert all(abs(k - round(k)) < 1e-6 for k in slots)  # every sample at its slot
    k = [round(x) for x in slots]
    # slot 3 was already scheduled when the block came: sampled late; the slots the block
    # covered after it are skipped
    assert k[:4] == [0, 1, 2, 3] and seen[3][1] >= 0.08 and k[4] >= 8
    assert all(b > a for a, b in zip(k, k[1:], strict=False))
