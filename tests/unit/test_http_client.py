"""The samplers' minimal HTTP client against a real local HTTP server: status, header,
keep-alive reuse, and a refused connection."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gameday.measure import _http

RESPONSES = {
    b"/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Region: region-2\r\n\r\nok",
    b"/down": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown",
}


async def _serve(connections: list[int]):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while line := await reader.readline():
            path = line.split()[1]
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            writer.write(RESPONSES[path])
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_status_header_and_keep_alive() -> None:
    async def scenario() -> None:
        connections: list[int] = []
        server = await _serve(connections)
        port = server.sockets[0].getsockname()[1]
        client = _http.Client(timeout=1.0)
        assert await client.get("127.0.0.1", port, "/ok") == (200, "region-2")
        assert await client.get("127.0.0.1", port, "/down") == (503, None)
        assert await client.get("127.0.0.1", port, "/ok", host_header="shop.gameday.test") == \
            (200, "region-2")
        assert len(connections) == 1  # one connection, reused
        await client.aclose()
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())


def test_refused_connection_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused

        async def scenario() -> None:
            client = _http.Client(timeout=1.0)
            with pytest.raises(OSError):
                await client.get("127.0.0.1", port, "/ok")

        asyncio.run(scenario())
