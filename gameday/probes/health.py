"""Steady-state probes: what must hold before a fault is injected (docs/design.md, Failover
and failback protocol)."""

import asyncio
import time
from typing import Any, Dict, Optional

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import httpx

from gameday import postgres
from gameday.actions._common import activity, context
from gameday.errors import ConfigError, TargetError
from gameday.labs.descriptor import Lab
from gameday.measure import _http, timeline
from gameday.measure import run as runs
from gameday.measure.samplers import HTTP_ERRORS, url_target
from gameday.poll import poll_until

__all__ = ["region_is_healthy", "dns_answers_region", "standby_is_streaming",
           "replication_lag_below", "canary_is_writing", "global_name_serves"]


@activity
def region_is_healthy(region: str = "region-1",
                      configuration: Optional[Dict[str, Any]] = None,
                      secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when `region`'s storefront answers /healthz with 200 (its database is writable)."""
    _, lab = context(configuration, secrets)
    url = lab.region(region).storefront_url.rstrip("/") + "/healthz"
    try:
        return httpx.get(url, timeout=2, trust_env=False,
                         verify=lab.ca_bundle or True).status_code == 200
    except httpx.HTTPError:
        return False


@activity
def dns_answers_region(region: str = "region-1", server: str = "resolver",
                       configuration: Optional[Dict[str, Any]] = None,
                       secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when `server` (authoritative or resolver) answers the global name with
    `region`'s address."""
    _, lab = context(configuration, secrets)
    if server not in ("authoritative", "resolver"):
        raise ConfigError("server must be 'authoritative' or 'resolver'")
    return sorted(resolve(lab, server)) == [lab.region(region).address]


def resolve(lab: Lab, server: str = "resolver") -> list[str]:
    """The A records `server` (authoritative or resolver) gives for the global name;
    TargetError when it does not answer."""
    s = lab.dns.authoritative if server == "authoritative" else lab.dns.resolver
    try:
        r = dns.query.udp(dns.message.make_query(lab.dns.name, dns.rdatatype.A), s.ip(),
                          port=s.port, timeout=2)
    except (dns.exception.DNSException, OSError) as exc:
        raise TargetError(f"the {server} DNS server {s.address}:{s.port} does not answer "
                          f"({type(exc).__name__}): is the lab up?") from None
    return [rr.address for rrset in r.answer for rr in rrset if rrset.rdtype == dns.rdatatype.A]


@activity
def standby_is_streaming(region: str = "region-2",
                         configuration: Optional[Dict[str, Any]] = None,
                         secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when `region`'s database is a standby whose WAL receiver is streaming."""
    _, lab = context(configuration, secrets)
    return postgres.standby_streams(lab, lab.region(region))


@activity
def replication_lag_below(region: str = "region-2", max_lag_s: float = -1.0,
                          configuration: Optional[Dict[str, Any]] = None,
                          secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when the standby in `region` replays within `max_lag_s` seconds of its primary
    (default: configuration `max_lag_s`). Measured as the primary sees it: the bytes the
    standby has not replayed must be 0, or its reported replay lag under the bound."""
    settings, lab = context(configuration, secrets)
    bound = settings.max_lag_s if max_lag_s < 0 else max_lag_s
    primary = next(r for r in lab.regions if r.name != region)
    found = postgres.replay_lag(lab, primary, lab.region(region))
    if found is None:
        return False
    behind, lag = found
    return behind == 0 or lag is None or lag <= bound


@activity
def canary_is_writing(within_s: float = 2.0,
                      configuration: Optional[Dict[str, Any]] = None,
                      secrets: Optional[Dict[str, Any]] = None) -> bool:
    """True when the recorder's canary had a write acknowledged in the last `within_s`.
    In plan mode (`chaos run --dry`) no recorder runs: the plan stands in for it, true
    unless the plan was refused."""
    plan = runs.dry_plan()
    if plan is not None:
        return not plan.get("refused", True)
    run = runs.current()
    if run is None:
        return False
    time.sleep(0.3)  # let the recorder flush its latest batch
    conn = timeline.connect(run.dir)
    try:
        n = int(conn.execute("SELECT count(*) FROM canary WHERE outcome = 'ok' AND t_ack >= ?",
                             (run.now() - within_s,)).fetchone()[0])
    finally:
        conn.close()
    return n > 0


@activity
def global_name_serves(within_s: float = 10.0,
                       configuration: Optional[Dict[str, Any]] = None,
                       secrets: Optional[Dict[str, Any]] = None) -> bool:
    """Resolve the global name through the caching resolver, as a client does, and ask the
    answer whether it can take an order (/healthz). True before the fault (the primary
    serves) and after the failover (the secondary serves): the service's steady state.
    Retries for up to `within_s` seconds, so a drill started right after another one waits
    for DNS to settle (a resolver may hold the previous answer for a TTL)."""
    _, lab = context(configuration, secrets)
    try:
        return poll_until(lambda: _global_name_serves_once(lab), timeout_s=within_s,
                          interval_s=0.2)
    except TargetError:
        return False


def _global_name_serves_once(lab: Lab) -> bool:
    answer = ask_global_name(lab, "/healthz")
    return answer is not None and answer[0] == 200


def ask_global_name(lab: Lab, path: str) -> tuple[int, str | None] | None:
    """GET `path` as a client of the global name does: resolve it through the caching
    resolver, connect to the answer, and send the global name as Host and as the TLS name
    (so an https storefront's certificate is checked for the name users type). (status,
    X-Region), or None when no answer came."""
    addresses = resolve(lab, "resolver")
    if not addresses:
        return None
    region = next((x for x in lab.regions if x.address == addresses[0]), None)
    scheme, port = "http", 8080
    if region is not None:
        scheme, _, port, _ = url_target(region.storefront_url)

    async def get() -> tuple[int, str | None]:
        client = _http.Client(2.0, ca_bundle=lab.ca_bundle)
        try:
            return await client.get(addresses[0], port, path, scheme=scheme,
                                    host_header=lab.dns.name)
        finally:
            await client.aclose()

    try:
        return asyncio.run(get())
    except HTTP_ERRORS:
        return None
