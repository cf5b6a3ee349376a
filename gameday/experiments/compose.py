"""The shipped experiments, composed from one game day.

Each experiment file stays a complete Chaos Toolkit experiment (a user copies one and edits
it, with no tool of ours), but the five of them used to be near copies kept equal by hand.
Here each one is the game day plus what makes it different: the failback replaces the
method, the autonomous drills drop the promote step, the long drill adds a hold.

After changing this file, write the files again:

    make experiments        # python -m gameday.experiments.compose

and `python -m gameday.experiments.compose --check` (a unit test) fails while a committed
file differs from what this module composes. Chaos Toolkit's var files could not do this:
they set configuration values, not the method or the probes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gameday.foundation.faults import DEFAULT_REGION_FAULTS, Fault

Experiment = dict[str, Any]

SECRETS = ["gameday", "k8s"]
CONTROL = {"name": "gameday", "provider": {"type": "python", "module": "gameday.control"}}

# the recovery targets the verdict probes' tolerances are bound to (vars/*.yaml set them)
TARGETS: dict[str, Any] = {"rto_target_s": 30, "rpo_target_s": 0, "max_lost_writes": 0,
                           "max_lag_s": 5}
FAULTS = ",".join(DEFAULT_REGION_FAULTS)
PATRONI_SWITCHOVER = shlex.split("patronictl switchover --leader region-2 --candidate region-1 "
                                 "--force")


def env(key: str, default: str) -> dict[str, str]:
    """A configuration value read from the environment, with its default."""
    return {"type": "env", "key": key, "default": default}


def configuration(experiment_id: str, **specific: Any) -> dict[str, Any]:
    """Every key a run reads, with the game day's values; `specific` adds or overrides
    (chaoslib drops a `--var` whose key the experiment does not declare)."""
    return {
        "lab_file": env("GAMEDAY_LAB", ".gameday/lab.json"),
        "reports_dir": env("GAMEDAY_REPORTS", "reports"),
        "experiment_id": experiment_id,
        "promotion": "runner",
        "regression_factor": 1.5,
        "promotion_budget_s": 1,
        "write_reconnect_s": 1,
        "live_view": env("GAMEDAY_LIVE_VIEW", "auto"),
        "pushgateway_url": env("GAMEDAY_PUSHGATEWAY", ""),
        "abort_when": [],
        "abort_check_interval_s": 1,
        "max_outage_s": 0,
        # how long the readiness gate waits for the lab before the first fault
        "ready_timeout_s": 20,
        **TARGETS,
        "k_consecutive": 5,
        "canary_writers": 4,
        **specific,
    }


def action(name: str, module: str, func: str, **arguments: Any) -> Experiment:
    """A step of gameday's (or any Python provider's), with both secrets scopes."""
    provider: dict[str, Any] = {"type": "python", "module": module, "func": func}
    if arguments:
        provider["arguments"] = arguments
    provider["secrets"] = list(SECRETS)
    return {"type": "action", "name": name, "provider": provider}


def probe(name: str, module: str, func: str, tolerance: Any = True) -> Experiment:
    return {"type": "probe", "name": name, "tolerance": tolerance,
            "provider": {"type": "python", "module": module, "func": func,
                         "secrets": list(SECRETS)}}


def within(name: str, func: str, target: str | None) -> Experiment:
    """A verdict probe judged by a range from 0 to the configuration's `target` (the
    control binds the bound to the run's value; none: exactly 0)."""
    tolerance: dict[str, Any] = {"type": "range", "range": [0, TARGETS[target] if target else 0]}
    if target:
        tolerance["gameday"] = {"upper": target}
    return probe(name, "gameday.probes.verdict", func, tolerance)


def global_name_serves() -> Experiment:
    return probe("storefront-answers-via-global-name", "gameday.probes.health",
                 "global_name_serves")


def canary_writing() -> Experiment:
    return probe("canary-writing", "gameday.probes.health", "canary_is_writing")


def steady_state(title: str, *, rpo: bool = True) -> Experiment:
    """Before the method: the service answers and the canary writes (the verdict probes
    pass trivially); after it: the recovery targets are met."""
    probes = [
        global_name_serves(),
        canary_writing(),
        within("rto-within-target", "rto_seconds", "rto_target_s"),
        within("rpo-within-target", "rpo_seconds", "rpo_target_s"),
        within("lost-writes-within-target", "lost_writes", "max_lost_writes"),
        within("no-unexpected-or-duplicate-rows", "integrity_violations", None),
    ]
    if not rpo:  # a failback's RPO is the game day's
        probes = [p for p in probes if p["name"] != "rpo-within-target"]
    return {"title": title, "probes": probes}


def region_outage(faults: str = "${region_faults}") -> Experiment:
    return action("region-1-outage", "gameday.actions.region", "take_region_down",
                  region="region-1", faults=faults)


def wait_for_detection() -> Experiment:
    return action("wait-for-detection", "gameday.actions.wait", "wait_for_detection",
                  region="region-1", timeout_s=30)


def promote() -> Experiment:
    return action("promote-region-2-database", "gameday.actions.database", "promote",
                  region="region-2", timeout_s=30)


def wait_for_recovery(region: str = "region-2", timeout_s: float = 90) -> Experiment:
    return action("wait-for-recovery", "gameday.actions.wait", "wait_for_recovery",
                  region=region, timeout_s=timeout_s)


def restore_region(region: str = "region-1") -> Experiment:
    return action(f"restore-{region}-fenced", "gameday.actions.region", "restore_region",
                  region=region)


def keep_one_writable_primary() -> Experiment:
    return action("keep-one-writable-primary", "gameday.actions.database",
                  "ensure_writable_primary")


def switchover() -> Experiment:
    return action("switchover-to-region-1", "gameday.actions.database", "switchover",
                  to="region-1", timeout_s=60)


def experiment(*, title: str, description: str, tags: list[str],
               configuration: dict[str, Any], steady_state: Experiment,
               method: list[Experiment], rollbacks: list[Experiment]) -> Experiment:
    """The shape every shipped experiment has: the gameday control, and the rollbacks
    played always (also after a deviation or an interruption)."""
    return {
        "version": "1.0.0", "title": title, "description": description, "tags": tags,
        "configuration": configuration, "controls": [dict(CONTROL)],
        "steady-state-hypothesis": steady_state, "method": method, "rollbacks": rollbacks,
        "runtime": {"rollbacks": {"strategy": "always"}},
    }


FAILOVER_HYPOTHESIS = ("The storefront answers through the global name, the canary writes, "
                       "and no recovery target is missed")
FAILBACK_HYPOTHESIS = ("The storefront answers through the global name, the canary writes, "
                       "and no acknowledged write is lost")


def game_day() -> Experiment:
    return experiment(
        title="Region-1 is lost: the storefront fails over to region-2 within target with no "
              "lost writes",
        description="Kills the primary region (workloads to zero, nodes cordoned, egress "
                    "blocked), promotes the standby database in region-2, and measures RTO (K "
                    "consecutive global successes served by region-2) and RPO (lost "
                    "acknowledged canary writes) on one monotonic clock. Lab-agnostic: reads "
                    "the lab descriptor named by configuration lab_file.",
        tags=["gameday", "region-failover", "dr"],
        configuration=configuration("game-day", region_faults=FAULTS),
        steady_state=steady_state(FAILOVER_HYPOTHESIS),
        method=[region_outage(), wait_for_detection(), promote(), wait_for_recovery()],
        rollbacks=[restore_region()],
    )


def failback() -> Experiment:
    return experiment(
        title="Failback: region-1 becomes the primary again with zero lost writes, and the "
              "split brain is counted",
        description="After experiments/game-day.json: counts the writes the old primary "
                    "acknowledged after the promotion (split brain), resyncs it as a standby "
                    "of region-2 (pg_rewind, or a base backup), then a planned switchover back "
                    "to region-1 while the canary keeps writing. Measures failback RTO and "
                    "write RTO like the failover.",
        tags=["gameday", "failback", "dr"],
        configuration=configuration("failback", drill="failback"),
        steady_state=steady_state(FAILBACK_HYPOTHESIS, rpo=False),
        method=[
            action("count-split-brain-writes", "gameday.actions.database",
                   "count_split_brain", old_primary="region-1", new_primary="region-2"),
            action("resync-region-1-as-standby", "gameday.actions.database", "resync",
                   region="region-1", source="region-2", timeout_s=300),
            switchover(),
            wait_for_recovery("region-1"),
        ],
        rollbacks=[keep_one_writable_primary()],
    )


def game_day_autonomous() -> Experiment:
    base = game_day()
    return {
        **base,
        "title": "Region-1 is lost and the HA manager fails over by itself: the storefront "
                 "recovers in region-2 within target with no lost writes",
        "description": "For a lab whose databases are run by an HA manager (gameday lab up "
                       "--ha patroni, or your own). Kills region-1 (its processes, and its "
                       "path to the DCS witness) and promotes nothing: the HA manager detects "
                       "the loss when its leader key expires and promotes region-2 by itself. "
                       "gameday only observes: the leader key in the DCS, the first writable "
                       "answer from region-2, DNS, the storefront through the global name and "
                       "the canary, on one monotonic clock.",
        "tags": [*base["tags"], "autonomous"],
        "configuration": configuration("game-day-autonomous", promotion="none",
                                       region_faults=",".join((Fault.BLOCK_EGRESS,
                                                                         Fault.SCALE_TO_ZERO))),
        # no promote step: the HA manager's leader key expires and it promotes region-2
        "method": [region_outage(), wait_for_detection(), wait_for_recovery(timeout_s=120)],
    }


def failback_autonomous() -> Experiment:
    base = failback()
    return {
        **base,
        "title": "Failback under the HA manager: region-1 rejoins by itself, a switchover by "
                 "the manager's own command brings the service home with zero lost writes",
        "description": "After experiments/game-day-autonomous.json. The old primary rejoined as "
                       "a replica during the game day's rollback (the HA manager rewinds it as "
                       "it starts); this waits until it streams, then runs the manager's "
                       "switchover (promotion 'command': patronictl switchover) while the "
                       "canary writes, and measures the failback RTO and lost writes like the "
                       "failover. Split-brain writes are not counted here: the manager rewinds "
                       "the old primary when it rejoins, and any write it acknowledged that the "
                       "new primary lacks is already counted as lost by the game day.",
        "tags": [*base["tags"], "autonomous"],
        "configuration": configuration("failback-autonomous", drill="failback",
                                       promotion="command",
                                       promotion_command=list(PATRONI_SWITCHOVER),
                                       promotion_timeout_s=60),
        "method": [
            action("wait-for-region-1-to-stream", "gameday.actions.wait", "wait_for_standby",
                   region="region-1", source="region-2", timeout_s=120),
            switchover(),
            wait_for_recovery("region-1"),
        ],
    }


def game_day_long() -> Experiment:
    base = game_day()
    return {
        **base,
        "title": "Region-1 is lost: the storefront fails over to region-2 and runs there for "
                 "hold_s seconds (a long drill), within target and with no lost writes",
        "description": "The game day followed by a hold: after the failover the service stays "
                       "in region-2 for hold_s seconds (default 28800, a working day) with the "
                       "recorder running and a steady-state check every hold_check_interval_s "
                       "seconds; the report gives the hold's availability (success ratio of "
                       "global requests, canary errors) besides RTO and RPO. The canary is "
                       "capped at canary_max_rate acknowledged writes per second (default here "
                       "200, 5 ms apart): flat out, a primary with no synchronous standby took "
                       "~5,000 writes/s, 674 MB of timeline an hour, and more WAL than the old "
                       "primary could catch up on for the failback. Then run failback.json as "
                       "after any game day. Tests hold 60 s: chaos run --var hold_s=60 "
                       "experiments/game-day-long.json",
        "tags": [*base["tags"], "long-drill"],
        "configuration": {**base["configuration"], "experiment_id": "game-day-long",
                          "hold_s": 28800, "hold_check_interval_s": 5, "hold_max_outage_s": 60,
                          "canary_max_rate": 200},
        "method": [*base["method"], action(
            "hold-in-region-2", "gameday.actions.wait", "hold_in_region", region="region-2",
            hold_s="${hold_s}", check_interval_s="${hold_check_interval_s}",
            max_outage_s="${hold_max_outage_s}")],
    }


SHIPPED: dict[str, Callable[[], Experiment]] = {
    "game-day": game_day,
    "failback": failback,
    "game-day-autonomous": game_day_autonomous,
    "failback-autonomous": failback_autonomous,
    "game-day-long": game_day_long,
}

YAML_HEADER = """\
# The failover game day in YAML: the same experiment as game-day.json (both are written by
# gameday/experiments/compose.py: edit that, then `make experiments`). Chaos Toolkit reads
# either format:
#   chaos --no-version-check run experiments/game-day.yaml
#   chaos --no-version-check run --var-file experiments/vars/async.yaml experiments/game-day.yaml
"""


def files() -> dict[str, str]:
    """Each shipped file's name and the text this module composes for it."""
    import yaml  # type: ignore[import-untyped]  # PyYAML ships no type information

    out = {f"{name}.json": json.dumps(make(), indent=2) + "\n" for name, make in SHIPPED.items()}
    out["game-day.yaml"] = YAML_HEADER + yaml.safe_dump(game_day(), sort_keys=False, width=100)
    return out


def stale(directory: Path) -> list[str]:
    """The shipped files in `directory` that differ from what this module composes."""
    return [name for name, text in files().items()
            if not (directory / name).is_file() or (directory / name).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gameday.experiments.compose",
                                     description="Write the shipped experiments.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming the files that differ")
    parser.add_argument("--directory", type=Path, default=Path(__file__).parent)
    args = parser.parse_args(argv)
    if args.check:
        differ = stale(args.directory)
        for name in differ:
            print(f"{args.directory / name} differs from gameday/experiments/compose.py: "
                  "edit compose.py, then run `make experiments`", file=sys.stderr)
        return 1 if differ else 0
    for name, text in files().items():
        (args.directory / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
