"""The application canary's read-back and classification (issue 23): the numbers are read
back through the application, paged, and each attempt gets the database canary's Jepsen
classes from the same accounting (measure.store.writes).

The application is the lab's storefront, its real HTTP server and handlers, over an
in-memory datastore at its `Store` seam (its PostgreSQL and Redis stores need the lab:
tests/integration/test_app_canary_lab.py). Read-backs that break the contract are a tiny
real HTTP server of the test's own."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gameday.foundation.errors import TargetError
from gameday.foundation.settings import ReadBack
from gameday.measure import app_canary
from gameday.measure.app_canary import Where
from gameday.measure.store.timeline import CanaryAttempt
from tests.unit.test_storefront_canary import MemoryStore, serving

START = app_canary.start_seq(1_765_000_000 * 10**9)  # a run's first number
PAGED = ReadBack(target="/canary?since={since}&limit={limit}", page_size=3)


@pytest.fixture
def shop() -> Iterator[tuple[MemoryStore, Where]]:
    """The storefront, serving region-1 on a free port of 127.0.0.1."""
    store = MemoryStore()
    with serving(store) as url:
        yield store, Where(base_url=url, host="shop.gameday.test", timeout_s=2)


def attempt(seq: int, outcome: str, t: float) -> CanaryAttempt:
    return CanaryAttempt(seq=seq, writer=seq % 2, t_send=t, t_ack=t + 0.01 if outcome == "ok"
                         else None, outcome=outcome, server="region-1", error=None,
                         notice=None)


def test_the_start_is_above_every_earlier_run_and_exact_in_json() -> None:
    first = app_canary.start_seq(1_765_000_000 * 10**9)
    assert first == 1_765_000_000_000_000 and app_canary.start_seq() > first
    assert app_canary.start_seq() < 2**53


def test_each_attempt_is_classified_from_the_storefront_s_read_back(shop: Any) -> None:
    store, where = shop
    with httpx.Client(trust_env=False) as client:
        for seq in range(START, START + 10):
            assert client.post(f"{where.base_url}/canary/{seq}").status_code == 201
    store.seqs[START - 5] = "an earlier run"  # below this run's start: not this run's
    store.seqs[START + 20] = "someone else"  # above it, never sent by this canary
    del store.seqs[START + 6], store.seqs[START + 8]  # gone in the failover
    attempts = [attempt(START + i, "ok", 1.0 + i) for i in range(7)] + [
        attempt(START + 7, "unknown", 8.0),  # timed out, yet stored: recovered
        attempt(START + 8, "unknown", 9.0),  # timed out, not stored
        attempt(START + 9, "failed", 9.5),  # refused, yet stored: unexpected
    ]
    with httpx.Client(trust_env=False) as client:
        read = app_canary.read_back(client, where, PAGED, START - 1, most=len(attempts) + 5)
    assert sorted(read) == [*range(START, START + 6), START + 7, START + 9, START + 20]
    found = app_canary.classify(attempts, read, t_fault=7.5, start=START)
    w = found.accounting
    assert (w.attempted, w.acked, w.lost, w.recovered, w.unknown_absent, w.unexpected,
            w.duplicate) == (10, 7, 1, 1, 1, 2, 0)
    assert w.lost_seqs == (START + 6,)
    # acknowledged at 7.01, before the fault at 7.5 and after the last survivor (6.01)
    assert w.rpo_s == pytest.approx(7.5 - 6.01) and w.lost_after_fault == 0
    assert found.read_back == 9 and found.never_sent == (START + 20,)
    assert found.notes() == [f"the read-back returned 1 number(s) the application canary "
                             f"never sent (first: {START + 20}), counted unexpected: it "
                             "reads something other than the canary's writes"]


def test_all_read_back_none_lost_and_the_same_classes_as_the_database_canary(
        shop: Any) -> None:
    store, where = shop
    for seq in range(START, START + 7):
        store.seqs[seq] = "w"
    attempts = [attempt(seq, "ok", float(seq - START)) for seq in range(START, START + 7)]
    with httpx.Client(trust_env=False) as client:
        read = app_canary.read_back(client, where, PAGED, START - 1, most=7)
    found = app_canary.classify(attempts, read, t_fault=3.5, start=START)
    assert found.accounting.counts() == found.accounting.counts().__class__(
        attempted=7, acked=7, lost=0, recovered=0, unknown_absent=0, unexpected=0,
        duplicate=0)
    assert found.never_sent == () and found.notes() == []


def test_a_read_back_that_does_not_answer_is_one_line(shop: Any) -> None:
    store, where = shop
    store.down = True  # the storefront answers 503
    with httpx.Client(trust_env=False) as client, \
            pytest.raises(TargetError, match=r"read-back GET http://127\.0\.0\.1:\d+/canary\?"
                                             r"since=41&limit=3 answered 503, not 200"):
        app_canary.read_page(client, where, PAGED, 41)
    closed = Where(base_url="http://127.0.0.1:9", timeout_s=0.5)  # discard: nothing listens
    with httpx.Client(trust_env=False) as client, \
            pytest.raises(TargetError, match=r"does not answer \(ConnectError\): check "
                                             r"app_canary.read_back") as err:
        app_canary.read_page(client, closed, PAGED, 41)
    assert "\n" not in str(err.value)


# --- read-backs that break the contract -------------------------------------------------


def serve(answer: Callable[[str], tuple[int, Any]]) -> Iterator[Where]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status, body = answer(self.path)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield Where(base_url=f"http://127.0.0.1:{server.server_port}", timeout_s=2)
    finally:
        server.shutdown()
        server.server_close()


def since_of(path: str) -> int:
    return int(path.split("since=")[1].split("&")[0])


@pytest.mark.parametrize(("answer", "message"), [
    # ignores since: returns everything from the start every time
    (lambda path: (200, {"seqs": [1, 2, 3], "next": None}),
     r"returned 1, not above since=41: it must return only the numbers above since"),
    # a next that does not move on would read the same page for ever
    (lambda path: (200, {"seqs": [since_of(path) + 1], "next": since_of(path)}),
     r"said the next page starts after 41, which does not move past its page"),
    (lambda path: (200, {"seqs": [], "next": 50}), r"does not move past its page"),
    (lambda path: (200, {"numbers": [42]}), r'did not answer \{"seqs": \[numbers\], "next"'),
    (lambda path: (200, {"seqs": ["42"], "next": None}), r'did not answer \{"seqs"'),
    (lambda path: (200, {"seqs": [True], "next": None}), r'did not answer \{"seqs"'),
    (lambda path: (200, {"seqs": [2**53], "next": None}), r'did not answer \{"seqs"'),
    (lambda path: (200, b"<html>ok</html>"), r'did not answer \{"seqs"'),
    (lambda path: (404, {"error": "not found"}), r"answered 404, not 200"),
    # endless numbers: more than the canary sent
    (lambda path: (200, {"seqs": [since_of(path) + 1, since_of(path) + 2],
                         "next": since_of(path) + 2}),
     r"returned more than 10 numbers above since=41, more than the canary sent"),
])
def test_a_read_back_that_breaks_its_contract_is_named_in_one_line(
        answer: Callable[[str], tuple[int, Any]], message: str) -> None:
    for where in serve(answer):
        with httpx.Client(trust_env=False) as client, \
                pytest.raises(TargetError, match=message) as err:
            app_canary.read_back(client, where, PAGED, 41, most=10)
        assert "\n" not in str(err.value)


def test_a_number_read_back_twice_is_a_duplicate() -> None:
    pages = {41: {"seqs": [START, START + 1, START + 1], "next": START + 1},
             START + 1: {"seqs": [START + 2], "next": None}}
    for where in serve(lambda path: (200, pages[since_of(path)])):
        with httpx.Client(trust_env=False) as client:
            read = app_canary.read_back(client, where, PAGED, 41, most=10)
    attempts = [attempt(START + i, "ok", float(i)) for i in range(3)]
    found = app_canary.classify(attempts, read, t_fault=None, start=START)
    w = found.accounting
    assert (w.acked, w.lost, w.duplicate, w.unexpected) == (3, 0, 1, 0)
    # a number of an earlier run (below this run's start) is not this run's
    read[START - 3] = 1
    again = app_canary.classify(attempts, read, t_fault=None, start=START)
    assert again.never_sent == () and again.read_back == found.read_back == 3


def test_a_path_goes_to_the_global_name_and_a_url_as_it_is() -> None:
    seen: list[tuple[str, str | None]] = []

    class Recording(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen.append((str(request.url), request.headers.get("Host")))
            return httpx.Response(200, json={"seqs": [], "next": None})

    where = Where(base_url="http://198.18.0.11:8080", host="shop.gameday.test")
    with httpx.Client(transport=Recording()) as client:
        app_canary.read_back(client, where, PAGED, 7, most=1)
        app_canary.read_back(client, where, ReadBack(
            target="https://api.example/canary?after={since}"), 7, most=1)
    assert seen == [("http://198.18.0.11:8080/canary?since=7&limit=3", "shop.gameday.test"),
                    ("https://api.example/canary?after=7", "api.example")]
