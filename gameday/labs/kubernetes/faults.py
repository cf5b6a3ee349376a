"""The faults made through the API: scale-to-zero, cordon and block-egress.

Each is written so that revert can restore exactly what was there: scale-to-zero saves the
previous count on the object before it changes it, cordon records which nodes were already
unschedulable, block-egress creates a policy of our own and deletes only that.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient

from gameday.foundation.errors import TargetError
from gameday.labs.kubernetes.client import Kube, annotations_of, labels_of, name_of, or_none

logger = logging.getLogger(f"chaostoolkit.{__name__}")

REPLICAS_ANNOTATION = "gameday.test/previous-replicas"
EGRESS_POLICY = "gameday-block-egress"
MANAGED_BY = {"app.kubernetes.io/managed-by": "gameday"}

# (kind, name, replicas to restore, replicas running now)
Workload = tuple[str, str, int, int]


# -- scale-to-zero ---------------------------------------------------------------------------


def workloads(api: ApiClient, namespace: str, *, with_annotation: bool = True) -> list[Workload]:
    """(kind, name, replicas to restore, replicas now running) of each workload.

    With the annotation, 'replicas to restore' is the count saved before a scale to zero that
    was never reverted (a crashed run), so a second plan does not record 0."""
    from kubernetes import client

    apps = client.AppsV1Api(api)
    found: list[Workload] = []
    listed: list[tuple[str, Any]] = [
        ("Deployment", apps.list_namespaced_deployment(namespace).items),
        ("StatefulSet", apps.list_namespaced_stateful_set(namespace).items),
    ]
    for kind, items in listed:
        for obj in items:
            spec = obj.spec.replicas if obj.spec.replicas is not None else 1
            saved = annotations_of(obj).get(REPLICAS_ANNOTATION)
            if with_annotation and saved is not None:
                spec = replicas_of(saved, f"{kind} '{name_of(obj)}'")
            running = (obj.status.replicas if obj.status else 0) or 0
            found.append((kind, name_of(obj), spec, running))
    return sorted(found)


def scale_to_zero(kube: Kube, context: str, namespace: str, planned: list[dict[str, Any]]) -> None:
    with kube.cluster(context) as api:
        for w in planned:
            kind, wname = w["kind"], w["name"]
            obj = read_workload(api, kind, wname, namespace)
            if obj is None:
                logger.warning("scale-to-zero: %s %s/%s gone, skipped", kind, namespace, wname)
                continue
            # Save the count on the object before changing it: a crash between the two
            # leaves an annotated object at its old count, which revert handles.
            if REPLICAS_ANNOTATION not in annotations_of(obj):
                annotate(api, kind, wname, namespace, str(w["replicas"]))
            scale(api, kind, wname, namespace, 0)
            logger.info("scale-to-zero: %s %s/%s 0 (was %s)", kind, namespace, wname, w["replicas"])


def restore_replicas(
    kube: Kube, context: str, namespace: str, planned: list[dict[str, Any]]
) -> None:
    with kube.cluster(context) as api:
        for w in planned:
            kind, wname = w["kind"], w["name"]
            obj = read_workload(api, kind, wname, namespace)
            saved = None if obj is None else annotations_of(obj).get(REPLICAS_ANNOTATION)
            if saved is None:
                continue  # never scaled by us, or already restored
            replicas = replicas_of(saved, f"{kind} '{wname}'")
            scale(api, kind, wname, namespace, replicas)
            annotate(api, kind, wname, namespace, None)
            logger.info("scale-to-zero reverted: %s %s/%s %s", kind, namespace, wname, replicas)


def scale_effective(api: ApiClient, namespace: str, planned: list[dict[str, Any]]) -> bool:
    """Every planned workload at 0, in its spec and in what runs."""
    current = {
        (k, n): (spec, status)
        for k, n, spec, status in workloads(api, namespace, with_annotation=False)
    }
    for w in planned:
        spec, status = current.get((w["kind"], w["name"]), (0, 0))
        if spec != 0 or status:
            return False
    return True


def scale(api: ApiClient, kind: str, wname: str, namespace: str, replicas: int) -> None:
    """The patch chaostoolkit-kubernetes's scale_deployment / scale_statefulset send."""
    from kubernetes import client

    apps = client.AppsV1Api(api)
    body = {"spec": {"replicas": replicas}}
    if kind == "Deployment":
        apps.patch_namespaced_deployment(wname, namespace, body)
    else:
        apps.patch_namespaced_stateful_set(wname, namespace, body)


def read_workload(api: ApiClient, kind: str, wname: str, namespace: str) -> Any:
    from kubernetes import client

    apps = client.AppsV1Api(api)
    if kind == "Deployment":
        return or_none(lambda: apps.read_namespaced_deployment(wname, namespace))
    return or_none(lambda: apps.read_namespaced_stateful_set(wname, namespace))


def annotate(api: ApiClient, kind: str, wname: str, namespace: str, value: str | None) -> None:
    from kubernetes import client

    apps = client.AppsV1Api(api)
    body = {"metadata": {"annotations": {REPLICAS_ANNOTATION: value}}}
    if kind == "Deployment":
        apps.patch_namespaced_deployment(wname, namespace, body)
    else:
        apps.patch_namespaced_stateful_set(wname, namespace, body)


def replicas_of(value: str, what: str) -> int:
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


# -- cordon ----------------------------------------------------------------------------------


def nodes(api: ApiClient, selector: str | None) -> list[tuple[str, bool]]:
    """(name, unschedulable) of the nodes matching `selector`. The server filters; the
    equality terms are checked again here so that a server (or mock) that ignores
    labelSelector cannot make us cordon another region's nodes."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    items = (core.list_node(label_selector=selector) if selector else core.list_node()).items
    terms = _equality_terms(selector or "")
    return sorted(
        (name_of(n), bool(n.spec.unschedulable) if n.spec else False)
        for n in items
        if _matches(labels_of(n), terms)
    )


def cordon(kube: Kube, context: str, names: list[str]) -> None:
    from kubernetes import client

    with kube.cluster(context) as api:
        for node in names:
            client.CoreV1Api(api).patch_node(node, {"spec": {"unschedulable": True}})
            logger.info("cordon: node %s unschedulable", node)


def uncordon(kube: Kube, context: str, names: list[str]) -> None:
    from kubernetes import client

    with kube.cluster(context) as api:
        present = {n for n, _ in nodes(api, None)}
        for node in names:
            if node not in present:
                logger.warning("cordon revert: node %s is gone, skipped", node)
                continue
            client.CoreV1Api(api).patch_node(node, {"spec": {"unschedulable": False}})
            logger.info("cordon reverted: node %s schedulable", node)


# -- block-egress ----------------------------------------------------------------------------


def block_egress(
    kube: Kube, context: str, namespace: str, policy: str, restart: list[str]
) -> None:
    """Our NetworkPolicy, then the pods of the `restart` Deployments deleted (their
    Deployments recreate them). Why the restart: kind's NetworkPolicy enforcement
    (kube-network-policies in kindnet, kind v0.30.0) accepts `ct state established,related`,
    and the storefront keeps one database connection open, so without it /healthz stays ok.
    Only when this call creates the policy: pods started after it never had a connection."""
    from kubernetes import client

    # a plain dict, as chaostoolkit-kubernetes sends it (the client serialises it as is)
    spec: Any = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": policy, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": []},
    }
    with kube.cluster(context) as api:
        if read_policy(api, namespace, policy) is not None:
            logger.info("block-egress: NetworkPolicy %s/%s already in place", namespace, policy)
            return
        client.NetworkingV1Api(api).create_namespaced_network_policy(namespace, spec)
        logger.info("block-egress: NetworkPolicy %s/%s in place", namespace, policy)
        for deployment in restart:
            restart_pods(api, namespace, deployment)


def restart_pods(api: ApiClient, namespace: str, deployment: str) -> list[str]:
    """Delete the running pods of a Deployment (by its selector's matchLabels), so that the
    ones it creates next open their connections under the policy. Returns their names."""
    from kubernetes import client

    found = read_workload(api, "Deployment", deployment, namespace)
    labels = (found.spec.selector.match_labels if found is not None else None) or {}
    if not labels:
        logger.warning("block-egress: Deployment %s/%s has no matchLabels, not restarted",
                       namespace, deployment)
        return []
    core = client.CoreV1Api(api)
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    pods = [
        p
        for p in core.list_namespaced_pod(namespace, label_selector=selector).items
        if _matches(labels_of(p), _equality_terms(selector))
        and not (p.metadata and p.metadata.deletion_timestamp)
    ]
    for pod in pods:
        core.delete_namespaced_pod(name_of(pod), namespace)
    if pods:
        logger.info(
            "block-egress: restarted %s of Deployment %s/%s (established connections "
            "outlive the policy)",
            ", ".join(name_of(p) for p in pods),
            namespace,
            deployment,
        )
    return [name_of(p) for p in pods]


def serving(url: str, timeout_s: float = 1.0) -> bool:
    """True when the storefront at `url` answers /healthz with 200 "ok": it can take an
    order (its database is reachable and writable), as the global DNS check asks."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(f"{url.rstrip('/')}/healthz", timeout=timeout_s) as response:
            return bool(response.status == 200 and response.read().strip() == b"ok")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def unblock_egress(kube: Kube, context: str, namespace: str, policy: str) -> None:
    from kubernetes import client

    with kube.cluster(context) as api:
        if read_policy(api, namespace, policy) is not None:
            client.NetworkingV1Api(api).delete_namespaced_network_policy(policy, namespace)
        logger.info("block-egress reverted: NetworkPolicy %s/%s removed", namespace, policy)


def read_policy(api: ApiClient, namespace: str, policy: str) -> Any:
    from kubernetes import client

    net = client.NetworkingV1Api(api)
    return or_none(lambda: net.read_namespaced_network_policy(policy, namespace))


# -- label selectors -------------------------------------------------------------------------

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
    parts: list[str] = []
    depth, current = 0, ""
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


def _matches(found: Mapping[str, str], terms: list[tuple[str, str | None, bool]]) -> bool:
    for key, value, negated in terms:
        present = key in found if value is None else found.get(key) == value
        if present == negated:
            return False
    return True
