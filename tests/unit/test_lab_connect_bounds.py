"""The netns lab's own connections (lab up's CREATE DATABASE, schema, waits) are bounded as
the runner's are: a statement its PostgreSQL cannot finish fails `lab up` rather than hang it.
What is checked is what the server is asked for (psycopg.connect's keywords, caught before a
connection is made); the real lab's suite runs every `lab up` through these connections."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from gameday.labs.netns import lab
from gameday.postgres import connection as postgres


def test_the_labs_connections_carry_the_statement_and_socket_bounds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def connect(**kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(psycopg, "connect", connect)
    lab._connect("198.18.0.11", "secret", "postgres")
    assert seen["connect_timeout"] == 2
    assert seen["options"] == f"-c statement_timeout={round(postgres.BULK_TIMEOUT_S * 1000)}"
    assert seen["tcp_user_timeout"] == postgres.TCP_USER_TIMEOUT_MS
    assert seen["keepalives"] == 1

