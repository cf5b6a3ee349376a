"""A DNS and HTTP client run inside a lab namespace (`ip netns exec gd-region-2 python
tests/integration/dns_client.py ...`), where the lab's users are: the tests ask from there,
not from the host. Prints JSON; times are time.monotonic(), which network namespaces share
with the test that started it.

  once SERVER NAME RDTYPE [TIMEOUT]      one answer
  watch SECONDS NAME SERVER...           every 50 ms, each server's A answer, one line each,
                                         for at most SECONDS: it ends once every server
                                         has answered other than at first for SETTLED_S
  http URL...                            each URL's status and X-Region
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gameday.labs.netns import dnsprofile  # noqa: E402

SETTLED_S = 1.5  # how long a changed answer must hold before the watch ends


def answer(server: str, name: str, rdtype: str, timeout: float) -> dict[str, object]:
    at = time.monotonic()
    try:
        got = dnsprofile.resolve(server, name, rdtype, timeout=timeout)
    except Exception as exc:  # an unanswered query is data here
        return {"t": at, "server": server, "rcode": type(exc).__name__, "chain": [],
                "addresses": [], "ttl": None}
    return {"t": at, "server": server, **dataclasses.asdict(got), "chain": list(got.chain),
            "addresses": sorted(got.addresses)}


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "once":
        server, name, rdtype, *timeout = args
        print(json.dumps(answer(server, name, rdtype, float(timeout[0]) if timeout else 1.0)))
    elif mode == "watch":
        seconds, name, *servers = args
        end = time.monotonic() + float(seconds)
        first: dict[str, object] = {}
        last: dict[str, object] = {}
        # since when each has given its current answer, when that is not its first one
        changed: dict[str, float | None] = {}
        while time.monotonic() < end:
            for server in servers:
                got = answer(server, name, "A", 0.5)
                print(json.dumps(got), flush=True)
                now = (got["rcode"], got["chain"], got["addresses"])
                first.setdefault(server, now)
                if now == first[server]:
                    changed[server] = None
                elif now != last.get(server):
                    changed[server] = time.monotonic()
                last[server] = now
            since = [changed.get(s) for s in servers]
            if all(t is not None and time.monotonic() - t >= SETTLED_S for t in since):
                break  # every server changed its answer and kept the new one
            time.sleep(0.05)
    elif mode == "http":
        for url in args:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (lab URLs)
                print(json.dumps({"url": url, "status": response.status,
                                  "region": response.headers.get("X-Region")}))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
