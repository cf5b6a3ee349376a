"""The Kubernetes driver against two kmock API servers (one per region), through the real
kubernetes client. Stand-ins, each named where used: kmock for the API servers, FakeDocker
for the docker CLI, Controller for the StatefulSet controller and the kubelet, SilentServer
for the API server of a paused node.

kmock comes from the `test` extra (pinned; `make venv` installs it); without it these tests
fail with that reason rather than skip. kmock accepts any body: the fixture `clusters` checks every
write against the Kubernetes 1.34 schemas kubernetes-validate ships, and each PATCH for the
Content-Type the real client sends, when its servers stop (`invalid_requests`). Facts about
the emulator this relies on: docs/design.md, Testing without a cluster or a root shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

try:
    import kmock
except ImportError as exc:  # pragma: no cover - exercised only on a machine without kmock
    raise ImportError(
        "kmock is missing: run `make venv` (installs the `test` extra with the pinned kmock)"
    ) from exc

from kubernetes.config import kube_config

from gameday.foundation import descriptor
from gameday.foundation.errors import ConfigError, LabError, TargetError
from gameday.foundation.settings import GamedaySettings, kube_access
from gameday.labs.kubernetes import (
    DB_CONFIGMAP,
    DB_POD,
    EGRESS_POLICY,
    FENCE_ANNOTATION,
    REPLICAS_ANNOTATION,
    STALE_POD_ANNOTATION,
    KubernetesDriver,
)

NS = "gameday"
REGION_LABEL = "topology.kubernetes.io/region"
DEPLOY = "apps/v1/deployments"
STS = "apps/v1/statefulsets"
NODES = "v1/nodes"
NETPOL = "networking.k8s.io/v1/networkpolicies"
CONFIGMAPS = "v1/configmaps"
PODS = "v1/pods"
_UIDS = itertools.count(1)


class RegionApiServer(kmock.KubernetesEmulator):
    """kmock's emulator plus what a real API server does and kmock 0.8 does not:
    labelSelector / fieldSelector (metadata.name) on LIST. And injected failures that
    happen before any state changes, like a refused request."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[tuple[str, re.Pattern[str]]] = []
        self.logs: dict[str, str] = {}  # pod name -> its container log

    async def _handle(self, request: Any) -> Any:
        for method, pattern in self.failures:
            if request.method.value.upper() == method and pattern.search(request.url.path):
                raise kmock.KubernetesError(status=500, reason="InternalError", message="injected")
        log = re.search(r"/pods/([^/]+)/log$", request.url.path)
        if log:  # the log subresource, which kmock does not emulate: plain text
            from aiohttp import web

            return web.Response(text=self.logs.get(log.group(1), ""))
        return await super()._handle(request)

    async def _serve_list(self, request: Any) -> Any:
        result = await super()._serve_list(request)
        labels = request.params.get("labelSelector")
        fields = request.params.get("fieldSelector")
        items = result["items"]
        if labels:
            wanted = dict(t.split("=", 1) for t in labels.split(","))
            items = [
                i
                for i in items
                if all(i["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
            ]
        if fields:
            key, _, value = fields.partition("=")
            assert key == "metadata.name", f"unsupported fieldSelector {fields}"
            items = [i for i in items if i["metadata"]["name"] == value]
        return {**result, "items": items}

    def writes(self) -> list[tuple[str, str, Any]]:
        return [
            (r.method.value.upper(), r.url.path, r.data)
            for r in self
            if r.method.value.upper() in ("POST", "PATCH", "PUT", "DELETE")
        ]


def _deployment(name: str, replicas: int | None, running: int, **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": name, "image": f"example/{name}:1"}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "metadata": {"name": name, "namespace": NS, **meta},
        "spec": spec,
        "status": _status(running),
    }


def _status(running: int) -> dict[str, int]:
    """A workload's status once its controller has caught up with `running` pods."""
    return {
        "replicas": running,
        "updatedReplicas": running,
        "readyReplicas": running,
        "availableReplicas": running,
    }


def _statefulset(name: str, replicas: int, running: int) -> dict[str, Any]:
    obj = _deployment(name, replicas, running)
    obj["spec"]["serviceName"] = name
    return obj


def _node(name: str, region: str, unschedulable: bool = False) -> dict[str, Any]:
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {REGION_LABEL: region}},
        "spec": {},
    }
    if unschedulable:
        node["spec"]["unschedulable"] = True
    return node


def _pod(name: str = DB_POD, ready: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{next(_UIDS)}"},
        "spec": {"containers": [{"name": "postgres", "image": "postgres:15.13-bookworm"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def _role_cm(role: str, primary_host: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": DB_CONFIGMAP, "namespace": NS},
        "data": {"role": role, "primary_host": primary_host},
    }


def _seed(server: RegionApiServer, region: str) -> None:
    for resource in (DEPLOY, STS, NETPOL, CONFIGMAPS, PODS):
        server.resources[resource] = {"namespaced": True, "verbs": ["list", "get", "patch"]}
    server.resources[NODES] = {"namespaced": False, "verbs": ["list", "get", "patch"]}
    server.objects[DEPLOY, NS, "storefront"] = _deployment("storefront", 2, 2)
    server.objects[DEPLOY, NS, "idle"] = _deployment("idle", 0, 0)
    server.objects[DEPLOY, NS, "defaulted"] = _deployment("defaulted", None, 1)
    server.objects[STS, NS, "postgres"] = _statefulset("postgres", 1, 1)
    # kind-lab's database role (up.sh): region-1 primary, region-2 a standby of region-1
    server.objects[CONFIGMAPS, NS, DB_CONFIGMAP] = (
        _role_cm("primary") if region == "region-1" else _role_cm("standby", "198.19.1.11")
    )
    server.objects[PODS, NS, DB_POD] = _pod()
    other = _deployment("bystander", 3, 3)
    other["metadata"]["namespace"] = "other"
    server.objects[DEPLOY, "other", "bystander"] = other
    server.objects[NODES, None, f"{region}-control-plane"] = _node(
        f"{region}-control-plane", region
    )
    server.objects[NODES, None, f"{region}-worker"] = _node(f"{region}-worker", region)
    server.objects[NODES, None, f"{region}-worker2"] = _node(
        f"{region}-worker2", region, unschedulable=True
    )
    # A node of the other region in the same API: the selector must keep it out.
    server.objects[NODES, None, "elsewhere"] = _node("elsewhere", "region-9")


class Clusters:
    """Two emulated API servers on one background event loop (the kubernetes client is
    synchronous: it must not block the servers' loop)."""

    def __init__(self) -> None:
        self.servers: dict[str, RegionApiServer] = {}
        self.urls: dict[str, str] = {}
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.kubeconfig: Path | None = None

    def point(self, context: str, url: str) -> None:
        """Send `context`'s requests to another server (the kubeconfig is read per call)."""
        assert self.kubeconfig is not None
        config = json.loads(self.kubeconfig.read_text())
        for cluster in config["clusters"]:
            if cluster["name"] == context:
                cluster["cluster"]["server"] = url
        self.kubeconfig.write_text(json.dumps(config))

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        r1, r2 = RegionApiServer(), RegionApiServer()
        async with r1, kmock.Server(r1) as s1, r2, kmock.Server(r2) as s2:
            self.servers = {"region-1": r1, "region-2": r2}
            self.urls = {"region-1": str(s1.url).rstrip("/"), "region-2": str(s2.url).rstrip("/")}
            self._ready.set()
            await self._stop.wait()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"kmock servers did not start: {self._error!r}")

    def stop(self) -> None:
        if self._thread.is_alive() and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# -- what a real API server would accept (kmock accepts any body) ---------------------------

K8S_SCHEMA_VERSION = "1.34.0"  # kindest/node in kind-lab/versions.env
# the resources the driver writes: plural -> (kind, apiVersion)
WRITTEN = {
    "deployments": ("Deployment", "apps/v1"),
    "statefulsets": ("StatefulSet", "apps/v1"),
    "networkpolicies": ("NetworkPolicy", "networking.k8s.io/v1"),
    "configmaps": ("ConfigMap", "v1"),
    "pods": ("Pod", "v1"),
    "nodes": ("Node", "v1"),
}
# What kubernetes 37's rest.py sends for a PATCH whose body is an object (not a JSON Patch
# list): the driver's patches rely on its semantics (null deletes an annotation).
PATCH_CONTENT_TYPE = "application/strategic-merge-patch+json"


def _resource_of(path: str) -> tuple[str, str]:
    """(kind, apiVersion) of the object a request path names."""
    parts = [p for p in path.split("/") if p]
    plural = parts[-1] if parts[-1] in WRITTEN else parts[-2]
    if plural not in WRITTEN:
        raise AssertionError(f"{path}: a resource this check does not know; add it to WRITTEN")
    return WRITTEN[plural]


def _schema_dir() -> Path:
    import kubernetes_validate

    return (Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
            / f"v{K8S_SCHEMA_VERSION}-local-strict")


def _without_required(node: Any) -> Any:
    """A patch names only what it changes: the object's schema, every `required` dropped."""
    if isinstance(node, dict):
        return {k: _without_required(v) for k, v in node.items() if k != "required"}
    if isinstance(node, list):
        return [_without_required(v) for v in node]
    return node


@functools.cache
def _patch_validator(kind: str, api_version: str) -> Any:
    """The validator of `_patch_errors`, built once per kind: reading and stripping the
    definitions took 50 ms a PATCH, about a second of each test's teardown."""
    import jsonschema
    from referencing import Registry, Resource

    group = api_version.split("/")[0].split(".")[0] if "/" in api_version else ""
    name = f"{kind.lower()}-{group + '-' if group else ''}{api_version.split('/')[-1]}.json"
    schema = _without_required(json.loads((_schema_dir() / name).read_text()))
    definitions = _without_required(json.loads((_schema_dir() / "_definitions.json").read_text()))
    registry = Resource.from_contents(schema) @ (Resource.from_contents(definitions) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _patch_errors(kind: str, api_version: str, body: Any) -> list[str]:
    """A strategic merge patch checked against the strict 1.34 schema of its object (from
    kubernetes-validate), without `required`: a misspelt or misplaced field, or a value of
    the wrong type, is an error; null is allowed where the schema allows it."""
    return [f"{'.'.join(map(str, e.path)) or '(body)'}: {e.message}"
            for e in _patch_validator(kind, api_version).iter_errors(body)]


def _object_errors(kind: str, api_version: str, body: Any) -> list[str]:
    import kubernetes_validate

    if not isinstance(body, dict):
        return [f"body is {type(body).__name__}, not an object"]
    body = {"kind": kind, "apiVersion": api_version, **body}
    try:
        kubernetes_validate.validate(body, K8S_SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path)) or '(body)'}: {exc.message}"]
    return []


def request_errors(method: str, path: str, headers: Any, body: Any) -> list[str]:
    """Why a real 1.34 API server would refuse this write (none: []), as far as the body and
    its Content-Type tell."""
    if method == "PATCH":
        errors = []
        content_type = headers.get("Content-Type", "")
        if content_type != PATCH_CONTENT_TYPE:
            errors.append(f"Content-Type {content_type!r}, expected {PATCH_CONTENT_TYPE}")
        if not isinstance(body, dict) or not body:
            errors.append(f"patch body {body!r} is not a non-empty object")
        else:
            errors += _patch_errors(*_resource_of(path), body)
        return errors
    if method in ("POST", "PUT"):
        return _object_errors(*_resource_of(path), body)
    return []  # DELETE: the client sends no body


def invalid_requests(server: RegionApiServer) -> list[str]:
    """Every write the driver sent to `server` that a real API server would refuse."""
    found = []
    for r in server:
        method = r.method.value.upper()
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            continue
        found += [f"{method} {r.url.path}: {e}"
                  for e in request_errors(method, r.url.path, r.headers, r.data)]
    return found


@pytest.fixture
def clusters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Clusters]:
    c = Clusters()
    c.start()
    try:
        for region, server in c.servers.items():
            _seed(server, region)
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": f"kind-{r}", "cluster": {"server": url}} for r, url in c.urls.items()
            ],
            "users": [{"name": "tester", "user": {"token": "t"}}],
            "contexts": [
                {"name": f"kind-{r}", "context": {"cluster": f"kind-{r}", "user": "tester"}}
                for r in c.urls
            ]
            + [{"name": "prod-eu", "context": {"cluster": "kind-region-1", "user": "tester"}}],
            "current-context": "kind-region-2",
        }
        path = tmp_path / "kubeconfig"
        path.write_text(json.dumps(kubeconfig))
        c.kubeconfig = path
        monkeypatch.setenv("KUBECONFIG", str(path))
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        monkeypatch.delenv("GAMEDAY_KUBE_CONTEXT_ALLOWLIST", raising=False)
        yield c
        wrong = [f"{region}: {e}" for region, server in c.servers.items()
                 for e in invalid_requests(server)]
        assert not wrong, "requests a real API server would refuse:\n" + "\n".join(wrong)
    finally:
        c.stop()


def _lab(path: Path | None = None, **region1: Any) -> descriptor.Lab:
    """kind-lab's two regions; `path` places the descriptor (and the drill record beside it),
    `region1` overrides fields of region-1."""
    return descriptor.from_dict(_lab_data(**region1), path=str(path or ""))


def _lab_data(**region1: Any) -> dict[str, Any]:
    """The descriptor of `_lab` as JSON data."""

    def region(name: str, role: str, n: int) -> dict[str, Any]:
        return {
            "name": name,
            "role": role,
            "driver": "kubernetes",
            "address": f"198.19.1.{n}",
            "storefront_url": f"http://198.19.1.{n}:8080",
            "db_host": f"198.19.1.{n + 10}",
            "kube_context": f"kind-{name}",
            "namespace": NS,
            "node_selector": f"{REGION_LABEL}={name}",
            "node_containers": [f"{name}-control-plane", f"{name}-worker"],
        }

    data = {
        "schema": "gameday.lab/v1",
        "lab": "kind",
        "regions": [
            {**region("region-1", "primary", 1), **region1},
            region("region-2", "secondary", 2),
        ],
        "dns": {
            "zone": "gameday.test",
            "name": "shop.gameday.test",
            "authoritative": {"address": "198.19.0.53"},
            "resolver": {"address": "198.19.0.54"},
        },
        "database": {"name": "storefront", "user": "gameday", "password": "pw", "port": 5432},
    }
    return data


def _plain(value: Any) -> Any:
    """kmock's versioned dicts as plain JSON values, comparable and printable."""
    return json.loads(json.dumps(value, default=dict))


def _state(server: RegionApiServer) -> dict[Any, Any]:
    """Every live object, as the API server would serve it. kmock's merge leaves an empty
    `annotations: {}` after the last annotation is removed; the API server omits it."""
    state = {}
    for key, obj in server.objects.items():
        if obj.deleted:
            continue
        plain = _plain(dict(obj))
        if plain.get("metadata", {}).get("annotations") == {}:
            del plain["metadata"]["annotations"]
        state[(str(key[0].plural), key[1], key[2])] = plain
    return state


def _replicas(server: RegionApiServer, resource: str, name: str, ns: str = NS) -> Any:
    return server.objects[resource, ns, name]["spec"].get("replicas")


def _set_running(server: RegionApiServer, resource: str, name: str, running: int) -> None:
    server.objects[resource, NS, name]["status"] = _status(running)


def _driver(lab: descriptor.Lab, primaries: Sequence[str] = (), **kwargs: Any) -> KubernetesDriver:
    """The driver with the SQL check injected: `primaries` name the regions whose database
    answers as a primary. Every region it was asked about is in `asked`."""
    asked: list[str] = []

    def is_primary(region: descriptor.Region) -> bool:
        asked.append(region.name)
        return region.name in primaries

    # docker stand-in: every node container known and running (tests of blackhole pass theirs)
    kwargs.setdefault("runner", FakeDocker({c: False for r in lab.regions for c in r.node_containers}))
    if "sleep" not in kwargs:  # no controller: a wait that is not over at once fails fast
        kwargs.update(FakeTime().kwargs())
    kwargs.setdefault("start_timeout_s", 30)
    driver = KubernetesDriver(lab, is_primary=is_primary, **kwargs)
    driver.asked = asked  # type: ignore[attr-defined]
    return driver


class FakeTime:
    """The driver's clock and sleep: time passes only when the driver sleeps, so a wait that
    never ends fails at once with its timeout instead of holding the test."""

    def __init__(self) -> None:
        self.now = 0.0
        self.polls = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.polls += 1
        self.now += seconds

    def kwargs(self) -> dict[str, Any]:
        return {"sleep": self.sleep, "clock": self.clock, "poll_s": 1.0}


class Controller(FakeTime):
    """Stands in for the workload controllers and the kubelet, as the driver's `sleep`: each
    poll moves pod postgres-0 one step towards the StatefulSet's replicas (gone at 0;
    recreated with a new uid, Ready unless `ready` is False, at 1; a deleted pod is
    recreated), and brings every Deployment's status to its replicas."""

    def __init__(self, server: RegionApiServer, *, log: str = "", ready: bool = True) -> None:
        super().__init__()
        self.server = server
        self.log = log
        self.ready = ready

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        replicas = _replicas(self.server, STS, "postgres")
        key = (PODS, NS, DB_POD)
        present = _live(self.server, key) is not None
        if replicas == 0 and present:
            self.server.objects[key].delete()
        elif replicas and not present:
            self.server.objects[key] = _pod(ready=self.ready)
            self.server.logs[DB_POD] = self.log
        _set_running(self.server, STS, "postgres", 1 if replicas and self.ready else 0)
        for key, obj in list(self.server.objects.items()):
            if str(key[0].plural) == "deployments" and key[1] == NS and not obj.deleted:
                wanted = obj["spec"].get("replicas", 1)
                if obj.get("status") != _status(wanted):
                    obj["status"] = _status(wanted)


def _role(server: RegionApiServer) -> dict[str, str]:
    return _plain(dict(server.objects[CONFIGMAPS, NS, DB_CONFIGMAP]["data"]))


def _annotations(server: RegionApiServer) -> dict[str, Any]:
    meta = server.objects[CONFIGMAPS, NS, DB_CONFIGMAP]["metadata"]
    return {k: v for k, v in _plain(dict(meta.get("annotations", {}))).items() if v is not None}


def _live(server: RegionApiServer, key: tuple[str, str, str]) -> Any:
    """The stored object, or None when absent or deleted (kmock's `in` does not take
    string resources)."""
    try:
        obj = server.objects[key]
    except KeyError:
        return None
    return None if obj.deleted else obj


def _pod_uid(server: RegionApiServer) -> str | None:
    pod = _live(server, (PODS, NS, DB_POD))
    return None if pod is None else str(pod["metadata"]["uid"])


# -- scale-to-zero --------------------------------------------------------------------------


def test_scale_to_zero_annotates_then_scales_and_revert_restores_exactly(clusters: Clusters):
    lab = _lab()
    r1, r2 = clusters.servers["region-1"], clusters.servers["region-2"]
    before, before_r2 = _state(r1), _state(r2)
    driver = _driver(lab)

    undo = driver.plan("scale-to-zero", lab.primary)
    assert json.loads(json.dumps(undo)) == undo  # the ledger stores it as JSON
    assert undo["context"] == "kind-region-1" and undo["namespace"] == NS
    assert undo["workloads"] == [
        {"kind": "Deployment", "name": "defaulted", "replicas": 1},
        {"kind": "Deployment", "name": "idle", "replicas": 0},
        {"kind": "Deployment", "name": "storefront", "replicas": 2},
        {"kind": "StatefulSet", "name": "postgres", "replicas": 1},
    ]
    assert r1.writes() == []  # planning changes nothing

    driver.inject("scale-to-zero", lab.primary, undo)
    for resource, name in ((DEPLOY, "storefront"), (DEPLOY, "idle"), (STS, "postgres")):
        assert _replicas(r1, resource, name) == 0
    storefront = r1.objects[DEPLOY, NS, "storefront"]
    assert storefront["metadata"]["annotations"] == {REPLICAS_ANNOTATION: "2"}
    # The annotation was written before the scale: a crash between them loses nothing.
    history = storefront.history
    assert history[-2]["metadata"]["annotations"][REPLICAS_ANNOTATION] == "2"
    assert history[-2]["spec"]["replicas"] == 2
    assert r1.objects[DEPLOY, "other", "bystander"]["spec"]["replicas"] == 3
    assert r2.writes() == [] and _state(r2) == before_r2  # the other cluster is untouched

    # Pods still run until the controllers catch up: not effective yet.
    assert driver.is_effective("scale-to-zero", lab.primary, undo) is False
    for resource, name in ((DEPLOY, "storefront"), (DEPLOY, "defaulted"), (STS, "postgres")):
        _set_running(r1, resource, name, 0)
    assert driver.is_effective("scale-to-zero", lab.primary, undo) is True

    for resource, name, running in (
        (DEPLOY, "storefront", 2),
        (DEPLOY, "defaulted", 1),
        (STS, "postgres", 1),
    ):
        _set_running(r1, resource, name, running)
    driver.revert("scale-to-zero", lab.primary, undo)
    after = _state(r1)
    # `defaulted` had no spec.replicas (the API's default of 1); it now says 1 explicitly.
    after[("deployments", NS, "defaulted")]["spec"].pop("replicas")
    assert after == before
    writes_after_first_revert = len(r1.writes())

    driver.revert("scale-to-zero", lab.primary, undo)  # idempotent: nothing left to restore
    assert len(r1.writes()) == writes_after_first_revert


def test_scale_patches_send_chaostoolkit_kubernetes_bodies(clusters: Clusters):
    lab = _lab()
    r1 = clusters.servers["region-1"]
    driver = _driver(lab)
    undo = driver.plan("scale-to-zero", lab.primary)
    driver.inject("scale-to-zero", lab.primary, undo)
    patches = [(path, body) for method, path, body in r1.writes() if method == "PATCH"]
    sts_path = f"/apis/apps/v1/namespaces/{NS}/statefulsets/postgres"
    assert (sts_path, {"metadata": {"annotations": {REPLICAS_ANNOTATION: "1"}}}) in patches
    assert (sts_path, {"spec": {"replicas": 0}}) in patches  # chaosk8s scale_statefulset's body
    assert all("/namespaces/other/" not in path for path, _ in patches)


def test_partial_scale_failure_then_revert_restores_what_was_changed(clusters: Clusters):
    lab = _lab()
    r1 = clusters.servers["region-1"]
    before = _state(r1)
    driver = _driver(lab)
    undo = driver.plan("scale-to-zero", lab.primary)
    r1.failures.append(("PATCH", re.compile(r"/statefulsets/postgres$")))

    with pytest.raises(TargetError, match="region-1"):
        driver.inject("scale-to-zero", lab.primary, undo)
    assert _replicas(r1, DEPLOY, "storefront") == 0  # done before the failure
    assert _replicas(r1, STS, "postgres") == 1  # refused: unchanged, not annotated
    assert "annotations" not in r1.objects[STS, NS, "postgres"]["metadata"]

    r1.failures.clear()
    driver.revert("scale-to-zero", lab.primary, undo)
    after = _state(r1)
    after[("deployments", NS, "defaulted")]["spec"].pop("replicas")
    assert after == before


def test_crashed_run_keeps_original_count_on_replan(clusters: Clusters):
    """A run that died after scaling leaves annotated objects at 0; the next plan must record
    the saved count, not 0, and the next revert must restore it."""
    lab = _lab()
    r1 = clusters.servers["region-1"]
    driver = _driver(lab)
    first = driver.plan("scale-to-zero", lab.primary)
    driver.inject("scale-to-zero", lab.primary, first)

    second = driver.plan("scale-to-zero", lab.primary)
    assert second["workloads"] == first["workloads"]
    driver.inject("scale-to-zero", lab.primary, second)  # again: annotation kept as it was
    assert r1.objects[DEPLOY, NS, "storefront"]["metadata"]["annotations"] == {
        REPLICAS_ANNOTATION: "2"
    }
    driver.revert("scale-to-zero", lab.primary, second)
    assert _replicas(r1, DEPLOY, "storefront") == 2
    assert _replicas(r1, STS, "postgres") == 1
    assert not r1.objects[DEPLOY, NS, "storefront"]["metadata"].get("annotations")


def _rolled_out(server: RegionApiServer) -> dict[str, bool]:
    deployments = {k: o for k, o in server.objects.items() if str(k[0].plural) == "deployments"}
    return {
        k[2]: o["status"].get("availableReplicas") == o["spec"].get("replicas", 1)
        for k, o in deployments.items()
        if k[1] == NS
    }


def test_revert_scale_to_zero_returns_once_the_region_is_back(clusters: Clusters):
    """The failback's first step reads the old primary's rows at once: revert must not
    return before pod postgres-0 is Ready, the storefront rolled out and the database
    answers (issue 13, item 1). Stand-ins: Controller for the controllers and the kubelet;
    the SQL check does not answer for region-1's first two polls, as a Service whose proxy
    has not synced yet."""
    lab = _lab()
    r1 = clusters.servers["region-1"]
    ctl = Controller(r1)
    answers = [None, None]
    asked: list[str] = []

    def probe(region: descriptor.Region) -> bool | None:
        asked.append(region.name)
        if region.name != "region-1":
            return False  # region-2 answers as a standby: no fence
        return answers.pop(0) if answers else True

    docker = FakeDocker({c: False for r in lab.regions for c in r.node_containers})
    driver = KubernetesDriver(lab, is_primary=probe, runner=docker, **ctl.kwargs())
    undo = driver.plan("scale-to-zero", lab.primary)
    driver.inject("scale-to-zero", lab.primary, undo)
    ctl.sleep(1)  # the controllers act: postgres-0 gone, no storefront pod
    assert _pod_uid(r1) is None
    assert r1.objects[DEPLOY, NS, "storefront"]["status"]["availableReplicas"] == 0

    driver.revert("scale-to-zero", lab.primary, undo)
    assert _pod_uid(r1) is not None  # a new postgres-0...
    assert r1.objects[PODS, NS, DB_POD]["status"]["conditions"][0]["status"] == "True"  # Ready
    assert _rolled_out(r1) == {"storefront": True, "idle": True, "defaulted": True}
    assert asked.count("region-1") == 3  # and it waited through two polls without an answer


def test_revert_that_never_comes_back_fails_bounded_and_names_what_is_missing(clusters: Clusters):
    lab = _lab()
    r1 = clusters.servers["region-1"]
    ctl = Controller(r1, ready=False)  # PostgreSQL never gets Ready
    driver = _driver(lab, start_timeout_s=5, **ctl.kwargs())
    undo = _scale_down(driver, lab, r1)
    with pytest.raises(TargetError, match="region-1 is not back 5 s after the revert") as info:
        driver.revert("scale-to-zero", lab.primary, undo)
    assert "pod postgres-0 not Ready" in str(info.value) and "\n" not in str(info.value)
    assert _replicas(r1, STS, "postgres") == 1  # restored all the same


def test_revert_of_a_fenced_region_on_an_empty_volume_does_not_wait_for_postgres(
    clusters: Clusters,
):
    """kind-lab's entrypoint starts nothing when fenced on an empty volume, and says so."""
    from gameday.labs.kubernetes.readiness import FENCED_EMPTY_LINE

    lab = _lab()
    r1 = clusters.servers["region-1"]
    ctl = Controller(r1, ready=False, log=f"{FENCED_EMPTY_LINE}: PostgreSQL is not started\n")
    driver = _driver(lab, primaries=["region-2"], **ctl.kwargs())
    undo = _scale_down(driver, lab, r1)
    driver.revert("scale-to-zero", lab.primary, undo)
    assert _role(r1)["role"] == "fenced" and _pod_uid(r1) is not None
    assert driver.asked.count("region-1") == 0  # type: ignore[attr-defined]  # no SQL wait


def test_revert_scale_to_zero_under_cordon_leaves_the_wait_to_the_cordon_revert(
    clusters: Clusters,
):
    """faults=cordon,scale-to-zero: reverted newest first, so the pods come back while every
    node is still cordoned; the cordon's revert is the one that waits."""
    lab = _lab()
    r1 = clusters.servers["region-1"]
    ctl = Controller(r1)
    driver = _driver(lab, **ctl.kwargs())
    cordoned = driver.plan("cordon", lab.primary)
    driver.inject("cordon", lab.primary, cordoned)
    r1.objects[NODES, None, "region-1-worker2"]["spec"]["unschedulable"] = True
    scaled = _scale_down(driver, lab, r1)
    polls = ctl.polls
    driver.revert("scale-to-zero", lab.primary, scaled)
    assert ctl.polls == polls and _pod_uid(r1) is None  # did not wait: cannot schedule
    driver.revert("cordon", lab.primary, cordoned)
    assert _pod_uid(r1) is not None and ctl.polls > polls


# -- cordon ---------------------------------------------------------------------------------


def test_cordon_only_region_nodes_and_keep_already_cordoned(clusters: Clusters):
    lab = _lab()
    r1, r2 = clusters.servers["region-1"], clusters.servers["region-2"]
    before = _state(r1)
    driver = _driver(lab)

    undo = driver.plan("cordon", lab.primary)
    assert undo["nodes"] == [
        {"name": "region-1-control-plane", "was_unschedulable": False},
        {"name": "region-1-worker", "was_unschedulable": False},
        {"name": "region-1-worker2", "was_unschedulable": True},
    ]
    assert driver.is_effective("cordon", lab.primary, undo) is False
    driver.inject("cordon", lab.primary, undo)
    for name in ("region-1-control-plane", "region-1-worker", "region-1-worker2"):
        assert r1.objects[NODES, None, name]["spec"]["unschedulable"] is True
    assert "unschedulable" not in r1.objects[NODES, None, "elsewhere"]["spec"]
    patched = {path for method, path, _ in r1.writes() if method == "PATCH"}
    assert patched == {"/api/v1/nodes/region-1-control-plane", "/api/v1/nodes/region-1-worker"}
    assert driver.is_effective("cordon", lab.primary, undo) is True
    assert r2.writes() == []

    driver.revert("cordon", lab.primary, undo)
    assert r1.objects[NODES, None, "region-1-worker2"]["spec"]["unschedulable"] is True
    assert r1.objects[NODES, None, "region-1-worker"]["spec"]["unschedulable"] is False
    assert r1.objects[NODES, None, "region-1-control-plane"]["spec"]["unschedulable"] is False
    assert "unschedulable" not in r1.objects[NODES, None, "elsewhere"]["spec"]
    driver.revert("cordon", lab.primary, undo)  # twice is harmless
    assert r1.objects[NODES, None, "region-1-worker2"]["spec"]["unschedulable"] is True
    assert {k: v for k, v in _state(r1).items() if k[0] != "nodes"} == {
        k: v for k, v in before.items() if k[0] != "nodes"
    }


def test_cordon_with_a_selector_matching_nothing_is_a_lab_error(clusters: Clusters):
    lab = _lab(node_selector=f"{REGION_LABEL}=nowhere")
    with pytest.raises(LabError, match="node_selector"):
        _driver(lab).plan("cordon", lab.primary)


def test_cordon_without_node_selector_is_not_applicable(clusters: Clusters):
    lab = _lab()
    region = lab.primary.__class__(**{**lab.primary.__dict__, "node_selector": None})
    assert _driver(lab).plan("cordon", region)["applicable"] is False


# -- block-egress ---------------------------------------------------------------------------


class Storefront:
    """Stands in for the region's storefront behind its LoadBalancer: a local HTTP server
    whose /healthz answers "ok" while `connected`, else 503, as gameday.labs.storefront does
    while its database connection lasts."""

    def __init__(self) -> None:
        import http.server

        self.connected = True
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                ok = self.path == "/healthz" and outer.connected
                body = b"ok" if ok else b"database unavailable"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def __enter__(self) -> Storefront:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def _storefront_pod(name: str) -> dict[str, Any]:
    pod = _pod(name)
    pod["metadata"]["labels"] = {"app": "storefront"}
    return pod


def test_block_egress_creates_our_policy_and_revert_deletes_it(clusters: Clusters):
    r1 = clusters.servers["region-1"]
    with Storefront() as shop:
        lab = _lab(storefront_url=shop.url)
        driver = _driver(lab)
        undo = driver.plan("block-egress", lab.primary)
        assert undo["policy"] == EGRESS_POLICY
        assert driver.is_effective("block-egress", lab.primary, undo) is False

        driver.inject("block-egress", lab.primary, undo)
        policy = r1.objects[NETPOL, NS, EGRESS_POLICY]
        assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Egress"], "egress": []}
        assert policy["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "gameday"}
        shop.connected = False
        assert driver.is_effective("block-egress", lab.primary, undo) is True
        driver.inject("block-egress", lab.primary, undo)  # already there: no conflict
        assert sum(1 for m, _, _ in r1.writes() if m == "POST") == 1

    driver.revert("block-egress", lab.primary, undo)
    assert r1.objects[NETPOL, NS, EGRESS_POLICY].deleted
    driver.revert("block-egress", lab.primary, undo)  # gone already: harmless
    assert sum(1 for m, _, _ in r1.writes() if m == "DELETE") == 1
    assert clusters.servers["region-2"].writes() == []


def test_block_egress_restarts_the_pods_that_hold_connections_and_checks_the_effect(
    clusters: Clusters,
):
    """kind enforces NetworkPolicy only on new connections, and the storefront keeps one
    database connection: the policy alone leaves /healthz ok (issue 13, item 6). Stand-ins:
    kmock, and Storefront for the region's storefront."""
    r1 = clusters.servers["region-1"]
    for name in ("storefront-a", "storefront-b"):
        r1.objects[PODS, NS, name] = _storefront_pod(name)
    with Storefront() as shop:
        lab = _lab(storefront_url=shop.url)
        driver = _driver(lab)
        undo = driver.plan("block-egress", lab.primary)
        assert undo["restart"] == ["defaulted", "storefront"]  # the Deployments that run pods
        driver.inject("block-egress", lab.primary, undo)
        deleted = [p for m, p, _ in r1.writes() if m == "DELETE"]
        assert deleted == [
            f"/api/v1/namespaces/{NS}/pods/storefront-a",
            f"/api/v1/namespaces/{NS}/pods/storefront-b",
        ]
        assert _pod_uid(r1) is not None  # postgres-0 (a StatefulSet's) left alone
        # the policy exists, but the storefront still serves: not in effect
        assert driver.is_effective("block-egress", lab.primary, undo) is False
        shop.connected = False  # its new pods cannot reach the database
        assert driver.is_effective("block-egress", lab.primary, undo) is True
        n = len(r1.writes())
        driver.inject("block-egress", lab.primary, undo)  # the policy is there: no restart
        assert len(r1.writes()) == n
    driver.revert("block-egress", lab.primary, undo)
    assert r1.objects[NETPOL, NS, EGRESS_POLICY].deleted


# -- guards and errors ----------------------------------------------------------------------


def test_context_outside_allow_list_is_refused_before_any_call(clusters: Clusters):
    lab = _lab(kube_context="prod-eu")
    with pytest.raises(ConfigError) as info:
        _driver(lab).plan("scale-to-zero", lab.primary)
    message = str(info.value)
    assert "\n" not in message
    assert "prod-eu" in message and "kube_context_allowlist" in message
    assert list(clusters.servers["region-1"]) == []  # no request at all

    widened = KubernetesDriver(
        lab,
        allowed_contexts=kube_access({"kube_context_allowlist": "staging-*, prod-eu"}).allowed_contexts,
    )
    assert widened.plan("scale-to-zero", lab.primary)["context"] == "prod-eu"


def test_allow_list_sources(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GAMEDAY_KUBE_CONTEXT_ALLOWLIST", raising=False)
    assert kube_access(None).allowed_contexts == ("kind-*",)
    assert kube_access({"kube_context_allowlist": ["a-*", "b"]}).allowed_contexts == ("kind-*", "a-*", "b")
    monkeypatch.setenv("GAMEDAY_KUBE_CONTEXT_ALLOWLIST", "eks-*")
    assert kube_access({}).allowed_contexts == ("kind-*", "eks-*")
    with pytest.raises(ConfigError, match="kube_context_allowlist"):
        kube_access({"kube_context_allowlist": 3})


def test_undo_of_another_context_is_also_guarded(clusters: Clusters):
    lab = _lab()
    driver = _driver(lab)
    undo = driver.plan("block-egress", lab.primary)
    with pytest.raises(ConfigError, match="allow-list"):
        driver.revert("block-egress", lab.primary, {**undo, "context": "prod-eu"})


def test_unknown_context_names_the_fix(clusters: Clusters):
    lab = _lab(kube_context="kind-region-7")
    with pytest.raises(LabError, match="no context 'kind-region-7'"):
        _driver(lab).plan("scale-to-zero", lab.primary)


def test_kubeconfig_is_read_when_called_not_at_import(
    clusters: Clusters, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """The kubernetes client reads KUBECONFIG once, at import; the driver reads it per call,
    so a KUBECONFIG set after the import is the one used."""
    other = tmp_path / "other-kubeconfig"
    other.write_text("{}")
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(other))
    lab = _lab()
    assert _driver(lab).plan("scale-to-zero", lab.primary)["workloads"]
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(LabError, match="set KUBECONFIG to the file holding context") as info:
        _driver(lab).plan("scale-to-zero", lab.primary)
    assert "\n" not in str(info.value)


def test_api_errors_become_target_errors(clusters: Clusters):
    lab = _lab()
    clusters.servers["region-1"].failures.append(("GET", re.compile(r"/deployments$")))
    with pytest.raises(TargetError, match="context 'kind-region-1': API server answered 500"):
        _driver(lab).plan("scale-to-zero", lab.primary)


def test_unreachable_api_server_is_a_target_error(clusters: Clusters):
    lab = _lab()
    clusters.stop()
    with pytest.raises(TargetError, match="kind-region-1"):
        _driver(lab).plan("cordon", lab.primary)


def test_wrong_undo_record_is_refused(clusters: Clusters):
    lab = _lab()
    driver = _driver(lab)
    undo = driver.plan("block-egress", lab.primary)
    with pytest.raises(ConfigError, match="undo record is for fault 'block-egress'"):
        driver.inject("cordon", lab.primary, undo)


# -- blackhole ------------------------------------------------------------------------------


class FakeDocker:
    def __init__(self, paused: dict[str, bool], fail_on: str | None = None) -> None:
        self.paused = paused
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        args = list(args)
        self.calls.append(args)
        assert args[0] == "docker"
        verb = args[1]
        if verb == "inspect":
            names = args[4:]
            if any(n not in self.paused for n in names):
                return subprocess.CompletedProcess(args, 1, "", "Error: No such object")
            out = "".join(f"{str(self.paused[n]).lower()}\n" for n in names)
            return subprocess.CompletedProcess(args, 0, out, "")
        name = args[2]
        if name == self.fail_on:
            return subprocess.CompletedProcess(args, 1, "", f"cannot {verb} {name}")
        self.paused[name] = verb == "pause"
        return subprocess.CompletedProcess(args, 0, name + "\n", "")


def test_blackhole_pauses_node_containers_and_unpauses_only_ours(clusters: Clusters):
    lab = _lab(node_containers=["region-1-control-plane", "region-1-worker", "region-1-worker2"])
    docker = FakeDocker(
        {"region-1-control-plane": False, "region-1-worker": False, "region-1-worker2": True}
    )
    driver = _driver(lab, runner=docker)
    undo = driver.plan("blackhole", lab.primary)
    assert undo["paused_before"] == ["region-1-worker2"]
    assert driver.is_effective("blackhole", lab.primary, undo) is False

    driver.inject("blackhole", lab.primary, undo)
    assert ["docker", "pause", "region-1-control-plane"] in docker.calls
    assert ["docker", "pause", "region-1-worker2"] not in docker.calls
    assert driver.is_effective("blackhole", lab.primary, undo) is True

    driver.revert("blackhole", lab.primary, undo)
    assert docker.paused == {
        "region-1-control-plane": False,
        "region-1-worker": False,
        "region-1-worker2": True,
    }
    n, api_calls = len(docker.calls), [len(list(s)) for s in clusters.servers.values()]
    driver.revert("blackhole", lab.primary, undo)  # nothing paused by us any more
    assert [c[1] for c in docker.calls[n:]] == ["inspect"]
    assert [len(list(s)) for s in clusters.servers.values()] == api_calls  # no API call


def test_blackhole_failure_is_a_target_error_and_revert_recovers(clusters: Clusters):
    lab = _lab()
    docker = FakeDocker(
        {"region-1-control-plane": False, "region-1-worker": False}, fail_on="region-1-worker"
    )
    driver = _driver(lab, runner=docker)
    undo = driver.plan("blackhole", lab.primary)
    with pytest.raises(TargetError, match="docker pause region-1-worker failed"):
        driver.inject("blackhole", lab.primary, undo)
    assert docker.paused["region-1-control-plane"] is True
    driver.revert("blackhole", lab.primary, undo)
    assert docker.paused == {"region-1-control-plane": False, "region-1-worker": False}


def test_blackhole_unknown_container_names_the_descriptor(clusters: Clusters):
    lab = _lab(node_containers=["ghost"])
    driver = _driver(lab, runner=FakeDocker({}))
    with pytest.raises(TargetError, match="node_containers"):
        driver.plan("blackhole", lab.primary)


def test_blackhole_without_containers_is_not_applicable_and_revert_is_a_no_op(clusters: Clusters):
    lab = _lab(node_containers=[])
    driver = _driver(lab, runner=FakeDocker({}))
    undo = driver.plan("blackhole", lab.primary)
    assert undo["applicable"] is False and "node_containers" in undo["reason"]
    driver.revert("blackhole", lab.primary, undo)


# -- API calls are bounded (issue 13, item 3) ----------------------------------------------


class SilentServer:
    """Stands in for the API server of a paused kind node: the TCP handshake completes and
    nothing is ever answered (a stopped server would refuse the connection instead, which
    is not the case to test). Accepted connections are held until close()."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        """Closing is what ends a call that would otherwise hang forever. shutdown() first:
        close() alone does not wake the accept() blocked in the other thread, which then
        accepts the client's retry."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _within(seconds: float, call: Any) -> tuple[Any, float]:
    """(what `call` returned or raised, how long it took), or fail if it is still blocked
    after `seconds`: a call that hangs must fail the test, not hang it."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call is still blocked after {seconds:g} s: it hangs"
    return outcome[0], time.monotonic() - started


def test_every_api_call_times_out_when_the_api_server_never_answers(clusters: Clusters):
    """The kubernetes client waits forever unless the request has a timeout; a paused node
    completes the handshake and never answers. Stand-in: SilentServer (see its doc)."""
    lab = _lab()
    driver = KubernetesDriver.from_settings(lab, GamedaySettings.from_chaos({"kube_request_timeout_s": 0.5}))
    with SilentServer() as silent:
        clusters.point("kind-region-1", silent.url)
        for call in (
            lambda: driver.plan("scale-to-zero", lab.primary),
            lambda: driver.stop_database(lab.primary),
        ):
            outcome, took = _within(20, call)
            assert isinstance(outcome, TargetError), outcome
            assert "did not answer within 0.5 s" in str(outcome), outcome
            assert "kind-region-1" in str(outcome) and "\n" not in str(outcome)
            assert took < 5, took
        assert silent.accepted  # it was really asked, and never answered


def test_request_timeout_setting_is_checked():
    with pytest.raises(ConfigError, match="kube_request_timeout_s"):
        KubernetesDriver.from_settings(_lab(), GamedaySettings.from_chaos({"kube_request_timeout_s": "soon"}))
    with pytest.raises(ConfigError, match="kube_request_timeout_s"):
        KubernetesDriver.from_settings(_lab(), GamedaySettings.from_chaos({"kube_request_timeout_s": 0}))


def test_scale_to_zero_then_blackhole_neither_hangs_nor_skips_the_rollback(clusters: Clusters):
    """`scale-to-zero,blackhole`: take_region_down checks is_effective after injecting both,
    when the region's API server is paused. Stand-ins: FakeDocker for `docker pause`, and
    SilentServer as the paused API server (kmock before the pause and after the unpause)."""
    lab = _lab()
    r1 = clusters.servers["region-1"]
    docker = FakeDocker({"region-1-control-plane": False, "region-1-worker": False})
    driver = _driver(lab, runner=docker, **Controller(r1).kwargs())
    scaled = driver.plan("scale-to-zero", lab.primary)
    driver.inject("scale-to-zero", lab.primary, scaled)
    paused = driver.plan("blackhole", lab.primary)
    driver.inject("blackhole", lab.primary, paused)
    with SilentServer() as silent:
        clusters.point("kind-region-1", silent.url)
        outcome, _ = _within(20, lambda: driver.is_effective("scale-to-zero", lab.primary, scaled))
        assert outcome is True  # the region is paused: nothing of it runs
        assert not silent.accepted  # and the paused API server was not asked
        outcome, _ = _within(20, lambda: driver.plan("cordon", lab.primary))
        assert isinstance(outcome, ConfigError), outcome
        assert "paused" in str(outcome) and "blackhole last" in str(outcome)
        assert not silent.accepted
    clusters.point("kind-region-1", clusters.urls["region-1"])  # unpaused: it answers again
    driver.revert("blackhole", lab.primary, paused)
    driver.revert("scale-to-zero", lab.primary, scaled)
    assert docker.paused == {"region-1-control-plane": False, "region-1-worker": False}
    assert _replicas(r1, DEPLOY, "storefront") == 2 and _replicas(r1, STS, "postgres") == 1


# -- fencing on revert ----------------------------------------------------------------------


def _scale_down(driver: KubernetesDriver, lab: descriptor.Lab, r1: RegionApiServer) -> Any:
    undo = driver.plan("scale-to-zero", lab.primary)
    driver.inject("scale-to-zero", lab.primary, undo)
    r1.objects[PODS, NS, DB_POD].delete()  # the StatefulSet controller's part
    return undo


def test_revert_scale_to_zero_fences_when_the_other_region_is_primary(clusters: Clusters):
    lab = _lab()
    r1, r2 = clusters.servers["region-1"], clusters.servers["region-2"]
    driver = _driver(lab, primaries=["region-2"], **Controller(r1).kwargs())
    undo = _scale_down(driver, lab, r1)
    r2_pod = _pod_uid(r2)
    n = len(r1.writes())

    driver.revert("scale-to-zero", lab.primary, undo)
    assert _role(r1) == {"role": "fenced", "primary_host": ""}
    note = json.loads(_annotations(r1)[FENCE_ANNOTATION])
    assert note["previous_role"] == "primary" and note["because"] == "region-2 is the primary"
    assert undo["fenced"]["configmap"] == f"{NS}/{DB_CONFIGMAP}"  # visible in the undo record
    writes = r1.writes()[n:]
    cm_path = f"/api/v1/namespaces/{NS}/configmaps/{DB_CONFIGMAP}"
    sts_path = f"/apis/apps/v1/namespaces/{NS}/statefulsets/postgres"
    # fenced before the database is scaled back up, so it can only start fenced
    assert [p for _, p, _ in writes].index(cm_path) < writes.index(
        ("PATCH", sts_path, {"spec": {"replicas": 1}})
    )
    assert _replicas(r1, STS, "postgres") == 1
    assert not any(m == "DELETE" for m, _, _ in writes)  # no pod was running: none deleted
    # promotion by SQL left region-2's ConfigMap at standby: it says primary now
    assert _role(r2) == {"role": "primary", "primary_host": ""}
    assert [(m, p) for m, p, _ in r2.writes()] == [("PATCH", cm_path)]
    assert _pod_uid(r2) == r2_pod  # its running primary is left alone

    n1, n2 = len(r1.writes()), len(r2.writes())
    driver.revert("scale-to-zero", lab.primary, undo)  # twice: nothing more to do
    assert (len(r1.writes()), len(r2.writes())) == (n1, n2)


def test_revert_scale_to_zero_leaves_the_role_when_the_other_region_is_not_primary(
    clusters: Clusters,
):
    lab = _lab()
    r1, r2 = clusters.servers["region-1"], clusters.servers["region-2"]
    driver = _driver(lab, primaries=[], **Controller(r1).kwargs())
    undo = _scale_down(driver, lab, r1)
    driver.revert("scale-to-zero", lab.primary, undo)
    # region-2: is it the primary (no); region-1: does its database answer again (yes)
    assert driver.asked == ["region-2", "region-1"]  # type: ignore[attr-defined]
    assert _role(r1) == {"role": "primary", "primary_host": ""}
    assert "fenced" not in undo
    assert not any("/configmaps/" in p for _, p, _ in r1.writes() + r2.writes())
    assert _replicas(r1, STS, "postgres") == 1


def test_revert_fences_when_the_drill_records_a_promotion_of_the_other_region(
    clusters: Clusters, tmp_path: Path
):
    """A run interrupted just after pg_promote(), or a connection blip to region-2: SQL does
    not show region-2 as a primary, but drill.json records its promotion. Region-1 must come
    back fenced, as the netns driver does (issue 13, item 2)."""
    from gameday.foundation import drill_state as drill

    lab = _lab(path=tmp_path / "lab.json")
    r1, r2 = clusters.servers["region-1"], clusters.servers["region-2"]
    drill.write(lab.path, drill.DrillState.from_json({"promoted": "region-2", "promoted_from": "region-1"}))
    # SQL: region-2 unreachable, or not promoted yet
    driver = _driver(lab, primaries=[], **Controller(r1).kwargs())
    undo = _scale_down(driver, lab, r1)
    driver.revert("scale-to-zero", lab.primary, undo)
    assert _role(r1) == {"role": "fenced", "primary_host": ""}
    assert "drill" in undo["fenced"]["because"] and "region-2" in undo["fenced"]["because"]
    assert _replicas(r1, STS, "postgres") == 1
    assert _role(r2)["role"] == "primary"  # the drill made it the primary


def test_revert_does_not_fence_on_a_drill_record_of_its_own_promotion(
    clusters: Clusters, tmp_path: Path
):
    from gameday.foundation import drill_state as drill

    lab = _lab(path=tmp_path / "lab.json")
    r1 = clusters.servers["region-1"]
    drill.write(lab.path, drill.DrillState.from_json({"promoted": "region-1"}))
    driver = _driver(lab, primaries=[], **Controller(r1).kwargs())
    undo = _scale_down(driver, lab, r1)
    driver.revert("scale-to-zero", lab.primary, undo)
    assert _role(r1)["role"] == "primary" and "fenced" not in undo


def test_revert_without_role_configmap_refuses_to_bring_back_a_second_primary(
    clusters: Clusters,
):
    lab = _lab()
    r1 = clusters.servers["region-1"]
    driver = _driver(lab, primaries=["region-2"])
    undo = _scale_down(driver, lab, r1)
    r1.objects[CONFIGMAPS, NS, DB_CONFIGMAP].delete()
    with pytest.raises(LabError, match="create it with role=fenced") as info:
        driver.revert("scale-to-zero", lab.primary, undo)
    assert "\n" not in str(info.value)
    assert _replicas(r1, STS, "postgres") == 0  # stays down


class OrderedDocker(FakeDocker):
    """Checks, when a worker is unpaused, that the region's database is already fenced."""

    def __init__(self, paused: dict[str, bool], server: RegionApiServer) -> None:
        super().__init__(paused)
        self.server = server
        self.seen_at_worker_unpause: tuple[dict[str, str], str | None] | None = None

    def __call__(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if list(args[:3]) == ["docker", "unpause", "region-1-worker"]:
            self.seen_at_worker_unpause = (_role(self.server), _pod_uid(self.server))
        return super().__call__(args)


def test_revert_blackhole_fences_through_the_control_plane_before_the_workers(
    clusters: Clusters,
):
    lab = _lab()
    r1, r2 = clusters.servers["region-1"], clusters.servers["region-2"]
    docker = OrderedDocker({"region-1-control-plane": False, "region-1-worker": False}, r1)
    driver = _driver(lab, primaries=["region-2"], runner=docker, **Controller(r1).kwargs())
    undo = driver.plan("blackhole", lab.primary)
    driver.inject("blackhole", lab.primary, undo)
    old_pod = _pod_uid(r1)

    driver.revert("blackhole", lab.primary, undo)
    unpauses = [c[2] for c in docker.calls if c[1] == "unpause"]
    assert unpauses == ["region-1-control-plane", "region-1-worker"]
    # fenced, and the old primary's pod deleted, while its node was still paused
    assert docker.seen_at_worker_unpause == ({"role": "fenced", "primary_host": ""}, None)
    assert _annotations(r1)[STALE_POD_ANNOTATION] == old_pod
    assert ("DELETE", f"/api/v1/namespaces/{NS}/pods/{DB_POD}", None) in [
        (m, p, None) for m, p, _ in r1.writes()
    ]
    assert undo["fenced"]["because"] == "region-2 is the primary"
    assert _role(r2)["role"] == "primary"
    assert docker.paused == {"region-1-control-plane": False, "region-1-worker": False}


def test_revert_blackhole_failing_half_way_is_completed_by_a_second_call(clusters: Clusters):
    lab = _lab()
    r1 = clusters.servers["region-1"]
    docker = FakeDocker({"region-1-control-plane": False, "region-1-worker": False})
    driver = _driver(lab, primaries=["region-2"], runner=docker, **Controller(r1).kwargs())
    undo = driver.plan("blackhole", lab.primary)
    driver.inject("blackhole", lab.primary, undo)
    old_pod = _pod_uid(r1)
    r1.failures.append(("DELETE", re.compile(r"/pods/postgres-0$")))

    with pytest.raises(TargetError, match="region-1"):
        driver.revert("blackhole", lab.primary, undo)
    assert _role(r1)["role"] == "fenced"
    assert _pod_uid(r1) == old_pod  # the old primary's pod is still there...
    assert docker.paused["region-1-worker"] is True  # ...but its node stays paused: safe

    r1.failures.clear()
    driver.revert("blackhole", lab.primary, undo)  # the ConfigMap says fenced already
    assert _pod_uid(r1) not in (None, old_pod)  # the stale pod replaced, its successor Ready
    assert docker.paused == {"region-1-control-plane": False, "region-1-worker": False}


# -- database operations (failback) ---------------------------------------------------------


def test_stop_database_scales_to_zero_and_waits_until_the_pod_is_gone(clusters: Clusters):
    lab = _lab()
    r1, r2 = clusters.servers["region-1"], clusters.servers["region-2"]
    ctl = Controller(r1)
    driver = _driver(lab, **ctl.kwargs())
    driver.stop_database(lab.primary)
    assert _replicas(r1, STS, "postgres") == 0
    assert _pod_uid(r1) is None and ctl.polls == 1
    sts_path = f"/apis/apps/v1/namespaces/{NS}/statefulsets/postgres"
    assert [(m, p, b) for m, p, b in r1.writes()] == [
        ("PATCH", sts_path, {"spec": {"replicas": 0}})
    ]
    assert r2.writes() == []
    driver.stop_database(lab.primary)  # stopped already: no change
    assert len(r1.writes()) == 1


def test_stop_database_is_bounded(clusters: Clusters):
    lab = _lab()
    now = [0.0]

    def sleep(seconds: float) -> None:  # time passes, the pod never goes (a stuck kubelet)
        now[0] += seconds

    stuck = _driver(lab, sleep=sleep, clock=lambda: now[0], stop_timeout_s=5)
    with pytest.raises(TargetError, match="still exists 5 s after") as info:
        stuck.stop_database(lab.primary)
    assert "\n" not in str(info.value) and "kubectl --context kind-region-1" in str(info.value)


def test_resync_database_sets_standby_of_the_source_and_reports_the_method(clusters: Clusters):
    lab = _lab()
    r1, r2 = clusters.servers["region-1"], clusters.servers["region-2"]
    log = "gameday-postgres: pg_rewind failed\ngameday-postgres: resync=basebackup\n"
    ctl = Controller(r1, log=log)
    driver = _driver(lab, primaries=["region-2"], **ctl.kwargs())
    driver.stop_database(lab.primary)

    method = driver.resync_database(lab.primary, lab.secondary)
    assert method == "basebackup"
    assert _role(r1) == {"role": "standby", "primary_host": lab.secondary.db_host}
    assert _replicas(r1, STS, "postgres") == 1 and _pod_uid(r1) is not None
    assert _role(r2) == {"role": "primary", "primary_host": ""}  # the source is the primary

    n = len(r1.writes())
    driver.start_standby(lab.primary, lab.secondary)  # the caller's next step: already done
    assert len(r1.writes()) == n


def test_resync_database_reports_rewind_when_the_log_says_nothing_else(clusters: Clusters):
    lab = _lab()
    r1 = clusters.servers["region-1"]
    for log in ("gameday-postgres: resync=rewind\n", "gameday-postgres: resync=none\n", ""):
        ctl = Controller(r1, log=log)
        driver = _driver(lab, primaries=["region-2"], **ctl.kwargs())
        driver.stop_database(lab.primary)
        assert driver.resync_database(lab.primary, lab.secondary) == "rewind"


def test_start_standby_replaces_a_pod_started_in_another_role(clusters: Clusters):
    """Switchover: the old primary is stopped, then started as a standby of the new one. Here
    without the stop: the pod that runs in the old role must be replaced, not kept."""
    lab = _lab()
    r1, r2 = clusters.servers["region-1"], clusters.servers["region-2"]
    ctl = Controller(r2)
    driver = _driver(lab, primaries=["region-1"], **ctl.kwargs())
    old_pod = _pod_uid(r2)
    r2.objects[CONFIGMAPS, NS, DB_CONFIGMAP]["data"] = {"role": "fenced", "primary_host": ""}

    driver.start_standby(lab.secondary, lab.primary)
    assert _role(r2) == {"role": "standby", "primary_host": lab.primary.db_host}
    assert _annotations(r2)[STALE_POD_ANNOTATION] == old_pod
    new_pod = _pod_uid(r2)
    assert new_pod not in (None, old_pod)
    assert [p for m, p, _ in r2.writes() if m == "DELETE"] == [
        f"/api/v1/namespaces/{NS}/pods/{DB_POD}"
    ]
    assert r1.writes() == []  # region-1's ConfigMap says primary already


def test_start_standby_failing_half_way_is_completed_by_a_second_call(clusters: Clusters):
    lab = _lab()
    r1 = clusters.servers["region-1"]
    ctl = Controller(r1)
    driver = _driver(lab, primaries=["region-2"], **ctl.kwargs())
    old_pod = _pod_uid(r1)  # runs as the old primary
    r1.failures.append(("DELETE", re.compile(r"/pods/postgres-0$")))
    with pytest.raises(TargetError, match="kind-region-1"):
        driver.start_standby(lab.primary, lab.secondary)
    assert _role(r1)["role"] == "standby" and _pod_uid(r1) == old_pod

    r1.failures.clear()
    driver.start_standby(lab.primary, lab.secondary)  # ConfigMap already right: the pod is not
    assert _pod_uid(r1) not in (None, old_pod)


def test_start_standby_waits_for_ready_and_is_bounded(clusters: Clusters):
    lab = _lab()
    r1 = clusters.servers["region-1"]
    ctl = Controller(r1, ready=False)
    driver = _driver(lab, primaries=["region-2"], start_timeout_s=3, **ctl.kwargs())
    driver.stop_database(lab.primary)
    with pytest.raises(TargetError, match="not Ready after 3 s") as info:
        driver.start_standby(lab.primary, lab.secondary)
    assert "logs postgres-0" in str(info.value) and "\n" not in str(info.value)
    assert ctl.polls >= 3


def test_start_database_is_idempotent(clusters: Clusters):
    lab = _lab()
    r1 = clusters.servers["region-1"]
    ctl = Controller(r1)
    driver = _driver(lab, **ctl.kwargs())
    assert driver.start_database(lab.primary) is False  # running: nothing to start
    assert r1.writes() == []
    driver.stop_database(lab.primary)
    n = len(r1.writes())
    assert driver.start_database(lab.primary) is True
    assert r1.writes()[n:] == [
        ("PATCH", f"/apis/apps/v1/namespaces/{NS}/statefulsets/postgres", {"spec": {"replicas": 1}})
    ]
    assert _pod_uid(r1) is not None
    assert driver.start_database(lab.primary) is False
    assert len(r1.writes()) == n + 1


def test_start_database_of_a_fenced_region_does_not_wait(clusters: Clusters):
    lab = _lab()
    r1 = clusters.servers["region-1"]
    ctl = Controller(r1, ready=False)
    driver = _driver(lab, start_timeout_s=1, **ctl.kwargs())
    driver.stop_database(lab.primary)
    r1.objects[CONFIGMAPS, NS, DB_CONFIGMAP]["data"] = {"role": "fenced", "primary_host": ""}
    assert driver.start_database(lab.primary) is True


def test_database_operations_are_guarded_and_name_the_fix(clusters: Clusters):
    lab = _lab(kube_context="prod-eu")
    with pytest.raises(ConfigError, match="allow-list"):
        _driver(lab).stop_database(lab.primary)
    assert list(clusters.servers["region-1"]) == []
    lab = _lab()
    r1 = clusters.servers["region-1"]
    r1.objects[STS, NS, "postgres"].delete()
    with pytest.raises(TargetError, match="kind-lab/up.sh database"):
        _driver(lab).start_database(lab.primary)
    r1.objects[CONFIGMAPS, NS, DB_CONFIGMAP].delete()
    r1.objects[STS, NS, "postgres"] = _statefulset("postgres", 0, 0)
    with pytest.raises(TargetError, match="no ConfigMap gameday-db"):
        _driver(lab, primaries=["region-2"]).start_standby(lab.primary, lab.secondary)


def test_for_region_returns_this_driver():
    from gameday.foundation.driver import for_region

    lab = _lab()
    assert isinstance(for_region(lab, lab.primary), KubernetesDriver)


def test_failback_needs_the_fencing_contract_and_says_so(clusters: Clusters):
    """kind-lab's regions have StatefulSet postgres and ConfigMap gameday-db: gameday's own
    failback can run. A user's cluster without them is refused with the way out."""
    lab = _lab()
    driver = _driver(lab)
    assert driver.failback_unsupported(lab.primary) is None
    del clusters.servers["region-2"].objects[CONFIGMAPS, NS, DB_CONFIGMAP]
    reason = driver.failback_unsupported(lab.secondary)
    assert reason is not None and "ConfigMap gameday-db missing" in reason
    assert "failback-autonomous.json" in reason


# -- polling is_effective inside the measured window (issue 20, item 5) ----------------------


def test_take_region_down_polls_a_remote_region_gently_with_one_reused_client(
    clusters: Clusters, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """take_region_down waits for scale-to-zero to be in effect in the process that records
    the RTO and drives the canary: at most one poll per 100 ms, through one client built
    once (the kubeconfig read once, one connection kept open), not one per poll.
    Stand-ins: kmock for the API server, a timer for the controllers that bring the
    workloads' status to 0 after 0.6 s."""
    import urllib3.connectionpool

    from gameday.actions import region as region_actions
    from gameday.labs.kubernetes import faults as faults_module

    lab_file = tmp_path / "lab.json"
    lab_file.write_text(json.dumps(_lab_data(node_containers=[])))
    r1 = clusters.servers["region-1"]
    loads: list[str] = []
    load = kube_config.load_kube_config

    def counted_load(*args: Any, **kwargs: Any) -> Any:
        loads.append(str(kwargs.get("context")))
        return load(*args, **kwargs)

    monkeypatch.setattr(kube_config, "load_kube_config", counted_load)
    connections: list[int] = []
    new_conn = urllib3.connectionpool.HTTPConnectionPool._new_conn

    def counted_conn(pool: Any) -> Any:
        connections.append(pool.port)
        return new_conn(pool)

    monkeypatch.setattr(urllib3.connectionpool.HTTPConnectionPool, "_new_conn", counted_conn)

    window: list[float] = []  # when the scale was done, when the controllers caught up

    def controllers_catch_up() -> None:
        for resource, name in ((DEPLOY, "storefront"), (DEPLOY, "defaulted"), (STS, "postgres")):
            _set_running(r1, resource, name, 0)
        window.append(time.monotonic())

    timer = threading.Timer(0.6, controllers_catch_up)
    scale_to_zero = faults_module.scale_to_zero

    def scale_then_catch_up(*args: Any, **kwargs: Any) -> None:
        scale_to_zero(*args, **kwargs)
        window.append(time.monotonic())
        timer.start()  # the controllers take 0.6 s from the scale on

    monkeypatch.setattr(faults_module, "scale_to_zero", scale_then_catch_up)
    try:
        out = region_actions.take_region_down(
            "region-1", "scale-to-zero", configuration={"lab_file": str(lab_file)}
        )
    finally:
        timer.cancel()
    took = window[1] - window[0]  # the polls happen in this window, and one after it
    assert out["faults"][0]["applicable"] is True and "effective" in out["faults"][0]
    # one list of Deployments to plan, one before the scale, then one per poll
    polls = sum(
        1 for r in r1 if r.method.value.upper() == "GET" and r.url.path.endswith("/deployments")
    ) - 2
    assert 3 <= polls <= took / 0.1 + 2, (polls, took)
    assert loads == ["kind-region-1"]  # one client, the kubeconfig read once
    assert len(connections) == 1, connections  # and one connection, kept open


def test_is_effective_of_an_api_fault_asks_docker_only_when_the_api_fails(clusters: Clusters):
    """`docker inspect` is a fork: not on every poll. The driver knows the regions it paused
    itself; a region paused by someone else shows as an API timeout, and only then is docker
    asked. Stand-ins: FakeDocker, SilentServer as the paused API server."""
    lab = _lab()
    r1 = clusters.servers["region-1"]
    docker = FakeDocker({"region-1-control-plane": False, "region-1-worker": False})
    driver = _driver(lab, runner=docker, request_timeout_s=0.5, **Controller(r1).kwargs())
    undo = driver.plan("scale-to-zero", lab.primary)
    driver.inject("scale-to-zero", lab.primary, undo)
    inspects = len(docker.calls)
    for _ in range(5):
        assert driver.is_effective("scale-to-zero", lab.primary, undo) is False
    assert len(docker.calls) == inspects  # five polls, no fork

    docker.paused.update({"region-1-control-plane": True, "region-1-worker": True})
    with SilentServer() as silent:  # paused by someone else
        clusters.point("kind-region-1", silent.url)
        outcome, _ = _within(20, lambda: driver.is_effective("scale-to-zero", lab.primary, undo))
        assert outcome is True and silent.accepted
        assert [c[1] for c in docker.calls[inspects:]] == ["inspect"]
    clusters.point("kind-region-1", clusters.urls["region-1"])
    docker.paused.update({"region-1-control-plane": False, "region-1-worker": False})
    driver.revert("scale-to-zero", lab.primary, undo)
    assert _replicas(r1, DEPLOY, "storefront") == 2


# -- the request check itself ----------------------------------------------------------------


def test_request_check_refuses_what_a_real_api_server_would(clusters: Clusters):
    """Every write of every test in this module is checked when its kmock servers stop
    (fixture `clusters`): against the Kubernetes 1.34 schemas kubernetes-validate ships, and
    for the PATCH Content-Type the kubernetes client sends. The check is real: these fail."""
    deploy = f"/apis/apps/v1/namespaces/{NS}/deployments/storefront"
    patch = {"Content-Type": PATCH_CONTENT_TYPE}
    assert request_errors("PATCH", deploy, patch, {"spec": {"replicas": 0}}) == []
    assert request_errors("PATCH", deploy, patch, {"metadata": {"annotations": {"a": None}}}) == []
    assert request_errors("PATCH", deploy, patch, {"spec": {"replica": 0}})  # misspelt
    assert request_errors("PATCH", deploy, patch, {"spec": {"replicas": "0"}})  # wrong type
    assert request_errors("PATCH", deploy, {"Content-Type": "application/json-patch+json"},
                          {"spec": {"replicas": 0}})  # a JSON Patch must be a list
    assert request_errors("PATCH", "/api/v1/nodes/n", patch, {"unschedulable": True})
    policies = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"
    good = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": EGRESS_POLICY},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": []}}
    assert request_errors("POST", policies, {}, good) == []
    assert request_errors("POST", policies, {}, {**good, "spec": {**good["spec"], "podselector": {}}})
    assert request_errors("POST", policies, {}, {**good, "spec": {**good["spec"], "egress": {}}})


def test_driver_patches_carry_the_client_content_type(clusters: Clusters):
    """The driver's patches are objects, sent as strategic merge patches (kubernetes 37's
    rest.py turns the generated default, application/json-patch+json, into that for any
    body that is not a list). Seen on the wire, not assumed."""
    lab = _lab()
    driver = _driver(lab)
    undo = driver.plan("cordon", lab.primary)
    driver.inject("cordon", lab.primary, undo)
    patches = [r for r in clusters.servers["region-1"] if r.method.value.upper() == "PATCH"]
    assert patches and {r.headers.get("Content-Type") for r in patches} == {PATCH_CONTENT_TYPE}
    driver.revert("cordon", lab.primary, undo)
