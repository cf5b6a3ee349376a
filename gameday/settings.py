"""The experiment's configuration, parsed once into a typed object (CONTRIBUTING.md, convention 6).

Chaos Toolkit hands every activity the raw `configuration` dict; key names, defaults and
coercion live here and nowhere else, and a bad value is a ConfigError naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from gameday.errors import ConfigError
from gameday.labs import descriptor
from gameday.measure.samplers import Rates


@dataclasses.dataclass(frozen=True, kw_only=True)
class Targets:
    rto_s: float = 30.0
    rpo_s: float = 0.0
    max_lost_writes: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class GamedaySettings:
    lab_file: Path
    drill: str = "failover"
    reports_dir: Path = Path("reports")
    targets: Targets = dataclasses.field(default_factory=Targets)
    max_lag_s: float = 5.0
    k_consecutive: int = 5
    rates: Rates = dataclasses.field(default_factory=Rates)

    @classmethod
    def from_chaos(cls, configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> GamedaySettings:
        c = dict(configuration or {})
        drill = str(c.get("drill") or "failover")
        if drill not in ("failover", "failback"):
            raise ConfigError(f"configuration 'drill' must be 'failover' or 'failback', got {drill!r}")
        return cls(
            lab_file=descriptor.lab_file(c),
            drill=drill,
            reports_dir=Path(str(c.get("reports_dir") or "reports")),
            targets=Targets(
                rto_s=_number(c, "rto_target_s", 30.0),
                rpo_s=_number(c, "rpo_target_s", 0.0),
                max_lost_writes=int(_number(c, "max_lost_writes", 0, integer=True)),
            ),
            max_lag_s=_number(c, "max_lag_s", 5.0),
            k_consecutive=int(_number(c, "k_consecutive", 5, integer=True, minimum=1)),
            rates=Rates(
                dns_s=_number(c, "dns_interval_s", 0.05, minimum=0.005),
                http_s=_number(c, "http_interval_s", 0.05, minimum=0.005),
                replication_s=_number(c, "replication_interval_s", 0.25, minimum=0.01),
                canary_writers=int(_number(c, "canary_writers", 4, integer=True, minimum=1)),
            ),
        )

    def load_lab(self) -> descriptor.Lab:
        return descriptor.load(self.lab_file)


def _number(c: dict[str, Any], key: str, default: float, *, integer: bool = False,
            minimum: float = 0.0) -> float:
    raw = c.get(key, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"configuration '{key}' must be a number, got {raw!r}: "
                          f"fix it in the experiment or pass --var {key}=NUMBER") from None
    if math.isnan(value) or value < minimum or (integer and value != int(value)):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"configuration '{key}' must be {kind} >= {minimum:g}, got {raw!r}")
    return value
