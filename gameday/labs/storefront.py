"""The storefront each region runs: a small real HTTP service over the region's own database.

`/healthz` answers 200 "ok" only while the local database accepts writes, so the global
DNS health check (PowerDNS `ifurlup`) can never send users to a region whose database is a
standby or fenced. `/whoami` names the region; every response carries `X-Region`, which is
how the HTTP sampler learns which region served a request.

Run: STOREFRONT_DSN='host=... dbname=storefront ...' python -m gameday.labs.storefront \
        --region region-1 --port 8080 [--host 0.0.0.0] [--host 2001:2::11 ...]

One process may listen on several addresses (`--host` repeated): an instance of a
dual-stack region answers on its IPv4 and its IPv6 address, as a load balancer's node does.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

from gameday.postgres.role import WRITABLE_SQL


class _Database:
    """One lazily (re)connected autocommit connection, shared under a lock."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.lock = threading.Lock()
        self.conn: psycopg.Connection | None = None

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            for attempt in (1, 2):
                try:
                    if self.conn is None or self.conn.closed:
                        self.conn = psycopg.connect(**self.params, autocommit=True,
                                                    connect_timeout=1)
                    with self.conn.cursor() as cur:
                        cur.execute(sql, params)
                        return cur.fetchall() if cur.description else []
                except psycopg.OperationalError:
                    if self.conn is not None:
                        self.conn.close()
                    self.conn = None
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # every health check would be a log line; the samplers record what matters

    def _send(self, status: int, body: object) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Region", self.server.region)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        db = self.server.db
        try:
            if self.path == "/healthz":
                rows = db.query(WRITABLE_SQL)
                if rows and rows[0][0]:
                    self._send(200, "ok")
                else:
                    self._send(503, "database not writable")
            elif self.path == "/whoami":
                self._send(200, {"region": self.server.region})
            elif self.path == "/products":
                rows = db.query("SELECT id, name, price_cents FROM products ORDER BY id")
                self._send(200, [{"id": r[0], "name": r[1], "price_cents": r[2]} for r in rows])
            else:
                self._send(404, {"error": "not found"})
        except psycopg.Error as exc:
            self._send(503, f"database unavailable: {type(exc).__name__}")

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/orders":
            self._send(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            order = json.loads(self.rfile.read(length) or b"{}")
            product, quantity = int(order["product_id"]), int(order.get("quantity", 1))
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": "send JSON {\"product_id\": int, \"quantity\": int}"})
            return
        try:
            rows = self.server.db.query(
                "INSERT INTO orders (product_id, quantity, region) VALUES (%s, %s, %s) RETURNING id",
                (product, quantity, self.server.region),
            )
            self._send(201, {"id": rows[0][0], "region": self.server.region})
        except psycopg.errors.ReadOnlySqlTransaction:
            self._send(503, {"error": "database is read-only in this region"})
        except psycopg.errors.IntegrityError:
            self._send(400, {"error": "unknown product or bad quantity"})
        except psycopg.Error as exc:
            self._send(503, {"error": f"database unavailable: {type(exc).__name__}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], region: str, db: _Database) -> None:
        self.region = region
        self.db = db
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse lookup of the address (socket.getfqdn);
        # in a namespace with no reachable resolver that stalls start-up for seconds.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--host", action="append",
                        help="an address to listen on, repeated for several (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    params = os.environ.get("STOREFRONT_CONNECT")
    if not params:
        parser.error("set STOREFRONT_CONNECT to a JSON object of psycopg.connect keyword "
                     "arguments (host, port, dbname, user, password) for this region's database")
    db = _Database(json.loads(params))
    servers = [_Server((host, args.port), args.region, db) for host in args.host or ["0.0.0.0"]]

    def shutdown() -> None:
        for server in servers:
            server.shutdown()

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=shutdown).start())
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()
    try:
        servers[0].serve_forever(poll_interval=0.2)
    finally:
        for server in servers:
            server.server_close()


if __name__ == "__main__":
    main()
