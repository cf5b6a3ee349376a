"""Metric computations on hand-made timelines with known answers."""

from __future__ import annotations

import json

import pytest

from gameday.measure import instants
from gameday.measure import rto as rtos
from gameday.measure.store import writes
from gameday.measure.store.reader import Timeline
from gameday.measure.store.timeline import DnsSample, Event, HttpSample, ReplicationSample
from tests.unit.test_endpoints import TWO_REGIONS


def http_rows(spec: list[tuple[float, bool, str | None]]) -> list[tuple]:
    return [HttpSample(t, "global", int(ok), 200 if ok else None, region, None, 0.001, 0.0, None)
            for t, ok, region in spec]


def timeline(**kw) -> Timeline:
    base = {"events": [Event(10.0, "fault-applied", "region-1",
                             json.dumps({"fault": "scale-to-zero"}))],
            "dns": [], "http": [], "canary": [], "replication": []}
    base.update(kw)
    return Timeline(**base)


def test_rto_needs_k_consecutive_successes_from_the_secondary() -> None:
    # a single early success from region-2 is followed by a failure: it does not count
    spec = [(9.9, True, "region-1"), (10.1, False, None), (10.2, True, "region-2"),
            (10.3, False, None)]
    spec += [(10.4 + i * 0.1, True, "region-2") for i in range(5)]
    tl = timeline(http=http_rows(spec))
    rto = rtos.rto(tl, 10.0, "region-2", k=5)
    assert rto.at_s == pytest.approx(0.4)
    assert rto.error_s == pytest.approx(0.1)


def test_rto_ignores_successes_served_by_the_old_primary() -> None:
    spec = [(10.0 + i * 0.1, True, "region-1") for i in range(10)]
    tl = timeline(http=http_rows(spec))
    rto = rtos.rto(tl, 10.0, "region-2", k=5)
    assert rto.at_s is None
    assert "no 5 consecutive" in (rto.reason or "")


def test_downtime_sums_the_gaps_after_failing_samples() -> None:
    spec = [(10.0, True, "region-1"), (10.5, False, None), (11.0, False, None),
            (11.5, True, "region-2"), (12.0, False, None), (12.25, True, "region-2")]
    tl = timeline(http=http_rows(spec))
    total, err = rtos.downtime(tl, 10.0)
    assert total == pytest.approx(0.5 + 0.5 + 0.25)
    assert err == pytest.approx(0.5)


def test_dns_flip_is_the_first_answer_that_stays() -> None:
    rows = [DnsSample(t, "resolver", 1, a, "NOERROR", 1, 0.001, 0.0, None) for t, a in [
        (9.9, "198.18.0.11"), (10.5, "198.18.0.12"), (10.6, "198.18.0.11"),
        (10.7, "198.18.0.12"), (10.8, "198.18.0.12")]]
    tl = timeline(dns=rows)
    flip = instants.dns_flip(tl, 10.0, "resolver", "region-2", TWO_REGIONS)
    assert flip.at_s == pytest.approx(0.7)
    assert flip.error_s == pytest.approx(0.1)


def test_phase_not_observed_is_none_with_reason() -> None:
    tl = timeline(dns=[DnsSample(10.5, "authoritative", 1, "198.18.0.11", "NOERROR", 1, 0, 0,
                                 None)])
    flip = instants.dns_flip(tl, 10.0, "authoritative", "region-2", TWO_REGIONS)
    assert flip.at_s is None and "never settled" in flip.reason


def canary_row(seq: int, t_send: float, t_ack: float | None, outcome: str = "ok",
               server: str = "198.18.0.11", notice: str | None = None) -> tuple:
    return (seq, 0, t_send, t_ack, outcome, server, None, notice)


def test_jepsen_classes() -> None:
    canary = [
        canary_row(1, 1.0, 1.01),                 # acked, present
        canary_row(2, 2.0, 2.01),                 # acked, present
        canary_row(3, 9.0, 9.01),                 # acked, absent -> lost
        canary_row(4, 9.5, 9.51),                 # acked, absent -> lost
        canary_row(5, 10.0, None, "unknown"),     # unknown, present -> recovered
        canary_row(6, 10.1, None, "unknown"),     # unknown, absent -> unknown_absent
        canary_row(7, 10.2, None, "failed"),      # failed, present -> unexpected
        canary_row(8, 11.0, 11.02, server="198.18.0.12"),  # acked on the new primary
    ]
    present = {1: 1, 2: 1, 5: 1, 7: 1, 8: 2, 99: 1}  # 8 twice: duplicate; 99 never attempted
    acc = writes.account_writes(canary, present, t_fault=10.0, start_seq=1)
    assert acc.counts() == {"attempted": 8, "acked": 5, "lost": 2, "recovered": 1,
                            "unknown_absent": 1, "unexpected": 2, "duplicate": 1}
    assert acc.lost_seqs == (3, 4)
    # the last surviving acknowledged write before the first lost one was acked at 2.01
    assert acc.rpo_s == pytest.approx(10.0 - 2.01)
    assert acc.loss_window == (9.01, 9.51)
    assert acc.lost_after_fault == 0
    assert acc.lost_by_server == {"198.18.0.11": 2}


def test_no_loss_gives_zero_rpo() -> None:
    canary = [canary_row(i, i * 0.1, i * 0.1 + 0.01) for i in range(1, 50)]
    acc = writes.account_writes(canary, {i: 1 for i in range(1, 50)}, t_fault=3.0)
    assert acc.lost == 0 and acc.rpo_s == 0.0


def test_rpo_counts_back_from_the_fault_to_the_last_survivor() -> None:
    canary = [canary_row(1, 9.0, 9.5), canary_row(2, 10.5, 10.6)]
    acc = writes.account_writes(canary, {1: 1}, t_fault=10.0)
    assert acc.lost == 1 and acc.rpo_s == pytest.approx(0.5) and acc.lost_after_fault == 1


def test_rpo_is_floored_at_zero_when_the_last_survivor_is_after_the_fault() -> None:
    canary = [canary_row(1, 10.1, 10.2), canary_row(2, 10.5, 10.6)]
    acc = writes.account_writes(canary, {1: 1}, t_fault=10.0)
    assert acc.lost == 1 and acc.rpo_s == 0.0


def test_writes_in_flight_at_the_read_are_left_out() -> None:
    canary = [canary_row(1, 1.0, 1.1), canary_row(2, 4.9, 5.2)]
    acc = writes.account_writes(canary, {1: 1}, t_fault=None, cutoff=5.0)
    assert acc.attempted == 1 and acc.lost == 0


def test_live_read_does_not_judge_rows_whose_attempts_are_not_flushed() -> None:
    canary = [canary_row(1, 1.0, 1.1)]
    assert writes.account_writes(canary, {1: 1, 2: 1}, t_fault=None, live=True).unexpected == 0
    assert writes.account_writes(canary, {1: 1, 2: 1}, t_fault=None).unexpected == 1


def test_cancelled_sync_wait_is_not_durable() -> None:
    notice = "canceling wait for synchronous replication due to user request"
    canary = [canary_row(1, 1.0, 1.1, notice=notice), canary_row(2, 1.2, 1.3)]
    acc = writes.account_writes(canary, {2: 1}, t_fault=2.0)
    assert acc.not_durable == 1 and acc.lost == 1


def test_seq_ranges() -> None:
    assert writes.seq_ranges([7, 1, 2, 3, 8, 10]) == [(1, 3), (7, 8), (10, 10)]


def test_first_write_error_bar_reaches_back_to_the_last_failed_attempt() -> None:
    canary = [canary_row(1, 9.0, 9.01), canary_row(2, 9.9, None, "unknown"),
              canary_row(3, 10.62, 10.63, server="198.18.0.12")]
    connects = [(10.1, 0, 0, None, "OperationalError"), (10.6, 1, 0, None, "OperationalError"),
                (10.61, 2, 1, "198.18.0.12", None)]
    tl = timeline(canary=canary, canary_connect=connects)
    first = instants.first_write(tl, 10.0, {"198.18.0.12"})
    assert first.at_s == pytest.approx(0.63)
    assert first.error_s == pytest.approx(0.03)


def test_rpo_error_without_loss_is_the_inter_write_gap_before_the_fault() -> None:
    canary = [canary_row(i, 9.0 + i * 0.01, 9.0 + i * 0.01 + 0.005) for i in range(1, 99)]
    acc = writes.account_writes(canary, {i: 1 for i in range(1, 99)}, t_fault=10.0)
    assert acc.rpo_s == 0.0 and acc.rpo_error_s == pytest.approx(0.01)


def _replication(t: float, in_recovery: bool, ok: bool = True) -> ReplicationSample:
    return ReplicationSample(t, "region-2", int(ok), int(in_recovery) if ok else None, None,
                             None, None if ok else "OperationalError")


def test_promotion_is_the_first_writable_answer_the_recorder_saw() -> None:
    """Whoever promoted: the replication sampler's first sample out of recovery, or the
    first canary write the secondary acknowledged, whichever came first; never the
    promoter's own report, which stays a cross-check."""
    repl = [_replication(9.75, True), _replication(10.0, True), _replication(10.25, True),
            _replication(10.5, False)]
    canary = [canary_row(1, 9.0, 9.01), canary_row(2, 10.55, 10.56, server="198.18.0.12")]
    events = [Event(10.0, "fault-applied", "region-1", "{}"),
              Event(10.41, "promoted", "region-2", json.dumps({"error_s": 0.005}))]
    tl = timeline(events=events, replication=repl, canary=canary)
    seen = instants.promotion(tl, 10.0, "region-2", {"198.18.0.12"})
    assert seen.at_s == pytest.approx(0.5) and seen.error_s == pytest.approx(0.25)
    assert "replication sampler" in (seen.evidence or "")
    assert instants.runner_promotion(tl, 10.0, "region-2").at_s == pytest.approx(0.41)

    # the canary's acknowledgement came first: it is the instant, with its own error bar
    canary[1] = canary_row(2, 10.44, 10.45, server="198.18.0.12")
    tl = timeline(events=events, replication=repl, canary=canary)
    seen = instants.promotion(tl, 10.0, "region-2", {"198.18.0.12"})
    assert seen.at_s == pytest.approx(0.45) and "canary" in (seen.evidence or "")


def test_promotion_by_someone_else_has_no_runner_cross_check() -> None:
    tl = timeline(replication=[_replication(10.2, True), _replication(10.45, False)])
    assert instants.promotion(tl, 10.0, "region-2", {"198.18.0.12"}).at_s == pytest.approx(0.45)
    assert instants.runner_promotion(tl, 10.0, "region-2").at_s is None
    never = timeline(replication=[_replication(10.2, True), _replication(10.45, False, ok=False)])
    assert instants.promotion(never, 10.0, "region-2", {"198.18.0.12"}).at_s is None
