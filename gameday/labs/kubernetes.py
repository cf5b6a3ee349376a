"""The Kubernetes driver: region faults on a cluster, reached through its kube context.

Used by kind-lab (two kind clusters) and by descriptors written for real clusters.

    scale-to-zero  every Deployment and StatefulSet of the region's namespace to 0 replicas;
                   the previous count is kept in an annotation on each object first, so that
                   revert restores exactly that count, even after a crash between the two.
    cordon         the region's nodes (by its node_selector) unschedulable; nodes that were
                   already cordoned before the fault stay cordoned after revert.
    block-egress   our own NetworkPolicy denying all egress from every pod of the namespace;
                   deleted on revert.
    blackhole      `docker pause` of the region's node containers (kind only); revert unpauses
                   the ones this fault paused (control planes first, see below).

Fencing on revert (docs/design.md, Failover and failback protocol): reverting scale-to-zero
or blackhole on a region whose
ConfigMap `gameday-db` says `primary`, while the other region's database answers as a primary
(SQL at its db_host, like the netns lab), first sets the role to `fenced` (kind-lab's
entrypoint then starts PostgreSQL read-only, with no upstream), then restores the replicas or
replaces the still-running pod. The fence is logged, added to the undo record (`fenced`) and
annotated on the ConfigMap; the other region's ConfigMap is set to `primary`, since promotion
by SQL does not change it. A pod that started before its role changed is named in the
annotation `gameday.test/stale-pod` and deleted, so a second call finishes a fence (or a role
change) that failed half-way.

Database operations for failback (DatabaseOps): the role lives in ConfigMap `gameday-db` and
is read when pod `postgres-0` of StatefulSet `postgres` starts, so every operation is "set the
role, then stop or start the pod": stop_database scales to 0 and waits until the pod is gone;
resync_database sets `standby` of the source and starts the pod (the entrypoint rewinds, or
base-backs up, at start, and logs which); start_standby does the same and waits until the pod
is Ready; start_database scales to 1 when at 0. Every wait is bounded.

Every call goes through chaostoolkit-kubernetes where it has the action (scale, cordon,
uncordon, network policies) and through the kubernetes client otherwise, with the region's own
context. The kubernetes client keeps one process-wide configuration, so one lock serialises
every call: two clusters are never talked to at the same time.

Guard: a context is used only when it matches the allow-list (`kind-*` unless widened by the
configuration key `kube_context_allowlist` or env GAMEDAY_KUBE_CONTEXT_ALLOWLIST), so a game
day cannot scale a production cluster to zero by a typo in a descriptor.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gameday.errors import ConfigError, GamedayError, LabError, TargetError
from gameday.labs.descriptor import Lab, Region

__all__ = [
    "ALLOWLIST_ENV",
    "ALLOWLIST_KEY",
    "DB_CONFIGMAP",
    "DB_POD",
    "DB_STATEFULSET",
    "DEFAULT_ALLOWED_CONTEXTS",
    "EGRESS_POLICY",
    "FENCE_ANNOTATION",
    "REPLICAS_ANNOTATION",
    "STALE_POD_ANNOTATION",
    "KubernetesDriver",
    "allowed_contexts_from",
]

logger = logging.getLogger(f"chaostoolkit.{__name__}")

DEFAULT_ALLOWED_CONTEXTS: tuple[str, ...] = ("kind-*",)
ALLOWLIST_KEY = "kube_context_allowlist"
ALLOWLIST_ENV = "GAMEDAY_KUBE_CONTEXT_ALLOWLIST"
REPLICAS_ANNOTATION = "gameday.test/previous-replicas"
EGRESS_POLICY = "gameday-block-egress"
MANAGED_BY = {"app.kubernetes.io/managed-by": "gameday"}
# kind-lab's database (kind-lab/base/postgres.yaml): one StatefulSet, its role in a ConfigMap.
DB_STATEFULSET = "postgres"
DB_POD = f"{DB_STATEFULSET}-0"
DB_CONTAINER = "postgres"
DB_CONFIGMAP = "gameday-db"
FENCE_ANNOTATION = "gameday.test/fenced"
STALE_POD_ANNOTATION = "gameday.test/stale-pod"
_RESYNC_LINE = re.compile(r"gameday-postgres: resync=(rewind|basebackup|none)\b")

# The kubernetes client and chaostoolkit-kubernetes load one process-wide configuration per
# call; holding this lock around every use keeps two regions' calls from interleaving.
_KUBE_LOCK = threading.RLock()

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]
# True when the region's database answers as a primary (not in recovery).
PrimaryCheck = Callable[[Region], bool]


def allowed_contexts_from(configuration: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The context patterns this run may touch: `kind-*` plus what configuration adds.

    The configuration key `kube_context_allowlist` (or env GAMEDAY_KUBE_CONTEXT_ALLOWLIST)
    holds shell-style patterns, as a list or a comma-separated string."""
    raw: Any = (configuration or {}).get(ALLOWLIST_KEY)
    if raw is None:
        raw = os.environ.get(ALLOWLIST_ENV, "")
    if isinstance(raw, str):
        extra = [p.strip() for p in raw.split(",")]
    elif isinstance(raw, Sequence):
        extra = [str(p).strip() for p in raw]
    else:
        raise ConfigError(
            f"configuration '{ALLOWLIST_KEY}': expected a list or a comma-separated string "
            f"of context patterns, got {type(raw).__name__}"
        )
    return DEFAULT_ALLOWED_CONTEXTS + tuple(p for p in extra if p)


def _docker(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which(args[0]) is None:
        raise LabError(f"'{args[0]}' not found: the blackhole fault needs the docker CLI here")
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


def _sql_is_primary(lab: Lab) -> PrimaryCheck:
    """The default check, as the netns lab's: the region's database answers at its db_host and
    is not in recovery (a writable primary, or one a switchover left read-only: either way a
    second primary must not appear next to it). Unreachable counts as not a primary."""

    def check(region: Region) -> bool:
        import psycopg

        try:
            with psycopg.connect(
                lab.database.dsn(region.db_host, region.db_port, application_name="gameday-drill"),
                autocommit=True,
            ) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        except psycopg.Error:
            return False
        return row is not None and not row[0]

    return check


class KubernetesDriver:
    """Breaks and restores a region that lives in a Kubernetes cluster (see the module doc)."""

    def __init__(
        self,
        lab: Lab,
        *,
        allowed_contexts: Sequence[str] | None = None,
        runner: Runner | None = None,
        is_primary: PrimaryCheck | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        stop_timeout_s: float = 120.0,
        start_timeout_s: float = 600.0,
        poll_s: float = 1.0,
    ) -> None:
        self.lab = lab
        self.allowed_contexts = (
            tuple(allowed_contexts) if allowed_contexts is not None else allowed_contexts_from()
        )
        self._run = runner or _docker
        self._is_primary = is_primary or _sql_is_primary(lab)
        self._sleep = sleep
        self._clock = clock
        self.stop_timeout_s = stop_timeout_s
        self.start_timeout_s = start_timeout_s
        self.poll_s = poll_s

    @classmethod
    def from_configuration(
        cls, lab: Lab, configuration: Mapping[str, Any] | None = None
    ) -> KubernetesDriver:
        return cls(lab, allowed_contexts=allowed_contexts_from(configuration))

    # -- the Driver protocol -------------------------------------------------------------

    def plan(self, fault: str, region: Region) -> dict[str, Any]:
        if fault == "blackhole":
            if not region.node_containers:
                return _not_applicable(
                    "the region lists no node_containers (blackhole pauses the Docker "
                    "containers that are its nodes: kind only)"
                )
            paused = self._paused(region.node_containers)
            return {
                "fault": fault,
                "region": region.name,
                "containers": list(region.node_containers),
                "paused_before": [c for c in region.node_containers if paused[c]],
            }
        if fault not in ("scale-to-zero", "cordon", "block-egress"):
            return _not_applicable(f"the kubernetes driver has no fault '{fault}'")
        context, namespace = self._target(region)
        base = {"fault": fault, "region": region.name, "context": context, "namespace": namespace}
        if fault == "scale-to-zero":
            with self._cluster(context) as api:
                workloads = [
                    {"kind": kind, "name": name, "replicas": replicas}
                    for kind, name, replicas, _ in self._workloads(api, namespace)
                ]
            return {**base, "workloads": workloads}
        if fault == "cordon":
            if not region.node_selector:
                return _not_applicable("the region has no node_selector in the lab descriptor")
            with self._cluster(context) as api:
                nodes = self._nodes(api, region.node_selector)
            if not nodes:
                raise LabError(
                    f"no node of context '{context}' matches '{region.node_selector}': "
                    "fix the region's node_selector in the lab descriptor"
                )
            return {
                **base,
                "node_selector": region.node_selector,
                "nodes": [{"name": n, "was_unschedulable": u} for n, u in nodes],
            }
        return {**base, "policy": EGRESS_POLICY}

    def inject(self, fault: str, region: Region, undo: dict[str, Any]) -> None:
        _check_undo(fault, undo)
        if fault == "blackhole":
            before = set(undo["paused_before"])
            todo = [c for c in undo["containers"] if c not in before]
            if todo:
                self._docker_each("pause", todo)
            return
        context, namespace = self._undo_target(undo)
        if fault == "scale-to-zero":
            self._scale_to_zero(context, namespace, undo["workloads"])
        elif fault == "cordon":
            self._cordon(context, [n["name"] for n in undo["nodes"] if not n["was_unschedulable"]])
        elif fault == "block-egress":
            self._block_egress(context, namespace, undo["policy"])

    def is_effective(self, fault: str, region: Region, undo: dict[str, Any]) -> bool:
        _check_undo(fault, undo)
        if fault == "blackhole":
            paused = self._paused(undo["containers"])
            return all(paused.values())
        context, namespace = self._undo_target(undo)
        with self._cluster(context) as api:
            if fault == "scale-to-zero":
                current = {
                    (k, n): (spec, status)
                    for k, n, spec, status in self._workloads(api, namespace, with_annotation=False)
                }
                for w in undo["workloads"]:
                    spec, status = current.get((w["kind"], w["name"]), (0, 0))
                    if spec != 0 or status:
                        return False
                return True
            if fault == "cordon":
                state = dict(self._nodes(api, None))
                return all(state.get(n["name"], True) for n in undo["nodes"])
            return self._read_policy(api, namespace, undo["policy"]) is not None

    def revert(self, fault: str, region: Region, undo: dict[str, Any]) -> None:
        if undo.get("applicable") is False:
            return
        _check_undo(fault, undo)
        if fault == "blackhole":
            self._revert_blackhole(region, undo)
            return
        context, namespace = self._undo_target(undo)
        if fault == "scale-to-zero":
            if any(
                w["kind"] == "StatefulSet" and w["name"] == DB_STATEFULSET
                for w in undo["workloads"]
            ):
                self._fence_if_other_is_primary(region, context, namespace, undo)
            self._restore_replicas(context, namespace, undo["workloads"])
        elif fault == "cordon":
            names = [n["name"] for n in undo["nodes"] if not n["was_unschedulable"]]
            self._uncordon(context, names)
        elif fault == "block-egress":
            self._unblock_egress(context, namespace, undo["policy"])

    # -- guards and client ---------------------------------------------------------------

    def _target(self, region: Region) -> tuple[str, str]:
        if not region.kube_context or not region.namespace:
            raise ConfigError(
                f"region '{region.name}': the kubernetes driver needs 'kube_context' and "
                "'namespace' in the lab descriptor"
            )
        self._allow(region.kube_context)
        return region.kube_context, region.namespace

    def _undo_target(self, undo: Mapping[str, Any]) -> tuple[str, str]:
        context, namespace = undo.get("context"), undo.get("namespace")
        if not isinstance(context, str) or not isinstance(namespace, str):
            raise ConfigError("undo record: 'context' and 'namespace' are missing")
        self._allow(context)
        return context, namespace

    def _allow(self, context: str) -> None:
        if not any(fnmatch.fnmatchcase(context, p) for p in self.allowed_contexts):
            allowed = ", ".join(self.allowed_contexts)
            raise ConfigError(
                f"kube context '{context}' is not in the allow-list ({allowed}): to really "
                f"break it, add it to configuration '{ALLOWLIST_KEY}' "
                f"(e.g. --var {ALLOWLIST_KEY}={context})"
            )

    @contextlib.contextmanager
    def _cluster(self, context: str) -> Iterator[Any]:
        """Hold the process-wide client for `context`: an ApiClient built the way
        chaostoolkit-kubernetes builds its own, after checking the kubeconfig really has it."""
        from chaosk8s import create_k8s_api_client, get_config_path
        from kubernetes.config import kube_config
        from kubernetes.config.config_exception import ConfigException

        with _KUBE_LOCK:
            path = get_config_path()
            loaded = os.path.expanduser(kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
            if os.pathsep in path or not os.path.isfile(path):
                raise LabError(
                    f"kubeconfig '{path}' is not one readable file: chaostoolkit-kubernetes "
                    "reads a single file; set KUBECONFIG to the file holding context "
                    f"'{context}' (kind writes ~/.kube/config)"
                )
            if os.path.abspath(loaded) != os.path.abspath(path):
                raise LabError(
                    f"KUBECONFIG is '{path}' but the kubernetes client loaded '{loaded}' at "
                    "import: set KUBECONFIG before starting chaos"
                )
            try:
                contexts, _ = kube_config.list_kube_config_contexts(config_file=path)
            except ConfigException as exc:
                raise LabError(f"kubeconfig '{path}': {exc}") from exc
            if context not in {c["name"] for c in contexts}:
                raise LabError(
                    f"kubeconfig '{path}' has no context '{context}': run kind-lab/up.sh, "
                    "or `kind export kubeconfig --name <cluster>`"
                )
            try:
                api = create_k8s_api_client(_secrets(context))
            except ConfigException as exc:
                raise LabError(f"kube context '{context}': {exc}") from exc
            try:
                yield api
            except GamedayError:
                raise
            except Exception as exc:
                raise _translate(exc, f"context '{context}'") from exc
            finally:
                api.close()

    # -- scale-to-zero -------------------------------------------------------------------

    def _workloads(
        self, api: Any, namespace: str, *, with_annotation: bool = True
    ) -> list[tuple[str, str, int, int]]:
        """(kind, name, replicas to restore, replicas now running) of each workload.

        With the annotation, 'replicas to restore' is the count saved before a scale to zero
        that was never reverted (a crashed run), so a second plan does not record 0."""
        from kubernetes import client

        apps = client.AppsV1Api(api)
        found: list[tuple[str, str, int, int]] = []
        for kind, lister in (
            ("Deployment", apps.list_namespaced_deployment),
            ("StatefulSet", apps.list_namespaced_stateful_set),
        ):
            for obj in lister(namespace).items:
                spec = obj.spec.replicas if obj.spec.replicas is not None else 1
                saved = (obj.metadata.annotations or {}).get(REPLICAS_ANNOTATION)
                if with_annotation and saved is not None:
                    spec = _replicas(saved, f"{kind} '{obj.metadata.name}'")
                running = (obj.status.replicas if obj.status else 0) or 0
                found.append((kind, obj.metadata.name, spec, running))
        return sorted(found)

    def _scale_to_zero(self, context: str, namespace: str, workloads: list[dict[str, Any]]) -> None:
        from chaosk8s.deployment.actions import scale_deployment
        from chaosk8s.statefulset.actions import scale_statefulset

        scale = {"Deployment": scale_deployment, "StatefulSet": scale_statefulset}
        with self._cluster(context) as api:
            for w in workloads:
                kind, name = w["kind"], w["name"]
                obj = self._read_workload(api, kind, name, namespace)
                if obj is None:
                    logger.warning("scale-to-zero: %s %s/%s gone, skipped", kind, namespace, name)
                    continue
                # Save the count on the object before changing it: a crash between the two
                # leaves an annotated object at its old count, which revert handles.
                if REPLICAS_ANNOTATION not in (obj.metadata.annotations or {}):
                    self._annotate(api, kind, name, namespace, str(w["replicas"]))
                _chaos(scale[kind], name, 0, ns=namespace, secrets=_secrets(context))
                logger.info(
                    "scale-to-zero: %s %s/%s 0 (was %s)", kind, namespace, name, w["replicas"]
                )

    def _restore_replicas(
        self, context: str, namespace: str, workloads: list[dict[str, Any]]
    ) -> None:
        from chaosk8s.deployment.actions import scale_deployment
        from chaosk8s.statefulset.actions import scale_statefulset

        scale = {"Deployment": scale_deployment, "StatefulSet": scale_statefulset}
        with self._cluster(context) as api:
            for w in workloads:
                kind, name = w["kind"], w["name"]
                obj = self._read_workload(api, kind, name, namespace)
                saved = (
                    None
                    if obj is None
                    else (obj.metadata.annotations or {}).get(REPLICAS_ANNOTATION)
                )
                if saved is None:
                    continue  # never scaled by us, or already restored
                replicas = _replicas(saved, f"{kind} '{name}'")
                _chaos(scale[kind], name, replicas, ns=namespace, secrets=_secrets(context))
                self._annotate(api, kind, name, namespace, None)
                logger.info("scale-to-zero reverted: %s %s/%s %s", kind, namespace, name, replicas)

    @staticmethod
    def _read_workload(api: Any, kind: str, name: str, namespace: str) -> Any:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        apps = client.AppsV1Api(api)
        read = (
            apps.read_namespaced_deployment
            if kind == "Deployment"
            else apps.read_namespaced_stateful_set
        )
        try:
            return read(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    @staticmethod
    def _annotate(api: Any, kind: str, name: str, namespace: str, value: str | None) -> None:
        from kubernetes import client

        apps = client.AppsV1Api(api)
        patch = (
            apps.patch_namespaced_deployment
            if kind == "Deployment"
            else apps.patch_namespaced_stateful_set
        )
        patch(name, namespace, {"metadata": {"annotations": {REPLICAS_ANNOTATION: value}}})

    # -- cordon --------------------------------------------------------------------------

    def _nodes(self, api: Any, selector: str | None) -> list[tuple[str, bool]]:
        """(name, unschedulable) of the nodes matching `selector`. The server filters; the
        equality terms are checked again here so that a server (or mock) that ignores
        labelSelector cannot make us cordon another region's nodes."""
        from kubernetes import client

        core = client.CoreV1Api(api)
        items = (core.list_node(label_selector=selector) if selector else core.list_node()).items
        terms = _equality_terms(selector or "")
        return sorted(
            (n.metadata.name, bool(n.spec.unschedulable) if n.spec else False)
            for n in items
            if _matches(n.metadata.labels or {}, terms)
        )

    def _cordon(self, context: str, names: list[str]) -> None:
        from chaosk8s.node.actions import cordon_node

        with self._cluster(context):
            for name in names:
                _chaos(cordon_node, name=name, secrets=_secrets(context))
                logger.info("cordon: node %s unschedulable", name)

    def _uncordon(self, context: str, names: list[str]) -> None:
        from chaosk8s.node.actions import uncordon_node

        with self._cluster(context) as api:
            present = {n for n, _ in self._nodes(api, None)}
            for name in names:
                if name not in present:
                    logger.warning("cordon revert: node %s is gone, skipped", name)
                    continue
                _chaos(uncordon_node, name=name, secrets=_secrets(context))
                logger.info("cordon reverted: node %s schedulable", name)

    # -- block-egress --------------------------------------------------------------------

    def _block_egress(self, context: str, namespace: str, policy: str) -> None:
        from chaosk8s.networking.actions import create_network_policy

        spec = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": policy, "namespace": namespace, "labels": dict(MANAGED_BY)},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": []},
        }
        with self._cluster(context) as api:
            if self._read_policy(api, namespace, policy) is None:
                _chaos(create_network_policy, spec=spec, ns=namespace, secrets=_secrets(context))
            logger.info("block-egress: NetworkPolicy %s/%s in place", namespace, policy)

    def _unblock_egress(self, context: str, namespace: str, policy: str) -> None:
        from chaosk8s.networking.actions import remove_network_policy

        with self._cluster(context) as api:
            if self._read_policy(api, namespace, policy) is not None:
                _chaos(remove_network_policy, policy, ns=namespace, secrets=_secrets(context))
            logger.info("block-egress reverted: NetworkPolicy %s/%s removed", namespace, policy)

    @staticmethod
    def _read_policy(api: Any, namespace: str, policy: str) -> Any:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            return client.NetworkingV1Api(api).read_namespaced_network_policy(policy, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # -- the DatabaseOps protocol (failback) ---------------------------------------------

    def stop_database(self, region: Region) -> None:
        """Scale StatefulSet `postgres` to 0 (its preStop hook stops PostgreSQL fast) and wait
        until pod `postgres-0` is gone, at most `stop_timeout_s`."""
        context, namespace = self._target(region)
        with self._cluster(context) as api:
            self._require_statefulset(api, context, namespace)
            self._scale_db(api, context, namespace, 0)
        self._wait_pod(context, namespace, ready=False, timeout_s=self.stop_timeout_s)
        logger.info("database of %s stopped (%s/%s scaled to 0)", region.name, namespace, DB_POD)

    def resync_database(self, region: Region, source: Region) -> str:
        """Role `standby` of `source`'s db_host, then start the pod: kind-lab's entrypoint
        rewinds the old data onto the source's timeline at start (or base-backs up when rewind
        fails) and logs which. Returns "rewind" or "basebackup" from that log line; "rewind"
        when the log does not say (a volume that already followed the source needs neither)."""
        self._follow(region, source)
        context, namespace = self._target(region)
        method = self._resync_method(context, namespace)
        logger.info("database of %s resynced from %s by %s", region.name, source.name, method)
        return method

    def start_standby(self, region: Region, upstream: Region) -> None:
        """Role `standby` of `upstream`'s db_host, StatefulSet at 1, and wait until the pod is
        Ready, at most `start_timeout_s`. A pod that started in another role is replaced."""
        self._follow(region, upstream)
        logger.info("database of %s streams from %s", region.name, upstream.name)

    def start_database(self, region: Region) -> bool:
        """Scale StatefulSet `postgres` to 1 when it is at 0, in the role its ConfigMap names.
        True when it started something; False (and no change) when it was already up."""
        context, namespace = self._target(region)
        with self._cluster(context) as api:
            cm = self._read_configmap(api, namespace)
            role = None if cm is None else (cm.data or {}).get("role")
        # a fenced pod on an empty volume never gets Ready: nothing to wait for then
        started = self._start_db(context, namespace, wait=role != "fenced")
        if started:
            logger.info("database of %s started (role %s)", region.name, role)
        return started

    def _follow(self, region: Region, upstream: Region) -> None:
        if self._is_primary(upstream):
            self._mark_primary(upstream)
        context, namespace = self._target(region)
        with self._cluster(context) as api:
            self._require_statefulset(api, context, namespace)
            cm = self._require_configmap(api, context, namespace)
            self._set_role(api, namespace, cm, "standby", primary_host=upstream.db_host)
        self._start_db(context, namespace, wait=True)

    def _start_db(self, context: str, namespace: str, *, wait: bool) -> bool:
        with self._cluster(context) as api:
            self._require_statefulset(api, context, namespace)
            replaced = self._replace_stale_pod(api, namespace)
            scaled = self._scale_db(api, context, namespace, 1)
            cm = self._read_configmap(api, namespace)
            stale = None if cm is None else (cm.metadata.annotations or {}).get(
                STALE_POD_ANNOTATION
            )
        if wait:
            self._wait_pod(
                context, namespace, ready=True, timeout_s=self.start_timeout_s, not_uid=stale
            )
        return scaled or replaced

    def _resync_method(self, context: str, namespace: str) -> str:
        from kubernetes import client

        try:
            with self._cluster(context) as api:
                log = client.CoreV1Api(api).read_namespaced_pod_log(
                    DB_POD, namespace, container=DB_CONTAINER
                )
        except GamedayError as exc:
            logger.warning("resync: cannot read the log of %s (%s): reporting rewind", DB_POD, exc)
            return "rewind"
        found = _RESYNC_LINE.findall(str(log or ""))
        if not found or found[-1] == "none":
            logger.info("resync: %s logged no rewind or base backup: reporting rewind", DB_POD)
            return "rewind"
        return str(found[-1])

    # -- fencing and database roles ------------------------------------------------------

    def _fence_if_other_is_primary(
        self, region: Region, context: str, namespace: str, undo: dict[str, Any]
    ) -> None:
        """Before `region`'s database comes back: role `fenced` when its ConfigMap says
        `primary` and another region's database answers as a primary. Then the pod that still
        runs in the old role (blackhole), if any, is replaced."""
        other = next(
            (o for o in self.lab.regions if o.name != region.name and self._is_primary(o)), None
        )
        if other is None:
            return
        with self._cluster(context) as api:
            cm = self._read_configmap(api, namespace)
            if cm is None:
                raise LabError(
                    f"{region.name}: ConfigMap {DB_CONFIGMAP} is missing in "
                    f"{context}/{namespace} while {other.name} is the primary, so its database "
                    f"cannot be fenced: create it with role=fenced, then run `gameday recover`"
                )
            if (cm.data or {}).get("role") == "primary":
                record = {
                    "region": region.name,
                    "configmap": f"{namespace}/{DB_CONFIGMAP}",
                    "previous_role": "primary",
                    "because": f"{other.name} is the primary",
                    "at": datetime.now(UTC).isoformat(),
                }
                self._set_role(api, namespace, cm, "fenced", fence_note=json.dumps(record))
                undo["fenced"] = record
                logger.warning(
                    "%s: database fenced on revert (%s is the primary): ConfigMap %s/%s "
                    "role=fenced",
                    region.name,
                    other.name,
                    namespace,
                    DB_CONFIGMAP,
                )
            self._replace_stale_pod(api, namespace)
        self._mark_primary(other)

    def _mark_primary(self, region: Region) -> None:
        """Role `primary` on a region whose database answers as one: promotion is SQL, so its
        ConfigMap still says `standby`, and a restart of its pod would rewind it onto the old
        primary. Its running pod is right as it is."""
        if region.driver != "kubernetes" or not region.kube_context or not region.namespace:
            return
        context, namespace = self._target(region)
        with self._cluster(context) as api:
            cm = self._read_configmap(api, namespace)
            if cm is None:
                logger.warning("%s: no ConfigMap %s to mark primary", region.name, DB_CONFIGMAP)
                return
            if self._set_role(api, namespace, cm, "primary", primary_host="", replace=False):
                logger.info("%s: ConfigMap %s role=primary", region.name, DB_CONFIGMAP)

    def _set_role(
        self,
        api: Any,
        namespace: str,
        cm: Any,
        role: str,
        *,
        primary_host: str | None = None,
        replace: bool = True,
        fence_note: str | None = None,
    ) -> bool:
        """Patch the role (and primary_host unless None). With `replace`, the pod running now
        started in the old role: its uid is recorded so that `_replace_stale_pod` deletes it,
        now or in a later call. False when the ConfigMap already says so."""
        from kubernetes import client

        want = {"role": role}
        if primary_host is not None:
            want["primary_host"] = primary_host
        data = cm.data or {}
        if all(data.get(k, "") == v for k, v in want.items()):
            return False
        annotations: dict[str, str | None] = {FENCE_ANNOTATION: fence_note}
        if replace:
            pod = self._read_pod(api, namespace)
            annotations[STALE_POD_ANNOTATION] = None if pod is None else pod.metadata.uid
        client.CoreV1Api(api).patch_namespaced_config_map(
            DB_CONFIGMAP, namespace, {"metadata": {"annotations": annotations}, "data": want}
        )
        return True

    def _replace_stale_pod(self, api: Any, namespace: str) -> bool:
        """Delete pod postgres-0 if it is the one that started before the last role change
        (the StatefulSet recreates it in the new role). True when it deleted it."""
        from kubernetes import client

        cm = self._read_configmap(api, namespace)
        stale = None if cm is None else (cm.metadata.annotations or {}).get(STALE_POD_ANNOTATION)
        if not stale:
            return False
        pod = self._read_pod(api, namespace)
        if pod is None or pod.metadata.uid != stale or pod.metadata.deletion_timestamp:
            return False
        client.CoreV1Api(api).delete_namespaced_pod(DB_POD, namespace)
        logger.info("pod %s/%s deleted: it started before its role changed", namespace, DB_POD)
        return True

    def _scale_db(self, api: Any, context: str, namespace: str, replicas: int) -> bool:
        from chaosk8s.statefulset.actions import scale_statefulset

        sts = self._read_workload(api, "StatefulSet", DB_STATEFULSET, namespace)
        current = 1 if sts is None or sts.spec.replicas is None else sts.spec.replicas
        if current == replicas:
            return False
        _chaos(
            scale_statefulset, DB_STATEFULSET, replicas, ns=namespace, secrets=_secrets(context)
        )
        return True

    def _wait_pod(
        self,
        context: str,
        namespace: str,
        *,
        ready: bool,
        timeout_s: float,
        not_uid: str | None = None,
    ) -> None:
        """Until pod postgres-0 is gone (ready=False), or Ready and not `not_uid`."""
        deadline = self._clock() + timeout_s
        while True:
            with self._cluster(context) as api:
                pod = self._read_pod(api, namespace)
            if not ready and pod is None:
                return
            if ready and pod is not None and pod.metadata.uid != not_uid and _is_ready(pod):
                return
            if self._clock() >= deadline:
                where = f"--context {context} -n {namespace}"
                if ready:
                    raise TargetError(
                        f"pod {namespace}/{DB_POD} is not Ready after {timeout_s:g} s: see "
                        f"`kubectl {where} logs {DB_POD}` (a standby waits for its primary_host)"
                    )
                raise TargetError(
                    f"pod {namespace}/{DB_POD} still exists {timeout_s:g} s after StatefulSet "
                    f"{DB_STATEFULSET} went to 0: see `kubectl {where} describe pod {DB_POD}`"
                )
            self._sleep(self.poll_s)

    def _require_statefulset(self, api: Any, context: str, namespace: str) -> Any:
        sts = self._read_workload(api, "StatefulSet", DB_STATEFULSET, namespace)
        if sts is None:
            raise TargetError(
                f"no StatefulSet {DB_STATEFULSET} in {context}/{namespace}: the database "
                "operations need kind-lab's database (kind-lab/up.sh database)"
            )
        return sts

    def _require_configmap(self, api: Any, context: str, namespace: str) -> Any:
        cm = self._read_configmap(api, namespace)
        if cm is None:
            raise TargetError(
                f"no ConfigMap {DB_CONFIGMAP} in {context}/{namespace}: it holds the database "
                "role; recreate it with kind-lab/up.sh database"
            )
        return cm

    @staticmethod
    def _read_configmap(api: Any, namespace: str) -> Any:
        from kubernetes import client

        core = client.CoreV1Api(api)
        return _or_none(lambda: core.read_namespaced_config_map(DB_CONFIGMAP, namespace))

    @staticmethod
    def _read_pod(api: Any, namespace: str) -> Any:
        from kubernetes import client

        return _or_none(lambda: client.CoreV1Api(api).read_namespaced_pod(DB_POD, namespace))

    # -- blackhole -----------------------------------------------------------------------

    def _revert_blackhole(self, region: Region, undo: dict[str, Any]) -> None:
        """Unpause what this fault paused. The control plane comes back first, so that a
        region whose database must be fenced is fenced through the API before its other
        nodes (and the old primary on them) run again."""
        before = set(undo["paused_before"])
        todo = [c for c in undo["containers"] if c not in before]
        paused = self._paused(todo) if todo else {}
        still = [c for c in todo if paused.get(c)]
        first = [c for c in still if c.endswith("-control-plane")]
        rest = [c for c in still if c not in first]
        fence = bool(region.kube_context and region.namespace)
        fence_first = bool(first) or not rest
        if first:
            self._docker_each("unpause", first)
        if fence and fence_first:
            self._fence_after_blackhole(region, undo)
        if rest:
            self._docker_each("unpause", rest)
        if fence and not fence_first:
            self._fence_after_blackhole(region, undo)

    def _fence_after_blackhole(self, region: Region, undo: dict[str, Any]) -> None:
        context, namespace = self._target(region)
        self._fence_if_other_is_primary(region, context, namespace, undo)


    def _paused(self, containers: Sequence[str]) -> dict[str, bool]:
        result = self._run(["docker", "inspect", "--format", "{{.State.Paused}}", *containers])
        if result.returncode != 0:
            raise TargetError(
                f"docker inspect {' '.join(containers)} failed: {result.stderr.strip()}: "
                "check the region's node_containers in the lab descriptor"
            )
        states = result.stdout.split()
        if len(states) != len(containers):
            raise TargetError(f"docker inspect: unexpected output {result.stdout!r}")
        return {c: s.strip().lower() == "true" for c, s in zip(containers, states, strict=True)}

    def _docker_each(self, verb: str, containers: Sequence[str]) -> None:
        for container in containers:
            result = self._run(["docker", verb, container])
            if result.returncode != 0:
                raise TargetError(f"docker {verb} {container} failed: {result.stderr.strip()}")
            logger.info("blackhole: docker %s %s", verb, container)


# -- helpers ------------------------------------------------------------------------------


def _not_applicable(reason: str) -> dict[str, Any]:
    return {"applicable": False, "reason": reason}


def _check_undo(fault: str, undo: Mapping[str, Any]) -> None:
    if undo.get("applicable") is False:
        raise ConfigError(f"fault '{fault}' is not applicable here: {undo.get('reason')}")
    if undo.get("fault") != fault:
        raise ConfigError(f"undo record is for fault '{undo.get('fault')}', not '{fault}'")


def _or_none(read: Callable[[], Any]) -> Any:
    """The object, or None when the API answers 404."""
    from kubernetes.client.exceptions import ApiException

    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _is_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp:
        return False
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _secrets(context: str) -> dict[str, str]:
    return {"KUBERNETES_CONTEXT": context}


def _replicas(value: str, what: str) -> int:
    try:
        replicas = int(value)
    except ValueError:
        replicas = -1
    if replicas < 0:
        raise TargetError(
            f"{what}: annotation {REPLICAS_ANNOTATION}={value!r} is not a replica count: "
            "set spec.replicas by hand and remove the annotation"
        )
    return replicas


def _chaos(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a chaostoolkit-kubernetes action, mapping its failures onto ours."""
    from chaoslib.exceptions import ActivityFailed

    try:
        return func(*args, **kwargs)
    except ActivityFailed as exc:
        raise TargetError(f"{func.__name__}: {exc}") from exc


def _translate(exc: Exception, where: str) -> GamedayError:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        return TargetError(f"{where}: API server answered {exc.status} {exc.reason}")
    if isinstance(exc, HTTPError):
        return TargetError(f"{where}: API server unreachable ({exc.__class__.__name__})")
    return TargetError(f"{where}: {exc.__class__.__name__}: {exc}")


_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*))?\s*$")


def _equality_terms(selector: str) -> list[tuple[str, str | None, bool]]:
    """(key, value or None for existence, negated) of each equality-based term; set-based
    terms (`in`, `notin`) are left to the server."""
    terms: list[tuple[str, str | None, bool]] = []
    for raw in _split_selector(selector):
        m = _TERM.match(raw)
        if not m:
            continue
        bang, key, op, value = m.groups()
        if op is None:
            terms.append((key, None, bool(bang)))
        else:
            terms.append((key, value, op == "!="))
    return terms


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return parts


def _matches(labels: Mapping[str, str], terms: list[tuple[str, str | None, bool]]) -> bool:
    for key, value, negated in terms:
        present = key in labels if value is None else labels.get(key) == value
        if present == negated:
            return False
    return True
