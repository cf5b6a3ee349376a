"""The storefront each region runs: a small real HTTP service over the region's datastore
(PostgreSQL, or Redis behind Sentinel with `lab up --store redis-sentinel`).

`/healthz` answers 200 "ok" only while the local datastore is the writable master, so the
global DNS health check (PowerDNS `ifurlup`) can never send users to a region whose
database is a standby or fenced. `/whoami` names the region; every response carries
`X-Region`, which is how the HTTP sampler learns which region served a request.

The application canary's two endpoints (docs/app-canary.md is the contract a service
implements; this is its reference implementation):

- `POST /canary/{seq}` stores the sequence number `seq` (0 <= seq < 2**53) once, whatever
  the number of requests that carry it, and answers 2xx only once the write is durable as
  the store defines it: 201 when this request stored it, 200 when it was already there.
  The optional header `X-Canary-Writer` names the writer. 503 means "not acknowledged".
- `GET /canary?since=SEQ&limit=N` answers `{"seqs": [...], "next": SEQ | null}`: the stored
  numbers greater than `since` (default -1: all), ascending, at most `limit` (default 1000,
  at most 10000); `next` is the `since` of the following page, null on the last one.

A malformed request gets a 4xx and changes nothing.

Run: STOREFRONT_CONNECT='{"host": ..., "dbname": ...}' python -m gameday.labs.storefront \
        --region region-1 --port 8080 [--host 0.0.0.0] [--host 2001:2::11 ...] \
        [--store postgresql]
     STOREFRONT_REDIS='{"sentinels": [[host, port], ...], ...}' python -m \
        gameday.labs.storefront --region region-1 --store redis-sentinel

One process may listen on several addresses (`--host` repeated): an instance of a
dual-stack region answers on its IPv4 and its IPv6 address, as a load balancer's node does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import psycopg

from gameday.postgres.role import WRITABLE_SQL

MAX_SEQ = 2**53 - 1  # exact as a JSON number in every client, and as a Redis score
MAX_LIMIT = 10000
DEFAULT_LIMIT = 1000
MAX_BODY = 65536
_SEQ = re.compile(r"0|[1-9][0-9]{0,15}")
_SINCE = re.compile(r"-1|0|[1-9][0-9]{0,15}")
_WRITER = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class Unavailable(Exception):
    """The datastore cannot answer, or refuses the write: nothing is acknowledged (503)."""


class UnknownProduct(Exception):
    """An order for a product that does not exist (400)."""


class Store(Protocol):
    """What the storefront asks of its datastore."""

    def not_writable(self) -> str | None:
        """None while the local datastore is the writable master, else why it is not."""

    def products(self) -> list[dict[str, Any]]: ...

    def order(self, product_id: int, quantity: int, region: str) -> int:
        """The new order's id."""

    def canary_write(self, seq: int, writer: str, region: str) -> bool:
        """Store `seq` once; True when this call stored it, False when it was there.
        Returns only once the write is durable as the store defines it."""

    def canary_since(self, since: int, limit: int) -> list[int]:
        """Stored numbers greater than `since`, ascending, at most `limit`."""


# --- PostgreSQL -------------------------------------------------------------------------


class PostgresStore:
    """One lazily (re)connected autocommit connection to the region's own database, shared
    under a lock. The canary's rows go to the storefront's own table, storefront_canary,
    not to the database canary's gameday_canary: the two canaries count apart.

    No statement_timeout on the canary write: PostgreSQL answers a commit whose wait for
    the synchronous standby is cancelled with success and a WARNING (the row stays
    committed locally), so a timeout here would turn an unreplicated write into a 2xx.
    The wait is bounded by the client (the canary's own deadline: no answer is no
    acknowledgement), and the connection by connect_timeout."""

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

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.query(sql, params)
        except psycopg.errors.ReadOnlySqlTransaction:
            raise Unavailable("database is read-only in this region") from None
        except psycopg.errors.ForeignKeyViolation:
            raise UnknownProduct() from None
        except psycopg.Error as exc:
            raise Unavailable(f"database unavailable: {type(exc).__name__}") from None

    def not_writable(self) -> str | None:
        rows = self._run(WRITABLE_SQL)
        return None if rows and rows[0][0] else "database not writable"

    def products(self) -> list[dict[str, Any]]:
        rows = self._run("SELECT id, name, price_cents FROM products ORDER BY id")
        return [{"id": r[0], "name": r[1], "price_cents": r[2]} for r in rows]

    def order(self, product_id: int, quantity: int, region: str) -> int:
        rows = self._run("INSERT INTO orders (product_id, quantity, region) "
                         "VALUES (%s, %s, %s) RETURNING id", (product_id, quantity, region))
        return int(rows[0][0])

    def canary_write(self, seq: int, writer: str, region: str) -> bool:
        # a repeat updates the row, so that its commit too waits for what the database's
        # replication setting waits for: a 2xx to a retry never acknowledges a first
        # attempt whose commit had not reached the synchronous standby
        rows = self._run(
            "INSERT INTO storefront_canary (seq, writer, region) VALUES (%s, %s, %s) "
            "ON CONFLICT (seq) DO UPDATE SET acks = storefront_canary.acks + 1 "
            "RETURNING acks", (seq, writer, region))
        return int(rows[0][0]) == 1

    def canary_since(self, since: int, limit: int) -> list[int]:
        rows = self._run("SELECT seq FROM storefront_canary WHERE seq > %s ORDER BY seq "
                         "LIMIT %s", (since, limit))
        return [int(r[0]) for r in rows]


# --- Redis behind Sentinel --------------------------------------------------------------

# the canary's numbers: one sorted set, score = member = seq; a counter every write bumps
CANARY_KEY = "storefront:canary"
CANARY_WRITES_KEY = "storefront:canary:writes"
PRODUCTS_KEY = "storefront:products"
PRODUCT_PREFIX = "storefront:product:"
ORDER_PREFIX = "storefront:order:"
ORDER_NEXT_KEY = "storefront:order:next"

# One atomic step: the number added if absent, and a counter bumped either way, so that a
# repeat also writes, and the WAIT after it covers the first attempt's write as well
_CANARY_LUA = """
local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[1])
redis.call('INCR', KEYS[2])
return added
"""
_ORDER_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', ARGV[4] .. id, 'product_id', ARGV[1], 'quantity', ARGV[2], 'region', ARGV[3])
return id
"""


class RedisStore:
    """Orders and canary numbers in Redis, whose master is found through Sentinel (redis-py's
    Sentinel support), as an application behind Sentinel does.

    `/healthz` asks two things: the local Redis says it is a master (ROLE), and the
    Sentinels name it as the master. With durability "wait" a canary write is acknowledged
    only once one replica has it too (WAIT 1), and the master itself refuses writes while
    it has no replica (min-replicas-to-write 1, in its configuration)."""

    def __init__(self, config: dict[str, Any]) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        from redis.sentinel import Sentinel

        self.redis_errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.master_name = str(config["master_name"])
        self.local = (str(config["local"][0]), int(config["local"][1]))
        self.wait_ms = int(config.get("wait_timeout_ms") or 0) \
            if config.get("durability") == "wait" else 0
        timeout = 1.0 + self.wait_ms / 1000
        # one retry: a pooled connection to a master that is gone fails once, and the
        # retry's new connection asks the Sentinels where the master is now
        common: dict[str, Any] = {"password": config["password"], "socket_timeout": timeout,
                                  "socket_connect_timeout": 0.5,
                                  "retry": Retry(NoBackoff(), 1)}
        self.sentinel = Sentinel(
            [(str(h), int(p)) for h, p in config["sentinels"]],
            sentinel_kwargs={"password": config["sentinel_password"], "socket_timeout": 0.5,
                             "socket_connect_timeout": 0.5},
            **common)
        self.master = self.sentinel.master_for(self.master_name, **common)
        self.local_client = redis.Redis(host=self.local[0], port=self.local[1],
                                        password=config["password"], socket_timeout=0.5,
                                        socket_connect_timeout=0.5)

    def _errors(self, exc: Exception) -> Unavailable:
        text = str(exc).split("\n")[0][:200]
        return Unavailable(f"redis unavailable: {type(exc).__name__}: {text}")

    def not_writable(self) -> str | None:
        try:
            role = self.local_client.role()
            if not role or _text(role[0]) != "master":
                return "local redis is a replica"
            host, port = self.sentinel.discover_master(self.master_name)
        except self.redis_errors as exc:
            raise self._errors(exc) from None
        if (str(host), int(port)) != self.local:
            return f"the Sentinels name {host}:{port} as the master"
        return None

    def products(self) -> list[dict[str, Any]]:
        try:
            ids = sorted(int(i) for i in self.master.smembers(PRODUCTS_KEY))
            pipe = self.master.pipeline(transaction=False)
            for i in ids:
                pipe.hgetall(f"{PRODUCT_PREFIX}{i}")
            rows = pipe.execute()
        except self.redis_errors as exc:
            raise self._errors(exc) from None
        return [{"id": i, "name": _text(r[b"name"]), "price_cents": int(r[b"price_cents"])}
                for i, r in zip(ids, rows, strict=True)]

    def order(self, product_id: int, quantity: int, region: str) -> int:
        try:
            made = self.master.eval(_ORDER_LUA, 2, f"{PRODUCT_PREFIX}{product_id}",
                                    ORDER_NEXT_KEY, product_id, quantity, region,
                                    ORDER_PREFIX)
        except self.redis_errors as exc:
            raise self._errors(exc) from None
        if int(made) < 0:
            raise UnknownProduct()
        return int(made)

    def canary_write(self, seq: int, writer: str, region: str) -> bool:
        # the write and its WAIT on one connection: WAIT counts the replicas that have
        # every write this connection sent before it
        pipe = self.master.pipeline(transaction=False)
        pipe.eval(_CANARY_LUA, 2, CANARY_KEY, CANARY_WRITES_KEY, seq)
        if self.wait_ms:
            pipe.execute_command("WAIT", 1, self.wait_ms)
        try:
            answers = pipe.execute()
        except self.redis_errors as exc:
            raise self._errors(exc) from None
        if self.wait_ms and int(answers[1]) < 1:
            raise Unavailable(f"not replicated within {self.wait_ms} ms (WAIT 1): "
                              "not acknowledged")
        return int(answers[0]) == 1

    def canary_since(self, since: int, limit: int) -> list[int]:
        try:
            got = self.master.zrangebyscore(CANARY_KEY, f"({since}", "+inf", start=0,
                                            num=limit)
        except self.redis_errors as exc:
            raise self._errors(exc) from None
        return [int(m) for m in got]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- HTTP -------------------------------------------------------------------------------


class BadRequest(Exception):
    """A malformed request: 4xx, nothing changed."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_seq(text: str) -> int:
    if not _SEQ.fullmatch(text) or int(text) > MAX_SEQ:
        raise BadRequest(f"the sequence number must be an integer from 0 to {MAX_SEQ}, "
                         f"in decimal: POST /canary/{{seq}}, got {text[:40]!r}")
    return int(text)


def parse_writer(value: str | None) -> str:
    if value is None:
        return ""
    if not _WRITER.fullmatch(value):
        raise BadRequest("X-Canary-Writer must be 1 to 64 letters, digits or _.:-")
    return value


def parse_page(query: str) -> tuple[int, int]:
    """`since` and `limit` of a read-back request; anything else is refused (a typo must
    not silently read everything)."""
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query),
                          max_num_fields=10)
    except ValueError:
        raise BadRequest("malformed query string: use ?since=SEQ&limit=N") from None
    unknown = sorted(set(params) - {"since", "limit"})
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}: use ?since=SEQ&limit=N")
    if any(len(v) > 1 for v in params.values()):
        raise BadRequest("give since and limit once each")
    since_text = params.get("since", ["-1"])[0]
    if not _SINCE.fullmatch(since_text) or int(since_text) > MAX_SEQ:
        raise BadRequest(f"since must be an integer from -1 to {MAX_SEQ}, "
                         f"got {since_text[:40]!r}")
    limit_text = params.get("limit", [str(DEFAULT_LIMIT)])[0]
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, "
                         f"got {limit_text[:40]!r}")
    return int(since_text), int(limit_text)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # the headers and the body go out in two writes: with Nagle the body waited for the
    # client's delayed ACK on a keep-alive connection, and every answer came ~40 ms late
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # every health check would be a log line; the samplers record what matters

    def _send(self, status: int, body: object, *, allow: str | None = None) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Region", self.server.region)
        if allow:
            self.send_header("Allow", allow)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        """The request's body, read whole (a keep-alive connection must not keep its
        bytes); a body we cannot delimit or that is too long ends the connection."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise BadRequest("send the body with Content-Length, not chunked", 411)
        length_text = self.headers.get("Content-Length") or "0"
        if not length_text.isdigit():
            self.close_connection = True
            raise BadRequest("Content-Length is not a number")
        length = int(length_text)
        if length > MAX_BODY:
            self.close_connection = True
            raise BadRequest(f"the body is longer than {MAX_BODY} bytes", 413)
        return self.rfile.read(length) if length else b""

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path
        try:
            body = self._body() if method == "POST" else b""
            if path.startswith("/canary/") and method == "POST":
                self._canary_write(path[len("/canary/"):])
            elif path == "/canary" and method == "GET":
                self._canary_read(url.query)
            elif path == "/canary" and method == "POST":
                raise BadRequest("the canary write names its sequence number in the path: "
                                 "POST /canary/{seq}")
            elif path == "/orders" and method == "POST":
                self._order(body)
            elif path in ("/healthz", "/whoami", "/products") and method == "GET":
                self._read(path)
            elif path.startswith("/canary") or path in ("/healthz", "/whoami", "/products",
                                                         "/orders"):
                allow = "POST" if path.startswith("/canary/") or path == "/orders" else "GET"
                self._send(405, {"error": f"{method} is not allowed here: use {allow}"},
                           allow=allow)
            else:
                self._send(404, {"error": "not found"})
        except BadRequest as exc:
            self._send(exc.status, {"error": str(exc)})
        except UnknownProduct:
            self._send(400, {"error": "unknown product or bad quantity"})
        except Unavailable as exc:
            self._send(503, {"error": str(exc)} if method != "GET" or path != "/healthz"
                       else str(exc))

    def _read(self, path: str) -> None:
        store = self.server.store
        if path == "/healthz":
            why = store.not_writable()
            self._send(200, "ok") if why is None else self._send(503, why)
        elif path == "/whoami":
            self._send(200, {"region": self.server.region})
        else:
            self._send(200, store.products())

    def _order(self, body: bytes) -> None:
        try:
            order = json.loads(body or b"{}")
            product, quantity = int(order["product_id"]), int(order.get("quantity", 1))
        except (ValueError, KeyError, TypeError):
            raise BadRequest("send JSON {\"product_id\": int, \"quantity\": int}") from None
        if quantity <= 0:
            raise UnknownProduct()
        order_id = self.server.store.order(product, quantity, self.server.region)
        self._send(201, {"id": order_id, "region": self.server.region})

    def _canary_write(self, seq_text: str) -> None:
        seq = parse_seq(seq_text)
        writer = parse_writer(self.headers.get("X-Canary-Writer"))
        stored = self.server.store.canary_write(seq, writer, self.server.region)
        self._send(201 if stored else 200,
                   {"seq": seq, "stored": stored, "region": self.server.region})

    def _canary_read(self, query: str) -> None:
        since, limit = parse_page(query)
        # one more than asked: whether there is a next page, without a second query
        seqs = self.server.store.canary_since(since, limit + 1)
        more = len(seqs) > limit
        seqs = seqs[:limit]
        self._send(200, {"seqs": seqs, "next": seqs[-1] if more else None})

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], region: str, store: Store) -> None:
        self.region = region
        self.store = store
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


STORES = ("postgresql", "redis-sentinel")


def make_store(kind: str, environ: dict[str, str] | os._Environ[str]) -> Store:
    """The store named `kind`, configured from the environment (never argv: it holds a
    password). ValueError names the variable to set."""
    if kind == "redis-sentinel":
        raw = environ.get("STOREFRONT_REDIS")
        if not raw:
            raise ValueError("set STOREFRONT_REDIS to a JSON object: sentinels [[host, port], "
                             "...], master_name, password, sentinel_password, local [host, "
                             "port], durability (async or wait), wait_timeout_ms")
        return RedisStore(json.loads(raw))
    raw = environ.get("STOREFRONT_CONNECT")
    if not raw:
        raise ValueError("set STOREFRONT_CONNECT to a JSON object of psycopg.connect keyword "
                         "arguments (host, port, dbname, user, password) for this region's "
                         "database")
    return PostgresStore(json.loads(raw))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--host", action="append",
                        help="an address to listen on, repeated for several (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--store", choices=STORES, default="postgresql")
    args = parser.parse_args(argv)
    try:
        store = make_store(args.store, os.environ)
    except ValueError as exc:
        parser.error(str(exc))
    servers = [_Server((host, args.port), args.region, store)
               for host in args.host or ["0.0.0.0"]]

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
