"""When a reverted region is back: its Deployments rolled out, pod postgres-0 Ready, and its
database answering at its db_host.

Why the revert waits for this (issue 13, item 1): restoring the replica counts only asks for
pods. Scheduling, PostgreSQL's recovery, the readiness period and the service proxy's sync
take seconds more, and the failback's first step reads the old primary's rows at once. The
netns driver's revert also returns only once its database accepts connections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kubernetes.client import ApiClient

from gameday.foundation.descriptor import Region
from gameday.foundation.errors import GamedayError, TargetError
from gameday.foundation.poll import poll_until
from gameday.labs.kubernetes import faults
from gameday.labs.kubernetes.client import Kube, annotations_of, name_of
from gameday.labs.kubernetes.database import (
    DB_CONTAINER,
    DB_POD,
    STALE_POD_ANNOTATION,
    PrimaryCheck,
    is_ready,
    read_configmap,
    read_pod,
    read_statefulset,
)

logger = logging.getLogger(f"chaostoolkit.{__name__}")

# kind-lab/base/postgres/entrypoint.sh logs this and starts nothing: such a pod is never Ready
FENCED_EMPTY_LINE = "gameday-postgres: fenced with an empty volume"


class RegionBack:
    """The bounded wait at the end of a revert."""

    def __init__(
        self,
        kube: Kube,
        *,
        is_primary: PrimaryCheck,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        timeout_s: float,
        poll_s: float,
    ) -> None:
        self.kube = kube
        self.is_primary = is_primary
        self.sleep = sleep
        self.clock = clock
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    def wait(self, region: Region, context: str, namespace: str) -> None:
        """Until every Deployment of `namespace` has rolled out, pod postgres-0 is Ready (a
        new one, when a role change marked the old one stale) and the database answers SQL.
        Not when every node of the region is still cordoned: nothing can be scheduled until
        the cordon's own revert, which waits then. A fenced pod on an empty volume never
        starts PostgreSQL (kind-lab's entrypoint): the wait ends when its log says so."""
        with self.kube.cluster(context) as api:
            if region.node_selector:
                nodes = faults.nodes(api, region.node_selector)
                if nodes and all(cordoned for _, cordoned in nodes):
                    logger.info(
                        "%s: not waiting for its pods: every node is cordoned (the cordon's "
                        "revert waits)",
                        region.name,
                    )
                    return
        pending: list[str] = []

        def back() -> bool:
            with self.kube.cluster(context) as api:
                pending[:], wants_db = _pending(api, namespace)
            if not pending and wants_db and self.is_primary(region) is None:
                pending[:] = [f"its database does not answer at {region.db_host}:{region.db_port}"]
            return not pending

        def error(last: object) -> GamedayError:
            seen = str(last) if isinstance(last, GamedayError) else "; ".join(pending)
            return TargetError(
                f"{region.name} is not back {self.timeout_s:g} s after the revert: "
                f"{seen}: see `kubectl --context {context} -n {namespace} get "
                "pods`, then run `gameday recover`"
            )

        poll_until(
            back,
            timeout_s=self.timeout_s,
            interval_s=self.poll_s,
            error=error,
            retry_on=(TargetError,),  # the API server of a region coming back may blink
            clock=self.clock,
            pause=self.sleep,
        )
        logger.info("%s is back: workloads rolled out, database ready", region.name)


def _pending(api: ApiClient, namespace: str) -> tuple[list[str], bool]:
    """(what is not back yet, whether the database should answer SQL)."""
    from kubernetes import client

    pending = [
        f"Deployment {name_of(d)} {_rollout(d)}"
        for d in client.AppsV1Api(api).list_namespaced_deployment(namespace).items
        if _rollout(d)
    ]
    sts = read_statefulset(api, namespace)
    wanted = 1 if sts is None or sts.spec is None or sts.spec.replicas is None else sts.spec.replicas
    if sts is None or wanted == 0:
        return pending, False
    cm = read_configmap(api, namespace)
    stale = None if cm is None else annotations_of(cm).get(STALE_POD_ANNOTATION)
    pod = read_pod(api, namespace)
    if pod is not None and pod.metadata.uid != stale and is_ready(pod):
        return pending, True
    role = None if cm is None else (cm.data or {}).get("role")
    if role == "fenced" and pod is not None and _says_fenced_empty(api, namespace):
        logger.info("%s/%s: fenced on an empty volume, PostgreSQL not started", namespace, DB_POD)
        return pending, False
    pending.append(f"pod {DB_POD} {'absent' if pod is None else 'not Ready'}")
    return pending, True


def _rollout(deployment: Any) -> str:
    """'' when the Deployment runs its replicas at the current template (what `kubectl
    rollout status` waits for), else what it lacks."""
    spec = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    status = deployment.status
    generation = deployment.metadata.generation if deployment.metadata else None
    observed = status.observed_generation if status else None
    if generation is not None and (observed is None or observed < generation):
        return "(not yet observed)"
    updated = (status.updated_replicas if status else 0) or 0
    available = (status.available_replicas if status else 0) or 0
    total = (status.replicas if status else 0) or 0
    if updated < spec or available < spec or total > spec:
        return f"({available}/{spec} available, {updated} updated, {total} in all)"
    return ""


def _says_fenced_empty(api: ApiClient, namespace: str) -> bool:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        log = client.CoreV1Api(api).read_namespaced_pod_log(
            DB_POD, namespace, container=DB_CONTAINER
        )
    except ApiException:  # a container still being created has no log yet
        return False
    return FENCED_EMPTY_LINE in str(log or "")
