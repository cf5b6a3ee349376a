"""The recorder process: all samplers of one run, in a child of the runner.

A separate process keeps the samplers' schedule independent of what the experiment's
activities do in the runner (blocking calls, the GIL). It shares the runner's clock
(CLOCK_MONOTONIC is system-wide), flushes samples to the timeline every 250 ms (more
often until its canary's first write is acknowledged), and dies with the runner
(PR_SET_PDEATHSIG).

Told to stop (SIGTERM), it keeps flushing while the samplers finish what is in flight (the
canary's writes, bounded by their deadline), then writes its last rows and the
`recorder-stopped` event, and only then closes its connections: closing an idle TLS
connection to a frozen server waits for an answer that never comes (30 s, asyncio's TLS
shutdown timeout), and the runner does not wait that long (measure.run). Within STOP_S
of the signal its records are on disk, whatever its samplers are still waiting for.

Run: python -m gameday.measure.recorder RUN_DIR   (reads RUN_DIR/recorder.json)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from gameday.foundation import descriptor, settings
from gameday.foundation.events import RecorderReady, RecorderStopped
from gameday.foundation.poll import poll_within
from gameday.measure import canary as canary_mod
from gameday.measure.app_canary import RESOLVE_TIMEOUT_S, AppWriters, GlobalName
from gameday.measure.canary import Canary
from gameday.measure.samplers import (
    DnsSampler,
    HttpSampler,
    LeaderKeySampler,
    RedisReplicationSampler,
    ReplicationSampler,
    SentinelEvents,
    SentinelSampler,
    every,
)
from gameday.measure.store import timeline

FLUSH_S = 0.25
# Until the canary's first write is acknowledged the runner waits (measure.run.start) for
# the `recorder-ready` event: looked for this often then, not once a flush, so the drill
# starts when the recorder is ready rather than up to a flush later.
READY_CHECK_S = 0.02
# After the stop: the canary's writes in flight end within canary.STOP_S, and every other
# sampler's within its timeout (`every` waits 2 s at most). Then the last flush (retried
# while the timeline is locked by a reader) and the connections' close, each bounded.
LAST_FLUSH_S = 1.0
CLOSE_S = 1.0
STOP_S = max(canary_mod.STOP_S, 2.0) + LAST_FLUSH_S


def _die_with_parent(runner_pid: int | None) -> None:
    """SIGTERM when the runner dies. Asked for after this module's imports: a runner that
    died before (a `chaos run` stopped while it waited for the recorder) sends nothing,
    so a recorder whose parent is no longer its runner exits here."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if runner_pid is not None and os.getppid() != runner_pid:
        sys.exit(f"gameday recorder: its runner (pid {runner_pid}) is gone")


async def record(run_dir: Path) -> None:
    config = json.loads((run_dir / "recorder.json").read_text())
    # the experiment's secret, if it gave the password, and the application canary's
    # configuration (its headers may hold a token) come on stdin (see measure.run)
    given: dict[str, Any] = json.loads(sys.stdin.read()) \
        if config.get("secrets_on_stdin") else {}
    password = given.get("password")
    meta = timeline.read_meta(run_dir)
    lab = descriptor.load(meta["lab_file"], password=password)
    # the rates the run recorded, under the keys the experiment sets them by
    rates = settings.rates(meta.get("configuration") or {})
    clock = timeline.Clock(int(meta["anchor_ns"]))
    out = timeline.BatchWriter(run_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    http = HttpSampler(lab, clock, out, rates.timeout_s, ca_bundle=lab.ca_bundle)
    # the authority, then every resolver (dns.resolver and dns.resolvers), each answer
    # classified by the regions' endpoint sets
    regions = lab.endpoints()
    dns_samplers = [
        DnsSampler(name, server.ip(), server.port, lab.dns.name, clock, out, rates.timeout_s,
                   regions=regions)
        for name, server in [("authoritative", lab.dns.authoritative),
                             *((r.stream, r) for r in lab.dns.sampled())]
    ]
    tasks = [every(rates.dns_s, clock, s.sample, stop) for s in dns_samplers]
    tasks.append(every(rates.http_s, clock, http.sample_global, stop))
    tasks += [every(rates.http_s, clock, http.region_sampler(r.name), stop)
              for r in lab.regions]
    # the store's replication and its HA manager's evidence, sampled as often as each other
    repl: list[ReplicationSampler | RedisReplicationSampler] = []
    ha: list[LeaderKeySampler | SentinelSampler] = []
    canary: Canary | None = None
    events: list[SentinelEvents] = []
    if lab.redis is not None:
        # Redis with Sentinel: INFO replication per region, each Sentinel's view of the
        # master (its +odown and +switch-master); no SQL, so no database canary: the
        # application canary is the RPO measure (the control refuses a run without it)
        repl += [RedisReplicationSampler(lab, r.name, clock, out, rates.timeout_s)
                 for r in lab.regions]
        ha += [SentinelSampler(lab, s.site, clock, out, rates.timeout_s)
               for s in lab.redis.sentinels]
        # and each Sentinel's +odown and +switch-master, the instant it says them
        events += [SentinelEvents(lab, s.site, clock, out, rates.timeout_s)
                   for s in lab.redis.sentinels]
        tasks += [e.run(stop) for e in events]
    else:
        repl += [ReplicationSampler(lab, r.name, clock, out, rates.timeout_s)
                 for r in lab.regions]
        if lab.ha is not None and lab.ha.dcs is not None:
            # the HA manager's detection, sampled as often as replication
            ha.append(LeaderKeySampler(lab, clock, out, rates.timeout_s))
        # tcp_user_timeout: the kernel fails a connection whose data goes unacknowledged
        # for 1.5 s, so a write to a cut-off region errors instead of hanging; each write
        # attributed to a region by its server's own address (inet_server_addr())
        canary = Canary(lab.writer_params(tcp_user_timeout=1500), lab.database.canary_table,
                        clock, out,
                        writers=rates.canary_writers, start_seq=int(meta.get("start_seq", 1)),
                        max_rate=rates.canary_max_rate,
                        attribution=canary_mod.Attribution.of(lab))
        tasks.append(canary.run(stop))
    tasks += [every(rates.replication_s, clock, s.sample, stop) for s in [*repl, *ha]]
    app_settings = settings.app_canary(given)
    app: AppWriters | None = None
    if app_settings is not None:
        # the canary through the application, a user of the global name (issue 23)
        name = GlobalName.of(lab)
        app = AppWriters(app_settings, clock, out, start_seq=int(meta["app_start_seq"]),
                         where=lambda: name.where(RESOLVE_TIMEOUT_S, app_settings.deadline_s),
                         verify=name.verify)
        tasks.append(app.run(stop))
    sampling = asyncio.gather(*tasks)

    ready = False
    stopping_since: float | None = None
    try:
        while not sampling.done():
            await asyncio.wait({sampling}, timeout=FLUSH_S if ready else READY_CHECK_S)
            out.flush()
            # ready once the canary that measures the RPO had a write acknowledged
            if not ready and (canary.acked if canary is not None else app and app.acked):
                ready = True
                timeline.record_event(run_dir, RecorderReady(), clock.now())
            if stop.is_set():
                if stopping_since is None:
                    stopping_since = loop.time()
                elif loop.time() - stopping_since > STOP_S - LAST_FLUSH_S:
                    break  # a sampler outlived every bound it has: keep what we have
    finally:
        if app is not None:
            app.give_up_in_flight()  # a write the recorder no longer waits for: unknown
        # also when a sampler crashed: what it and the others measured stays
        _last_flush(out)
    if sampling.done():
        sampling.result()  # a sampler's crash ends the recorder with its traceback
    timeline.record_event(run_dir, RecorderStopped(
        acked=canary.acked if canary else 0,
        connect_errors=canary.connect_errors if canary else 0,
        unanswered=canary.in_flight if canary else 0,
        app_acked=app.acked if app else None), clock.now())
    out.close()
    # only now: a close that waits on a frozen server delays nothing that counts
    closers = [s.close() for s in [*repl, *ha, *events]] + [http.client.aclose()]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*closers, return_exceptions=True), CLOSE_S)


def _last_flush(out: timeline.BatchWriter) -> None:
    """Flush until nothing is pending: a flush that finds the timeline locked (a reader's
    long transaction) keeps its rows for the next one."""

    def flushed() -> bool:
        out.flush()
        return not any(out.pending.values())

    poll_within(flushed, timeout_s=LAST_FLUSH_S, interruptible=False)


def main(argv: list[str]) -> None:
    try:
        config = json.loads((Path(argv[0]) / "recorder.json").read_text())
    except (OSError, ValueError):
        config = {}  # record() says what is wrong with it
    _die_with_parent(config.get("runner_pid"))
    why = canary_mod.safe_cancel_missing()
    if why is not None:
        # the runner checks first (measure.run.start): this is for a recorder started by hand
        sys.exit(f"gameday recorder: {why}")
    asyncio.run(record(Path(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
