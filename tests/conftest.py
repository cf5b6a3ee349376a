"""Tests under tests/integration/ are marked `integration` automatically (they need root
and start the real netns lab); `pytest -m "not integration"` is the quick suite.

Hypothesis (the property tests) runs derandomized and without its example database, so
every machine and CI draw the same examples and a run leaves no .hypothesis/ behind;
`HYPOTHESIS_PROFILE=thorough` draws ten times as many, still reproducibly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

INTEGRATION = Path(__file__).parent / "integration"

_PROFILE = {"derandomize": True, "database": None, "deadline": None,
            "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("gameday", max_examples=100, **_PROFILE)
settings.register_profile("thorough", max_examples=1000, **_PROFILE)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gameday"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
