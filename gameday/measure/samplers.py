"""The samplers: each observes one thing on a fixed schedule and records timestamped samples.

Schedules are absolute (slot k is due at start + k * interval), so a slow sample never
makes the next one drift; a sample that is still running when its successor is due does
not delay it either: each sample runs as its own task. Every sample records its lateness
(how long after its due time it started), from which the report gives the achieved interval.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import psycopg

from gameday.foundation import endpoints
from gameday.foundation.descriptor import Lab
from gameday.foundation.endpoints import Endpoints
from gameday.measure import _http
from gameday.measure.store.timeline import (
    BatchWriter,
    Clock,
    DnsSample,
    HaSample,
    HttpSample,
    ReplicationSample,
)
from gameday.postgres.connection import bounds
from gameday.postgres.replication import REPLICATION_SQL

MAX_IN_FLIGHT = 16
# everything the HTTP client can raise, so that a failed request is a failed sample: refused
# or reset connections (OSError), a certificate that does not verify (ssl.CertificateError,
# both an ssl.SSLError and a ValueError, as a bad port in a URL is), no response in time
HTTP_ERRORS = (_http.HttpError, TimeoutError, OSError, ssl.SSLError, ssl.CertificateError,
               ValueError, asyncio.IncompleteReadError)


async def every(interval: float, clock: Clock,
                sample: Callable[[float, float], Coroutine[Any, Any, None]],
                stop: asyncio.Event) -> None:
    """Run `sample(due, lateness)` at each slot of a drift-free schedule until `stop`."""
    start = clock.now()
    k = 0
    in_flight: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        due = start + k * interval
        wait = due - clock.now()
        if wait > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                break
        now = clock.now()
        if len(in_flight) < MAX_IN_FLIGHT:
            task = asyncio.create_task(sample(now, now - due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        # skip the slots we are already past rather than bunching samples up
        k = max(k + 1, int((clock.now() - start) / interval) + 1)
    if in_flight:
        await asyncio.wait(in_flight, timeout=2)


def _answers(response: dns.message.Message) -> tuple[list[str], int | None]:
    """The A records of a response, sorted, and their TTL (the global request sampler)."""
    addresses: list[str] = []
    ttl = None
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.A:
            addresses.extend(rr.address for rr in rrset)
            ttl = rrset.ttl
    return sorted(addresses), ttl


def whole_answer(responses: Sequence[dns.message.Message]
                 ) -> tuple[list[str], list[str], int | None]:
    """(every A and AAAA address, sorted; the CNAME targets in the order they were
    followed; the smallest TTL) of the responses to one name's A and AAAA queries: what a
    dual-stack client is given, the whole of it."""
    addresses: set[str] = set()
    chain: list[str] = []
    ttls: list[int] = []
    for response in responses:
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.CNAME:
                chain += [t for t in (str(rr.target).rstrip(".").lower() for rr in rrset)
                          if t not in chain]
            elif rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                addresses.update(rr.address for rr in rrset)
            else:
                continue
            ttls.append(rrset.ttl)
    return sorted(addresses, key=_address_order), chain, min(ttls) if ttls else None


def _address_order(text: str) -> tuple[int, str]:
    return (6 if ":" in text else 4, text)  # IPv4 first, then IPv6


class DnsSampler:
    """Asks one DNS server for the global name's A and AAAA records at once, and records the
    whole answer: every address, the CNAME chain, the smallest TTL, and which region it is
    (endpoints.classify: a region, or mixed, or unknown; never forced into one). A sample
    is ok when both queries answer NOERROR with at least one address between them; a query
    that fails fails the sample (half an answer is not the answer a client gets)."""

    def __init__(self, name: str, server: str, port: int, qname: str, clock: Clock,
                 out: BatchWriter, timeout: float, *,
                 regions: Mapping[str, Endpoints] | None = None) -> None:
        self.name, self.server, self.port, self.qname = name, server, port, qname
        self.clock, self.out, self.timeout = clock, out, timeout
        self.regions: Mapping[str, Endpoints] = regions or {}
        self.classes: dict[tuple[str, str], str] = {}  # an answer's class, once per answer

    async def _ask(self, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        query = dns.message.make_query(self.qname, rdtype)
        return await dns.asyncquery.udp(query, self.server, port=self.port,
                                        timeout=self.timeout)

    def classify(self, addresses: list[str], chain: list[str]) -> str:
        key = (",".join(addresses), ",".join(chain))
        if key not in self.classes:
            self.classes[key] = endpoints.classify(addresses, chain, self.regions)
        return self.classes[key]

    async def sample(self, t: float, lateness: float) -> None:
        started = time.perf_counter()
        try:
            both = await asyncio.gather(self._ask(dns.rdatatype.A),
                                        self._ask(dns.rdatatype.AAAA), return_exceptions=True)
            for failed in both:
                if isinstance(failed, BaseException):
                    raise failed
            responses = [r for r in both if isinstance(r, dns.message.Message)]
            addresses, chain, ttl = whole_answer(responses)
            rcodes = [dns.rcode.to_text(r.rcode()) for r in responses]
            rcode = next((c for c in rcodes if c != "NOERROR"), "NOERROR")
            ok = rcode == "NOERROR" and bool(addresses)
            self.out.add(DnsSample(t, self.name, int(ok), ",".join(addresses), rcode, ttl,
                                   time.perf_counter() - started, lateness, None,
                                   ",".join(chain),
                                   self.classify(addresses, chain) if ok else None))
        except (dns.exception.DNSException, OSError) as exc:
            self.out.add(DnsSample(t, self.name, 0, None, None, None,
                                   time.perf_counter() - started, lateness, type(exc).__name__))


def url_target(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a GET of `url`; the port defaults to the scheme's."""
    u = urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    return u.scheme, u.hostname or "", port, u.path or "/"


class HttpSampler:
    """`global`: resolve the global name through the caching resolver, as a client does,
    then ask the answer whether it can serve (its /healthz, with the region in X-Region).
    `<region>`: that region's /healthz, directly.

    https storefronts must present a certificate valid for the name asked for (the global
    name for `global`): from `ca_bundle` when given (a lab's own CA), else one the system
    trusts."""

    def __init__(self, lab: Lab, clock: Clock, out: BatchWriter, timeout: float, *,
                 ca_bundle: str | None = None) -> None:
        self.lab, self.clock, self.out, self.timeout = lab, clock, out, timeout
        self.client = _http.Client(timeout, ca_bundle=ca_bundle)
        self.resolver_ip = lab.dns.resolver.ip()

    async def _get(self, url: str, host: str | None = None) -> tuple[int, str | None]:
        """(status, X-Region header) of a GET."""
        scheme, hostname, port, path = url_target(url)
        return await self.client.get(hostname, port, path, scheme=scheme, host_header=host)

    async def sample_global(self, t: float, lateness: float) -> None:
        started = time.perf_counter()
        address = None
        try:
            query = dns.message.make_query(self.lab.dns.name, dns.rdatatype.A)
            response = await dns.asyncquery.udp(query, self.resolver_ip,
                                                port=self.lab.dns.resolver.port,
                                                timeout=self.timeout)
            addresses, _ = _answers(response)
            if not addresses:
                raise LookupError(f"no address ({dns.rcode.to_text(response.rcode())})")
            address = addresses[0]
            region = self.lab.region_of_address(address)
            # /healthz through the global name: a success is a storefront that can take
            # an order (its database writable), not merely one that answers; /whoami
            # answered from a region whose database was read-only or down
            scheme, port = self._served_as(address)
            # to the address DNS gave, as the name clients use (Host, and TLS name)
            status, served = await self.client.get(address, port, "/healthz", scheme=scheme,
                                                   host_header=self.lab.dns.name)
            self.out.add(HttpSample(t, "global", int(status == 200), status, served or region,
                                  address, time.perf_counter() - started, lateness, None))
        except (*HTTP_ERRORS, dns.exception.DNSException, OSError, LookupError) as exc:
            self.out.add(HttpSample(t, "global", 0, None, None, address,
                                  time.perf_counter() - started, lateness, type(exc).__name__))

    def _served_as(self, address: str) -> tuple[str, int]:
        """(scheme, port) of the storefront DNS pointed at: the region's whose address it
        is, else the storefront's fixed port over http."""
        for region in self.lab.regions:
            if region.address == address:
                scheme, _, port, _ = url_target(region.storefront_url)
                return scheme, port
        return "http", 8080

    def region_sampler(self, name: str) -> Callable[[float, float], Coroutine[Any, Any, None]]:
        url = self.lab.region(name).storefront_url.rstrip("/") + "/healthz"

        async def sample(t: float, lateness: float) -> None:
            started = time.perf_counter()
            try:
                status, served = await self._get(url)
                self.out.add(HttpSample(t, name, int(status == 200), status, served, None,
                                      time.perf_counter() - started, lateness, None))
            except (*HTTP_ERRORS, OSError) as exc:
                self.out.add(HttpSample(t, name, 0, None, None, None,
                                      time.perf_counter() - started, lateness,
                                      type(exc).__name__))

        return sample


class ReplicationSampler:
    """Lag as each server sees it: the primary's pg_stat_replication, the standby's replay
    timestamp. One connection per server, reopened after an error."""

    def __init__(self, lab: Lab, region: str, clock: Clock, out: BatchWriter,
                 timeout: float) -> None:
        r = lab.region(region)
        self.name = region
        self.params = lab.database.params(r.db_host, r.db_port, connect_timeout=1,
                                          application_name="gameday-recorder")
        self.clock, self.out, self.timeout = clock, out, timeout
        # the server ends the question too, by the time the sample has given it up
        self.bounds = bounds(statement_timeout_s=timeout * 2)
        self.conn: psycopg.AsyncConnection | None = None
        self.lock = asyncio.Lock()

    async def sample(self, t: float, lateness: float) -> None:
        if self.lock.locked():
            return  # the previous sample is still waiting on a dead server
        async with self.lock:
            try:
                conn = self.conn
                if conn is None or conn.closed:
                    new: psycopg.AsyncConnection = await asyncio.wait_for(
                        psycopg.AsyncConnection.connect(**self.params, autocommit=True,
                                                        **self.bounds), 2)
                    conn = self.conn = new
                cur = await asyncio.wait_for(conn.execute(REPLICATION_SQL), self.timeout * 2)
                row = await cur.fetchone()
                assert row is not None  # the query always returns one row
                in_recovery, lag, senders, receiver = row
                lag_s = float(lag) if lag is not None else None
                if not in_recovery and senders:
                    lags = [s.get("replay_lag") or 0.0 for s in senders]
                    lag_s = max(lags)
                detail = json.dumps({"senders": senders, "receiver": receiver})
                self.out.add(ReplicationSample(t, self.name, 1, int(in_recovery), lag_s, detail,
                                             None))
            except (TimeoutError, psycopg.Error, OSError) as exc:
                if self.conn is not None:
                    with contextlib.suppress(Exception):
                        await self.conn.close()
                self.conn = None
                self.out.add(ReplicationSample(t, self.name, 0, None, None, None,
                                             type(exc).__name__))

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()


class LeaderKeySampler:
    """The HA manager's leader key, read from its DCS (etcd v3's JSON gateway): who holds
    it, and its revision and lease. Patroni's failover starts when that key expires, so the
    instant it is gone is the manager's own detection, observed from outside (never from
    Patroni's log or its REST API's opinion)."""

    def __init__(self, lab: Lab, clock: Clock, out: BatchWriter, timeout: float) -> None:
        ha = lab.ha
        assert ha is not None and ha.dcs is not None
        import httpx

        from gameday.postgres import dcs

        self.out = out
        self.url = f"http://{_host(ha.dcs.address)}:{ha.dcs.port}/v3/kv/range"
        self.body = {"key": base64.b64encode(ha.leader_key.encode()).decode()}
        self.auth = dcs.auth_request(ha)  # etcd with authentication: a token, kept
        self.token_header = dcs.token_header
        self.headers: dict[str, str] = {}
        self.client = httpx.AsyncClient(timeout=timeout, trust_env=False)
        self.errors: tuple[type[BaseException], ...] = (httpx.HTTPError, ValueError, KeyError,
                                                        TimeoutError, OSError)

    async def sample(self, t: float, lateness: float) -> None:
        try:
            if self.auth is not None and not self.headers:
                self.headers = self.token_header(
                    await self.client.post(self.auth[0], json=self.auth[1]))
            resp = await self.client.post(self.url, json=self.body, headers=self.headers)
            if resp.status_code == 401:
                self.headers = {}  # an expired token: a new one at the next sample
            resp.raise_for_status()
            kvs = resp.json().get("kvs") or []
            leader = base64.b64decode(kvs[0]["value"]).decode() if kvs else None
            detail = json.dumps({"mod_revision": kvs[0].get("mod_revision"),
                                 "lease": kvs[0].get("lease")}) if kvs else None
            self.out.add(HaSample(t, "etcd", 1, leader, detail, None))
        except self.errors as exc:
            self.out.add(HaSample(t, "etcd", 0, None, None, type(exc).__name__))

    async def close(self) -> None:
        await self.client.aclose()


def _host(address: str) -> str:
    """An IPv6 address in a URL goes in brackets."""
    return f"[{address}]" if ":" in address else address


class RedisReplicationSampler:
    """A region's Redis, as PostgreSQL's replication sampler asks its database: its INFO
    replication, the master (in_recovery 0) or a replica (1), with the master's view of its
    replicas. The first sample of the secondary as the master is its promotion, observed
    (instants.promotion), whoever promoted it: here, the Sentinels. One connection,
    reopened after an error, never retried on its own (its sample is the retry)."""

    def __init__(self, lab: Lab, region: str, clock: Clock, out: BatchWriter,
                 timeout: float) -> None:
        from gameday import redis as store

        s = store.node.store(lab)
        node = s.node(region)
        self.name, self.out = region, out
        self.sample_of = store.node.sample
        self.errors: tuple[type[BaseException], ...] = (*store.node.ERRORS, TimeoutError)
        self.client = _redis_client(s.password, node.address, node.port, timeout)
        self.timeout = timeout
        self.lock = asyncio.Lock()

    async def sample(self, t: float, lateness: float) -> None:
        if self.lock.locked():
            return  # the previous sample still waits on a server that does not answer
        async with self.lock:
            try:
                info = await asyncio.wait_for(self.client.info("replication"),
                                              self.timeout * 2)
                in_recovery, lag_s, detail = self.sample_of(info)
                self.out.add(ReplicationSample(t, self.name, 1, in_recovery, lag_s,
                                               json.dumps(detail), None))
            except self.errors as exc:
                self.out.add(ReplicationSample(t, self.name, 0, None, None, None,
                                               type(exc).__name__))

    async def close(self) -> None:
        await self.client.aclose()


class SentinelSampler:
    """One Sentinel's view of the master (gameday.redis.sentinel.SentinelView): the region
    it hands clients as the master (HaSample.leader) and its flags for it. The first
    `o_down` after the fault is the Sentinels' detection (+odown), the master it names
    moving is their promotion (+switch-master): observed from outside, as Patroni's leader
    key is in its DCS. A Sentinel in the region lost answers nothing: its samples fail."""

    def __init__(self, lab: Lab, site: str, clock: Clock, out: BatchWriter,
                 timeout: float) -> None:
        from gameday.redis import node, sentinel

        s = node.store(lab)
        where = next(n for n in s.sentinels if n.site == site)
        self.lab, self.site, self.out, self.timeout = lab, site, out, timeout
        self.master_name = s.master_name
        self.view_of = sentinel.view_of
        self.errors: tuple[type[BaseException], ...] = (*node.ERRORS, TimeoutError, KeyError,
                                                        ValueError)
        self.client = _redis_client(s.sentinel_password, where.address, where.port, timeout)
        self.lock = asyncio.Lock()

    async def sample(self, t: float, lateness: float) -> None:
        if self.lock.locked():
            return
        async with self.lock:
            try:
                master, address = await asyncio.wait_for(self._ask(), self.timeout * 2)
                view = self.view_of(self.lab, self.site, master, address)
                self.out.add(HaSample(t, f"sentinel-{self.site}", 1, view.master,
                                      json.dumps(view.detail()), None))
            except self.errors as exc:
                self.out.add(HaSample(t, f"sentinel-{self.site}", 0, None, None,
                                      type(exc).__name__))

    async def _ask(self) -> tuple[Any, Any]:
        master = await self.client.sentinel_master(self.master_name)
        address = await self.client.sentinel_get_master_addr_by_name(self.master_name)
        return master, address

    async def close(self) -> None:
        await self.client.aclose()


class SentinelEvents:
    """One Sentinel's own announcements, subscribed to: `+odown` (a quorum holds the master
    down: the Sentinels' detection) and `+switch-master` (the master they hand clients
    moved: their promotion), each recorded in the `ha` table the instant it arrives.

    Why beside SentinelSampler: a sample every 0.25 s can miss the `o_down` flag, which a
    fast failover holds for less than that, and then the detection read from samples is
    the later +switch-master, after the replica was already seen as master. The message
    carries no timestamp, so its instant is its arrival (a lab link's latency after the
    Sentinel said it). A Sentinel that stops answering is subscribed to again every
    `timeout`; the sampler's failed samples already say it is gone."""

    CHANNELS = ("+odown", "+switch-master")

    def __init__(self, lab: Lab, site: str, clock: Clock, out: BatchWriter,
                 timeout: float) -> None:
        from gameday.redis import node, sentinel

        s = node.store(lab)
        where = next(n for n in s.sentinels if n.site == site)
        self.site, self.clock, self.out, self.timeout = site, clock, out, timeout
        self.text = sentinel.text
        self.master_name = s.master_name
        self.regions = {f"{n.address} {n.port}": n.region for n in s.nodes}
        self.errors: tuple[type[BaseException], ...] = (*node.ERRORS, TimeoutError, OSError)
        self.client = _redis_client(s.sentinel_password, where.address, where.port, timeout)

    def row(self, t: float, channel: str, data: str) -> HaSample | None:
        """The `ha` row of one message: `+odown` names the master held down ("master
        <name> <ip> <port> #quorum 2/2"), `+switch-master` the old and the new one ("<name>
        <old ip> <old port> <new ip> <new port>"); the leader is the region of the master
        it names last. Another master's message, or one not understood, is no row."""
        words = data.split()
        if channel == "+odown" and len(words) >= 4 and words[:2] == ["master",
                                                                     self.master_name]:
            leader, odown = self.regions.get(f"{words[2]} {words[3]}"), True
        elif channel == "+switch-master" and len(words) == 5 and words[0] == self.master_name:
            leader, odown = self.regions.get(f"{words[3]} {words[4]}"), False
        else:
            return None
        detail = {"site": self.site, "event": channel, "message": data, "odown": odown}
        return HaSample(t, f"sentinel-{self.site}", 1, leader, json.dumps(detail), None)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._listen(stop)
            except self.errors:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.timeout)

    async def _listen(self, stop: asyncio.Event) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            await asyncio.wait_for(pubsub.subscribe(*self.CHANNELS), self.timeout)
            while not stop.is_set():
                message = await asyncio.wait_for(pubsub.get_message(timeout=0.1),
                                                 self.timeout + 0.1)
                t = self.clock.now()
                if message is None or message.get("type") != "message":
                    continue
                row = self.row(t, self.text(message["channel"]), self.text(message["data"]))
                if row is not None:
                    self.out.add(row)
        finally:
            with contextlib.suppress(*self.errors):
                await asyncio.wait_for(pubsub.aclose(), self.timeout)

    async def close(self) -> None:
        await self.client.aclose()


def _redis_client(password: str | None, host: str, port: int, timeout: float) -> Any:
    """An asyncio client bounded by `timeout` that never retries on its own (redis-py's
    default retries with backoff for seconds: the sampler's next slot is its retry)."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis.asyncio.Redis(host=host, port=port, password=password,
                               socket_timeout=timeout, socket_connect_timeout=timeout,
                               retry=Retry(NoBackoff(), 0))
