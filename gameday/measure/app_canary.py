"""The application canary's read-back and its write accounting (issue 23): what users lost,
asked of the application itself.

After the drill the numbers the application stored are read back through its own API,
paged (`GET /canary?since=SEQ`: docs/app-canary.md), and each attempt is classified with the
same Jepsen classes as the database canary's, by the same accounting
(`measure.store.writes.account_writes`): a write the application acknowledged and cannot
read back is lost, whatever its datastore says.

A read-back is trusted only as far as it keeps its contract, since a wrong one would turn
into silent loss or silent safety: every number must be above the `since` asked, a page
that says there is more must have moved on, and a number the canary never sent is named
(it is counted `unexpected`, as a row never attempted is for the database canary).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from gameday.foundation.errors import TargetError
from gameday.foundation.settings import MAX_APP_SEQ, ReadBack
from gameday.measure.store.timeline import CanaryAttempt
from gameday.measure.store.writes import WriteAccounting, account_writes


def start_seq(now_ns: int | None = None) -> int:
    """The first number of a run's application canary: microseconds since the epoch, so
    that each run writes above every earlier one without asking the application (2^53 is
    reached in the year 2255), and a number stored above it before the canary starts was
    never sent by it."""
    return (time.time_ns() if now_ns is None else now_ns) // 1000


@dataclasses.dataclass(frozen=True, kw_only=True)
class Where:
    """Where the application answers a template that is a path: `base_url` (the global
    name's address as resolved), with the global name as Host and TLS name (`host`), as
    users send it. A template that is a whole URL goes there as it is."""

    base_url: str
    host: str | None = None
    verify: bool | str = True
    timeout_s: float = 5.0

    def url(self, target: str) -> str:
        return target if "://" in target else self.base_url.rstrip("/") + target


def read_page(client: httpx.Client, where: Where, read: ReadBack, since: int
              ) -> tuple[list[int], int | None]:
    """One page of the read-back: (numbers above `since`, the next page's since or None).
    TargetError, one line, when the endpoint does not answer or breaks its contract."""
    target = read.page(since)
    url = where.url(target)
    headers = dict(read.headers)
    extensions: dict[str, Any] = {}
    if where.host and "://" not in target:  # a path on the global name
        headers["Host"] = where.host
        extensions["sni_hostname"] = where.host
    try:
        answer = client.get(url, headers=headers, timeout=where.timeout_s,
                            extensions=extensions)
    except httpx.HTTPError as exc:
        raise TargetError(f"the application canary's read-back GET {url} does not answer "
                          f"({type(exc).__name__}): check app_canary.read_back and that the "
                          "service is up") from None
    if answer.status_code != 200:
        raise TargetError(f"the application canary's read-back GET {url} answered "
                          f"{answer.status_code}, not 200: check app_canary.read_back")
    try:
        body = answer.json()
    except ValueError:
        body = None
    seqs: Any = body.get("seqs") if isinstance(body, dict) else None
    nxt: Any = body.get("next", "missing") if isinstance(body, dict) else "missing"
    if not isinstance(seqs, list) or not all(_is_seq(s) for s in seqs) or \
            not (nxt is None or _is_seq(nxt)):
        raise TargetError(f"the application canary's read-back GET {url} did not answer "
                          '{"seqs": [numbers], "next": number or null}: return that '
                          "(docs/app-canary.md)")
    below = [s for s in seqs if s <= since]
    if below:
        raise TargetError(f"the application canary's read-back GET {url} returned "
                          f"{below[0]}, not above since={since}: it must return only the "
                          "numbers above since (it ignores since, or reads something else)")
    if nxt is not None and (not seqs or nxt < max(seqs)):
        raise TargetError(f"the application canary's read-back GET {url} said the next "
                          f"page starts after {nxt}, which does not move past its page: "
                          "make 'next' the last number returned")
    return seqs, nxt


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and \
        0 <= value <= MAX_APP_SEQ


def read_back(client: httpx.Client, where: Where, read: ReadBack, since: int, *,
              most: int) -> Counter[int]:
    """Every number the application returns above `since`, page by page, with how many
    times each came back (twice: a duplicate). `most` bounds the read: more numbers than
    the canary sent (and so more pages than they fill) is a read-back of something else,
    which would otherwise be read on for as long as it has numbers."""
    found: Counter[int] = Counter()
    page_since: int | None = since
    while page_since is not None:
        seqs, page_since = read_page(client, where, read, page_since)
        found.update(seqs)
        if found.total() > most:
            raise TargetError(f"the application canary's read-back returned more than "
                              f"{most} numbers above since={since}, more than the canary "
                              "sent: it reads something other than the canary's writes")
    return found


@dataclasses.dataclass(frozen=True, kw_only=True)
class AppWrites:
    """The application canary's writes classified: the accounting the database canary's
    report uses, and the numbers read back that it never sent."""

    accounting: WriteAccounting
    read_back: int
    never_sent: tuple[int, ...]

    def notes(self) -> list[str]:
        """What the report must say beside the counts."""
        if not self.never_sent:
            return []
        return [f"the read-back returned {len(self.never_sent)} number(s) the application "
                f"canary never sent (first: {self.never_sent[0]}), counted unexpected: it "
                "reads something other than the canary's writes"]


def classify(attempts: Iterable[CanaryAttempt], read: Mapping[int, int], *,
             t_fault: float | None, start: int) -> AppWrites:
    """Each attempt numbered from `start` classified against what was read back: acked,
    lost, recovered, unknown-absent, unexpected, duplicate (measure.store.writes)."""
    rows = list(attempts)
    present = {seq: n for seq, n in read.items() if seq >= start}
    sent = {row.seq for row in rows}
    return AppWrites(
        accounting=account_writes(rows, present, t_fault=t_fault, start_seq=start),
        read_back=len(present),
        never_sent=tuple(sorted(seq for seq in present if seq not in sent)),
    )
