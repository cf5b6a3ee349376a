"""gameday: a Chaos Toolkit extension that runs region-failover game days and measures RTO and RPO."""

__version__ = "0.1.0"

__all__ = ["__version__", "discover"]

ACTIVITY_MODULES = (
    "gameday.actions.region",
    "gameday.actions.database",
    "gameday.actions.wait",
    "gameday.probes.health",
    "gameday.probes.verdict",
)


def discover(discover_system: bool = True) -> dict:
    """Let `chaos discover gameday` list every activity the experiments may name."""
    from chaoslib.discovery.discover import discover_activities, initialize_discovery_result

    discovery = initialize_discovery_result("gameday", __version__, "gameday")
    for module in ACTIVITY_MODULES:
        discovery["activities"].extend(discover_activities(module, "action"))
    return discovery
