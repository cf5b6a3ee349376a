"""A minimal keep-alive HTTP/1.1 GET for the samplers.

Why not httpx or httpcore: the recorder must stay under 15% of one core at its default
rates, and the three HTTP samplers make 60 requests a second. httpx used half of that
budget and httpcore a third (measured with bench/bench_recorder.py and cProfile); this
client does only what a probe of our own storefront needs: GET, status, one header, a
Content-Length body, connections reused per target.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict


class HttpError(Exception):
    """The request did not get a complete HTTP response."""


class Client:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = \
            defaultdict(list)

    async def get(self, host: str, port: int, path: str, *, host_header: str | None = None,
                  header: bytes = b"x-region") -> tuple[int, str | None]:
        """(status, value of `header`) within the client's timeout."""
        return await asyncio.wait_for(self._get(host, port, path, host_header, header),
                                      self.timeout)

    async def _get(self, host: str, port: int, path: str, host_header: str | None,
                   header: bytes) -> tuple[int, str | None]:
        key = (host, port)
        idle = self._idle[key]
        conn = idle.pop() if idle else await asyncio.open_connection(host, port)
        reader, writer = conn
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host_header or host}\r\n\r\n".encode())
            status_line = await reader.readline()
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
                raise HttpError("no status line")
            status = int(parts[1])
            length, value, close = 0, None, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n"):
                    break
                if not line:
                    raise HttpError("connection closed in the headers")
                name, _, rest = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(rest)
                elif name == header:
                    value = rest.strip().decode()
                elif name == b"connection" and rest.strip().lower() == b"close":
                    close = True
            if length:
                await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            idle.append(conn)
        return status, value

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        self._idle.clear()
