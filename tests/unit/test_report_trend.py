"""The trend across runs: history.jsonl and the regression rule, on known histories."""

from __future__ import annotations

from pathlib import Path

import pytest

from gameday.report import trend as trends


def run(n: int, rto: float | None, rpo: float | None = 0.0, **extra: object) -> dict:
    entry = {"run_id": f"run-{n:02d}", "started_at": f"2026-01-{n:02d}T00:00:00+00:00",
             "verdict": "pass", "targets": {"rto_s": 30.0, "rpo_s": 0.5, "max_lost_writes": 0},
             "rto_s": rto, "rpo_s": rpo}
    entry.update(extra)
    return entry


def history(*rtos: float) -> list[dict]:
    return [run(i + 1, rto) for i, rto in enumerate(rtos)]


def test_within_factor_of_the_median_is_no_regression() -> None:
    t = trends.evaluate(run(10, 2.9), history(2.0, 1.0, 3.0, 2.0))
    assert t.medians["rto_s"] == pytest.approx(2.0)
    assert not t.regression  # 2.9 <= 1.5 x 2.0


def test_above_factor_times_the_median_is_a_regression() -> None:
    t = trends.evaluate(run(10, 3.1), history(2.0, 1.0, 3.0, 2.0))
    assert t.flags == ["RTO 3.100 s exceeds 1.5 × the median 2.000 s of the previous 4 runs"]
    assert not trends.evaluate(run(10, 3.1), history(2.0, 1.0, 3.0, 2.0), factor=2).regression


def test_above_target_is_a_regression_even_without_history() -> None:
    t = trends.evaluate(run(1, 31.0, 0.6), [])
    assert t.flags == ["RTO 31.000 s exceeds its target 30 s", "RPO 0.600 s exceeds its target 0.5 s"]


def test_too_few_previous_runs_are_not_compared() -> None:
    assert not trends.evaluate(run(10, 9.0), history(1.0, 1.0)).regression
    assert trends.evaluate(run(10, 9.0), history(1.0, 1.0, 1.0)).regression


def test_only_the_last_window_of_previous_runs_counts() -> None:
    old_fast_then_slow = history(*([0.5] * 10 + [2.0] * 3))
    assert not trends.evaluate(run(20, 2.5), old_fast_then_slow, window=3).regression
    assert trends.evaluate(run(20, 2.5), old_fast_then_slow, window=13).regression


def test_rpo_above_a_zero_median_regresses_and_unobserved_rto_is_flagged() -> None:
    prev = [run(i, 1.0, 0.0) for i in range(1, 4)]
    assert trends.evaluate(run(9, 1.0, 0.2), prev).flags == [
        "RPO 0.200 s exceeds 1.5 × the median 0.000 s of the previous 3 runs"]
    assert trends.evaluate(run(9, None, 0.0), prev).flags == ["RTO not observed"]


def test_previous_means_started_before_this_run_not_written_before() -> None:
    later = run(30, 100.0)
    earlier = history(1.0, 1.0, 1.0)
    t = trends.evaluate(run(10, 1.2), [later, *earlier, run(10, 7.0)])
    assert [e["run_id"] for e in t.previous] == ["run-01", "run-02", "run-03"]
    assert not t.regression
    assert [e["run_id"] for e in t.last(2)] == ["run-03", "run-10"]


def test_record_appends_once_and_replaces_a_run_recorded_again(tmp_path: Path) -> None:
    path = tmp_path / "reports" / trends.FILE
    trends.record(path, run(1, 1.0))
    trends.record(path, run(2, 2.0))
    before = path.read_bytes()
    trends.record(path, run(2, 2.0))
    assert path.read_bytes() == before
    trends.record(path, run(1, 1.5))
    assert [(e["run_id"], e["rto_s"]) for e in trends.read(path)] == [("run-01", 1.5),
                                                                        ("run-02", 2.0)]


def test_read_skips_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / trends.FILE
    path.write_text(trends.line(run(1, 1.0)) + "\n{\"run_id\": \"run-02\", \"rto\n\n")
    assert [e["run_id"] for e in trends.read(path)] == ["run-01"]
    assert trends.read(tmp_path / "missing.jsonl") == []


def test_compact_line_is_stable() -> None:
    summary = {"run_id": "r", "started_at": "s", "experiment": "e", "lab": "netns",
               "drill": "failover", "experiment_id": "game-day",
               "verdict": "pass", "targets": {"rto_s": 30}, "rto_s": 1.0, "rto_error_s": 0.1,
               "write_rto_s": 0.5, "downtime_s": 0.9, "rpo_s": 0.0,
               "writes": {"lost": 0}, "failback": {"rto_s": 2.0}, "phases": {}}
    assert trends.line(trends.compact(summary)) == (
        '{"downtime_s":0.9,"drill":"failover","experiment":"e","experiment_id":"game-day",'
        '"failback_rto_s":2.0,"lab":"netns","lost":0,"profile":"lab=netns","rpo_s":0.0,"rto_error_s":0.1,"rto_s":1.0,"run_id":"r","started_at":"s",'
        '"targets":{"rto_s":30},"verdict":"pass","write_rto_s":0.5}')


def test_sparkline() -> None:
    assert trends.sparkline([1.0, 2.0, None, 1.5]) == "▁█·▅"
    assert trends.sparkline([0.0, 0.0]) == "▁▁"
    assert trends.sparkline([]) == ""


# --- the edges of the rule and of the file (each a mutant `make mutate` showed surviving) ---


def test_a_torn_line_in_the_middle_is_skipped_and_named(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / trends.FILE
    path.write_text("\n".join([trends.line(run(1, 1.0)), "{torn", "", "[1, 2]",
                               '{"rto_s": 1}', trends.line(run(2, 2.0))]) + "\n")
    with caplog.at_level("WARNING", logger="chaostoolkit"):
        assert [e["run_id"] for e in trends.read(path)] == ["run-01", "run-02"]
    assert [r.getMessage() for r in caplog.records] == [
        "gameday: history.jsonl line 2 is not JSON; skipped"]


def test_record_keeps_foreign_lines_and_makes_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / trends.FILE
    trends.record(path, run(1, 1.0))
    path.write_text(path.read_text() + "{torn\n")
    trends.record(path, run(2, 2.0))
    trends.record(path, run(1, 1.5))
    assert path.read_text().splitlines() == [
        trends.line(run(1, 1.5)), "{torn", trends.line(run(2, 2.0))]
    assert sorted(p.name for p in path.parent.iterdir()) == [trends.FILE]


def test_runs_starting_at_the_same_instant_are_ordered_by_their_ids() -> None:
    same = "2026-01-05T00:00:00+00:00"
    a, b = ({**run(1, 1.0), "run_id": i, "started_at": same} for i in ("A", "B"))
    assert [e["run_id"] for e in trends.previous([a, b], b)] == ["A"]
    assert trends.previous([a, b], a) == []
    # a run without an id (or a start time) sorts first, before any other of its instant
    assert trends.previous([a, b], {"started_at": same}) == []
    undated = {**run(1, 1.0), "run_id": "old", "started_at": None}
    assert [e["run_id"] for e in trends.previous([undated], run(2, 1.0))] == ["old"]


def test_the_runs_own_line_is_never_a_previous_run() -> None:
    """Even when an earlier line of the same run recorded another start time."""
    current = run(5, 2.0)
    stale = {**current, "started_at": "2025-01-01T00:00:00+00:00", "rto_s": 100.0}
    t = trends.evaluate(current, [run(1, 1.0), stale])
    assert [e["run_id"] for e in t.previous] == ["run-01"]


def test_medians_are_rounded_to_a_tenth_of_a_millisecond() -> None:
    t = trends.evaluate(run(9, 1.0), history(1.23456, 1.23456, 1.23456))
    assert t.medians == {"rto_s": 1.2346, "rpo_s": 0.0}


def test_only_an_unobserved_rto_of_a_judged_run_is_flagged_and_rpo_is_still_judged() -> None:
    prev = [run(i, 1.0, 0.0) for i in range(1, 4)]
    assert trends.evaluate(run(9, 1.0, None), prev).flags == []
    assert trends.evaluate({**run(9, None, None), "verdict": None}, prev).flags == []
    assert trends.evaluate(run(9, None, 0.6), prev).flags == [
        "RTO not observed", "RPO 0.600 s exceeds its target 0.5 s",
        "RPO 0.600 s exceeds 1.5 × the median 0.000 s of the previous 3 runs"]


# --- like with like: drill, experiment id, lab profile ----------------------------------

PROFILE = "lab=netns replication=sync ttl_s=1 health_interval_s=1 delay_ms=20 k=5"


def keyed(n: int, drill: str, rto: float, *, experiment_id: str = "game-day",
          profile: str = PROFILE) -> dict:
    return run(n, rto, drill=drill, profile=profile,
               experiment_id=experiment_id if drill == "failover" else "failback")


def interleaved() -> list[dict]:
    """A reports directory as `make game-day` leaves it: each game day (about 1.86 s) is
    followed by its failback (about 0.72 s)."""
    out = []
    for i, (fo, fb) in enumerate(((1.85, 0.71), (1.87, 0.74), (1.86, 0.72), (1.88, 0.73))):
        out += [keyed(2 * i + 1, "failover", fo), keyed(2 * i + 2, "failback", fb)]
    return out


def test_interleaved_drills_flag_only_a_real_regression() -> None:
    history = interleaved()
    # 2.10 s is no regression against the failovers' median 1.865 s (1.5 x = 2.80 s); against
    # the mixed median of failovers and failbacks (1.29 s) it was flagged
    failover = trends.evaluate(keyed(20, "failover", 2.10), history)
    assert failover.medians["rto_s"] == pytest.approx(1.865)
    assert not failover.regression, failover.flags
    assert [e["drill"] for e in failover.previous] == ["failover"] * 4
    # a failback at 1.5 s is twice its own median (0.725 s): flagged, though it is faster
    # than every failover (the mixed median hid it)
    failback = trends.evaluate(keyed(20, "failback", 1.5), history)
    assert failback.flags == ["RTO 1.500 s exceeds 1.5 × the median 0.725 s of the previous 4 runs"]
    # and a failover that did slow down is still flagged
    assert trends.evaluate(keyed(20, "failover", 2.9), history).regression


def test_another_experiment_or_lab_profile_is_not_compared() -> None:
    history = interleaved()
    other = trends.evaluate(keyed(20, "failover", 9.0, experiment_id="game-day-long"), history)
    assert other.previous == [] and not other.regression
    assert other.left_out == 8
    async_lab = PROFILE.replace("replication=sync", "replication=async")
    assert not trends.evaluate(keyed(20, "failover", 9.0, profile=async_lab), history).regression


def test_the_trend_says_what_it_compared_against() -> None:
    t = trends.evaluate(keyed(20, "failback", 0.7), interleaved())
    assert t.against == (f"the 4 earlier failback runs of experiment `failback` on lab profile "
                         f"`{PROFILE}` (4 other earlier runs of another drill, experiment or "
                         "profile left out)")


def test_lines_recorded_before_runs_were_keyed_are_compared_only_with_each_other() -> None:
    old = history(1.0, 1.0, 1.0)  # no drill, experiment id or profile
    assert trends.evaluate(keyed(10, "failover", 9.0), old).previous == []
    assert trends.evaluate(run(10, 9.0), old).regression


def test_the_experiment_identity_survives_a_new_title_but_not_a_new_method() -> None:
    method = [{"type": "action", "name": "region-1-outage"}, {"type": "action", "name": "wait"}]
    a = trends.experiment_identity({"title": "Region-1 is lost", "method": method})
    b = trends.experiment_identity({"title": "Region 1 goes away", "method": method})
    c = trends.experiment_identity({"title": "Region-1 is lost", "method": method[:1]})
    assert a == b != c and a.startswith("method-")
    assert trends.experiment_identity({"method": method}, "game-day") == "game-day"


def test_the_profile_names_what_shapes_the_numbers() -> None:
    summary = {"lab": "netns", "configuration": {
        "replication": "async", "promotion": "none", "ha_manager": "patroni", "dns_ttl_s": 1.0,
        "health_interval_s": 0.5, "inter_region_delay_ms": 20.0, "k_consecutive": 5,
        "canary_writers": 4},
        "faults": [{"fault": "scale-to-zero"}, {"fault": "cordon", "not_applicable": "no nodes"}]}
    assert trends.profile(summary) == (
        "lab=netns replication=async ha=patroni promotion=none ttl_s=1 health_interval_s=0.5 "
        "delay_ms=20 k=5 faults=scale-to-zero")
