"""`gameday`: a thin translator over the core (lab up|down|status, report, recover)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from gameday.errors import GamedayError


def _fail(exc: GamedayError) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group()
@click.version_option(package_name="gameday")
def main() -> None:
    """Chaos game days for two-region deployments: kill a region, measure RTO and RPO."""


@main.group()
def lab() -> None:
    """The embedded netns lab (root, Linux; no Docker)."""


@lab.command("up")
@click.option("--replication", type=click.Choice(["sync", "async"]), default="sync",
              show_default=True, help="Streaming replication mode of the region-2 standby.")
@click.option("--delay-ms", type=float, default=20.0, show_default=True,
              help="One-way delay on the cross-region paths.")
@click.option("--ttl", type=float, default=1.0, show_default=True, help="DNS TTL (s).")
@click.option("--health-interval", type=float, default=1.0, show_default=True,
              help="PowerDNS health check interval (s).")
@click.option("--ha", type=click.Choice(["patroni"]), default=None,
              help="Autonomous failover: Patroni members in both regions and a single-member "
                   "etcd witness in gd-witness; the system promotes by itself.")
@click.option("--patroni-ttl", type=click.IntRange(min=1), default=10, show_default=True,
              help="Patroni leader key TTL (s): how long a lost primary keeps the lock.")
@click.option("--patroni-loop-wait", type=click.IntRange(min=1), default=1, show_default=True,
              help="Patroni HA loop interval (s).")
@click.option("--patroni-retry-timeout", type=click.IntRange(min=1), default=3,
              show_default=True, help="Patroni DCS and PostgreSQL retry timeout (s).")
@click.option("--patroni-max-lag", type=click.IntRange(min=0), default=1048576,
              show_default=True,
              help="maximum_lag_on_failover (bytes): a replica further behind is not promoted.")
def lab_up(replication: str, delay_ms: float, ttl: float, health_interval: float,
           ha: str | None, patroni_ttl: int, patroni_loop_wait: int,
           patroni_retry_timeout: int, patroni_max_lag: int) -> None:
    """Bring the lab up and write its descriptor (.gameday/lab.json)."""
    from gameday.labs.netns import lab as netns
    from gameday.labs.netns.patroni import PatroniOptions

    options = netns.LabOptions(
        replication=replication, inter_region_delay_ms=delay_ms, dns_ttl_s=ttl,
        health_interval_s=health_interval, ha=ha,
        patroni=PatroniOptions(ttl_s=patroni_ttl, loop_wait_s=patroni_loop_wait,
                               retry_timeout_s=patroni_retry_timeout,
                               maximum_lag_on_failover=patroni_max_lag))
    try:
        path = netns.up(options, progress=lambda m: click.echo(f"lab: {m}", err=True))
    except GamedayError as exc:
        raise _fail(exc) from None
    click.echo(str(path))


@lab.command("down")
@click.option("--force", is_flag=True,
              help="Go on although the lab's drill lock is held, when the process that took "
                   "it is dead (a process it started still holds it). Never past a live drill.")
def lab_down(force: bool) -> None:
    """Stop every lab process by pid and remove namespaces, links, tables and state (only
    a state directory that `lab up` marked as the lab's own). Refused while a drill runs on
    the lab."""
    from gameday.labs import lock
    from gameday.labs.netns import lab as netns

    def left(message: str) -> None:
        if message.startswith("left "):
            click.echo(f"lab: {message}", err=True)

    try:
        descriptor = netns.state_dir() / "lab.json"
        if descriptor.parent.is_dir():
            with lock.held(descriptor, what="`gameday lab down`", force=force):
                removed = netns.down(progress=left)
        else:
            removed = netns.down(progress=left)
    except GamedayError as exc:
        raise _fail(exc) from None
    click.echo(f"lab down: removed {len(removed)} items" if removed else "lab down: nothing to remove")


@lab.command("status")
def lab_status() -> None:
    """Show what of the lab is running."""
    from gameday.labs.netns import lab as netns

    click.echo(json.dumps(netns.status(), indent=2))


@main.command("report")
@click.argument("run_dir", required=False, default="reports/latest",
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--history", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Run history (JSON lines). Default: history.jsonl beside the run directory.")
@click.option("--regression-factor", type=click.FloatRange(min=1.0), default=None,
              help="Flag RTO or RPO above this factor × the median of the previous runs "
                   "[default: the run's regression_factor, else 1.5].")
@click.option("--fail-on-regression", is_flag=True,
              help="Exit 1 when a regression is flagged or the verdict is fail.")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write JUnit XML (one testcase per target and "
                                 "integrity check) for CI test views.")
@click.option("--prometheus", "prom_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write a node-exporter textfile (.prom) with RTO, RPO, "
                                 "lost writes and the verdict.")
def report(run_dir: Path, history: Path | None, regression_factor: float | None,
           fail_on_regression: bool, junit_file: Path | None, prom_file: Path | None) -> None:
    """Regenerate RUN_DIR's summary.json, report.md and timeline.svg from its stored
    timeline (no lab needed; default reports/latest) and record it in the history."""
    from gameday.report import junit, outputs, prometheus

    if not run_dir.is_dir():
        raise click.UsageError(f"{run_dir} is not a run directory")
    for option, target in (("--junit", junit_file), ("--prometheus", prom_file)):
        if target is not None and not target.parent.is_dir():
            raise click.UsageError(f"{option} {target}: directory {target.parent} does not "
                                   "exist: create it or choose another path")
    try:
        out = outputs.regenerate(run_dir, history=history, factor=regression_factor)
    except GamedayError as exc:
        raise _fail(exc) from None
    try:
        if junit_file is not None:
            junit.write(junit_file, out.summary, run_dir)
        if prom_file is not None:
            prometheus.write(prom_file, out.summary)
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename}: {exc.strerror}") from None
    click.echo(f"{run_dir / 'report.md'}: {str(out.summary.get('verdict')).upper()}"
               + ("; regression: " + "; ".join(out.trend.flags) if out.trend.regression else ""))
    if fail_on_regression and (out.trend.regression or out.failed):
        sys.exit(1)


@main.command("plan")
@click.argument("experiment")
@click.option("--var", "var", multiple=True, metavar="KEY=VALUE",
              help="A configuration value, as `chaos run --var` takes it.")
@click.option("--var-file", "var_file", multiple=True, metavar="FILE",
              help="A JSON or YAML var file, as `chaos run --var-file` takes it.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--no-gate", is_flag=True,
              help="Skip the readiness gate (it waits up to ready_timeout_s for the lab).")
def plan_cmd(experiment: str, var: tuple[str, ...], var_file: tuple[str, ...], as_json: bool,
             no_gate: bool) -> None:
    """What EXPERIMENT (JSON or YAML, a path or a shipped name) would do, doing none of it:
    the guards and the readiness gate, read-only, then each fault's exact change and how it
    is undone. Injects nothing, writes no canary row; exits 1 where the run would refuse."""
    from gameday import planning

    loaded, configuration, secrets = _load_experiment(experiment, var, var_file)
    result = planning.make(loaded, configuration, secrets, gate=not no_gate)
    click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True) if as_json
               else result.render())
    if result.refused:
        sys.exit(1)


@main.command("experiments")
@click.option("--path", "name", metavar="NAME", default=None,
              help="Print only the path of experiment NAME (e.g. game-day), for `chaos run`.")
def experiments_cmd(name: str | None) -> None:
    """Where the shipped experiments are: `chaos run $(gameday experiments --path game-day)`
    works from any directory once gameday is installed."""
    from gameday import experiments

    try:
        if name is not None:
            click.echo(str(experiments.path(name)))
            return
        click.echo(str(experiments.directory()))
        for item in experiments.shipped():
            click.echo(f"  {item.name:<28} {item.title}")
    except GamedayError as exc:
        raise _fail(exc) from None


def _load_experiment(experiment: str, var: tuple[str, ...], var_file: tuple[str, ...]
                     ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The experiment, its configuration and its secrets as `chaos run` would load them
    (vars, var files, env and vault secrets), so `plan` and `recover` see what the run saw."""
    from chaoslib import merge_vars
    from chaoslib.configuration import load_configuration
    from chaoslib.exceptions import ChaosException
    from chaoslib.loader import load_experiment
    from chaoslib.secret import load_secrets

    from gameday import experiments

    source = experiment
    if not Path(source).exists():
        try:
            source = str(experiments.path(source))
        except GamedayError as exc:
            raise click.ClickException(f"{experiment}: no such file; {exc}") from None
    pairs = {}
    for item in var:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--var {item!r}: write it as KEY=VALUE")
        pairs[key] = value
    try:
        config_vars, secret_vars = merge_vars(pairs, list(var_file))
        loaded = load_experiment(source)
        configuration = load_configuration(loaded.get("configuration", {}), config_vars)
        secrets = load_secrets(loaded.get("secrets", {}), configuration, secret_vars)
    except ChaosException as exc:
        raise click.ClickException(f"{experiment}: {exc}") from None
    return dict(loaded), dict(configuration or {}), dict(secrets or {})


@main.command("recover")
@click.option("--lab-file", default=None, help="Lab descriptor (default: $GAMEDAY_LAB or .gameday/lab.json).")
@click.option("--experiment", default=None, metavar="FILE",
              help="The experiment that ran: its secrets give the database password (and "
                   "Kubernetes credentials) when the descriptor holds none.")
@click.option("--var", "var", multiple=True, metavar="KEY=VALUE",
              help="With --experiment: a configuration value, as `chaos run --var` takes it.")
@click.option("--var-file", "var_file", multiple=True, metavar="FILE",
              help="With --experiment: a var file, as `chaos run --var-file` takes it.")
@click.option("--force", is_flag=True,
              help="Go on although the lab's drill lock is held, when the process that took "
                   "it is dead (a process it started still holds it). Never past a live drill.")
def recover_cmd(lab_file: str | None, experiment: str | None, var: tuple[str, ...],
                var_file: tuple[str, ...], force: bool) -> None:
    """Undo every fault the fault ledger still holds and leave one writable primary
    (after a runner was killed). Safe to run twice. Exits 1 until the lab is recovered:
    no fault and no unreadable line in the ledger, exactly one region accepting writes."""
    from gameday.labs import descriptor, lock
    from gameday.recovery import recover
    from gameday.settings import GamedaySettings

    if (var or var_file) and experiment is None:
        raise click.UsageError("--var and --var-file need --experiment FILE")
    configuration: dict[str, Any] | None = None
    try:
        if experiment is None:
            lab = descriptor.load(lab_file)
        else:
            _, configuration, secrets = _load_experiment(experiment, var, var_file)
            if lab_file is not None:
                configuration["lab_file"] = lab_file
            lab = GamedaySettings.from_chaos(configuration, secrets).load_lab()
        with lock.held(lab.path, what="`gameday recover`", force=force):
            result = recover(configuration=configuration, lab=lab)
    except GamedayError as exc:
        raise _fail(exc) from None
    for line in result.done:
        click.echo(f"recover: {line}")
    if result.left:
        raise click.ClickException("recover: the lab is not recovered: "
                                   + "; ".join(result.left))
    if not result.done:
        click.echo("recover: nothing to undo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
