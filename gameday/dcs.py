"""Reading the HA manager's keys in its DCS (etcd v3, through its JSON gateway), from
outside the manager: its leader key, and Patroni's `sync` key naming its synchronous
standby. Read-only: gameday never writes the manager's state."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from gameday.errors import TargetError
from gameday.labs.descriptor import Ha


def _url(ha: Ha, path: str) -> str:
    assert ha.dcs is not None
    host = f"[{ha.dcs.address}]" if ":" in ha.dcs.address else ha.dcs.address
    return f"http://{host}:{ha.dcs.port}{path}"


def read(ha: Ha, key: str, *, timeout_s: float = 2.0) -> str | None:
    """The value of `key`, None when it does not exist; TargetError when the DCS does not
    answer."""
    if ha.dcs is None:
        raise TargetError("the descriptor's ha block names no DCS to read")
    try:
        resp = httpx.post(_url(ha, "/v3/kv/range"), timeout=timeout_s, trust_env=False,
                          json={"key": base64.b64encode(key.encode()).decode()})
        resp.raise_for_status()
        kvs = resp.json().get("kvs") or []
    except (httpx.HTTPError, ValueError) as exc:
        raise TargetError(f"the DCS at {ha.dcs.address}:{ha.dcs.port} does not answer "
                          f"({type(exc).__name__})") from None
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def patroni_sync(ha: Ha) -> dict[str, Any]:
    """Patroni's `sync` key: {"leader": ..., "sync_standby": ...}, {} when unset."""
    namespace = (ha.dcs.namespace if ha.dcs else "/service/").rstrip("/")
    raw = read(ha, f"{namespace}/{ha.scope}/sync")
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
