"""gameday: a Chaos Toolkit extension that runs region-failover game days and measures RTO and RPO."""

from typing import Any

__version__ = "0.1.0"
DISTRIBUTION = "chaostoolkit-gameday"  # its name on PyPI ("gameday" there is another project)

__all__ = ["__version__", "discover"]

# module -> the kind chaoslib lists its functions as: actions change the world, probes read it
ACTIVITY_MODULES: dict[str, str] = {
    "gameday.actions.region": "action",
    "gameday.actions.database": "action",
    "gameday.actions.wait": "action",
    "gameday.probes.health": "probe",
    "gameday.probes.verdict": "probe",
}


def discover(discover_system: bool = True) -> dict[str, Any]:
    """Let `chaos discover chaostoolkit-gameday` list every activity the experiments may
    name (the distribution's name; the import package is `gameday`)."""
    from chaoslib.discovery.discover import discover_activities, initialize_discovery_result

    discovery: dict[str, Any] = initialize_discovery_result(DISTRIBUTION, __version__, "gameday")
    for module, kind in ACTIVITY_MODULES.items():
        discovery["activities"].extend(discover_activities(module, kind))
    return discovery
