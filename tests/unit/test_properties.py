"""Property-based tests of the write accounting and the K rule: random canary histories and
final-row sets, random global request streams, each judged against a direct reference
implementation of the rule as docs/design.md states it, and against the invariants every
answer must keep (the classes partition the attempts; lost writes were acknowledged;
recovered writes were unknown; ...).

Hypothesis runs with the `gameday` profile (tests/conftest.py): derandomized and without
an example database, so CI and every machine draw the same examples; a few hundred per
test keep the unit suite within seconds. `HYPOTHESIS_PROFILE=thorough` draws more."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from gameday.measure import rto as rtos
from gameday.measure.rto import Streak
from gameday.measure.store import writes
from gameday.measure.store.reader import Timeline
from gameday.measure.store.timeline import CanaryAttempt, Event, HttpSample

T_FAULT = 10.0
SERVERS = ("198.18.0.11", "198.18.0.12")


# --- write accounting -------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """A canary history and what the new primary holds, drawn together."""

    attempts: list[CanaryAttempt]
    present: dict[int, int]
    start_seq: int
    cutoff: float | None


@st.composite
def histories(draw: st.DrawFn) -> History:
    n = draw(st.integers(0, 40))
    # consecutive numbers (as the canary writes them), a few gaps, or far apart (the sparse
    # path of the number sets)
    spacing = draw(st.sampled_from([1, 1, 2, 5_000_000]))
    first = draw(st.integers(1, 50))
    seqs = [first + i * spacing for i in range(n)]
    if draw(st.booleans()):
        seqs = draw(st.permutations(seqs))  # several writers: stored out of number order
    attempts = []
    t = 9.0
    for seq in seqs:
        t = round(t + draw(st.sampled_from([0.01, 0.02, 0.05, 0.5])), 3)
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "unknown", "failed"]))
        server = draw(st.sampled_from(SERVERS))
        notice = (writes.SYNC_CANCELLED + " due to user request"
                  if outcome == "ok" and draw(st.integers(0, 9)) == 0 else None)
        attempts.append(CanaryAttempt(
            seq, 0, t, round(t + 0.005, 3) if outcome == "ok" else None, outcome,
            server if outcome == "ok" else None, None if outcome == "ok" else "Error", notice))
    present: dict[int, int] = {}
    for seq in seqs:
        if draw(st.integers(0, 3)):  # most attempted rows are found
            present[seq] = draw(st.sampled_from([1, 1, 1, 2, 3]))
    # rows nobody attempted: before, between and after the attempted numbers
    for seq in draw(st.lists(st.integers(1, (seqs[-1] if seqs else 60) + 10), max_size=4)):
        present.setdefault(seq, 1)
    start_seq = draw(st.sampled_from([1, 1, first + 2]))
    present = {s: c for s, c in present.items() if s >= start_seq}
    cutoff = draw(st.one_of(st.none(), st.floats(9.0, t + 1.0).map(lambda x: round(x, 3))))
    return History(attempts, present, start_seq, cutoff)


def settled(h: History) -> list[CanaryAttempt]:
    """The attempts judged: those settled before the read (`cutoff`)."""
    if h.cutoff is None:
        return h.attempts
    return [a for a in h.attempts if (a.t_ack if a.t_ack is not None else a.t_send) < h.cutoff]


def reference_counts(h: History) -> dict[str, int]:
    """Jepsen set semantics, written out directly (docs/design.md, Write accounting)."""
    judged = settled(h)
    ok = [a for a in judged if a.outcome == "ok"]
    unknown = [a for a in judged if a.outcome == "unknown"]
    failed = [a for a in judged if a.outcome == "failed"]
    every_attempt = {a.seq for a in h.attempts}  # in flight at the read is still attempted
    never = [s for s in h.present if s >= h.start_seq and s not in every_attempt]
    return {
        "attempted": len(judged),
        "acked": len(ok),
        "lost": sum(1 for a in ok if a.seq not in h.present),
        "recovered": sum(1 for a in unknown if a.seq in h.present),
        "unknown_absent": sum(1 for a in unknown if a.seq not in h.present),
        "unexpected": sum(1 for a in failed if a.seq in h.present) + len(never),
        "duplicate": sum(n - 1 for n in h.present.values() if n > 1),
    }


def account(h: History) -> writes.WriteAccounting:
    return writes.account_writes(h.attempts, h.present, t_fault=T_FAULT,
                                  start_seq=h.start_seq, cutoff=h.cutoff)


@given(histories())
def test_write_accounting_matches_the_reference_and_keeps_its_invariants(h: History) -> None:
    acc = account(h)
    judged = settled(h)
    assert acc.counts() == reference_counts(h)
    acked = {a.seq for a in judged if a.outcome == "ok"}
    unknown = [a for a in judged if a.outcome == "unknown"]
    failed = [a for a in judged if a.outcome == "failed"]
    lost = [a for a in judged if a.outcome == "ok" and a.seq not in h.present]
    assert acc.lost_seqs == tuple(sorted(a.seq for a in lost))
    assert acc.not_durable == sum(1 for a in judged if a.outcome == "ok" and a.notice)
    assert acc.lost_by_server == dict(Counter(a.server or "?" for a in lost))
    assert acc.lost_after_fault == sum(1 for a in lost if a.t_ack is not None and
                                       a.t_ack > T_FAULT)

    # every attempt is acknowledged, unknown or failed, and nothing else
    assert acc.acked + len(unknown) + len(failed) == acc.attempted == len(judged)
    # lost ⊆ acknowledged; recovered and unknown_absent split the unknown ones
    assert set(acc.lost_seqs) <= acked and acc.lost <= acc.acked
    assert acc.recovered + acc.unknown_absent == len(unknown)
    assert 0 <= acc.not_durable <= acc.acked
    assert 0 <= acc.lost_after_fault <= acc.lost
    assert sum(acc.lost_by_server.values()) == acc.lost

    # RPO: from the fault back to the last acknowledged write before the first lost one
    if not lost:
        assert acc.loss_window is None and acc.rpo_s == 0.0
        return
    acks = sorted(a.t_ack for a in lost if a.t_ack is not None)
    assert acc.loss_window == (acks[0], acks[-1])
    before = [a.t_ack for a in judged
              if a.outcome == "ok" and a.t_ack is not None and a.t_ack < acks[0]]
    end = max(before) if before else acks[0]
    assert acc.rpo_s == max(0.0, T_FAULT - end) >= 0.0
    assert acc.rpo_error_s == (acks[0] - max(before) if before else None)


@given(histories())
def test_a_live_read_never_judges_rows_it_has_no_attempt_for(h: History) -> None:
    live = writes.account_writes(h.attempts, h.present, t_fault=T_FAULT,
                                  start_seq=h.start_seq, cutoff=h.cutoff, live=True)
    final = account(h)
    every_attempt = {a.seq for a in h.attempts}
    never = sum(1 for s in h.present if s not in every_attempt)
    assert live.unexpected == final.unexpected - never
    assert {**live.counts(), "unexpected": 0} == {**final.counts(), "unexpected": 0}


# --- the K rule -----------------------------------------------------------------------------

Sample = tuple[float, bool, str | None]  # t, ok, served by


@st.composite
def global_streams(draw: st.DrawFn) -> list[Sample]:
    n = draw(st.integers(0, 30))
    t = draw(st.sampled_from([8.0, 9.5, 10.0]))
    out: list[Sample] = []
    for _ in range(n):
        t = round(t + draw(st.sampled_from([0.02, 0.1, 0.25])), 3)
        served = draw(st.sampled_from(["region-2", "region-2", "region-2", "region-1", None]))
        ok = served is not None and draw(st.integers(0, 5)) > 0
        out.append((t, ok, served))
    return out


def reference_rto(samples: list[Sample], k: int) -> tuple[float | None, float | None]:
    """(at_s, error_s) of the start of the first k consecutive successes served by region-2
    at or after the fault: the window of k samples that first holds only such successes."""
    good = [ok and served == "region-2" for _, ok, served in samples]
    first = next((i for i, (t, _, _) in enumerate(samples) if t >= T_FAULT), len(samples))
    for end in range(first + k - 1, len(samples)):
        start = end - k + 1
        if all(good[start:end + 1]):
            before = samples[start - 1][0] if start > 0 else None
            t = samples[start][0]
            return t - T_FAULT, (t - before if before is not None else None)
    return None, None


def http(samples: list[Sample]) -> list[HttpSample]:
    return [HttpSample(t, "global", int(ok), 200 if ok else None, served if ok else None, None,
                       0.001, 0.0, None) for t, ok, served in samples]


def one_timeline(samples: list[Sample]) -> Timeline:
    return Timeline(events=[Event(T_FAULT, "fault-applied", "region-1", json.dumps({}))],
                    dns=[], http=http(samples), canary=[], replication=[])


@given(global_streams(), st.integers(1, 6))
def test_rto_matches_the_reference_k_rule(samples: list[Sample], k: int) -> None:
    rto = rtos.rto(one_timeline(samples), T_FAULT, "region-2", k=k)
    at_s, error_s = reference_rto(samples, k)
    if at_s is None:
        assert rto.at_s is None and rto.reason == f"no {k} consecutive global requests " \
                                                  "served by region-2"
    else:
        assert rto.at_s is not None and abs(rto.at_s - at_s) < 1e-9
        assert rto.error_s == error_s or abs(rto.error_s - error_s) < 1e-9  # type: ignore[operator]


@given(global_streams(), st.integers(1, 6))
def test_the_streak_is_reached_exactly_when_the_last_k_samples_are_successes(
        samples: list[Sample], k: int) -> None:
    streak = Streak("region-2", k)
    good = [ok and served == "region-2" for _, ok, served in samples]
    for i, (t, ok, served) in enumerate(samples):
        reached = streak.add(t, ok, served)
        expected = i + 1 >= k and all(good[i + 1 - k:i + 1])
        assert reached is expected and streak.reached is expected
        if expected:
            start = i + 1 - k
            while start > 0 and good[start - 1]:
                start -= 1  # the run's start, however long it has lasted
            assert streak.start == samples[start][0]
            assert streak.before == (samples[start - 1][0] if start > 0 else None)
