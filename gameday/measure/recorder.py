"""The recorder process: all samplers of one run, in a child of the runner.

A separate process keeps the samplers' schedule independent of what the experiment's
activities do in the runner (blocking calls, the GIL). It shares the runner's clock
(CLOCK_MONOTONIC is system-wide), flushes samples to the timeline every 250 ms, and dies
with the runner (PR_SET_PDEATHSIG), flushing what it holds on the way out.

Run: python -m gameday.measure.recorder RUN_DIR   (reads RUN_DIR/recorder.json)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import signal
import sys
from pathlib import Path

from gameday.labs import descriptor
from gameday.measure import timeline
from gameday.measure.canary import Canary
from gameday.measure.samplers import (
    DnsSampler,
    HttpSampler,
    LeaderKeySampler,
    Rates,
    ReplicationSampler,
    every,
)

FLUSH_S = 0.25


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def record(run_dir: Path) -> None:
    config = json.loads((run_dir / "recorder.json").read_text())
    # the experiment's secret, if it gave the password, comes on stdin (see measure.run)
    password = sys.stdin.read() if config.get("password_on_stdin") else None
    lab = descriptor.load(config["lab_file"], password=password)
    rates = Rates(**config.get("rates", {}))
    meta = timeline.read_meta(run_dir)
    clock = timeline.Clock(int(meta["anchor_ns"]))
    out = timeline.BatchWriter(run_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    http = HttpSampler(lab, clock, out, rates.timeout_s, ca_bundle=lab.ca_bundle)
    dns_samplers = [
        DnsSampler("authoritative", lab.dns.authoritative.ip(), lab.dns.authoritative.port,
                   lab.dns.name, clock, out, rates.timeout_s),
        DnsSampler("resolver", lab.dns.resolver.ip(), lab.dns.resolver.port,
                   lab.dns.name, clock, out, rates.timeout_s),
    ]
    repl = [ReplicationSampler(lab, r.name, clock, out, rates.timeout_s) for r in lab.regions]
    # tcp_user_timeout: the kernel fails a connection whose data goes unacknowledged for
    # 1.5 s, so a write to a cut-off region errors instead of hanging
    canary = Canary(lab.writer_params(tcp_user_timeout=1500), lab.database.canary_table,
                    clock, out,
                    writers=rates.canary_writers, start_seq=int(config.get("start_seq", 1)),
                    max_rate=rates.canary_max_rate)
    tasks = [every(rates.dns_s, clock, s.sample, stop) for s in dns_samplers]
    tasks.append(every(rates.http_s, clock, http.sample_global, stop))
    tasks += [every(rates.http_s, clock, http.region_sampler(r.name), stop)
              for r in lab.regions]
    tasks += [every(rates.replication_s, clock, s.sample, stop) for s in repl]
    leader = None
    if lab.ha is not None and lab.ha.dcs is not None:
        # the HA manager's detection, sampled as often as replication
        leader = LeaderKeySampler(lab, clock, out, rates.timeout_s)
        tasks.append(every(rates.replication_s, clock, leader.sample, stop))
    tasks.append(canary.run(stop))

    async def flusher() -> None:
        ready = False
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_S)
            out.flush()
            if not ready and canary.acked:
                ready = True
                timeline.record_event(run_dir, clock.now(), "recorder-ready")
        out.flush()

    await asyncio.gather(*tasks, flusher())
    for s in repl:
        await s.close()
    if leader is not None:
        await leader.close()
    await http.client.aclose()
    out.close()
    timeline.record_event(run_dir, clock.now(), "recorder-stopped",
                          acked=canary.acked, connect_errors=canary.connect_errors)


def main(argv: list[str]) -> None:
    _die_with_parent()
    asyncio.run(record(Path(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
