"""The lab kinds a descriptor's region may name as its `driver`, and where each kind's
implementation lives ("module:callable", imported only when a region names it, so the
netns lab never loads the kubernetes client).

Why apart from the driver protocols (gameday.foundation.driver): the descriptor checks a
region's driver against these names when it loads, and the protocols are written in the
descriptor's types. Names alone here, so neither needs the other's module.
"""

from __future__ import annotations

import dataclasses

from gameday.foundation.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class LabKind:
    factory: str  # "module:callable", called as callable(lab, settings)
    # "module:callable" called as callable(lab) before a drill: refuses a descriptor that
    # does not match what runs (None: the kind has nothing to check)
    verify: str | None = None


_KINDS: dict[str, LabKind] = {
    "netns": LabKind(factory="gameday.labs.netns.driver:NetnsDriver.for_lab",
                     verify="gameday.labs.netns.driver:verify_running"),
    "kubernetes": LabKind(factory="gameday.labs.kubernetes:KubernetesDriver.from_settings"),
}


def register(name: str, factory: str, *, verify: str | None = None) -> None:
    """Add a lab kind: `factory` is "module:callable", called as `factory(lab, settings)`."""
    _KINDS[name] = LabKind(factory=factory, verify=verify)


def names() -> tuple[str, ...]:
    return tuple(sorted(_KINDS))


def kind(name: str) -> LabKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown driver '{name}': the descriptor's driver must be one of "
                          f"{', '.join(names())}") from None
