"""The walking skeleton on the real lab, as a user gets it: gameday installed with `pip
install .` into a fresh venv and used from a directory outside the checkout (the package
carries its data: schemas, storefront.sql, the experiments; `chaos discover` lists its
activities), lab up, the game day through `chaos run`, the summary, and a `lab down` that
leaves nothing behind. During the game day a client of the test's own measures RTO from
outside the tool, as a user of the global name would see it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import httpx

from tests.integration.conftest import ROOT, chaos, lab_pids, lab_status, residue

SUMMARY_KEYS = {"schema", "experiment", "run_id", "started_at", "lab", "verdict", "reasons",
                "targets", "rto_s", "rto_error_s", "write_rto_s", "downtime_s", "rpo_s",
                "phases", "writes", "replication", "faults", "failback"}


def test_chaos_run_without_a_lab_says_to_bring_it_up(lab_env: dict[str, str]) -> None:
    reports = Path(lab_env["GAMEDAY_REPORTS"])
    before = set(reports.glob("*")) if reports.exists() else set()
    proc = chaos("game-day.json", env=lab_env, timeout=120)
    assert proc.returncode != 0
    assert "gameday lab up" in proc.stdout + proc.stderr
    after = set(reports.glob("*")) if reports.exists() else set()
    assert after - before <= {reports / "journal.json"}, after - before  # no run started


class OutsideClient(threading.Thread):
    """A user of the global name, independent of gameday's recorder: every 20 ms it asks
    the lab's caching resolver for the name (as a user's stub resolver would), then GETs
    /healthz from the first address with the name as Host, on a new connection each time.
    It keeps (monotonic_ns, ok, region that answered) per request; nothing of gameday's
    code runs here."""

    INTERVAL_S = 0.02
    TIMEOUT_S = 0.25

    def __init__(self, lab: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.name_ = lab["dns"]["name"]
        self.resolver = (lab["dns"]["resolver"]["address"], int(lab["dns"]["resolver"]["port"]))
        self.port = httpx.URL(lab["regions"][0]["storefront_url"]).port
        self.samples: list[tuple[int, bool, str | None]] = []
        self.stop = threading.Event()

    def once(self, http: httpx.Client) -> tuple[bool, str | None]:
        query = dns.message.make_query(self.name_, dns.rdatatype.A)
        try:
            answer = dns.query.udp(query, self.resolver[0], port=self.resolver[1],
                                   timeout=self.TIMEOUT_S)
            address = next(rr.address for rrset in answer.answer for rr in rrset
                           if rrset.rdtype == dns.rdatatype.A)
            resp = http.get(f"http://{address}:{self.port}/healthz",
                            headers={"Host": self.name_})
        except (dns.exception.DNSException, OSError, StopIteration, httpx.HTTPError):
            return False, None
        return resp.status_code == 200, resp.headers.get("X-Region")

    def run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=self.TIMEOUT_S, limits=limits, trust_env=False) as http:
            next_at = time.monotonic()
            while not self.stop.is_set():
                t = time.monotonic_ns()
                ok, region = self.once(http)
                self.samples.append((t, ok, region))
                next_at = max(next_at + self.INTERVAL_S, time.monotonic())
                self.stop.wait(max(0.0, next_at - time.monotonic()))

    def rto(self, anchor_ns: int, t_fault: float, k: int, region: str
            ) -> tuple[float | None, float | None]:
        """(RTO, the gap before its first sample): the start of the first k consecutive
        successes served by `region` at or after t_fault, on the run's clock."""
        rows = [((t - anchor_ns) / 1e9, ok and served == region) for t, ok, served in self.samples]
        for i in range(len(rows) - k + 1):
            if rows[i][0] >= t_fault and all(good for _, good in rows[i:i + k]):
                return rows[i][0] - t_fault, rows[i][0] - rows[i - 1][0] if i else None
        return None, None


def run(argv: list[str], *, cwd: Path, env: dict[str, str], check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, \
            f"{' '.join(argv)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _installed(lab_env: dict[str, str], venv: Path, elsewhere: Path) -> tuple[dict[str, str],
                                                                              Path]:
    """The env that runs the installed package from `elsewhere` (no PYTHONPATH, no
    checkout on the path: only what the wheel carries), and its shipped game day."""
    env = {k: v for k, v in lab_env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    site = run([str(venv / "bin" / "python"), "-c",
                "import gameday, pathlib; print(pathlib.Path(gameday.__file__).parent)"],
               cwd=elsewhere, env=env).stdout.strip()
    assert not site.startswith(str(ROOT)), site
    for data in ("labs/storefront.sql", "foundation/descriptor.schema.json",
                 "measure/summary.schema.json", "experiments/game-day.json",
                 "experiments/failback.json"):
        assert (Path(site) / data).is_file(), data
    # Chaos Toolkit finds the extension by its distribution name, already installed
    run([str(venv / "bin" / "chaos"), "--no-version-check", "discover", "chaostoolkit-gameday",
         "--no-install", "--no-system-info", "--discovery-path", "discovery.json"],
        cwd=elsewhere, env=env)
    discovery = json.loads((elsewhere / "discovery.json").read_text())
    assert discovery["extension"]["name"] == "chaostoolkit-gameday"
    names = {a["name"] for a in discovery["activities"]}
    assert {"take_region_down", "promote", "wait_for_recovery", "rto_seconds"} <= names, names
    experiment = run([str(venv / "bin" / "gameday"), "experiments", "--path", "game-day"],
                     cwd=elsewhere, env=env).stdout.strip()
    assert experiment.startswith(site)
    return env, Path(experiment)


def test_game_day_on_the_real_lab(lab_env: dict[str, str], installed_venv: Path,
                                  tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # `pip install .` into a fresh venv (conftest.PackageInstall, in the background)
    env, experiment = _installed(lab_env, installed_venv, elsewhere)
    gameday_ = str(installed_venv / "bin" / "gameday")
    started = time.monotonic()
    run([gameday_, "lab", "up"], cwd=elsewhere, env=env)
    up_s = time.monotonic() - started
    pids = lab_pids(lab_env)
    assert len(pids) >= 7, pids  # 2 databases, 2 proxies, 2 storefronts, pdns, unbound

    again = run([gameday_, "lab", "up"], cwd=elsewhere, env=env, check=False)
    assert again.returncode != 0 and "already up" in again.stderr

    lab = json.loads(Path(lab_env["GAMEDAY_LAB"]).read_text())
    client = OutsideClient(lab)
    client.start()
    try:
        proc = run([str(installed_venv / "bin" / "chaos"), "--no-version-check", "run",
                    "--journal-path", str(Path(lab_env["GAMEDAY_REPORTS"]) / "journal.json"),
                    str(experiment)], cwd=elsewhere, env=env, check=False)
    finally:
        client.stop.set()
        client.join(5)
    output = proc.stdout + proc.stderr
    latest = Path(lab_env["GAMEDAY_REPORTS"]) / "latest"
    summary = json.loads((latest / "summary.json").read_text())

    # RTO as the test's own client saw it agrees with the report's, within the report's
    # error bar plus the client's own gap at that instant. The fault's start is the
    # instant gameday recorded as it began the fault (its own action, not a measurement);
    # the client's clock is the same system-wide monotonic clock as the run's.
    db = sqlite3.connect(latest / "timeline.sqlite")
    meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
    t_fault = db.execute("SELECT min(t) FROM events WHERE kind = 'fault-applied'").fetchone()[0]
    # the DNS samplers record the whole answer (A and AAAA, the chain) and its region: the
    # default lab answers one A record per region, no AAAA, no CNAME
    answers = db.execute("SELECT server, answer, chain, region, count(*) FROM dns WHERE ok "
                         "GROUP BY server, answer, chain, region").fetchall()
    db.close()
    regions = {r["address"]: r["name"] for r in lab["regions"]}
    assert {(answer, chain, region) for _s, answer, chain, region, _n in answers} <= {
        (address, "", name) for address, name in regions.items()}, answers
    assert {s for s, *_ in answers} == {"authoritative", "resolver"}, answers
    outside, gap = client.rto(int(meta["anchor_ns"]), t_fault, int(meta["k_consecutive"]),
                              "region-2")
    assert outside is not None and gap is not None, client.samples[-20:]
    assert abs(outside - summary["rto_s"]) <= summary["rto_error_s"] + gap + 1e-3, (
        outside, gap, summary["rto_s"], summary["rto_error_s"])
    served = [r for _, ok, r in client.samples if ok]
    assert served[0] == "region-1" and served[-1] == "region-2"
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["schema"] == "gameday.summary/v1" and summary["lab"] == "netns"
    # RTO measured from a real failover, under 30 s
    assert summary["rto_s"] is not None and 0 < summary["rto_s"] < 30, summary
    assert summary["rto_error_s"] is not None and summary["rto_error_s"] < 0.5
    phases = summary["phases"]
    assert phases["detection_s"] is not None and phases["promotion_s"] is not None
    # clients reach region-2 only after the resolver hands out its address
    assert phases["dns_resolver_s"] is not None and phases["dns_authoritative_s"] is not None
    assert phases["dns_resolver_s"] <= summary["rto_s"] + summary["rto_error_s"]
    assert phases["first_success_s"] <= summary["rto_s"]
    # one resolver: its flip is the budget's DNS phase
    (resolver,) = summary["dns"]["resolvers"]
    assert (resolver["name"], resolver["flip_s"], resolver["slowest"]) == (
        "resolver", phases["dns_resolver_s"], True), summary["dns"]
    # the canary wrote through the failover; no integrity failure
    w = summary["writes"]
    assert w["acked"] > 100 and w["unexpected"] == 0 and w["duplicate"] == 0
    # known answer: synchronous replication loses no acknowledged write
    assert summary["replication"]["mode"] == "sync" and w["lost"] == 0
    assert {f["fault"] for f in summary["faults"]} == {"scale-to-zero", "cordon", "block-egress"}
    # the verdict agrees with the targets, and the exit code with the verdict
    t = summary["targets"]
    meets = (summary["rto_s"] <= t["rto_s"] and summary["rpo_s"] <= t["rpo_s"]
             and w["lost"] <= t["max_lost_writes"])
    assert summary["verdict"] == ("pass" if meets else "fail"), summary
    assert (proc.returncode == 0) == (summary["verdict"] == "pass"), output[-3000:]
    assert (latest / "report.md").read_text().startswith("# Game day ")
    # the rollback left region-1 fenced: its health check fails, DNS stays on region-2
    status = lab_status(lab_env)
    assert status["processes"]["postgres-region-1"], "region-1's database was not restarted"
    assert httpx.get(lab["regions"][0]["storefront_url"] + "/healthz",
                     trust_env=False).status_code == 503

    # the database password never leaves the descriptor: not in the run's files, the
    # journal, the logs or anything the run printed
    password = lab["database"]["password"].encode()
    outputs = [(p, p.read_bytes()) for p in latest.resolve().rglob("*") if p.is_file()]
    outputs += [(Path("chaos output"), output.encode())]
    for log in (Path(lab_env["GAMEDAY_REPORTS"]) / "journal.json",
                elsewhere / "chaostoolkit.log"):
        if log.exists():
            outputs.append((log, log.read_bytes()))
    assert len(outputs) >= 6
    leaked = [str(p) for p, data in outputs if password in data]
    assert not leaked, f"the password appears in {leaked}"

    pids = lab_pids(lab_env)
    started = time.monotonic()
    run([gameday_, "lab", "down"], cwd=elsewhere, env=env)
    down_s = time.monotonic() - started
    assert residue(lab_env, pids) == []
    nft = __import__("subprocess").run(["nft", "list", "tables"], capture_output=True, text=True)
    assert "gameday" not in nft.stdout
    print(f"lab up {up_s:.1f} s, lab down {down_s:.1f} s, RTO {summary['rto_s']} s "
          f"± {summary['rto_error_s']} s, outside client {outside:.4f} s (gap {gap:.4f} s, "
          f"{len(client.samples)} requests)")
