"""A TCP proxy that adds a fixed one-way delay to every chunk, in both directions.

This kernel has no sch_netem, so `tc qdisc ... netem delay` fails; the lab puts this proxy
on the cross-region paths instead. Each chunk is stamped when it is read and written when
its delay has passed, by a separate writer task: chunks overlap in flight, so latency rises
by the delay and throughput does not fall (a proxy that sleeps before each write would
serialise them). Small PyPI proxies (faulty, sloww) were considered; they either sleep
inline or pull in a framework, and this is 80 lines we can reason about.

Run: python -m gameday.labs.netns.delayproxy LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_MS
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                reset: Callable[[], None]) -> None:
    """One direction. An end of file is passed on as one (a half-close: the other direction
    goes on); a reset or a failed write takes the whole connection down with `reset`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        reset()
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender


async def _handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                  target: tuple[str, int], delay: float) -> None:
    try:
        server_r, server_w = await asyncio.wait_for(asyncio.open_connection(*target), 5)
    except (TimeoutError, OSError):
        client_w.close()
        return

    def reset() -> None:
        """Both sides closed at once. Passing on only the end of one direction would leave
        the other end waiting: a standby's WAL receiver, which waits for the server's reply
        with no timeout while it connects, hung for good when the primary's dying
        postmaster reset the connection under it (seen in CI)."""
        for w in (client_w, server_w):
            w.transport.abort()

    try:
        await asyncio.gather(
            _pump(client_r, server_w, delay, reset), _pump(server_r, client_w, delay, reset),
            return_exceptions=True,
        )
    finally:
        for w in (client_w, server_w):
            w.close()


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def serve(listen: tuple[str, int], target: tuple[str, int], delay_ms: float, *,
                stop: asyncio.Event | None = None,
                bound: asyncio.Future[int] | None = None) -> None:
    """Proxy until `stop` is set (by default: until SIGTERM or SIGINT). `bound` receives
    the listening port, for callers that listen on port 0."""
    delay = delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, target, delay), *listen, reuse_address=True
    )
    if bound is not None:
        bound.set_result(server.sockets[0].getsockname()[1])
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> None:
    listen, target, delay_ms = argv
    asyncio.run(serve(_addr(listen), _addr(target), float(delay_ms)))


if __name__ == "__main__":
    main(sys.argv[1:])
