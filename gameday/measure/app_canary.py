"""The application canary's read-back and its write accounting (issue 23): what users lost,
asked of the application itself.

After the drill the numbers the application stored are read back through its own API,
paged (`GET /canary?since=SEQ`: docs/app-canary.md), and each attempt is classified with the
same Jepsen classes as the database canary's, by the same accounting
(`measure.store.writes.account_writes`): a write the application acknowledged and cannot
read back is lost, whatever its datastore says.

The writers (`AppWriters`, run by the recorder beside the database canary) send each write
as a user would: the global name resolved through the caching resolver before each write
(a stub resolver caches nothing), the request to the address it answered with the global
name as Host and TLS name, the template's `{seq}` and `{writer}` filled in. Every attempt is
recorded on the run's clock with the region that answered (X-Region): a 2xx is
acknowledged; a 4xx, or a request that never reached the application (no address, refused),
failed (not stored); no answer within the deadline, or a 5xx, unknown (maybe stored: the
storefront's 503 after a WAIT that timed out leaves the number on the master).

A read-back is trusted only as far as it keeps its contract, since a wrong one would turn
into silent loss or silent safety: every number must be above the `since` asked, a page
that says there is more must have moved on, and a number the canary never sent is named
(it is counted `unexpected`, as a row never attempted is for the database canary).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import httpx

from gameday.foundation.descriptor import Lab
from gameday.foundation.errors import TargetError
from gameday.foundation.settings import MAX_APP_SEQ, AppCanary, ReadBack
from gameday.measure.canary import start_writers
from gameday.measure.samplers import url_target
from gameday.measure.store import queries, timeline
from gameday.measure.store.timeline import AppCanaryAttempt, BatchWriter, CanaryAttempt, Clock
from gameday.measure.store.writes import WriteAccounting, account_writes

# the writers run this much nicer than the recorder's samplers (as the database canary's)
NICER = 10
# how long the resolver is given per write: a user's stub resolver gives up about as soon
RESOLVE_TIMEOUT_S = 1.0
# after a write that failed at once (no address, refused), before the next: no busy loop
FAILED_PAUSE_S = 0.01
# the errors of a request that never reached the application: nothing can have been stored
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol,
            httpx.LocalProtocolError, httpx.PoolTimeout)


def start_seq(now_ns: int | None = None) -> int:
    """The first number of a run's application canary: microseconds since the epoch, so
    that each run writes above every earlier one without asking the application (2^53 is
    reached in the year 2255), and a number stored above it before the canary starts was
    never sent by it."""
    return (time.time_ns() if now_ns is None else now_ns) // 1000


@dataclasses.dataclass(frozen=True, kw_only=True)
class Where:
    """Where the application answers a template that is a path: `base_url` (the global
    name's address as resolved), with the global name as Host and TLS name (`host`), as
    users send it. A template that is a whole URL goes there as it is."""

    base_url: str
    host: str | None = None
    verify: bool | str = True
    timeout_s: float = 5.0

    def url(self, target: str) -> str:
        return target if "://" in target else self.base_url.rstrip("/") + target


def read_page(client: httpx.Client, where: Where, read: ReadBack, since: int
              ) -> tuple[list[int], int | None]:
    """One page of the read-back: (numbers above `since`, the next page's since or None).
    TargetError, one line, when the endpoint does not answer or breaks its contract."""
    target = read.page(since)
    url = where.url(target)
    headers = dict(read.headers)
    extensions: dict[str, Any] = {}
    if where.host and "://" not in target:  # a path on the global name
        headers["Host"] = where.host
        extensions["sni_hostname"] = where.host
    try:
        answer = client.get(url, headers=headers, timeout=where.timeout_s,
                            extensions=extensions)
    except httpx.HTTPError as exc:
        raise TargetError(f"the application canary's read-back GET {url} does not answer "
                          f"({type(exc).__name__}): check app_canary.read_back and that the "
                          "service is up") from None
    if answer.status_code != 200:
        raise TargetError(f"the application canary's read-back GET {url} answered "
                          f"{answer.status_code}, not 200: check app_canary.read_back")
    try:
        body = answer.json()
    except ValueError:
        body = None
    seqs: Any = body.get("seqs") if isinstance(body, dict) else None
    nxt: Any = body.get("next", "missing") if isinstance(body, dict) else "missing"
    if not isinstance(seqs, list) or not all(_is_seq(s) for s in seqs) or \
            not (nxt is None or _is_seq(nxt)):
        raise TargetError(f"the application canary's read-back GET {url} did not answer "
                          '{"seqs": [numbers], "next": number or null}: return that '
                          "(docs/app-canary.md)")
    below = [s for s in seqs if s <= since]
    if below:
        raise TargetError(f"the application canary's read-back GET {url} returned "
                          f"{below[0]}, not above since={since}: it must return only the "
                          "numbers above since (it ignores since, or reads something else)")
    if nxt is not None and (not seqs or nxt < max(seqs)):
        raise TargetError(f"the application canary's read-back GET {url} said the next "
                          f"page starts after {nxt}, which does not move past its page: "
                          "make 'next' the last number returned")
    return seqs, nxt


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and \
        0 <= value <= MAX_APP_SEQ


def read_back(client: httpx.Client, where: Where, read: ReadBack, since: int, *,
              most: int) -> Counter[int]:
    """Every number the application returns above `since`, page by page, with how many
    times each came back (twice: a duplicate). `most` bounds the read: more numbers than
    the canary sent (and so more pages than they fill) is a read-back of something else,
    which would otherwise be read on for as long as it has numbers."""
    found: Counter[int] = Counter()
    page_since: int | None = since
    while page_since is not None:
        seqs, page_since = read_page(client, where, read, page_since)
        found.update(seqs)
        if found.total() > most:
            raise TargetError(f"the application canary's read-back returned more than "
                              f"{most} numbers above since={since}, more than the canary "
                              "sent: it reads something other than the canary's writes")
    return found


@dataclasses.dataclass(frozen=True, kw_only=True)
class AppWrites:
    """The application canary's writes classified: the accounting the database canary's
    report uses, and the numbers read back that it never sent."""

    accounting: WriteAccounting
    read_back: int
    never_sent: tuple[int, ...]

    def notes(self) -> list[str]:
        """What the report must say beside the counts."""
        if not self.never_sent:
            return []
        return [f"the read-back returned {len(self.never_sent)} number(s) the application "
                f"canary never sent (first: {self.never_sent[0]}), counted unexpected: it "
                "reads something other than the canary's writes"]


def classify(attempts: Iterable[CanaryAttempt], read: Mapping[int, int], *,
             t_fault: float | None, start: int, cutoff: float | None = None,
             live: bool = False) -> AppWrites:
    """Each attempt numbered from `start` classified against what was read back: acked,
    lost, recovered, unknown-absent, unexpected, duplicate (measure.store.writes). A
    `live` read (the writers still writing, read at `cutoff`, as the verdict probes read
    during the run) leaves out the attempts still in flight then, and judges no number as
    never sent (its attempt may not be flushed yet): the final read does."""
    rows = list(attempts)
    present = {seq: n for seq, n in read.items() if seq >= start}
    sent = {row.seq for row in rows}
    return AppWrites(
        accounting=account_writes(rows, present, t_fault=t_fault, start_seq=start,
                                  cutoff=cutoff, live=live),
        read_back=len(present),
        never_sent=() if live else tuple(sorted(seq for seq in present if seq not in sent)),
    )


# --- the writers ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class GlobalName:
    """How a user reaches the application: `name` resolved through the caching resolver at
    `resolver` (host, port), then the address it answers on the scheme and port of the
    region that has it (`served_as`), else plain http on `default_port`."""

    name: str
    resolver: tuple[str, int]
    served_as: Mapping[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    regions: Mapping[str, str] = dataclasses.field(default_factory=dict)  # address -> name
    default_port: int = 8080
    verify: bool | str = True

    @classmethod
    def of(cls, lab: Lab) -> GlobalName:
        served: dict[str, tuple[str, int]] = {}
        for region in lab.regions:
            scheme, _, port, _ = url_target(region.storefront_url)
            served[region.address] = (scheme, port)
        return cls(name=lab.dns.name, resolver=(lab.dns.resolver.ip(), lab.dns.resolver.port),
                   served_as=served, regions={r.address: r.name for r in lab.regions},
                   verify=lab.ca_bundle or True)

    def where(self, timeout_s: float, deadline_s: float) -> tuple[Where, str | None]:
        """Where a user is sent now, and the region DNS named (None: an address of no
        region). LookupError, one line, when the resolver answers no address."""
        query = dns.message.make_query(self.name, dns.rdatatype.A)
        try:
            response = dns.query.udp(query, self.resolver[0], port=self.resolver[1],
                                     timeout=timeout_s)
        except (dns.exception.DNSException, OSError) as exc:
            raise LookupError(f"DNS: {type(exc).__name__}") from None
        addresses = sorted(rr.address for rrset in response.answer
                           if rrset.rdtype == dns.rdatatype.A for rr in rrset)
        if not addresses:
            raise LookupError("DNS: no address")
        address = addresses[0]
        scheme, port = self.served_as.get(address, ("http", self.default_port))
        return (Where(base_url=f"{scheme}://{address}:{port}", host=self.name,
                      verify=self.verify, timeout_s=deadline_s), self.regions.get(address))


class _Slot:
    """A writer's write in flight, so that the recorder can record it `unknown` when it
    stops before the answer (a number sent and never recorded would read back as one the
    canary never sent). Whoever takes `pending` under the lock records the attempt."""

    __slots__ = ("lock", "pending")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: tuple[int, float, str | None] | None = None  # seq, t_send, region

    def take(self, add: Callable[[tuple[Any, ...]], None], row: AppCanaryAttempt) -> bool:
        """Record `row` unless the recorder already recorded the write as unknown."""
        with self.lock:
            if self.pending is None:
                return False
            self.pending = None
            add(row)
            return True


class AppWriters:
    """The application canary's writers: threads (each a plain blocking HTTP client, as
    the database canary's writers are), handing their attempts to the recorder's
    BatchWriter. `where` says where each write goes: GlobalName.where for a template that
    is a path (a user of the global name), nothing to resolve for a whole URL."""

    def __init__(self, canary: AppCanary, clock: Clock, out: BatchWriter, *, start_seq: int,
                 where: Callable[[], tuple[Where, str | None]] | None,
                 verify: bool | str = True) -> None:
        self.canary, self.clock, self.out = canary, clock, out
        self.where, self.verify = where, verify
        self._seq = itertools.count(start_seq)
        self._slots = [_Slot() for _ in range(canary.writers)]
        self._acked = [0] * canary.writers
        self._halt = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def acked(self) -> int:
        return sum(self._acked)

    async def run(self, stop: asyncio.Event) -> None:
        """Run the writers until `stop` is set; then record every write still in flight
        as unknown, so that what the recorder stores next is complete."""
        crashed: list[BaseException] = []
        self._threads = start_writers(self._writer, self.canary.writers, name="app-canary",
                                      nicer=NICER, halt=self._halt, crashed=crashed)
        try:
            await stop.wait()
        finally:
            self._halt.set()
        # a write in flight ends within its deadline; the recorder does not wait longer
        ends = time.monotonic() + self.canary.deadline_s + 0.5
        while any(t.is_alive() for t in self._threads) and time.monotonic() < ends:
            await asyncio.sleep(0.02)
        self.give_up_in_flight()
        if crashed:
            raise crashed[0]

    def give_up_in_flight(self) -> int:
        """Record each write still unanswered as unknown, and send no more (the recorder's
        last rows follow: a number sent after them would never be recorded); returns how
        many."""
        self._halt.set()  # before the locks: a writer that takes one next sends nothing
        n = 0
        for w, slot in enumerate(self._slots):
            with slot.lock:
                pending, slot.pending = slot.pending, None
            if pending is not None:
                seq, t_send, region = pending
                self.out.add(AppCanaryAttempt(seq, w, t_send, None, "unknown", region,
                                              "unanswered when the recorder stopped", None))
                n += 1
        return n

    def _writer(self, w: int) -> None:
        canary, slot, halt = self.canary, self._slots[w], self._halt
        now, add = self.clock.now, self.out.add
        with httpx.Client(trust_env=False, verify=self.verify,
                          timeout=httpx.Timeout(canary.deadline_s)) as client:
            while not halt.is_set():
                seq = next(self._seq)
                method, target, headers, body = canary.write.render(seq, w)
                t_send = now()
                region: str | None = None
                try:
                    if self.where is not None and "://" not in target:
                        where, region = self.where()
                    else:
                        where = Where(base_url="", timeout_s=canary.deadline_s)
                except LookupError as exc:
                    add(AppCanaryAttempt(seq, w, t_send, None, "failed", None, str(exc), None))
                    halt.wait(FAILED_PAUSE_S)
                    continue
                extensions: dict[str, Any] = {}
                if where.host and "://" not in target:
                    headers = {**headers, "Host": where.host}
                    extensions["sni_hostname"] = where.host
                with slot.lock:
                    if halt.is_set():
                        break  # stopped meanwhile: this number is never sent
                    slot.pending = (seq, t_send, region)
                try:
                    answer = client.request(method, where.url(target), headers=headers,
                                            content=body, extensions=extensions)
                except httpx.HTTPError as exc:
                    row = AppCanaryAttempt(seq, w, t_send, None,
                                           "failed" if isinstance(exc, NOT_SENT) else "unknown",
                                           region, type(exc).__name__, None)
                    pause = True
                else:
                    t_ack = now()
                    status = answer.status_code
                    region = answer.headers.get("x-region") or region
                    ok = 200 <= status < 300
                    row = AppCanaryAttempt(seq, w, t_send, t_ack if ok else None,
                                           "ok" if ok else "failed" if 400 <= status < 500
                                           else "unknown", region,
                                           None if ok else f"HTTP {status}", status)
                    pause = not ok
                if not slot.take(add, row):
                    continue  # the recorder stopped and recorded it unknown
                if row.outcome == "ok":
                    self._acked[w] += 1
                elif pause:
                    halt.wait(FAILED_PAUSE_S)


def snapshot(run_dir: Path, where: Where | None, read: ReadBack, t_read: float,
             *, verify: bool | str = True, live: bool = False) -> int:
    """Read the application canary's numbers back through the application into the
    timeline (`app_final_rows`), after its writers stopped (or, `live`, while they write:
    the verdict probes of a run whose application canary is its RPO measure); returns how
    many. A read-back that fails is recorded as the reason the application's losses are
    unknown, and raised (TargetError, one line)."""
    meta = timeline.read_meta(run_dir)
    start = int(meta["app_start_seq"])
    try:
        if where is None:
            raise TargetError("the application canary's read-back: the resolver answers "
                              "no address for the global name")
        with httpx.Client(trust_env=False, verify=verify) as client:
            found = read_back(client, where, read, start - 1,
                              most=queries.app_attempted(run_dir) + read.page_size)
    except TargetError as exc:
        timeline.discard_final_rows(run_dir, table=timeline.APP_FINAL_ROWS, meta={
            "app_read_error": str(exc), "app_read_t": t_read, "app_read_live": live})
        raise
    timeline.write_final_rows(run_dir, sorted(found.items()),
                              meta={"app_read_t": t_read, "app_read_from": where.base_url,
                                    "app_read_error": None, "app_read_live": live},
                              table=timeline.APP_FINAL_ROWS)
    return len(found)
