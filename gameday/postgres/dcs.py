"""Reading the HA manager's keys in its DCS (etcd v3, through its JSON gateway), from
outside the manager: its leader key, and Patroni's `sync` key naming its synchronous
standby. Read-only: gameday never writes the manager's state.

When etcd asks for authentication (the descriptor's `ha.dcs` names a user, as the netns
lab's does), every request carries a token from `/v3/auth/authenticate`. A token is kept
while it works: etcd checks each password with bcrypt, which costs tens of milliseconds."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from gameday.foundation.descriptor import Ha
from gameday.foundation.errors import TargetError


def _url(ha: Ha, path: str) -> str:
    assert ha.dcs is not None
    host = f"[{ha.dcs.address}]" if ":" in ha.dcs.address else ha.dcs.address
    return f"http://{host}:{ha.dcs.port}{path}"


def auth_request(ha: Ha) -> tuple[str, dict[str, str]] | None:
    """The URL and body that get a token, None when the DCS needs none."""
    if ha.dcs is None or not ha.dcs.username:
        return None
    return (_url(ha, "/v3/auth/authenticate"),
            {"name": ha.dcs.username, "password": ha.dcs.password or ""})


def token_header(resp: httpx.Response) -> dict[str, str]:
    """The header that carries the token etcd's authenticate answered with."""
    resp.raise_for_status()
    return {"Authorization": str(resp.json()["token"])}


_tokens: dict[tuple[str, int, str], dict[str, str]] = {}


def read(ha: Ha, key: str, *, timeout_s: float = 2.0) -> str | None:
    """The value of `key`, None when it does not exist; TargetError when the DCS does not
    answer."""
    if ha.dcs is None:
        raise TargetError("the descriptor's ha block names no DCS to read")
    auth = auth_request(ha)
    cache = (ha.dcs.address, ha.dcs.port, ha.dcs.username or "")
    try:
        with httpx.Client(timeout=timeout_s, trust_env=False) as client:
            for attempt in (1, 2):
                if auth is not None and cache not in _tokens:
                    _tokens[cache] = token_header(client.post(auth[0], json=auth[1]))
                resp = client.post(_url(ha, "/v3/kv/range"), headers=_tokens.get(cache),
                                   json={"key": base64.b64encode(key.encode()).decode()})
                if resp.status_code == 401 and auth is not None and attempt == 1:
                    _tokens.pop(cache, None)  # an expired token: one more try with a new one
                    continue
                resp.raise_for_status()
                break
        kvs = resp.json().get("kvs") or []
    except (httpx.HTTPError, ValueError, KeyError) as exc:
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
