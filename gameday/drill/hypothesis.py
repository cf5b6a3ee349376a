"""Range tolerances bound to the experiment's targets.

The verdict probes return numbers (RTO seconds, lost writes, ...) and the experiment judges
them with Chaos Toolkit `range` tolerances. The range's upper bound has to be the target
the run was given (`--var rto_target_s=10`, a var file), not the number typed into the
file. chaoslib cannot do that itself: `chaos run` validates the experiment before it
substitutes anything, and its validator rejects a range bound that is not a number (so
`[0, "${rto_target_s}"]` never runs); it also substitutes only string tolerances.

So a tolerance names the configuration key it is bound to, beside a valid default:

    "tolerance": {"type": "range", "range": [0, 30], "gameday": {"upper": "rto_target_s"}}

and the control sets `range[1]` from the run's configuration before the hypothesis runs.
The journal then shows the bound that was applied next to the measured number. Without
the gameday control the tolerance still works, with the number in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gameday.foundation.errors import ConfigError
from gameday.foundation.settings import number


def bound_tolerances(experiment: Mapping[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every steady-state probe tolerance that names a configuration key, with that key.
    A malformed marker is a ConfigError naming the probe."""
    out = []
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    for probe in hypothesis.get("probes") or []:
        tolerance = probe.get("tolerance") if isinstance(probe, dict) else None
        if not isinstance(tolerance, dict) or "gameday" not in tolerance:
            continue
        marker = tolerance["gameday"]
        name = probe.get("name")
        bounds = tolerance.get("range")
        if (tolerance.get("type") != "range" or not isinstance(marker, dict)
                or not isinstance(bounds, list) or len(bounds) != 2
                or not isinstance(marker.get("upper"), str) or set(marker) != {"upper"}):
            raise ConfigError(f"probe {name!r}: a bound tolerance looks like "
                              '{"type": "range", "range": [0, 30], '
                              '"gameday": {"upper": "rto_target_s"}}')
        out.append((tolerance, marker["upper"]))
    return out


def bind(experiment: Mapping[str, Any], configuration: Mapping[str, Any] | None) -> dict[str, float]:
    """Set each bound tolerance's upper limit from the configuration; returns what was set
    (probe key -> bound). Checks everything before it changes anything, so bad input
    leaves the experiment as it was."""
    c = dict(configuration or {})
    planned = []
    for tolerance, key in bound_tolerances(experiment):
        if key not in c:
            raise ConfigError(f"a tolerance is bound to configuration '{key}', which the "
                              f"experiment does not set: add \"{key}\" to its configuration "
                              f"or pass --var {key}=NUMBER")
        planned.append((tolerance, key, number(c, key, 0.0)))
    bound = {}
    for tolerance, key, value in planned:
        # an integral bound stays an int, so the journal reads [0, 0], not [0, 0.0]
        tolerance["range"] = [tolerance["range"][0], int(value) if value == int(value) else value]
        bound[key] = value
    return bound
