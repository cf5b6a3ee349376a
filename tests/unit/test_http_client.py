"""The samplers' minimal HTTP client against real local HTTP and HTTPS servers: status,
header, keep-alive reuse, every way a response body can end, malformed responses, TLS
verification, and the HTTP sampler on http and https storefronts."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import dns.message
import dns.rrset
import pytest

from gameday.foundation import descriptor
from gameday.measure import _http, samplers
from gameday.measure.store import timeline

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Region: region-2\r\n\r\nok"
BIG_CHUNK = 0x20000  # larger than one read of the client
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Region: region-1\r\n\r\n"
           b"5\r\nhello\r\n"
           b"7;name=value\r\n, world\r\n"
           + b"%x\r\n" % BIG_CHUNK + b"x" * BIG_CHUNK + b"\r\n"
           b"0\r\nX-Checksum: 1234\r\nX-Other: t\r\n\r\n")
RESPONSES = {
    b"/ok": OK,
    b"/down": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown",
    b"/chunked": CHUNKED,
    b"/big": b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"b" * 200000,
    b"/repeated-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok",
    b"/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"/http10-keep-alive": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    b"/http10-length": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/http10": b"HTTP/1.0 200 OK\r\nX-Region: region-1\r\n\r\nthe body ends with the connection",
    b"/no-length": b"HTTP/1.1 200 OK\r\n\r\nthe body ends with the connection",
    b"/gzip-until-close": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nnot chunked",
    b"/204": b"HTTP/1.1 204 No Content\r\nX-Region: region-1\r\n\r\n",
    # a 304 announces the length of the body it does not send
    b"/304": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nX-Region: region-1\r\n\r\n",
    b"/early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nX-Region: no\r\n\r\n"
                     + OK,
    b"/length-and-chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked"
                            b"\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    # malformed: the server keeps the connection open, so only the client can drop it
    b"/garbage": b"HELLO THERE\r\n\r\n",
    b"/bad-status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    b"/status-099": b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    b"/bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"/hex-prefix-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n0\r\n\r\n",
    b"/chunk-too-long": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokay\r\n0\r\n\r\n",
    b"/bad-length": b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n0123456789",
    b"/conflicting-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    b"/no-colon": b"HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok",
    b"/switching": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    b"/long-header": b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\nContent-Length: 2\r\n\r\nok",
}
# the server closes the connection after these (their body ends there, or it is cut short)
CLOSE_AFTER = {b"/http10", b"/no-length", b"/gzip-until-close", b"/truncated",
               b"/truncated-chunked", b"/truncated-headers"}
RESPONSES[b"/truncated"] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly"
RESPONSES[b"/truncated-headers"] = b"HTTP/1.1 200 OK\r\nContent-Len"
RESPONSES[b"/truncated-chunked"] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"


class Server:
    """A real local HTTP(S) server with canned responses, recording on which connection
    each request arrived and the TLS server name (SNI) each connection asked for."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.requests: list[tuple[int, bytes, bytes]] = []  # (connection, path, Host)
        self.names: list[str | None] = []  # SNI per TLS handshake
        self.connections = 0
        if tls is not None:
            tls.sni_callback = self._sni

    def _sni(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        self.names.append(name)

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.connections
        self.connections += 1
        try:
            while line := await reader.readline():
                path = line.split()[1]
                host = b""
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"host:"):
                        host = header[5:].strip()
                self.requests.append((conn, path, host))
                writer.write(RESPONSES[path])
                await writer.drain()
                if path in CLOSE_AFTER:
                    break
        except (ConnectionError, ssl.SSLError):
            pass
        writer.close()

    def connection_of_each_request(self) -> list[int]:
        return [conn for conn, _, _ in self.requests]


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_status_header_and_keep_alive() -> None:
    async def scenario() -> None:
        async with Server() as server:
            client = _http.Client(timeout=1.0)
            port = server.port
            assert await client.get("127.0.0.1", port, "/ok") == (200, "region-2")
            assert await client.get("127.0.0.1", port, "/down") == (503, None)
            assert await client.get("127.0.0.1", port, "/ok", host_header="shop.gameday.test") == \
                (200, "region-2")
            assert server.connections == 1  # one connection, reused
            assert [host for _, _, host in server.requests] == \
                [b"127.0.0.1", b"127.0.0.1", b"shop.gameday.test"]
            await client.aclose()

    run(scenario)


def test_refused_connection_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused

        async def scenario() -> None:
            client = _http.Client(timeout=1.0)
            with pytest.raises(OSError):
                await client.get("127.0.0.1", port, "/ok")

        run(scenario)


# (path, expected (status, header), whether the connection is kept for the next request)
FRAMINGS = [
    ("/chunked", (200, "region-1"), True),
    ("/big", (200, None), True),
    ("/repeated-length", (200, None), True),
    ("/204", (204, "region-1"), True),
    ("/304", (304, "region-1"), True),
    ("/early-hints", (200, "region-2"), True),
    ("/http10-keep-alive", (200, None), True),
    ("/close", (200, None), False),
    ("/http10-length", (200, None), False),
    ("/http10", (200, "region-1"), False),
    ("/no-length", (200, None), False),
    ("/gzip-until-close", (200, None), False),
    ("/length-and-chunked", (200, None), False),
]


@pytest.mark.parametrize(("path", "expected", "reused"), FRAMINGS, ids=[f[0] for f in FRAMINGS])
def test_every_response_is_read_to_its_end(path: str, expected: tuple[int, str | None],
                                           reused: bool) -> None:
    """Three requests in a row, then one to /ok: each gets its own response (a leftover
    byte of a body, or a body read past, would break the next one), on one connection when
    the response allows it and on a new connection each time otherwise."""

    async def scenario() -> None:
        async with Server() as server:
            client = _http.Client(timeout=1.0)
            for _ in range(3):
                assert await client.get("127.0.0.1", server.port, path) == expected
            assert await client.get("127.0.0.1", server.port, "/ok") == (200, "region-2")
            assert server.connection_of_each_request() == \
                ([0, 0, 0, 0] if reused else [0, 1, 2, 3])
            await client.aclose()

    run(scenario)


MALFORMED = ["/garbage", "/bad-status", "/status-099", "/bad-chunk-size", "/hex-prefix-chunk-size",
             "/chunk-too-long", "/bad-length", "/conflicting-lengths", "/no-colon", "/switching",
             "/long-header", "/truncated-headers", "/truncated", "/truncated-chunked"]


@pytest.mark.parametrize("path", MALFORMED)
def test_malformed_response_raises_and_the_connection_is_dropped(path: str) -> None:
    async def scenario() -> None:
        async with Server() as server:
            client = _http.Client(timeout=1.0)
            assert await client.get("127.0.0.1", server.port, "/ok") == (200, "region-2")
            with pytest.raises(_http.HttpError):
                await client.get("127.0.0.1", server.port, path)
            assert await client.get("127.0.0.1", server.port, "/ok") == (200, "region-2")
            assert server.connection_of_each_request() == [0, 0, 1]
            await client.aclose()

    run(scenario)


def test_unknown_scheme_is_refused() -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="ftp"):
            await _http.Client(timeout=1.0).get("127.0.0.1", 21, "/", scheme="ftp")

    run(scenario)


# --- TLS ------------------------------------------------------------------------------

NAME = "shop.gameday.test"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, and a server certificate it signed for NAME and 127.0.0.1."""
    if shutil.which("openssl") is None:  # a missing tool fails, never skips (CONTRIBUTING.md)
        pytest.fail("the openssl command is needed to make test certificates: install it "
                    "(`sudo make setup`, or apt-get install openssl)")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=gameday test CA", cwd=d)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={NAME}",
             cwd=d)
    (d / "ext.cnf").write_text(
        f"subjectAltName=DNS:{NAME},IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d


def _server_tls(pki: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    return ctx


def test_tls_verifies_against_the_ca_bundle_and_reuses_connections(pki: Path) -> None:
    async def scenario() -> None:
        async with Server(_server_tls(pki)) as server:
            client = _http.Client(timeout=2.0, ca_bundle=pki / "ca.pem")
            for path in ("/ok", "/chunked", "/ok", "/chunked", "/204"):
                status, _ = await client.get("127.0.0.1", server.port, path, scheme="https")
                assert status in (200, 204)
            assert server.connection_of_each_request() == [0, 0, 0, 0, 0]
            assert server.names == [None]  # an IP address is not sent as SNI...
            # ...and the certificate was checked for it: its SAN has IP:127.0.0.1
            assert await client.get("127.0.0.1", server.port, "/http10", scheme="https") == \
                (200, "region-1")  # a TLS body that ends with the connection
            assert await client.get("127.0.0.1", server.port, "/ok", scheme="https") == \
                (200, "region-2")
            assert server.connection_of_each_request()[-2:] == [0, 1]
            await client.aclose()

    run(scenario)


def test_tls_server_name_is_the_host_header(pki: Path) -> None:
    """Connecting to an address, for the global name: SNI and verification use the name,
    and connections are kept apart per name."""

    async def scenario() -> None:
        async with Server(_server_tls(pki)) as server:
            client = _http.Client(timeout=2.0, ca_bundle=str(pki / "ca.pem"))
            for host_header in (NAME, None, NAME, None):
                assert await client.get("127.0.0.1", server.port, "/ok", scheme="https",
                                        host_header=host_header) == (200, "region-2")
            assert server.names == [NAME, None]
            assert server.connection_of_each_request() == [0, 1, 0, 1]
            # the name is what is verified: one the certificate lacks fails, though the
            # address it connects to is in the certificate
            with pytest.raises(ssl.SSLCertVerificationError, match="other.gameday.test") as err:
                await client.get("127.0.0.1", server.port, "/ok", scheme="https",
                                 host_header="other.gameday.test")
            assert isinstance(err.value, samplers.HTTP_ERRORS)
            await client.aclose()

    run(scenario)


def test_tls_without_the_ca_bundle_fails_verification(pki: Path) -> None:
    async def scenario() -> None:
        async with Server(_server_tls(pki)) as server:
            client = _http.Client(timeout=2.0)  # the system's trust store
            with pytest.raises(ssl.SSLCertVerificationError, match="self.signed|unable to get") \
                    as err:
                await client.get("127.0.0.1", server.port, "/ok", scheme="https",
                                 host_header=NAME)
            assert isinstance(err.value, samplers.HTTP_ERRORS)
            assert server.requests == []
            await client.aclose()

    run(scenario)


def test_a_missing_ca_bundle_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _http.Client(timeout=1.0, ca_bundle=tmp_path / "missing.pem")


# --- the HTTP sampler --------------------------------------------------------------------

class Rows:
    def __init__(self) -> None:
        self.rows: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, row: tuple[Any, ...]) -> None:
        self.rows.append((timeline.table_of(row), row))


class FixedClock:
    def now(self) -> float:
        return 0.0


def _lab(url1: str, url2: str, *, address1: str = "10.0.0.1",
         resolver_port: int = 53) -> descriptor.Lab:
    region = {"driver": "netns", "db_host": "127.0.0.1"}
    return descriptor.from_dict({
        "schema": "gameday.lab/v1",
        "lab": "unit",
        "regions": [
            {**region, "name": "region-1", "role": "primary", "netns": "r1",
             "address": address1, "storefront_url": url1},
            {**region, "name": "region-2", "role": "secondary", "netns": "r2",
             "address": "10.0.0.2", "storefront_url": url2},
        ],
        "dns": {"name": NAME, "authoritative": {"address": "127.0.0.1", "port": 53},
                "resolver": {"address": "127.0.0.1", "port": resolver_port}},
        "database": {"name": "shop", "user": "gameday", "password": "x", "port": 5432},
    })


def test_sampler_uses_tls_for_https_and_plain_http_for_http(pki: Path) -> None:
    async def scenario() -> None:
        async with Server(_server_tls(pki)) as tls_server, Server() as plain_server:
            lab = _lab(f"https://127.0.0.1:{tls_server.port}/",
                       f"http://127.0.0.1:{plain_server.port}")
            out = Rows()
            sampler = samplers.HttpSampler(lab, FixedClock(), out, 2.0,
                                           ca_bundle=str(pki / "ca.pem"))
            await sampler.region_sampler("region-1")(1.0, 0.0)
            await sampler.region_sampler("region-2")(2.0, 0.0)
            await sampler.region_sampler("region-1")(3.0, 0.0)
            await sampler.client.aclose()
            assert [(table, row[:6], row[8]) for table, row in out.rows] == [
                ("http", (1.0, "region-1", 1, 200, "region-2", None), None),
                ("http", (2.0, "region-2", 1, 200, "region-2", None), None),
                ("http", (3.0, "region-1", 1, 200, "region-2", None), None),
            ]
            assert [path for _, path, _ in tls_server.requests] == [b"/healthz", b"/healthz"]
            assert tls_server.names == [None]  # one TLS handshake, kept alive
            assert [path for _, path, _ in plain_server.requests] == [b"/healthz"]

    RESPONSES[b"/healthz"] = OK
    try:
        run(scenario)
    finally:
        del RESPONSES[b"/healthz"]


def test_sampler_records_a_failed_verification_as_a_failed_sample(pki: Path) -> None:
    async def scenario() -> None:
        async with Server(_server_tls(pki)) as tls_server:
            lab = _lab(f"https://127.0.0.1:{tls_server.port}", "http://127.0.0.1:9")
            out = Rows()
            sampler = samplers.HttpSampler(lab, FixedClock(), out, 2.0)
            await sampler.region_sampler("region-1")(1.0, 0.0)
            await sampler.client.aclose()
            [(table, row)] = out.rows
            assert (table, row[1:4], row[8]) == \
                ("http", ("region-1", 0, None), "SSLCertVerificationError")

    run(scenario)


class Resolver(asyncio.DatagramProtocol):
    """A DNS server answering every A query with 127.0.0.1."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 5, "IN", "A",
                                                   "127.0.0.1"))
        self.transport.sendto(response.to_wire(), addr)


def test_global_sampler_verifies_the_global_name_over_tls(pki: Path) -> None:
    """The global name resolves to a region's address; the GET goes to that region's
    https storefront with the global name as Host, SNI and the name verified."""

    async def scenario() -> None:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Resolver, local_addr=("127.0.0.1", 0))
        try:
            async with Server(_server_tls(pki)) as tls_server:
                lab = _lab(f"https://127.0.0.1:{tls_server.port}", "http://127.0.0.1:9",
                           address1="127.0.0.1",
                           resolver_port=transport.get_extra_info("sockname")[1])
                out = Rows()
                sampler = samplers.HttpSampler(lab, FixedClock(), out, 2.0,
                                               ca_bundle=str(pki / "ca.pem"))
                await sampler.sample_global(1.0, 0.0)
                await sampler.sample_global(2.0, 0.0)
                await sampler.client.aclose()
        finally:
            transport.close()
        assert [(table, row[:6], row[8]) for table, row in out.rows] == [
            ("http", (1.0, "global", 1, 200, "region-2", "127.0.0.1"), None),
            ("http", (2.0, "global", 1, 200, "region-2", "127.0.0.1"), None),
        ]
        assert tls_server.requests == [(0, b"/healthz", NAME.encode())] * 2
        assert tls_server.names == [NAME]

    RESPONSES[b"/healthz"] = OK
    try:
        run(scenario)
    finally:
        del RESPONSES[b"/healthz"]


@pytest.mark.parametrize(("url", "target"), [
    ("https://shop.gameday.test/healthz", ("https", NAME, 443, "/healthz")),
    ("http://shop.gameday.test/healthz", ("http", NAME, 80, "/healthz")),
    ("https://10.0.0.1:8443", ("https", "10.0.0.1", 8443, "/")),
    ("http://10.0.0.1:8080/healthz", ("http", "10.0.0.1", 8080, "/healthz")),
])
def test_url_target_defaults_the_port_to_the_scheme(url: str,
                                                    target: tuple[str, str, int, str]) -> None:
    assert samplers.url_target(url) == target


def test_a_kept_alive_connection_the_server_closed_while_idle_is_retried_once() -> None:
    """A server's keep-alive timeout closes an idle connection without telling: the next
    request on it reads nothing. That is not the server's answer to the request, so it is
    sent again on a new connection (else every sample after an idle gap would fail and
    break the K-consecutive-successes rule). A new connection that closes is a failure."""

    async def scenario() -> None:
        accepted: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(1)
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()  # the idle timeout, at once: no Connection: close header

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = _http.Client(timeout=2.0)
        try:
            for _ in range(3):
                assert (await client.get("127.0.0.1", port, "/"))[0] == 200
                await asyncio.sleep(0.05)  # the server's close reaches the client
            assert len(accepted) == 3  # each retry on a fresh connection, one per request
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

        async def close_at_once(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
        client = _http.Client(timeout=2.0)
        try:
            # closed before the status line, or reset (the request was still unread)
            with pytest.raises((_http.HttpError, ConnectionResetError)):
                await client.get("127.0.0.1", server.sockets[0].getsockname()[1], "/")
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


# --- a frozen server ----------------------------------------------------------------------

class FrozenTlsServer:
    """Answers the first request of each TLS connection, then never reads nor writes again
    and keeps the connection open: a server process that stopped (SIGSTOP, a hung
    storefront) while its kernel still acknowledges. Blocking sockets in a thread, not
    asyncio, whose TLS layer would answer a close_notify by itself."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.answered = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FrozenTlsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the thread
        self.listener.close()
        for conn in self.held:
            conn.close()
        self.thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return  # closed by __exit__
            self.held.append(raw)
            try:
                conn = self.tls.wrap_socket(raw, server_side=True)
                self.held.append(conn)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096) or b"\r\n\r\n"
                conn.sendall(OK)
                self.answered += 1
            except (OSError, ssl.SSLError):
                pass  # the client gave up; the connection stays held


def test_closing_an_idle_tls_connection_to_a_frozen_server_is_bounded(pki: Path) -> None:
    """A TLS close waits for the server's close_notify, which a frozen server never sends
    (asyncio gives up after 30 s): the client drops what has not closed within its
    timeout. The recorder closes its clients last, but a stop still waits for it."""

    async def scenario() -> None:
        with FrozenTlsServer(_server_tls(pki)) as server:
            client = _http.Client(timeout=0.5, ca_bundle=pki / "ca.pem")
            assert await client.get("127.0.0.1", server.port, "/ok", scheme="https") == \
                (200, "region-2")
            started = time.monotonic()
            await asyncio.wait_for(client.aclose(), 10)
            took = time.monotonic() - started
            assert took < 1.0, f"closing took {took:.1f} s"

    run(scenario)
