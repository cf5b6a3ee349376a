"""`gameday`: a thin translator over the core (lab up|down|status, report, plan, recover,
experiments).

Exit codes, one per kind of outcome, the same for every command (README, "Exit codes"):

    0  done; the drill passed (report), the plan would run (plan), the lab is recovered
    1  done, and the result is a failure: a FAIL or ABORTED verdict (report, unless
       --no-fail), a regression (report --fail-on-regression), a plan the run would refuse
    2  usage: an unknown option, a missing or malformed argument, RUN_DIR not a run
    3  configuration: the experiment, a setting, the descriptor or a stored file is wrong
       (ConfigError): fix the input the message names
    4  lab: the lab is not in the state the command needs (LabError)
    5  target: a system under test, or a Pushgateway, did not answer or refused (TargetError)
    6  output: a file could not be written
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gameday import __version__
from gameday.foundation.errors import ConfigError, GamedayError, LabError, TargetError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_LAB = 4
EXIT_TARGET = 5
EXIT_OUTPUT = 6


def _failure(code: int) -> type[click.ClickException]:
    """A ClickException (one line on stderr) with the exit code of its kind."""
    return type(f"Exit{code}", (click.ClickException,), {"exit_code": code})


_FAILURES = {code: _failure(code) for code in (EXIT_FAILED, EXIT_CONFIG, EXIT_LAB,
                                                EXIT_TARGET, EXIT_OUTPUT)}


def _fail(exc: GamedayError) -> click.ClickException:
    for kind, code in ((ConfigError, EXIT_CONFIG), (LabError, EXIT_LAB),
                       (TargetError, EXIT_TARGET)):
        if isinstance(exc, kind):
            return _FAILURES[code](str(exc))
    return _FAILURES[EXIT_FAILED](str(exc))


def _cannot_write(exc: OSError) -> click.ClickException:
    return _FAILURES[EXIT_OUTPUT](f"cannot write {exc.filename}: {exc.strerror}")


def _log_to_stderr() -> None:
    """Show the core's progress (the `chaostoolkit.*` loggers, as `chaos run` does) on
    stderr, so that stdout keeps only the command's result (its --json)."""
    root = logging.getLogger("chaostoolkit")
    ours = [h for h in root.handlers if getattr(h, "_gameday", False)]
    if ours:
        ours[0].setStream(sys.stderr)  # type: ignore[attr-defined]  # a StreamHandler
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s] %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
        handler._gameday = True  # type: ignore[attr-defined]  # ours, not chaostoolkit's
        root.addHandler(handler)
    root.setLevel(logging.INFO)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gameday")
def main() -> None:
    """Chaos game days for two-region deployments: kill a region, measure RTO and RPO.

    Exit codes: 0 done, 1 the result is a failure (verdict, regression, refused plan),
    2 usage, 3 configuration, 4 lab, 5 target, 6 output file."""


@main.group()
def lab() -> None:
    """The embedded netns lab (root, Linux; no Docker)."""


def _dns_profile_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`lab up`'s production-shaped DNS profile (issue 19; labs/netns/dnsprofile.py)."""
    options = [
        click.option("--region-addresses", type=click.IntRange(1, 8), default=1,
                     show_default=True,
                     help="Storefront instances per region, each on its own address (an "
                          "ALB's nodes); DNS answers them all."),
        click.option("--cname", is_flag=True,
                     help="The global name is a CNAME to a per-region name "
                          "(region-1.shop.gameday.test), switched like a Route 53 failover "
                          "alias."),
        click.option("--ipv6", is_flag=True,
                     help="AAAA records too: every instance also listens on an address of "
                          "2001:2::/48."),
        click.option("--health-failures", type=click.IntRange(1, 10), default=None,
                     help="Failed checks in a row before a region is unhealthy (and passing "
                          "ones before it is healthy again), as Route 53's failure threshold. "
                          "[default: 1, PowerDNS ifurlup]"),
        click.option("--health-timeout", type=click.FloatRange(min=0, min_open=True),
                     default=None, help="Time each health check may take (s). [default: 1]"),
        click.option("--resolvers", "resolver_list", metavar="LIST", default=None,
                     help="Resolvers to run, comma-separated: unbound,dnsmasq,pdns-recursor "
                          "(unbound always runs), each on its own address."),
        click.option("--db-hostnames", is_flag=True,
                     help="Each region's database by a name of the lab's zone "
                          "(db.region-1.gameday.test, AAAA too with --ipv6) as its db_host; "
                          "run drills with the lab's resolver (<state>/resolv.conf)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@lab.command("up")
@click.option("--replication", type=click.Choice(["sync", "async"]), default="sync",
              show_default=True, help="Streaming replication mode of the region-2 standby.")
@click.option("--delay-ms", type=float, default=20.0, show_default=True,
              help="One-way delay on the cross-region paths.")
@click.option("--ttl", type=float, default=1.0, show_default=True, help="DNS TTL (s).")
@click.option("--health-interval", type=float, default=1.0, show_default=True,
              help="Health check interval (s): PowerDNS ifurlup's, or the health-check "
                   "gate's with the DNS profile's options.")
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
@click.option("--store", type=click.Choice(["postgresql", "redis-sentinel"]),
              default="postgresql", show_default=True,
              help="The storefronts' datastore: PostgreSQL, or a Redis per region with "
                   "Sentinels (both regions and gd-witness, quorum 2) that fail over by "
                   "themselves.")
@click.option("--redis-durability", type=click.Choice(["async", "wait"]), default="async",
              show_default=True,
              help="redis-sentinel: async (a write is acknowledged once the master has it) "
                   "or wait (min-replicas-to-write 1, and the canary write waits for one "
                   "replica: WAIT 1).")
@click.option("--sentinel-down-after-ms", type=click.IntRange(min=100, max=60000),
              default=2000, show_default=True,
              help="redis-sentinel: down-after-milliseconds, how long a master may not "
                   "answer before a Sentinel thinks it down.")
@click.option("--sentinel-failover-timeout-ms", type=click.IntRange(min=1000, max=600000),
              default=10000, show_default=True,
              help="redis-sentinel: failover-timeout.")
@_dns_profile_options
@click.pass_context
def lab_up(ctx: click.Context, /, replication: str, delay_ms: float, ttl: float,
           health_interval: float, ha: str | None, patroni_ttl: int, patroni_loop_wait: int,
           patroni_retry_timeout: int, patroni_max_lag: int, store: str,
           redis_durability: str, sentinel_down_after_ms: int,
           sentinel_failover_timeout_ms: int, **dns_profile: Any) -> None:
    """Bring the lab up and write its descriptor (.gameday/lab.json)."""
    from gameday.labs.netns import dnsprofile
    from gameday.labs.netns import lab as netns
    from gameday.labs.netns.patroni import PatroniOptions
    from gameday.labs.netns.redis_sentinel import RedisOptions

    _options_of_store(ctx, store)
    options = netns.LabOptions(
        replication=replication, inter_region_delay_ms=delay_ms, dns_ttl_s=ttl,
        health_interval_s=health_interval, ha=ha,
        patroni=PatroniOptions(ttl_s=patroni_ttl, loop_wait_s=patroni_loop_wait,
                               retry_timeout_s=patroni_retry_timeout,
                               maximum_lag_on_failover=patroni_max_lag),
        store=store,
        redis=RedisOptions(durability=redis_durability, down_after_ms=sentinel_down_after_ms,
                           failover_timeout_ms=sentinel_failover_timeout_ms),
        dns=dnsprofile.DnsProfile(
            region_addresses=dns_profile["region_addresses"], cname=dns_profile["cname"],
            ipv6=dns_profile["ipv6"], health_failures=dns_profile["health_failures"],
            health_timeout_s=dns_profile["health_timeout"],
            resolvers=dnsprofile.parse_resolvers(dns_profile["resolver_list"]),
            db_hostnames=dns_profile["db_hostnames"]))
    try:
        path = netns.up(options, progress=lambda m: click.echo(f"lab: {m}", err=True))
    except GamedayError as exc:
        raise _fail(exc) from None
    click.echo(str(path))


# the options that apply to one store only: given for the other, they would do nothing
_POSTGRESQL_ONLY = ("replication", "delay_ms", "ha", "patroni_ttl", "patroni_loop_wait",
                    "patroni_retry_timeout", "patroni_max_lag")
_REDIS_ONLY = ("redis_durability", "sentinel_down_after_ms", "sentinel_failover_timeout_ms")


def _options_of_store(ctx: click.Context, store: str) -> None:
    """Refuse an option the chosen store ignores, naming the one that applies."""
    other = _POSTGRESQL_ONLY if store == "redis-sentinel" else _REDIS_ONLY
    for name in other:
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            flag = "--" + name.replace("_", "-")
            if store == "redis-sentinel":
                raise click.UsageError(f"{flag} applies to --store postgresql; with "
                                       "redis-sentinel use --redis-durability async|wait "
                                       "and --sentinel-* (no delay: docs/app-canary.md)")
            raise click.UsageError(f"{flag} applies to --store redis-sentinel only")


@lab.command("down")
@click.option("--force", is_flag=True,
              help="Go on although the lab's drill lock is held, when the process that took "
                   "it is dead (a process it started still holds it). Never past a live drill.")
def lab_down(force: bool) -> None:
    """Stop every lab process by pid and remove namespaces, links, tables and state (only
    a state directory that `lab up` marked as the lab's own). Refused while a drill runs on
    the lab."""
    from gameday.foundation import lock
    from gameday.labs.netns import lab as netns

    def left(message: str) -> None:
        if message.startswith("left "):
            click.echo(f"lab: {message}", err=True)

    try:
        descriptor = netns.state_dir() / "lab.json"
        # no descriptor, no drill (a run needs one): then no lock file is made either, so a
        # directory that is not the lab's is left exactly as it was
        if descriptor.exists():
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
              help="Flag RTO or RPO above this factor × the median of the previous comparable "
                   "runs [default: the run's regression_factor, else 1.5].")
@click.option("--fail-on-regression", is_flag=True,
              help="Also exit 1 when the trend regresses (same drill, experiment and lab "
                   "profile).")
@click.option("--no-fail", is_flag=True,
              help="Exit 0 on a FAIL or ABORTED verdict (the files are written either way).")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write JUnit XML (one suite per drill, one testcase "
                                 "per measure) for CI test views.")
@click.option("--prometheus", "prom_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the numbers as a Prometheus textfile (.prom) "
                                 "for node-exporter's textfile collector.")
@click.option("--pushgateway", "pushgateway", metavar="URL", default=None,
              help="Also push the numbers to this Prometheus Pushgateway (job gameday).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def report(run_dir: Path, history: Path | None, regression_factor: float | None,
           fail_on_regression: bool, no_fail: bool, junit_file: Path | None,
           prom_file: Path | None, pushgateway: str | None, as_json: bool) -> None:
    """Regenerate RUN_DIR's summary.json, report.md and timeline.svg from its stored
    timeline (no lab needed; default reports/latest) and record it in the history. A run
    directory with only summary.json (copied out of CI) gives JUnit and metrics from it.
    Exits 1 on a FAIL or ABORTED verdict unless --no-fail."""
    from gameday.report import junit, outputs, prometheus

    if not outputs.is_run_dir(run_dir):
        raise click.UsageError(f"{run_dir} is not a run directory (it holds neither "
                               "timeline.sqlite nor summary.json)")
    for option, target in (("--junit", junit_file), ("--prometheus", prom_file)):
        if target is not None and not target.parent.is_dir():
            raise click.UsageError(f"{option} {target}: directory {target.parent} does not "
                                   "exist: create it or choose another path")
    if pushgateway is not None and not pushgateway.startswith(("http://", "https://")):
        raise click.UsageError(f"--pushgateway {pushgateway!r}: give the gateway's http:// or "
                               "https:// URL, e.g. http://pushgateway:9091")
    try:
        out = outputs.regenerate(run_dir, history=history, factor=regression_factor)
        if junit_file is not None:
            junit.write(junit_file, out.summary, run_dir)
        if prom_file is not None:
            prometheus.write(prom_file, out.summary)
        if pushgateway is not None:
            prometheus.push(pushgateway, out.summary)
    except GamedayError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise _cannot_write(exc) from None
    verdict = str(out.summary.get("verdict")).upper()
    if as_json:
        _echo_json({"run_dir": str(run_dir), "report": str(out.report) if out.report else None,
                    "verdict": out.summary.get("verdict"), "reasons": out.summary.get("reasons"),
                    "regression": out.trend.flags, "compared_with": out.trend.against,
                    "junit": str(junit_file) if junit_file else None,
                    "prometheus": str(prom_file) if prom_file else None,
                    "pushgateway": prometheus.safe_url(pushgateway) if pushgateway else None})
    else:
        where = out.report or run_dir / "summary.json"
        click.echo(f"{where}: {verdict}"
                   + ("; regression: " + "; ".join(out.trend.flags) if out.trend.regression
                      else ""))
    if (out.failed and not no_fail) or (fail_on_regression and out.trend.regression):
        sys.exit(EXIT_FAILED)


@main.command("plan")
@click.argument("experiment")
@click.option("--var", "var", multiple=True, metavar="KEY=VALUE",
              help="A configuration value, as `chaos run --var` takes it.")
@click.option("--var-file", "var_file", multiple=True, metavar="FILE",
              help="A JSON or YAML var file, as `chaos run --var-file` takes it.")
@click.option("--lab-file", default=None,
              help="Lab descriptor (default: the experiment's lab_file, $GAMEDAY_LAB or "
                   ".gameday/lab.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--no-gate", is_flag=True,
              help="Skip the readiness gate (it waits up to ready_timeout_s for the lab).")
def plan_cmd(experiment: str, var: tuple[str, ...], var_file: tuple[str, ...],
             lab_file: str | None, as_json: bool, no_gate: bool) -> None:
    """What EXPERIMENT (JSON or YAML, a path or a shipped name) would do, doing none of it:
    the guards and the readiness gate, read-only, then each fault's exact change and how it
    is undone. Injects nothing, writes no canary row; exits 1 where the run would refuse."""
    from gameday.drill import planning

    loaded, configuration, secrets = _load_experiment(experiment, var, var_file)
    if lab_file is not None:
        configuration["lab_file"] = lab_file
    result = planning.make(loaded, configuration, secrets, gate=not no_gate)
    click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True) if as_json
               else result.render())
    if result.refused:
        sys.exit(1)


@main.command("experiments")
@click.option("--path", "name", metavar="NAME", default=None,
              help="Print only the path of experiment NAME (e.g. game-day), for `chaos run`.")
@click.option("--json", "as_json", is_flag=True, help="Print the list (or the path) as JSON.")
def experiments_cmd(name: str | None, as_json: bool) -> None:
    """Where the shipped experiments are: `chaos run $(gameday experiments --path game-day)`
    works from any directory once gameday is installed."""
    from gameday import experiments

    try:
        if name is not None:
            path = str(experiments.path(name))
            if as_json:
                _echo_json({"name": name, "path": path})
            else:
                click.echo(path)
            return
        found = list(experiments.shipped())
        if as_json:
            _echo_json({"directory": str(experiments.directory()),
                        "experiments": [{"name": i.name, "title": i.title, "path": str(i.path)}
                                        for i in found]})
            return
        click.echo(str(experiments.directory()))
        for item in found:
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
            raise _FAILURES[EXIT_CONFIG](f"{experiment}: no such file; {exc}") from None
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
        raise _FAILURES[EXIT_CONFIG](f"{experiment}: {exc}") from None
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
@click.option("--json", "as_json", is_flag=True,
              help="Print what was done and what is left as JSON (the steps are logged on "
                   "stderr either way).")
def recover_cmd(lab_file: str | None, experiment: str | None, var: tuple[str, ...],
                var_file: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Undo every fault the fault ledger still holds and leave one writable primary
    (after a runner was killed). Safe to run twice. Exits 1 until the lab is recovered:
    no fault and no unreadable line in the ledger, exactly one region accepting writes."""
    from gameday.drill.context import Drill
    from gameday.drill.recovery import recover
    from gameday.foundation import lock
    from gameday.foundation.settings import GamedaySettings

    if (var or var_file) and experiment is None:
        raise click.UsageError("--var and --var-file need --experiment FILE")
    configuration: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    _log_to_stderr()
    try:
        if experiment is not None:
            _, configuration, secrets = _load_experiment(experiment, var, var_file)
        if lab_file is not None:
            configuration["lab_file"] = lab_file
        settings = GamedaySettings.from_chaos(configuration, secrets)
        drill = Drill(settings=settings, lab=settings.load_lab())
        with lock.held(drill.lab.path, what="`gameday recover`", force=force):
            result = recover(drill)
    except GamedayError as exc:
        raise _fail(exc) from None
    if as_json:
        _echo_json({"done": result.done, "left": result.left})
        if result.left:
            sys.exit(1)
        return
    for line in result.done:
        click.echo(f"recover: {line}")
    if result.left:
        raise click.ClickException("recover: the lab is not recovered: "
                                   + "; ".join(result.left))
    if not result.done:
        click.echo("recover: nothing to undo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
