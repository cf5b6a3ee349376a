"""The control keeps one `chaos run`'s state (its phase, the drill's context, the lab's
lock), which chaoslib's `after_experiment_control` and `cleanup_control` clear at the end
of a run. A unit test that calls one hook alone leaves it behind: cleared here after each
test, so no test sees another's run.

The worker's own PostgreSQL (tests/unit/pg.py) is here too, for the tests of the SQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit import pg


@pytest.fixture(autouse=True)
def _no_run_state_between_tests() -> Iterator[None]:
    yield
    from gameday import control

    control.cleanup_control()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg.Cluster]:
    """This worker's own PostgreSQL 15 (tests/unit/pg.py), started by the first test that
    asks for it and stopped by its pid when the session ends: per xdist worker, so a test
    that makes its primary read-only or promotes its standby never meets another worker's."""
    with pg.cluster() as made:
        yield made


@pytest.fixture
def cluster(pg_cluster: pg.Cluster) -> Iterator[pg.Cluster]:
    """The worker's PostgreSQL as the schema left it; what the test changed (settings,
    canary rows, standbys) is put back after it, also when it failed."""
    yield pg_cluster
    pg_cluster.reset()
