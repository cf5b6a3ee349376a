"""KubernetesDriver: the `LabDriver` of a region that lives in a Kubernetes cluster.

It plans, injects, checks and reverts the four region faults (faults.py for the API ones,
blackhole.py for `docker pause`), fences the region's database on revert when another region
is the primary, and runs the failback's database operations (database.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gameday.errors import ConfigError, GamedayError, LabError, TargetError
from gameday.labs.descriptor import Lab, Region
from gameday.labs.kubernetes import database, faults
from gameday.labs.kubernetes.blackhole import Docker, Runner, control_planes_first, still_paused_by_us
from gameday.labs.kubernetes.client import (
    DEFAULT_REQUEST_TIMEOUT_S,
    Kube,
    allowed_contexts_from,
    request_timeout_from,
)
from gameday.labs.kubernetes.database import DB_STATEFULSET, Database, PrimaryCheck, sql_is_primary
from gameday.labs.kubernetes.readiness import RegionBack
from gameday.poll import poll_until

logger = logging.getLogger(f"chaostoolkit.{__name__}")

API_FAULTS = ("scale-to-zero", "cordon", "block-egress")

if TYPE_CHECKING:
    from gameday.labs.driver import DriverFactory


class KubernetesDriver:
    """Breaks and restores a region that lives in a Kubernetes cluster (see the package doc)."""

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
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        api_back_timeout_s: float = 60.0,
    ) -> None:
        self.lab = lab
        self.kube = Kube(
            tuple(allowed_contexts) if allowed_contexts is not None else allowed_contexts_from(),
            request_timeout_s=request_timeout_s,
            credentials=dict(lab.kube_credentials),
        )
        self.docker = Docker(runner)
        # regions whose nodes this driver paused (blackhole), so that is_effective of an API
        # fault skips the paused API server without asking docker on every poll
        self._paused_by_us: set[str] = set()
        self._sleep = sleep
        self._clock = clock
        self._poll_s = poll_s
        self.api_back_timeout_s = api_back_timeout_s
        probe = is_primary or sql_is_primary(lab)
        self.back = RegionBack(
            self.kube,
            is_primary=probe,
            sleep=sleep,
            clock=clock,
            timeout_s=start_timeout_s,
            poll_s=poll_s,
        )
        self.db = Database(
            lab,
            self.kube,
            is_primary=probe,
            sleep=sleep,
            clock=clock,
            stop_timeout_s=stop_timeout_s,
            start_timeout_s=start_timeout_s,
            poll_s=poll_s,
        )

    @classmethod
    def from_configuration(
        cls, lab: Lab, configuration: Mapping[str, Any] | None = None
    ) -> KubernetesDriver:
        """The registry's factory (gameday.labs.driver)."""
        return cls(
            lab,
            allowed_contexts=allowed_contexts_from(configuration),
            request_timeout_s=request_timeout_from(configuration),
        )

    @property
    def allowed_contexts(self) -> tuple[str, ...]:
        return self.kube.allowed_contexts

    # -- the Driver protocol -------------------------------------------------------------

    def plan(self, fault: str, region: Region) -> dict[str, Any]:
        if fault == "blackhole":
            if not region.node_containers:
                return _not_applicable(
                    "the region lists no node_containers (blackhole pauses the Docker "
                    "containers that are its nodes: kind only)"
                )
            states = self.docker.paused(region.node_containers)
            return {
                "fault": fault,
                "region": region.name,
                "containers": list(region.node_containers),
                "paused_before": [c for c in region.node_containers if states[c]],
            }
        if fault not in API_FAULTS:
            return _not_applicable(f"the kubernetes driver has no fault '{fault}'")
        context, namespace = self.kube.target(region)
        paused = self._paused_nodes(region)
        if paused:
            raise ConfigError(
                f"{fault} on {region.name}: its node containers are paused "
                f"({', '.join(paused)}), so its API server cannot answer: list blackhole last "
                "(e.g. faults=scale-to-zero,blackhole), or `docker unpause` them"
            )
        base = {"fault": fault, "region": region.name, "context": context, "namespace": namespace}
        if fault == "scale-to-zero":
            with self.kube.cluster(context) as api:
                planned = [
                    {"kind": kind, "name": name, "replicas": replicas}
                    for kind, name, replicas, _ in faults.workloads(api, namespace)
                ]
            return {**base, "workloads": planned}
        if fault == "cordon":
            if not region.node_selector:
                return _not_applicable("the region has no node_selector in the lab descriptor")
            with self.kube.cluster(context) as api:
                nodes = faults.nodes(api, region.node_selector)
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
        with self.kube.cluster(context) as api:
            running = [
                name
                for kind, name, replicas, _ in faults.workloads(api, namespace)
                if kind == "Deployment" and replicas > 0
            ]
        return {**base, "policy": faults.EGRESS_POLICY, "restart": running}

    def inject(self, fault: str, region: Region, undo: dict[str, Any]) -> None:
        _check_undo(fault, undo)
        if fault == "blackhole":
            before = set(undo["paused_before"])
            todo = [c for c in undo["containers"] if c not in before]
            if todo:
                self.docker.each("pause", todo)
            self._paused_by_us.add(region.name)
            return
        context, namespace = self.kube.undo_target(undo)
        if fault == "scale-to-zero":
            faults.scale_to_zero(self.kube, context, namespace, undo["workloads"])
        elif fault == "cordon":
            names = [n["name"] for n in undo["nodes"] if not n["was_unschedulable"]]
            faults.cordon(self.kube, context, names)
        elif fault == "block-egress":
            faults.block_egress(
                self.kube, context, namespace, undo["policy"], undo.get("restart", [])
            )

    def is_effective(self, fault: str, region: Region, undo: dict[str, Any]) -> bool:
        _check_undo(fault, undo)
        if fault == "blackhole":
            return all(self.docker.paused(undo["containers"]).values())
        context, namespace = self.kube.undo_target(undo)
        if region.name in self._paused_by_us:
            # injected before blackhole paused the region: nothing of it runs now, and its
            # API server would not answer the check (it would hold the drill until timeout)
            logger.debug("%s on %s: API check skipped, its nodes are paused", fault, region.name)
            return True
        try:
            with self.kube.cluster(context) as api:
                if fault == "scale-to-zero":
                    return faults.scale_effective(api, namespace, undo["workloads"])
                if fault == "cordon":
                    state = dict(faults.nodes(api, None))
                    return all(state.get(n["name"], True) for n in undo["nodes"])
                if faults.read_policy(api, namespace, undo["policy"]) is None:
                    return False
        except TargetError:
            # paused by someone else (docker asked only now, not on every poll)
            paused = self._paused_nodes(region)
            if not paused:
                raise
            logger.info("%s on %s: API check skipped, its nodes are paused (%s)",
                        fault, region.name, ", ".join(paused))
            return True
        # the effect, not the object: the region's storefront cannot take an order
        return not faults.serving(region.storefront_url)

    def revert(self, fault: str, region: Region, undo: dict[str, Any]) -> None:
        if undo.get("applicable") is False:
            return
        _check_undo(fault, undo)
        if fault == "blackhole":
            self._revert_blackhole(region, undo)
            return
        context, namespace = self.kube.undo_target(undo)
        if fault == "scale-to-zero":
            if any(
                w["kind"] == "StatefulSet" and w["name"] == DB_STATEFULSET
                for w in undo["workloads"]
            ):
                self.db.fence_if_other_is_primary(region, context, namespace, undo)
            faults.restore_replicas(self.kube, context, namespace, undo["workloads"])
            self.back.wait(region, context, namespace)
        elif fault == "cordon":
            names = [n["name"] for n in undo["nodes"] if not n["was_unschedulable"]]
            faults.uncordon(self.kube, context, names)
            self.back.wait(region, context, namespace)
        elif fault == "block-egress":
            faults.unblock_egress(self.kube, context, namespace, undo["policy"])

    def _revert_blackhole(self, region: Region, undo: dict[str, Any]) -> None:
        """Unpause what this fault paused. The control plane comes back first, so that a
        region whose database must be fenced is fenced through the API before its other
        nodes (and the old primary on them) run again."""
        self._paused_by_us.discard(region.name)
        still = still_paused_by_us(self.docker, undo["containers"], undo["paused_before"])
        first, rest = control_planes_first(still)
        fence = bool(region.kube_context and region.namespace)
        fence_first = bool(first) or not rest
        if first:
            self.docker.each("unpause", first)
            if fence:
                self._wait_api(region)
        if fence and fence_first:
            self._fence_after_blackhole(region, undo)
        if rest:
            self.docker.each("unpause", rest)
        if fence and not fence_first:
            self._fence_after_blackhole(region, undo)
        if fence and still:
            context, namespace = self.kube.target(region)
            self.back.wait(region, context, namespace)

    def _paused_nodes(self, region: Region) -> list[str]:
        """The region's node containers that are paused now. Empty when it lists none, or
        when docker cannot tell: the API calls then go ahead, bounded by their timeout."""
        if not region.node_containers:
            return []
        try:
            paused = self.docker.paused(region.node_containers)
        except GamedayError as exc:
            logger.debug("%s: cannot tell whether its nodes are paused: %s", region.name, exc)
            return []
        return [c for c, p in paused.items() if p]

    def _wait_api(self, region: Region) -> None:
        """After the unpause, until the region's API server answers again (bounded)."""
        context, _ = self.kube.target(region)

        def error(_: object) -> GamedayError:
            return TargetError(
                f"{region.name}: the API server of context '{context}' does not answer "
                f"{self.api_back_timeout_s:g} s after `docker unpause`: see "
                f"`docker logs {region.name}-control-plane`, then run `gameday recover`"
            )

        poll_until(
            lambda: self.kube.answers(context),
            timeout_s=self.api_back_timeout_s,
            interval_s=self._poll_s,
            error=error,
            clock=self._clock,
            pause=self._sleep,
        )

    def _fence_after_blackhole(self, region: Region, undo: dict[str, Any]) -> None:
        context, namespace = self.kube.target(region)
        self.db.fence_if_other_is_primary(region, context, namespace, undo)

    # -- the DatabaseOps protocol (failback) ---------------------------------------------

    def stop_database(self, region: Region) -> None:
        self.db.stop(region)

    def resync_database(self, region: Region, source: Region) -> str:
        return self.db.resync(region, source)

    def start_standby(self, region: Region, upstream: Region) -> None:
        self.db.start_standby(region, upstream)

    def start_database(self, region: Region) -> bool:
        return self.db.start(region)

    def failback_unsupported(self, region: Region) -> str | None:
        """The fencing contract: StatefulSet `postgres` whose role lives in ConfigMap
        `gameday-db` (kind-lab has both); a user's own database has neither."""
        context, namespace = self.kube.target(region)
        with self.kube.cluster(context) as api:
            missing = [what for what, found in (
                (f"StatefulSet {database.DB_STATEFULSET}", database.read_statefulset(api, namespace)),
                (f"ConfigMap {database.DB_CONFIGMAP}", database.read_configmap(api, namespace)),
            ) if found is None]
        if not missing:
            return None
        return (f"gameday's failback needs the lab's fencing contract ({' and '.join(missing)} "
                f"missing in {context}/{namespace}): fail back with your own runbook "
                "(experiments/failback-autonomous.json with your switchover as "
                "promotion_command)")


def _not_applicable(reason: str) -> dict[str, Any]:
    return {"applicable": False, "reason": reason}


def _check_undo(fault: str, undo: Mapping[str, Any]) -> None:
    if undo.get("applicable") is False:
        raise ConfigError(f"fault '{fault}' is not applicable here: {undo.get('reason')}")
    if undo.get("fault") != fault:
        raise ConfigError(f"undo record is for fault '{undo.get('fault')}', not '{fault}'")


if TYPE_CHECKING:
    # mypy checks here that the registry's factory makes a complete LabDriver
    # (Driver and DatabaseOps, start_database included)
    _FACTORY: DriverFactory = KubernetesDriver.from_configuration
