"""The storefront's application-canary endpoints over real PostgreSQL, on the shared
default netns lab (sync replication), with numbers of the test's own that it removes: a
write acknowledged by the primary's storefront is on the standby too, a repeat is stored
once, the standby's storefront acknowledges nothing, and the read-back pages what was
stored. The database canary's table is left alone."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psycopg

from gameday.foundation import descriptor
from gameday.foundation.poll import poll_until

# numbers of this test's own, removed at the end: far below any run's application canary
# (microseconds since the epoch, measure.app_canary.start_seq), so that none would read
# them back even if a crash left them
BASE = 9_000_000_000_000


def test_the_canary_endpoints_on_real_postgresql(shared_lab: dict[str, str]) -> None:
    lab_env = shared_lab
    data = json.loads(Path(lab_env["GAMEDAY_LAB"]).read_text())
    assert data["store"] == {"kind": "postgresql", "canary_table": "storefront_canary"}
    lab = descriptor.from_dict(data)
    primary, standby = (r.storefront_url for r in lab.regions)
    seq = {n: BASE + n for n in (1, 2, 3, 4)}

    def db_canary_rows(region: descriptor.Region) -> int:
        with psycopg.connect(**lab.database.params(region.db_host, region.db_port)) as c:
            return int(c.execute("SELECT count(*) FROM gameday_canary").fetchone()[0])

    db_before = {r.name: db_canary_rows(r) for r in lab.regions}
    try:
        with httpx.Client(timeout=10) as http:
            answers = [http.post(f"{primary}/canary/{seq[n]}", headers={"X-Canary-Writer": "w-1"})
                       for n in (3, 1, 2, 3)]
            assert [a.status_code for a in answers] == [201, 201, 201, 200]
            assert {a.headers["X-Region"] for a in answers} == {"region-1"}
            refused = http.post(f"{standby}/canary/{seq[4]}")
            assert refused.status_code == 503 and refused.headers["X-Region"] == "region-2"
            assert http.post(f"{primary}/canary/x").status_code == 400
            pages, since = [], BASE
            while since is not None:
                body = http.get(f"{primary}/canary", params={"since": since, "limit": 2}).json()
                pages.append(body["seqs"])
                since = body["next"]
            assert pages == [[seq[1], seq[2]], [seq[3]]]
        # stored once, the repeat counted; the standby has it too (sync replication
        # flushed it there before the 2xx; replayed within moments); the database
        # canary's table is not the storefront's
        for region in lab.regions:
            def rows(region: descriptor.Region = region) -> list[tuple[int, int]] | bool:
                with psycopg.connect(**lab.database.params(region.db_host,
                                                           region.db_port)) as c:
                    got = c.execute("SELECT seq, acks FROM storefront_canary WHERE seq > %s "
                                    "ORDER BY seq", (BASE,))
                    found = [(int(s) - BASE, int(a)) for s, a in got.fetchall()]
                return found if found == [(1, 1), (2, 1), (3, 2)] else False

            poll_until(rows, timeout_s=10, interval_s=0.1, what=f"the rows in {region.name}")
            assert db_canary_rows(region) == db_before[region.name]
    finally:
        # the shared lab as it was: the primary's delete reaches the standby by replication
        with psycopg.connect(**lab.database.params(lab.primary.db_host, lab.primary.db_port),
                             autocommit=True) as c:
            c.execute("DELETE FROM storefront_canary WHERE seq > %s", (BASE,))
