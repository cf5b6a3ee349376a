"""A minimal keep-alive HTTP/1.1 GET for the samplers.

Why not httpx or httpcore: the recorder must stay under 15% of one core at its default
rates, and the three HTTP samplers make 60 requests a second. httpx used half of that
budget and httpcore a third (measured with bench/bench_recorder.py and cProfile); this
client does only what a probe of our own storefront needs: GET over HTTP or HTTPS, status,
one header, connections reused per target (bench/bench_http_client.py measures it).

The body is read and thrown away, but it is always read to its end (Content-Length,
chunked, or the end of the connection), because a connection is only put back for the next
request once its response is over: a leftover byte would make the next sample fail, and
the drill's rule "K consecutive successes" counts on every sample meaning what it says.
Whatever the client cannot frame with certainty raises HttpError and the connection is
dropped, never reused.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections import defaultdict

_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# (scheme, host, port, TLS server name): a connection verified for one name never carries
# a request meant for another
_Key = tuple[str, str, int, str | None]
_READ = 65536
_END_OF_SECTION = (b"\r\n", b"\n")
_HEX = frozenset(b"0123456789abcdefABCDEF")


class HttpError(Exception):
    """The request did not get a complete, well-formed HTTP response."""


class _Closed(HttpError):
    """The connection ended before a byte of the status line: on a reused connection, the
    server had closed it while idle."""


class Client:
    """GETs with a timeout each, over connections kept alive per target.

    HTTPS verifies the server's certificate: against `ca_bundle` alone when given (a lab's
    own CA), else against the system's trust store, or as `ssl_context` says."""

    def __init__(self, timeout: float, *, ssl_context: ssl.SSLContext | None = None,
                 ca_bundle: str | os.PathLike[str] | None = None) -> None:
        if ssl_context is not None and ca_bundle is not None:
            raise ValueError("give ssl_context or ca_bundle, not both")
        self.timeout = timeout
        # built now so that a missing or unreadable bundle is an error at start, not a
        # failed sample every 50 ms
        self._ssl = ssl.create_default_context(cafile=ca_bundle) if ca_bundle is not None \
            else ssl_context
        self._idle: dict[_Key, list[_Conn]] = defaultdict(list)

    async def get(self, host: str, port: int, path: str, *, scheme: str = "http",
                  host_header: str | None = None,
                  header: bytes = b"x-region") -> tuple[int, str | None]:
        """(status, value of `header`) within the client's timeout. Over https the
        certificate must be valid for `host_header` when given (the global name while
        `host` is the address it resolved to), else for `host`."""
        if scheme == "https":
            if self._ssl is None:
                # only when needed: loading the system's trust store costs milliseconds
                self._ssl = ssl.create_default_context()
            tls: ssl.SSLContext | None = self._ssl
        elif scheme == "http":
            tls = None
        else:
            raise ValueError(f"unsupported URL scheme {scheme!r}")
        return await asyncio.wait_for(self._get(host, port, path, host_header, header, tls),
                                      self.timeout)

    async def _get(self, host: str, port: int, path: str, host_header: str | None,
                   header: bytes, tls: ssl.SSLContext | None) -> tuple[int, str | None]:
        server_hostname = (host_header or host) if tls is not None else None
        key = ("https" if tls is not None else "http", host, port, server_hostname)
        idle = self._idle[key]
        request = f"GET {path} HTTP/1.1\r\nHost: {host_header or host}\r\n\r\n".encode()
        while True:
            reused = bool(idle)
            if reused:
                conn = idle.pop()
            else:
                conn = await asyncio.open_connection(host, port, ssl=tls,
                                                     server_hostname=server_hostname)
            reader, writer = conn
            try:
                writer.write(request)
                status, value, reusable = await _response(reader, header)
                break
            except ValueError:  # the only one: a line longer than the reader's limit (64 KiB)
                writer.close()
                raise HttpError("line too long") from None
            except (_Closed, ConnectionResetError, BrokenPipeError) as exc:
                writer.close()
                # a kept-alive connection the server closed while it sat idle (its
                # keep-alive timeout): not the server's answer to this request, so it is
                # sent again once on a new connection, as browsers and httpx do
                if reused:
                    continue
                if isinstance(exc, _Closed):
                    raise HttpError("connection closed before the status line") from None
                raise
            except BaseException:
                writer.close()
                raise
        if reusable:
            idle.append(conn)
        else:
            writer.close()
        return status, value

    async def aclose(self) -> None:
        """Close every idle connection, waiting at most the client's timeout. A TLS close
        sends a close_notify and waits for the server's, which a frozen server never sends
        (asyncio would wait 30 s): what has not closed by then is dropped. Nothing is lost
        by that: no request is in flight on an idle connection."""
        writers = [writer for conns in self._idle.values() for _, writer in conns]
        self._idle.clear()
        for writer in writers:
            writer.close()
        if not writers:
            return
        waits = [asyncio.ensure_future(w.wait_closed()) for w in writers]
        await asyncio.wait(waits, timeout=self.timeout)
        for writer, wait in zip(writers, waits, strict=True):
            if not wait.done():
                wait.cancel()
                writer.transport.abort()
            elif not wait.cancelled():
                wait.exception()  # a reset while closing: nothing left to close


async def _response(reader: asyncio.StreamReader,
                    header: bytes) -> tuple[int, str | None, bool]:
    """(status, value of `header`, whether the connection may carry another request),
    with the body consumed. Framing as RFC 9112 section 6.3 says."""
    readline = reader.readline  # not _line(): the hot path, one coroutine less per line
    while True:
        line = await readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 \
                or not parts[1].isdigit() or parts[1][0] == ord("0"):
            if not line:
                raise _Closed("connection closed before the status line")
            raise HttpError(f"no status line: {line[:60]!r}")
        status = int(parts[1])
        http11 = parts[0] == b"HTTP/1.1"
        length: int | None = None
        transfer_encoding, chunked, close, keep_alive = False, False, False, False
        value = None
        while (line := await readline()) not in _END_OF_SECTION:
            name, colon, rest = line.partition(b":")
            if not colon or not line.endswith(b"\n"):
                raise HttpError(f"connection closed in the headers, or a header line "
                                f"without a colon: {line[:60]!r}")
            name = name.strip().lower()
            if name == b"content-length":
                # a list of one value repeated is allowed (RFC 9110 section 8.6)
                values = {v.strip() for v in rest.split(b",")}
                n = values.pop()
                if values or not n.isdigit() or (length is not None and int(n) != length):
                    raise HttpError(f"bad Content-Length: {rest.strip()[:60]!r}")
                length = int(n)
            elif name == b"transfer-encoding":
                transfer_encoding = True
                # what counts is the last coding of the last field
                chunked = rest.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
            elif name == b"connection":
                tokens = {t.strip().lower() for t in rest.split(b",")}
                close = close or b"close" in tokens
                keep_alive = keep_alive or b"keep-alive" in tokens
            elif name == header:
                value = rest.strip().decode(errors="replace")
        if status >= 200:
            break
        if status == 101:
            raise HttpError("101 Switching Protocols to a GET that asked for no upgrade")
        # an interim response (100, 103): headers only, the final response follows

    reusable = not close and (http11 or keep_alive)
    if status in (204, 304):
        return status, value, reusable  # no body, whatever Content-Length says
    if transfer_encoding:
        if not chunked:
            await _discard_to_eof(reader)
            return status, value, False
        await _discard_chunked(reader)
        # both headers: Transfer-Encoding wins, but the sender is suspect (RFC 9112 6.3)
        return status, value, reusable and length is None
    if length is not None:
        await _discard(reader, length)
        return status, value, reusable
    await _discard_to_eof(reader)
    return status, value, False


async def _line(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    if not line.endswith(b"\n"):
        raise HttpError("connection closed mid-response" if line
                        else "connection closed before the end of the response")
    return line


async def _discard(reader: asyncio.StreamReader, n: int) -> None:
    while n > 0:
        data = await reader.read(min(n, _READ))
        if not data:
            raise HttpError("connection closed in the body")
        n -= len(data)


async def _discard_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = (await _line(reader)).split(b";", 1)[0].strip()
        if not size or len(size) > 16 or not _HEX.issuperset(size):
            raise HttpError(f"bad chunk size: {size[:20]!r}")
        n = int(size, 16)
        if n == 0:
            break
        await _discard(reader, n)
        if await _line(reader) not in _END_OF_SECTION:
            raise HttpError("chunk longer than its size")
    while await _line(reader) not in _END_OF_SECTION:
        pass  # trailer fields


async def _discard_to_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(_READ):
        pass
