"""The storefront's application-canary endpoints over HTTP: `POST /canary/{seq}` stores a
number once (201, then 200 for a repeat), `GET /canary?since=&limit=` pages them back, and
a malformed request gets a 4xx and changes nothing.

The datastore is an in-memory `Store` here: the seam between the HTTP side and the real
stores. The real PostgreSQL and Redis behind it are checked on the netns lab
(tests/integration/test_app_canary_lab.py)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gameday.labs import storefront


class MemoryStore:
    def __init__(self) -> None:
        self.seqs: dict[int, str] = {}
        self.down = False
        self.calls = 0

    def not_writable(self) -> str | None:
        return "down" if self.down else None

    def products(self) -> list[dict[str, Any]]:
        return [{"id": 1, "name": "umbrella", "price_cents": 1999}]

    def order(self, product_id: int, quantity: int, region: str) -> int:
        if product_id != 1:
            raise storefront.UnknownProduct()
        return 1

    def canary_write(self, seq: int, writer: str, region: str) -> bool:
        self.calls += 1
        if self.down:
            raise storefront.Unavailable("redis unavailable: ConnectionError")
        if seq in self.seqs:
            return False
        self.seqs[seq] = writer
        return True

    def canary_since(self, since: int, limit: int) -> list[int]:
        if self.down:
            raise storefront.Unavailable("redis unavailable: ConnectionError")
        return sorted(s for s in self.seqs if s > since)[:limit]


@contextlib.contextmanager
def serving(store: Any, server_class: type[storefront._Server] = storefront._Server
            ) -> Iterator[str]:
    """The storefront over `store`, serving region-1 on a free port of 127.0.0.1 in a
    thread of its own until the block ends: yields its URL (the other unit suites of the
    application canary use it too)."""
    server = server_class(("127.0.0.1", 0), "region-1", store)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def served() -> Iterator[tuple[httpx.Client, MemoryStore]]:
    store = MemoryStore()
    with serving(store) as url, httpx.Client(base_url=url, timeout=5) as client:
        yield client, store


def test_a_write_is_stored_once_and_a_repeat_is_acknowledged(served: Any) -> None:
    client, store = served
    first = client.post("/canary/7", headers={"X-Canary-Writer": "w-1"})
    again = client.post("/canary/7", headers={"X-Canary-Writer": "w-2"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.headers["X-Region"] == again.headers["X-Region"] == "region-1"
    assert first.json() == {"seq": 7, "stored": True, "region": "region-1"}
    assert again.json()["stored"] is False
    assert store.seqs == {7: "w-1"}


def test_read_back_pages_in_order_until_next_is_null(served: Any) -> None:
    client, _ = served
    for seq in (5, 0, 3, 9, 2):
        assert client.post(f"/canary/{seq}").status_code == 201
    pages, since = [], -1
    while since is not None:
        answer = client.get(f"/canary?since={since}&limit=2")
        assert answer.status_code == 200 and answer.headers["X-Region"] == "region-1"
        body = answer.json()
        pages.append(body["seqs"])
        since = body["next"]
    assert pages == [[0, 2], [3, 5], [9]]
    assert client.get("/canary").json() == {"seqs": [0, 2, 3, 5, 9], "next": None}
    assert client.get("/canary?since=9").json() == {"seqs": [], "next": None}


@pytest.mark.parametrize(("method", "path", "status", "says"), [
    ("POST", "/canary/-1", 400, "from 0 to"),
    ("POST", "/canary/007", 400, "in decimal"),
    ("POST", "/canary/9007199254740992", 400, "from 0 to 9007199254740991"),
    ("POST", "/canary/1e3", 400, "integer"),
    ("POST", "/canary", 400, "POST /canary/{seq}"),
    ("GET", "/canary/5", 405, "use POST"),
    ("PUT", "/canary/5", 405, "use POST"),
    ("GET", "/canary?sinse=5", 400, "unknown parameter 'sinse'"),
    ("GET", "/canary?since=5&since=6", 400, "once each"),
    ("GET", "/canary?since=-2", 400, "since must be"),
    ("GET", "/canary?limit=0", 400, "limit must be"),
    ("GET", "/canary?limit=10001", 400, "limit must be"),
    ("GET", "/canary?since", 400, "malformed query string"),
])
def test_a_malformed_request_is_refused_and_changes_nothing(
        served: Any, method: str, path: str, status: int, says: str) -> None:
    client, store = served
    answer = client.request(method, path)
    assert answer.status_code == status
    assert says in answer.json()["error"]
    assert answer.headers["X-Region"] == "region-1"
    assert store.seqs == {} and store.calls == 0


def test_a_bad_writer_header_is_refused_before_the_store(served: Any) -> None:
    client, store = served
    answer = client.post("/canary/1", headers={"X-Canary-Writer": "a b"})
    assert answer.status_code == 400 and "X-Canary-Writer" in answer.json()["error"]
    assert store.calls == 0


def test_an_unavailable_store_is_503_not_an_acknowledgement(served: Any) -> None:
    client, store = served
    store.down = True
    write = client.post("/canary/1")
    assert write.status_code == 503 and "unavailable" in write.json()["error"]
    assert write.headers["X-Region"] == "region-1"
    assert client.get("/canary").status_code == 503
    health = client.get("/healthz")
    assert (health.status_code, health.text) == (503, "down")


def test_the_old_endpoints_answer_as_before(served: Any) -> None:
    client, _ = served
    assert (client.get("/healthz").status_code, client.get("/healthz").text) == (200, "ok")
    assert client.get("/whoami").json() == {"region": "region-1"}
    assert client.get("/products").json()[0]["name"] == "umbrella"
    assert client.post("/orders", json={"product_id": 1}).status_code == 201
    assert client.post("/orders", json={"product_id": 2}).status_code == 400
    assert client.post("/orders", json={"product_id": 1, "quantity": 0}).status_code == 400
    assert client.post("/orders", content=b"nope").status_code == 400
    assert client.get("/nowhere").status_code == 404


def test_a_body_too_long_ends_the_connection(served: Any) -> None:
    client, store = served
    answer = client.post("/canary/1", content=b"x" * (storefront.MAX_BODY + 1))
    assert answer.status_code == 413 and answer.headers["Connection"] == "close"
    assert store.calls == 0


def test_a_missing_configuration_names_the_variable() -> None:
    with pytest.raises(ValueError, match="set STOREFRONT_REDIS"):
        storefront.make_store("redis-sentinel", {})
    with pytest.raises(ValueError, match="set STOREFRONT_CONNECT"):
        storefront.make_store("postgresql", {})


def test_every_answer_leaves_at_once_not_after_the_client_s_delayed_ack() -> None:
    """The handler writes the headers and the body apart: with Nagle on, the body waited
    for the client's delayed ACK (about 40 ms on Linux) on a keep-alive connection, and
    every answer of the lab's storefronts, the canaries' writes and the samplers'
    requests, came 40 ms late (bench/bench_app_canary.py: one writer 11/s). Each
    connection the server accepts has TCP_NODELAY."""
    import socket

    seen: list[int] = []

    class Server(storefront._Server):
        def finish_request(self, request: Any, client_address: Any) -> None:
            super().finish_request(request, client_address)
            seen.append(request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    with serving(MemoryStore(), Server) as url, httpx.Client(base_url=url) as client:
        assert client.post("/canary/7").status_code == 201
    assert seen and all(seen), seen
