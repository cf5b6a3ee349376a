"""kind-lab's database as the driver sees it: a role in a ConfigMap, read when the pod starts.

The role lives in ConfigMap `gameday-db` (keys `role`, `primary_host`) and is read when pod
`postgres-0` of StatefulSet `postgres` starts (kind-lab/base/postgres/entrypoint.sh), so
every operation is "set the role, then stop or start the pod".

Fencing on revert: reverting scale-to-zero or blackhole on a region whose ConfigMap says
`primary`, while another region's database answers as a primary or the drill record
(drill.json) names a promotion of another region, first sets the role to `fenced` (the
entrypoint then starts PostgreSQL read-only, with no upstream), then lets the replicas come
back or replaces the still-running pod. A pod that started before its role changed is named
in the annotation `gameday.test/stale-pod` and deleted, so a second call finishes a fence
(or a role change) that failed half-way.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient

from gameday.foundation import drill_state
from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.errors import GamedayError, LabError, TargetError
from gameday.foundation.poll import poll_until
from gameday.labs.kubernetes.client import Kube, annotations_of, or_none

logger = logging.getLogger(f"chaostoolkit.{__name__}")

DB_STATEFULSET = "postgres"
DB_POD = f"{DB_STATEFULSET}-0"
DB_CONTAINER = "postgres"
DB_CONFIGMAP = "gameday-db"
FENCE_ANNOTATION = "gameday.test/fenced"
STALE_POD_ANNOTATION = "gameday.test/stale-pod"
_RESYNC_LINE = re.compile(r"gameday-postgres: resync=(rewind|basebackup|none)\b")

# What a region's database answers at its db_host: True a primary (not in recovery), False
# a standby or fenced (in recovery), None no answer. Falsy unless it is a primary.
PrimaryCheck = Callable[[Region], "bool | None"]


def sql_is_primary(lab: Lab) -> PrimaryCheck:
    """The default check, as the netns lab's: `postgres.is_primary` (the region's database
    answers at its db_host and is not in recovery)."""
    from gameday import postgres

    return lambda region: postgres.is_primary(lab, region)


class Database:
    """Roles, fencing and the failback's database operations on kind-lab's StatefulSet."""

    def __init__(
        self,
        lab: Lab,
        kube: Kube,
        *,
        is_primary: PrimaryCheck,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        stop_timeout_s: float,
        start_timeout_s: float,
        poll_s: float,
    ) -> None:
        self.lab = lab
        self.kube = kube
        self.is_primary = is_primary
        self.sleep = sleep
        self.clock = clock
        self.stop_timeout_s = stop_timeout_s
        self.start_timeout_s = start_timeout_s
        self.poll_s = poll_s

    # -- fencing -------------------------------------------------------------------------

    def fence_if_other_is_primary(
        self, region: Region, context: str, namespace: str, undo: dict[str, Any]
    ) -> None:
        """Before `region`'s database comes back: role `fenced` when its ConfigMap says
        `primary` and another region is, or may be, the primary (see `other_primary`). Then
        the pod that still runs in the old role (blackhole), if any, is replaced."""
        found = self.other_primary(region)
        if found is None:
            return
        other, because = found
        with self.kube.cluster(context) as api:
            cm = read_configmap(api, namespace)
            if cm is None:
                raise LabError(
                    f"{region.name}: ConfigMap {DB_CONFIGMAP} is missing in "
                    f"{context}/{namespace} while {because}, so its database "
                    f"cannot be fenced: create it with role=fenced, then run `gameday recover`"
                )
            if (cm.data or {}).get("role") == "primary":
                record = {
                    "region": region.name,
                    "configmap": f"{namespace}/{DB_CONFIGMAP}",
                    "previous_role": "primary",
                    "because": because,
                    "at": datetime.now(UTC).isoformat(),
                }
                self.set_role(api, namespace, cm, "fenced", fence_note=json.dumps(record))
                undo["fenced"] = record
                logger.warning(
                    "%s: database fenced on revert (%s): ConfigMap %s/%s role=fenced",
                    region.name,
                    because,
                    namespace,
                    DB_CONFIGMAP,
                )
            replace_stale_pod(api, namespace)
        try:
            self.mark_primary(other)
        except GamedayError as exc:
            # the fence is what keeps two primaries apart; the other region's label can wait
            logger.warning("%s: not marked primary now (%s)", other.name, exc)

    def other_primary(self, region: Region) -> tuple[Region, str] | None:
        """(the other primary, why) unless we know that no other primary exists: the drill
        record names a promotion of another region (written before pg_promote() is sent, so
        an interrupted run or a connection blip cannot hide it), or another region's database
        answers as a primary. As the netns driver's `_other_serves_or_was_promoted`."""
        others = [o for o in self.lab.regions if o.name != region.name]
        state = drill_state.read(self.lab.path) if self.lab.path else None
        promoted = state.promoted_other_than(region.name) if state is not None else None
        if promoted:
            named = next((o for o in others if o.name == promoted), None)
            if named is not None or others:
                other = named or others[0]
                return other, f"drill.json records the promotion of {promoted}"
        for other in others:
            if self.is_primary(other):
                return other, f"{other.name} is the primary"
        return None

    def mark_primary(self, region: Region) -> None:
        """Role `primary` on a region whose database answers as one: promotion is SQL, so its
        ConfigMap still says `standby`, and a restart of its pod would rewind it onto the old
        primary. Its running pod is right as it is."""
        if region.driver != "kubernetes" or not region.kube_context or not region.namespace:
            return
        context, namespace = self.kube.target(region)
        with self.kube.cluster(context) as api:
            cm = read_configmap(api, namespace)
            if cm is None:
                logger.warning("%s: no ConfigMap %s to mark primary", region.name, DB_CONFIGMAP)
                return
            if self.set_role(api, namespace, cm, "primary", primary_host="", replace=False):
                logger.info("%s: ConfigMap %s role=primary", region.name, DB_CONFIGMAP)

    def set_role(
        self,
        api: ApiClient,
        namespace: str,
        cm: Any,
        role: str,
        *,
        primary_host: str | None = None,
        replace: bool = True,
        fence_note: str | None = None,
    ) -> bool:
        """Patch the role (and primary_host unless None). With `replace`, the pod running now
        started in the old role: its uid is recorded so that `replace_stale_pod` deletes it,
        now or in a later call. False when the ConfigMap already says so."""
        from kubernetes import client

        want = {"role": role}
        if primary_host is not None:
            want["primary_host"] = primary_host
        data = cm.data or {}
        if all(data.get(k, "") == v for k, v in want.items()):
            return False
        notes: dict[str, str | None] = {FENCE_ANNOTATION: fence_note}
        if replace:
            pod = read_pod(api, namespace)
            notes[STALE_POD_ANNOTATION] = None if pod is None else pod.metadata.uid
        client.CoreV1Api(api).patch_namespaced_config_map(
            DB_CONFIGMAP, namespace, {"metadata": {"annotations": notes}, "data": want}
        )
        return True

    # -- the DatabaseOps protocol (failback) ---------------------------------------------

    def stop(self, region: Region) -> None:
        """Scale StatefulSet `postgres` to 0 (its preStop hook stops PostgreSQL fast) and wait
        until pod `postgres-0` is gone, at most `stop_timeout_s`."""
        context, namespace = self.kube.target(region)
        with self.kube.cluster(context) as api:
            require_statefulset(api, context, namespace)
            scale_db(api, namespace, 0)
        self.wait_pod(context, namespace, ready=False, timeout_s=self.stop_timeout_s)
        logger.info("database of %s stopped (%s/%s scaled to 0)", region.name, namespace, DB_POD)

    def resync(self, region: Region, source: Region) -> str:
        """Role `standby` of `source`'s db_host, then start the pod: kind-lab's entrypoint
        rewinds the old data onto the source's timeline at start (or base-backs up when rewind
        fails) and logs which. Returns "rewind" or "basebackup" from that log line; "rewind"
        when the log does not say (a volume that already followed the source needs neither)."""
        self.follow(region, source)
        context, namespace = self.kube.target(region)
        method = self.resync_method(context, namespace)
        logger.info("database of %s resynced from %s by %s", region.name, source.name, method)
        return method

    def start_standby(self, region: Region, upstream: Region) -> None:
        """Role `standby` of `upstream`'s db_host, StatefulSet at 1, and wait until the pod is
        Ready, at most `start_timeout_s`. A pod that started in another role is replaced."""
        self.follow(region, upstream)
        logger.info("database of %s streams from %s", region.name, upstream.name)

    def start(self, region: Region) -> bool:
        """Scale StatefulSet `postgres` to 1 when it is at 0, in the role its ConfigMap names.
        True when it started something; False (and no change) when it was already up."""
        context, namespace = self.kube.target(region)
        with self.kube.cluster(context) as api:
            cm = read_configmap(api, namespace)
            role = None if cm is None else (cm.data or {}).get("role")
        # a fenced pod on an empty volume never gets Ready: nothing to wait for then
        started = self.start_db(context, namespace, wait=role != "fenced")
        if started:
            logger.info("database of %s started (role %s)", region.name, role)
        return started

    def follow(self, region: Region, upstream: Region) -> None:
        if self.is_primary(upstream):
            self.mark_primary(upstream)
        context, namespace = self.kube.target(region)
        with self.kube.cluster(context) as api:
            require_statefulset(api, context, namespace)
            cm = require_configmap(api, context, namespace)
            self.set_role(api, namespace, cm, "standby", primary_host=upstream.db_host)
        self.start_db(context, namespace, wait=True)

    def start_db(self, context: str, namespace: str, *, wait: bool) -> bool:
        with self.kube.cluster(context) as api:
            require_statefulset(api, context, namespace)
            replaced = replace_stale_pod(api, namespace)
            scaled = scale_db(api, namespace, 1)
            cm = read_configmap(api, namespace)
            stale = None if cm is None else annotations_of(cm).get(STALE_POD_ANNOTATION)
        if wait:
            self.wait_pod(
                context, namespace, ready=True, timeout_s=self.start_timeout_s, not_uid=stale
            )
        return scaled or replaced

    def resync_method(self, context: str, namespace: str) -> str:
        from kubernetes import client

        try:
            with self.kube.cluster(context) as api:
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

    # -- waits ---------------------------------------------------------------------------

    def wait_pod(
        self,
        context: str,
        namespace: str,
        *,
        ready: bool,
        timeout_s: float,
        not_uid: str | None = None,
    ) -> None:
        """Until pod postgres-0 is gone (ready=False), or Ready and not `not_uid`. Sleeps with
        the driver's `sleep`, not the interruptible pause: these waits also run in rollbacks,
        which must finish after the interrupt that started them."""

        def done() -> bool:
            with self.kube.cluster(context) as api:
                pod = read_pod(api, namespace)
            if not ready:
                return pod is None
            return pod is not None and pod.metadata.uid != not_uid and is_ready(pod)

        def error(_: object) -> GamedayError:
            where = f"--context {context} -n {namespace}"
            if ready:
                return TargetError(
                    f"pod {namespace}/{DB_POD} is not Ready after {timeout_s:g} s: see "
                    f"`kubectl {where} logs {DB_POD}` (a standby waits for its primary_host)"
                )
            return TargetError(
                f"pod {namespace}/{DB_POD} still exists {timeout_s:g} s after StatefulSet "
                f"{DB_STATEFULSET} went to 0: see `kubectl {where} describe pod {DB_POD}`"
            )

        poll_until(
            done,
            timeout_s=timeout_s,
            interval_s=self.poll_s,
            error=error,
            clock=self.clock,
            pause=self.sleep,
        )


# -- reads and writes of the database's objects ---------------------------------------------


def replace_stale_pod(api: ApiClient, namespace: str) -> bool:
    """Delete pod postgres-0 if it is the one that started before the last role change (the
    StatefulSet recreates it in the new role). True when it deleted it."""
    from kubernetes import client

    cm = read_configmap(api, namespace)
    stale = None if cm is None else annotations_of(cm).get(STALE_POD_ANNOTATION)
    if not stale:
        return False
    pod = read_pod(api, namespace)
    if pod is None or pod.metadata.uid != stale or pod.metadata.deletion_timestamp:
        return False
    client.CoreV1Api(api).delete_namespaced_pod(DB_POD, namespace)
    logger.info("pod %s/%s deleted: it started before its role changed", namespace, DB_POD)
    return True


def scale_db(api: ApiClient, namespace: str, replicas: int) -> bool:
    from kubernetes import client

    sts = read_statefulset(api, namespace)
    current = 1 if sts is None or sts.spec is None or sts.spec.replicas is None else sts.spec.replicas
    if current == replicas:
        return False
    client.AppsV1Api(api).patch_namespaced_stateful_set(
        DB_STATEFULSET, namespace, {"spec": {"replicas": replicas}}
    )
    return True


def require_statefulset(api: ApiClient, context: str, namespace: str) -> Any:
    sts = read_statefulset(api, namespace)
    if sts is None:
        raise TargetError(
            f"no StatefulSet {DB_STATEFULSET} in {context}/{namespace}: the database "
            "operations need kind-lab's database (kind-lab/up.sh database)"
        )
    return sts


def require_configmap(api: ApiClient, context: str, namespace: str) -> Any:
    cm = read_configmap(api, namespace)
    if cm is None:
        raise TargetError(
            f"no ConfigMap {DB_CONFIGMAP} in {context}/{namespace}: it holds the database "
            "role; recreate it with kind-lab/up.sh database"
        )
    return cm


def read_statefulset(api: ApiClient, namespace: str) -> Any:
    from kubernetes import client

    apps = client.AppsV1Api(api)
    return or_none(lambda: apps.read_namespaced_stateful_set(DB_STATEFULSET, namespace))


def read_configmap(api: ApiClient, namespace: str) -> Any:
    from kubernetes import client

    core = client.CoreV1Api(api)
    return or_none(lambda: core.read_namespaced_config_map(DB_CONFIGMAP, namespace))


def read_pod(api: ApiClient, namespace: str) -> Any:
    from kubernetes import client

    core = client.CoreV1Api(api)
    return or_none(lambda: core.read_namespaced_pod(DB_POD, namespace))


def is_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp:
        return False
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)
