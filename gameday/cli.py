"""`gameday`: a thin translator over the core (lab up|down|status, report, recover)."""

from __future__ import annotations

import json
import sys

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
def lab_up(replication: str, delay_ms: float, ttl: float, health_interval: float) -> None:
    """Bring the lab up and write its descriptor (.gameday/lab.json)."""
    from gameday.labs.netns import lab as netns

    options = netns.LabOptions(replication=replication, inter_region_delay_ms=delay_ms,
                               dns_ttl_s=ttl, health_interval_s=health_interval)
    try:
        path = netns.up(options, progress=lambda m: click.echo(f"lab: {m}", err=True))
    except GamedayError as exc:
        raise _fail(exc) from None
    click.echo(str(path))


@lab.command("down")
def lab_down() -> None:
    """Stop every lab process by pid and remove namespaces, links, tables and state."""
    from gameday.labs.netns import lab as netns

    try:
        removed = netns.down()
    except GamedayError as exc:
        raise _fail(exc) from None
    click.echo(f"lab down: removed {len(removed)} items" if removed else "lab down: nothing to remove")


@lab.command("status")
def lab_status() -> None:
    """Show what of the lab is running."""
    from gameday.labs.netns import lab as netns

    click.echo(json.dumps(netns.status(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
