"""The delay proxy adds its delay to each direction without serialising chunks: many
chunks in flight at once arrive one delay later, not one delay each. On loopback, no root."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from gameday.labs.netns.delayproxy import serve


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _scenario(delay_ms: float) -> tuple[float, float]:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    proxy = asyncio.create_task(
        serve(("127.0.0.1", 0), ("127.0.0.1", echo_port), delay_ms, stop=stop, bound=bound))
    port = await bound
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    writer.write(b"x")
    await reader.readexactly(1)
    one_round_trip = time.perf_counter() - started
    # 20 chunks sent back to back: pipelined, they take about one round trip, not twenty
    started = time.perf_counter()
    for _ in range(20):
        writer.write(b"y" * 100)
        await writer.drain()
        await asyncio.sleep(0.001)
    await reader.readexactly(2000)
    pipelined = time.perf_counter() - started
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(delay_ms / 1000 * 3)  # the EOF travels through the proxy and back
    stop.set()
    await proxy
    echo.close()
    await echo.wait_closed()
    return one_round_trip, pipelined


def test_delay_is_added_each_way_without_serialising() -> None:
    one, pipelined = asyncio.run(_scenario(50))
    assert 0.095 <= one < 0.2, one  # 50 ms each way
    assert pipelined < 0.25, pipelined  # not 20 x 100 ms


@contextlib.asynccontextmanager
async def _proxied(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                     Awaitable[None]]
                   ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A server running `handler`, the proxy in front of it (10 ms), and a client
    connected through the proxy; all of it stopped when the block ends."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    proxy = asyncio.create_task(serve(("127.0.0.1", 0), ("127.0.0.1",
                                      server.sockets[0].getsockname()[1]), 10,
                                      stop=stop, bound=bound))
    reader, writer = await asyncio.open_connection("127.0.0.1", await bound)
    try:
        yield reader, writer
    finally:
        writer.close()
        stop.set()
        await proxy
        server.close()
        await server.wait_closed()


async def _reset_while_the_client_waits() -> bytes | str:
    """A server that takes the connection and resets it without a word, as a dying
    postmaster's listen queue does, while the client waits for its reply."""
    async def reset_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # the client's first message arrived
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # closed with SO_LINGER 0: a reset, not an end of file

    async with _proxied(reset_at_once) as (reader, writer):
        writer.write(b"startup packet")
        try:
            return await asyncio.wait_for(reader.read(100), 3)
        except TimeoutError:
            return "still waiting after 3 s"
        except ConnectionError as exc:
            return type(exc).__name__


def test_a_reset_by_the_server_reaches_the_waiting_client() -> None:
    """Without it a standby's WAL receiver (no timeout while it connects) waited for ever."""
    assert asyncio.run(_reset_while_the_client_waits()) in (b"", "ConnectionResetError")


async def _half_close() -> tuple[bytes, bytes]:
    """The server says its last and ends its side (an end of file, not a reset); the client
    reads it to the end, then still sends, and the server still receives."""
    got_after_eof: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def half_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        writer.write_eof()
        got_after_eof.set_result(await reader.read(100))
        writer.close()

    async with _proxied(half_close) as (reader, writer):
        heard = await asyncio.wait_for(reader.read(), 3)  # to its end of file
        writer.write(b"after")
        await writer.drain()
        return heard, await asyncio.wait_for(got_after_eof, 3)


def test_an_end_of_file_is_a_half_close_not_a_reset() -> None:
    """Only a reset takes the whole connection down: an end of file from one side is passed
    on as one, and the other direction goes on."""
    assert asyncio.run(_half_close()) == (b"bye", b"after")
