"""The application canary's writers (measure.app_canary.AppWriters), as the recorder runs
them: each write resolves the global name through a real DNS server (a UDP responder on
loopback), goes to the address it answers with the global name as Host, and lands in the
storefront's real HTTP server (over an in-memory datastore at its `Store` seam); every
attempt is stored in a real timeline on the run's clock. A failover is played by the test:
region-1's datastore goes down, then DNS answers region-2's address."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.message
import dns.rrset
import pytest

from gameday.foundation.errors import TargetError
from gameday.foundation.settings import AppCanary, ReadBack, WriteTemplate
from gameday.foundation.settings import app_canary as parse_app_canary
from gameday.labs import storefront
from gameday.measure import app_canary
from gameday.measure.app_canary import AppWriters, GlobalName
from gameday.measure.store import queries, reader, timeline
from tests.unit import fakes
from tests.unit.test_storefront_canary import MemoryStore

NAME = "shop.gameday.test"
START = app_canary.start_seq(1_765_000_000 * 10**9)


class Region:
    def __init__(self, name: str, host: str) -> None:
        self.store = MemoryStore()
        self.server = storefront._Server((host, 0), name, self.store)
        self.host, self.port = host, self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def regions() -> Iterator[tuple[Region, Region]]:
    one, two = Region("region-1", "127.0.0.1"), Region("region-2", "127.0.0.2")
    try:
        yield one, two
    finally:
        one.close()
        two.close()


@pytest.fixture
def resolver() -> Iterator[tuple[int, list[str]]]:
    """The caching resolver: answers the A records in the list (none: an empty answer)."""
    answer = ["127.0.0.1"]

    def reply(data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        if answer:
            response.answer.append(dns.rrset.from_text_list(
                query.question[0].name, 1, "IN", "A", list(answer)))
        return response.to_wire()

    with fakes.udp_responder(reply) as port:
        yield port, answer


def global_name(port: int, *regions: Region, named: bool = True) -> GlobalName:
    """`named`: DNS's addresses known as regions (the lab's); else the region is only what
    the answer's X-Region says (a service behind a load balancer)."""
    return GlobalName(name=NAME, resolver=("127.0.0.1", port),
                      served_as={r.host: ("http", r.port) for r in regions},
                      regions={r.host: r.server.region for r in regions} if named else {})


def new_run(tmp_path: Path) -> tuple[Path, timeline.Clock]:
    anchor_ns, utc = timeline.Clock.new_anchor()
    timeline.create(tmp_path, {"anchor_ns": anchor_ns, "anchor_utc": utc,
                               "app_start_seq": START})
    return tmp_path, timeline.Clock(anchor_ns)


def seen(out: timeline.BatchWriter, error: str | None, region: str | None = None,
         timeout_s: float = 10.0) -> None:
    """Wait until the writers recorded an attempt that failed with `error` (None: one
    acknowledged, by `region`): a loaded machine is slow to start them, so each phase of a
    test ends on what it waited for, not on a timer."""
    deadline = time.monotonic() + timeout_s
    while not any(row.error == error and (region is None or row.region == region)
                  for row in list(out.pending["app_canary"])):
        assert time.monotonic() < deadline, f"no attempt with error {error!r} ({region})"
        time.sleep(0.01)


def write(run_dir: Path, clock: timeline.Clock, canary: AppCanary, name: GlobalName | None,
          play: Callable[[timeline.BatchWriter], None]) -> AppWriters:
    """Run the writers while `play` runs (in a thread), then stop them as the recorder does."""
    out = timeline.BatchWriter(run_dir)
    writers = AppWriters(canary, clock, out, start_seq=START,
                         where=None if name is None else
                         (lambda: name.where(0.5, canary.deadline_s)))

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(writers.run(stop))
        await asyncio.to_thread(play, out)
        stop.set()
        await task

    asyncio.run(main())
    out.close()
    return writers


CANARY = AppCanary(write=WriteTemplate(method="POST", target="/canary/{seq}",
                                       headers=(("X-Canary-Writer", "w{writer}"),)),
                   read_back=ReadBack(page_size=7), writers=2, deadline_s=1.0)


def attempts(run_dir: Path) -> list[Any]:
    tl, _ = reader.open_run(run_dir)
    try:
        return tl.app_attempts()
    finally:
        tl.close()


def test_writes_go_through_the_global_name_and_follow_dns_to_the_other_region(
        tmp_path: Path, regions: tuple[Region, Region],
        resolver: tuple[int, list[str]]) -> None:
    one, two = regions
    port, answer = resolver
    run_dir, clock = new_run(tmp_path)
    marks: dict[str, float] = {}

    def failover(out: timeline.BatchWriter) -> None:
        seen(out, None, "region-1")
        one.store.down = True  # region-1's datastore gone: its storefront answers 503
        marks["down"] = clock.now()
        seen(out, "HTTP 503")
        answer[:] = ["127.0.0.2"]  # DNS now sends users to region-2
        marks["moved"] = clock.now()
        seen(out, None, "region-2")

    writers = write(run_dir, clock, CANARY, global_name(port, one, two, named=False),
                    failover)
    rows = attempts(run_dir)
    by = {(r.server, r.outcome) for r in rows}
    assert by == {("region-1", "ok"), ("region-1", "unknown"), ("region-2", "ok")}
    # every number from the start sent once (a writer that took one as the stop came sends
    # nothing more: at most one number a writer left out), each attempt on the run's clock
    seqs = sorted(r.seq for r in rows)
    assert len(set(seqs)) == len(seqs) and seqs[0] == START
    assert seqs[-1] < START + len(seqs) + CANARY.writers
    assert writers.acked == sum(r.outcome == "ok" for r in rows)
    for r in rows:
        assert r.t_send > 0 and (r.t_ack is None or r.t_ack >= r.t_send)
        if r.server == "region-2":
            assert r.t_send >= marks["down"]
    refused = [r for r in rows if r.outcome == "unknown"]
    assert all(r.error == "HTTP 503" for r in refused)
    # the template's {writer} reached the application, and nothing but the acked was stored
    stored = {**one.store.seqs, **two.store.seqs}
    assert set(stored) == {r.seq for r in rows if r.outcome == "ok"}
    assert all(stored[r.seq] == f"w{r.writer}" for r in rows if r.outcome == "ok")

    # read back through the application, paged by 7, into the timeline
    where, region = global_name(port, one, two).where(0.5, 1.0)  # DNS's region
    assert region == "region-2"
    two.store.seqs.update(one.store.seqs)  # region-2 had everything replicated
    del two.store.seqs[max(one.store.seqs)]  # but the last write region-1 acknowledged
    n = app_canary.snapshot(run_dir, where, CANARY.read_back, clock.now())
    assert n == len(stored) - 1 and queries.app_attempted(run_dir) == len(rows)
    tl, _ = reader.open_run(run_dir)
    try:
        read = tl.app_read_back()
    finally:
        tl.close()
    assert read is not None and set(read) == set(stored) - {max(one.store.seqs)}


def test_each_kind_of_failure_is_the_outcome_a_user_would_have(
        tmp_path: Path, regions: tuple[Region, Region],
        resolver: tuple[int, list[str]]) -> None:
    """No address from DNS and a refused connection never reached the application: failed.
    A 4xx was refused by it: failed. A 5xx may have stored it: unknown."""
    one, _ = regions
    port, answer = resolver
    run_dir, clock = new_run(tmp_path)
    closed = Region("region-2", "127.0.0.2")
    closed.close()  # its port now refuses connections
    bad = AppCanary(write=WriteTemplate(target="/canary/{seq}",
                                        headers=(("X-Canary-Writer", "not a writer {writer}"),)),
                    read_back=ReadBack(), writers=1, deadline_s=1.0)

    def play(out: timeline.BatchWriter) -> None:
        seen(out, "HTTP 400")
        answer.clear()
        seen(out, "DNS: no address")
        answer[:] = ["127.0.0.2"]
        seen(out, "ConnectError")

    write(run_dir, clock, bad, global_name(port, one, closed), play)
    errors = {(r.outcome, r.error) for r in attempts(run_dir)}
    assert ("failed", "HTTP 400") in errors  # the storefront refuses that writer's name
    assert ("failed", "DNS: no address") in errors
    assert ("failed", "ConnectError") in errors
    assert {o for o, _ in errors} == {"failed"}


def test_a_write_unanswered_at_the_stop_is_recorded_unknown_never_dropped(
        tmp_path: Path) -> None:
    """A number sent and never recorded would read back as one the canary never sent."""
    release, arrived = threading.Event(), threading.Event()

    class Hangs(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            arrived.set()
            release.wait(5)
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hangs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run_dir, clock = new_run(tmp_path)
    url = AppCanary(write=WriteTemplate(target=f"http://127.0.0.1:{server.server_port}/c/{{seq}}"),
                    read_back=ReadBack(), writers=1, deadline_s=5.0)
    try:
        out = timeline.BatchWriter(run_dir)
        writers = AppWriters(url, clock, out, start_seq=START, where=None)

        async def main() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(writers.run(stop))
            assert await asyncio.to_thread(arrived.wait, 10)
            # the recorder's own bound passed: it records the write in flight and moves on
            assert writers.give_up_in_flight() == 1
            release.set()  # the server answers now, and would take more writes
            await asyncio.sleep(0.3)
            stop.set()
            await task

        asyncio.run(main())
        out.close()
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    # and nothing is sent after it: the recorder's last rows follow
    (first,) = attempts(run_dir)
    assert (first.seq, first.outcome, first.t_ack, first.error) == (
        START, "unknown", None, "unanswered when the recorder stopped")


def test_a_read_back_that_fails_after_the_drill_is_recorded_and_one_line(
        tmp_path: Path) -> None:
    run_dir, clock = new_run(tmp_path)
    with pytest.raises(TargetError, match=r"^the application canary's read-back GET "
                                          r"http://127.0.0.1:9/canary\?since=.* does not "
                                          r"answer \(ConnectError\)"):
        app_canary.snapshot(run_dir, app_canary.Where(base_url="http://127.0.0.1:9"),
                            ReadBack(), clock.now())
    meta = timeline.read_meta(run_dir)
    assert "does not answer" in meta["app_read_error"]


def test_the_configuration_reaches_the_recorder_whole_and_the_meta_without_header_values(
        ) -> None:
    raw = {"app_canary": {"write": {"method": "PUT", "url": "https://shop.example/c/{seq}",
                                    "body": '{"seq": {seq}}',
                                    "headers": {"Authorization": "Bearer s3cret"}},
                          "read_back": {"path": "/c?since={since}", "page_size": 50},
                          "writers": 3, "deadline_s": 2.5}}
    parsed = parse_app_canary(raw)
    assert parsed is not None
    assert parse_app_canary({"app_canary": parsed.as_config()}) == parsed
    recorded = parsed.as_config(header_values=False)
    assert "s3cret" not in str(recorded)
    assert recorded["write"]["headers"] == {"Authorization": "(not recorded)"}
