"""The storefront's application-canary endpoints over real PostgreSQL, on the default
netns lab (sync replication): a write acknowledged by the primary's storefront is on the
standby too, a repeat is stored once, the standby's storefront acknowledges nothing, and
the read-back pages what was stored. The database canary's table is left alone."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psycopg

from gameday.foundation import descriptor
from gameday.foundation.poll import poll_until
from tests.integration.conftest import lab_up


def test_the_canary_endpoints_on_real_postgresql(lab_env: dict[str, str]) -> None:
    with lab_up(lab_env), httpx.Client(timeout=10) as http:
        data = json.loads(Path(lab_env["GAMEDAY_LAB"]).read_text())
        assert data["store"] == {"kind": "postgresql", "canary_table": "storefront_canary"}
        lab = descriptor.from_dict(data)
        primary, standby = (r.storefront_url for r in lab.regions)
        answers = [http.post(f"{primary}/canary/{seq}", headers={"X-Canary-Writer": "w-1"})
                   for seq in (3, 1, 2, 3)]
        assert [a.status_code for a in answers] == [201, 201, 201, 200]
        assert {a.headers["X-Region"] for a in answers} == {"region-1"}
        refused = http.post(f"{standby}/canary/4")
        assert refused.status_code == 503 and refused.headers["X-Region"] == "region-2"
        assert http.post(f"{primary}/canary/x").status_code == 400
        pages, since = [], -1
        while since is not None:
            body = http.get(f"{primary}/canary", params={"since": since, "limit": 2}).json()
            pages.append(body["seqs"])
            since = body["next"]
        assert pages == [[1, 2], [3]]
        # stored once, the repeat counted; the standby has it too (sync replication
        # flushed it there before the 2xx; replayed within moments); the database
        # canary's table is not the storefront's
        for region in lab.regions:
            def rows(region: descriptor.Region = region) -> list[tuple[int, int]] | bool:
                with psycopg.connect(**lab.database.params(region.db_host,
                                                           region.db_port)) as c:
                    assert c.execute("SELECT count(*) FROM gameday_canary").fetchone() == (0,)
                    got = c.execute("SELECT seq, acks FROM storefront_canary ORDER BY seq")
                    found = [(int(s), int(a)) for s, a in got.fetchall()]
                return found if found == [(1, 1), (2, 1), (3, 2)] else False

            poll_until(rows, timeout_s=10, interval_s=0.1, what=f"the rows in {region.name}")
