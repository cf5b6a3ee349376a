"""What the steady-state probes and the readiness gate ask the lab: is a region healthy,
what DNS answers, does the standby stream and how far behind, does the global name serve.
Plain functions over the descriptor, so the gate asks them once per check without going
through the activities (gameday.probes.health wraps them for experiments).
"""

from __future__ import annotations

import asyncio

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import httpx

from gameday.drill import stores
from gameday.foundation import endpoints
from gameday.foundation.descriptor import Lab
from gameday.foundation.errors import ConfigError, TargetError
from gameday.foundation.poll import poll_until
from gameday.foundation.settings import AppCanary
from gameday.measure import _http, app_canary
from gameday.measure.samplers import HTTP_ERRORS, url_target


def region_is_healthy(lab: Lab, region: str) -> bool:
    """True when `region`'s storefront answers /healthz with 200 (its database is writable)."""
    url = lab.region(region).storefront_url.rstrip("/") + "/healthz"
    try:
        return httpx.get(url, timeout=2, trust_env=False,
                         verify=lab.ca_bundle or True).status_code == 200
    except httpx.HTTPError:
        return False


def dns_answers_region(lab: Lab, region: str, server: str) -> bool:
    """True when `server` (authoritative or resolver) answers the global name, A and AAAA
    through any CNAME chain, with `region`'s endpoints only (endpoints.classify)."""
    if server not in ("authoritative", "resolver"):
        raise ConfigError("server must be 'authoritative' or 'resolver'")
    lab.region(region)  # an unknown region is a ConfigError, not a False
    addresses: list[str] = []
    chain: list[str] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        found, through = _ask(lab, server, rdtype)
        addresses += found
        chain += [name for name in through if name not in chain]
    return endpoints.classify(addresses, chain, lab.endpoints()) == region


def resolve(lab: Lab, server: str = "resolver") -> list[str]:
    """The A records `server` (authoritative or resolver) gives for the global name;
    TargetError when it does not answer."""
    return _ask(lab, server, dns.rdatatype.A)[0]


def _ask(lab: Lab, server: str, rdtype: dns.rdatatype.RdataType) -> tuple[list[str], list[str]]:
    """(the addresses of type `rdtype`, the CNAME targets in order) that `server` gives for
    the global name; TargetError when it does not answer."""
    s = lab.dns.authoritative if server == "authoritative" else lab.dns.resolver
    try:
        r = dns.query.udp(dns.message.make_query(lab.dns.name, rdtype), s.ip(), port=s.port,
                          timeout=2)
    except (dns.exception.DNSException, OSError) as exc:
        raise TargetError(f"the {server} DNS server {s.address}:{s.port} does not answer "
                          f"({type(exc).__name__}): is the lab up?") from None
    addresses = [rr.address for rrset in r.answer for rr in rrset if rrset.rdtype == rdtype]
    chain = [str(rr.target).rstrip(".") for rrset in r.answer for rr in rrset
             if rrset.rdtype == dns.rdatatype.CNAME]
    return addresses, chain


def standby_is_streaming(lab: Lab, region: str) -> bool:
    """True when `region`'s database is a standby that streams from its primary (its WAL
    receiver streaming; a Redis replica's link up, INFO replication's master_link_status)."""
    return stores.for_lab(lab).standby_streams(lab, lab.region(region))


def replication_lag_below(lab: Lab, region: str, bound_s: float) -> bool:
    """True when the standby in `region` replays within `bound_s` seconds of its primary.
    Measured as the primary sees it: the bytes the standby has not replayed must be 0, or
    its reported replay lag under the bound (a Redis master's: the seconds since the replica
    last acknowledged its stream)."""
    primary = next(r for r in lab.regions if r.name != region)
    found = stores.for_lab(lab).replay_lag(lab, primary, lab.region(region))
    if found is None:
        return False
    behind, lag = found
    return behind == 0 or lag is None or lag <= bound_s


def global_name_serves(lab: Lab, within_s: float) -> bool:
    """True when the global name, resolved through the caching resolver as a client does,
    answers /healthz with 200 within `within_s` seconds (retried: a resolver may hold the
    previous answer for a TTL)."""
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
    target = _global_target(lab)
    if target is None:
        return None
    address, scheme, port = target

    async def get() -> tuple[int, str | None]:
        client = _http.Client(2.0, ca_bundle=lab.ca_bundle)
        try:
            return await client.get(address, port, path, scheme=scheme,
                                    host_header=lab.dns.name)
        finally:
            await client.aclose()

    try:
        return asyncio.run(get())
    except HTTP_ERRORS:
        return None


def global_where(lab: Lab, timeout_s: float = 2.0) -> app_canary.Where | None:
    """Where a client of the global name is sent now: the address the caching resolver
    answers, on the port and scheme of the region there, with the global name as Host
    and TLS name. None when the resolver answers no address."""
    target = _global_target(lab)
    if target is None:
        return None
    address, scheme, port = target
    return app_canary.Where(base_url=f"{scheme}://{address}:{port}", host=lab.dns.name,
                            verify=lab.ca_bundle or True, timeout_s=timeout_s)


def _global_target(lab: Lab) -> tuple[str, str, int] | None:
    """(address, scheme, port) a client of the global name is sent to now: the first
    address the caching resolver answers, on the scheme and port of the region there
    (http 8080 for an address no region has). None when it answers no address."""
    addresses = resolve(lab, "resolver")
    if not addresses:
        return None
    region = next((x for x in lab.regions if x.address == addresses[0]), None)
    if region is None:
        return addresses[0], "http", 8080
    scheme, _, port, _ = url_target(region.storefront_url)
    return addresses[0], scheme, port


def app_read_back_problem(lab: Lab, canary: AppCanary, since: int) -> str | None:
    """Why the application canary's read-back cannot be trusted before the first fault, or
    None: it must answer through the global name, keep its contract, and return nothing
    above `since` (the run's first number less one) while the canary has sent nothing. A
    read-back of something else would hide loss behind numbers the canary never sent."""
    where = global_where(lab)
    if where is None:
        return "the application canary's read-back: the resolver answers no address for " \
               f"{lab.dns.name}"
    try:
        with httpx.Client(trust_env=False, verify=where.verify) as client:
            seqs, _ = app_canary.read_page(client, where, canary.read_back, since)
    except TargetError as exc:
        return str(exc)
    if seqs:
        return (f"the application canary's read-back returned {len(seqs)} number(s) above "
                f"since={since} before the canary sent any (first: {seqs[0]}): it must "
                "return only the numbers the canary wrote")
    return None


def served_by(lab: Lab, region: str) -> bool:
    """True when a client resolving the global name through the caching resolver is
    served by `region` (its /whoami)."""
    addresses = resolve(lab, "resolver")
    if not addresses:
        return False
    url = f"http://{addresses[0]}:{httpx.URL(lab.region(region).storefront_url).port or 80}"
    try:
        resp = httpx.get(url + "/whoami", headers={"Host": lab.dns.name}, timeout=2,
                         trust_env=False)
    except httpx.HTTPError:
        return False
    return resp.status_code == 200 and resp.json().get("region") == region
