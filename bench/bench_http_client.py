"""CPU cost of the samplers' HTTP client (gameday/measure/_http.py), which exists only to be
cheap: the recorder's budget is 15% of one core with 60 HTTP requests a second among its
other samplers. Sequential keep-alive GETs against a local asyncio server in a child
process (so that this process's CPU time is the client's and its event loop's alone):
Content-Length bodies, chunked bodies, and HTTPS (keep-alive, so one handshake).

Prints requests/s and CPU seconds (time.process_time) per 1000 requests for each case.
With --old FILE, also measures another copy of the client module on the Content-Length
case, e.g. the client before chunked bodies and TLS:

    git show eb77e59:gameday/measure/_http.py > /tmp/old_http.py
    .venv/bin/python bench/bench_http_client.py --old /tmp/old_http.py

Not part of `make bench`: it has no target, being a tool to compare two versions of the
client on one machine. The client's cost in the recorder is judged by
bench/bench_recorder.py (the recorder's CPU against its bare schedule, every stream
sampled).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from gameday.measure import _http

NAME = "shop.gameday.test"
ROUNDS = 5
BODY = b'{"ok": true, "region": "region-1"}'
RESPONSES = {
    b"/cl": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"X-Region: region-1\r\n\r\n%s" % (len(BODY), BODY),
    b"/chunked": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
                 b"\r\nX-Region: region-1\r\n\r\n"
                 b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n"
                 % (len(BODY[:10]), BODY[:10], len(BODY[10:]), BODY[10:]),
}


def make_pki(d: Path) -> bool:
    """A throwaway CA and a certificate for NAME, with the openssl command if there is one."""
    if shutil.which("openssl") is None:
        return False

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=bench CA")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={NAME}")
    (d / "ext.cnf").write_text(f"subjectAltName=DNS:{NAME}\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf")
    return True


async def serve(pki: Path | None) -> None:
    """The child: plain and TLS servers; prints their ports, stops when stdin closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                writer.write(RESPONSES[line.split()[1]])
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    plain = await asyncio.start_server(handle, "127.0.0.1", 0)
    ports = [plain.sockets[0].getsockname()[1], 0]
    if pki is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
        tls = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        ports[1] = tls.sockets[0].getsockname()[1]
    print(*ports, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def measure(client: Any, port: int, path: str, n: int,
                  **kwargs: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of n sequential GETs."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        status, region = await client.get("127.0.0.1", port, path, **kwargs)
        if (status, region) != (200, "region-1"):
            raise SystemExit(f"{path}: unexpected response {status} {region}")
    return time.perf_counter() - wall, time.process_time() - cpu


def load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("old_http", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def bench(plain: int, tls: int, pki: Path | None, n: int, old: str | None) -> None:
    cases: list[tuple[str, Any, int, str, dict[str, Any]]] = []
    if old is not None:
        cases.append(("old client, Content-Length", load(old).Client(5.0), plain, "/cl", {}))
    cases += [
        ("Content-Length", _http.Client(5.0), plain, "/cl", {}),
        ("chunked", _http.Client(5.0), plain, "/chunked", {}),
    ]
    if pki is not None:
        cases += [
            ("TLS, Content-Length", _http.Client(5.0, ca_bundle=pki / "ca.pem"), tls, "/cl",
             {"scheme": "https", "host_header": NAME}),
            ("TLS, chunked", _http.Client(5.0, ca_bundle=pki / "ca.pem"), tls, "/chunked",
             {"scheme": "https", "host_header": NAME}),
        ]
    # the cases take turns, a slice at a time, so that a drift of the machine (another
    # process, frequency scaling) falls on all of them alike
    totals = [[0.0, 0.0] for _ in cases]
    for turn in range(-1, ROUNDS):  # turn -1 warms up (and makes the connections)
        for total, (_, client, port, path, kwargs) in zip(totals, cases, strict=True):
            wall, cpu = await measure(client, port, path, n // ROUNDS, **kwargs)
            if turn >= 0:
                total[0] += wall
                total[1] += cpu
    done = n // ROUNDS * ROUNDS
    print(f"{done} sequential keep-alive GETs per case, in {ROUNDS} turns")
    print(f"{'case':<28} {'requests/s':>10} {'CPU s/1000 req':>15}")
    for (wall, cpu), (label, client, *_) in zip(totals, cases, strict=True):
        await client.aclose()
        print(f"{label:<28} {done / wall:>10.0f} {cpu / done * 1000:>15.4f}")
    if pki is None:
        print("(no TLS cases: the openssl command is missing)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="per case")
    parser.add_argument("--old", help="another copy of _http.py, measured on Content-Length")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(Path(args.serve) if args.serve else None))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp) if make_pki(Path(tmp)) else None
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(pki or "")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            plain, tls = map(int, child.stdout.readline().split())
            asyncio.run(bench(plain, tls, pki, args.requests, args.old))
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
