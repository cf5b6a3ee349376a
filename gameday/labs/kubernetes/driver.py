"""KubernetesDriver: the `LabDriver` of a region that lives in a Kubernetes cluster.

It plans, injects, checks and reverts the four region faults (faults.py for the API ones,
blackhole.py for `docker pause`), fences the region's database on revert when another region
is the primary, and runs the failback's database operations (database.py).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kubernetes.client import ApiClient

from gameday.foundation.descriptor import Lab, Region
from gameday.foundation.driver import FaultOps, FaultTable
from gameday.foundation.errors import ConfigError, GamedayError, LabError, TargetError
from gameday.foundation.faults import Fault, not_applicable
from gameday.foundation.poll import poll_until
from gameday.foundation.settings import DEFAULT_KUBE_TIMEOUT_S, GamedaySettings, kube_access
from gameday.labs.kubernetes import database, faults
from gameday.labs.kubernetes.blackhole import Docker, Runner, control_planes_first, still_paused_by_us
from gameday.labs.kubernetes.client import Kube
from gameday.labs.kubernetes.database import DB_STATEFULSET, Database, PrimaryCheck, sql_is_primary
from gameday.labs.kubernetes.readiness import RegionBack

logger = logging.getLogger(f"chaostoolkit.{__name__}")

if TYPE_CHECKING:
    from gameday.foundation.driver import DriverFactory


class KubernetesDriver(FaultTable):
    """Breaks and restores a region that lives in a Kubernetes cluster (see the package doc)."""

    kind = "kubernetes"

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
        request_timeout_s: float = DEFAULT_KUBE_TIMEOUT_S,
        api_back_timeout_s: float = 60.0,
    ) -> None:
        self.lab = lab
        self.kube = Kube(
            tuple(allowed_contexts) if allowed_contexts is not None
            else kube_access(None).allowed_contexts,
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
    def from_settings(
        cls, lab: Lab, settings: GamedaySettings | None = None
    ) -> KubernetesDriver:
        """The registry's factory (gameday.foundation.lab_kinds): the kubernetes section
        of the settings (without them, `kind-*` and the env's allow-list)."""
        access = settings.kube if settings is not None else kube_access(None)
        return cls(
            lab,
            allowed_contexts=access.allowed_contexts,
            request_timeout_s=access.request_timeout_s,
        )

    @property
    def allowed_contexts(self) -> tuple[str, ...]:
        return self.kube.allowed_contexts

    # -- the Driver protocol (gameday.foundation.driver.FaultTable) ----------------------

    def faults(self) -> Mapping[Fault, FaultOps | str]:
        return self._faults

    @functools.cached_property
    def _faults(self) -> dict[Fault, FaultOps | str]:
        return {
            Fault.SCALE_TO_ZERO: FaultOps(
                plan=functools.partial(self._plan_api, Fault.SCALE_TO_ZERO, self._plan_scale),
                inject=self._scale_to_zero,
                is_effective=functools.partial(self._effective_api, Fault.SCALE_TO_ZERO,
                                               self._scaled_down, serving=False),
                revert=self._restore_scale),
            Fault.CORDON: FaultOps(
                plan=functools.partial(self._plan_api, Fault.CORDON, self._plan_cordon),
                inject=self._cordon,
                is_effective=functools.partial(self._effective_api, Fault.CORDON,
                                               self._cordoned, serving=False),
                revert=self._uncordon),
            Fault.BLOCK_EGRESS: FaultOps(
                plan=functools.partial(self._plan_api, Fault.BLOCK_EGRESS, self._plan_egress),
                inject=self._block_egress,
                is_effective=functools.partial(self._effective_api, Fault.BLOCK_EGRESS,
                                               self._egress_policy, serving=True),
                revert=self._unblock_egress),
            Fault.BLACKHOLE: FaultOps(plan=self._plan_blackhole, inject=self._pause,
                                      is_effective=self._paused,
                                      revert=self._revert_blackhole),
        }

    def inject(self, fault: Fault, region: Region, undo: dict[str, Any]) -> None:
        _check_undo(fault, undo)
        super().inject(fault, region, undo)

    def is_effective(self, fault: Fault, region: Region, undo: dict[str, Any]) -> bool:
        _check_undo(fault, undo)
        return super().is_effective(fault, region, undo)

    def revert(self, fault: Fault, region: Region, undo: dict[str, Any]) -> None:
        if undo.get("applicable") is False:
            return
        _check_undo(fault, undo)
        super().revert(fault, region, undo)

    # the API faults: planned, checked and undone through the region's API server

    def _plan_api(self, fault: Fault, plan: Callable[[Region, dict[str, Any]], dict[str, Any]],
                  region: Region) -> dict[str, Any]:
        context, namespace = self.kube.target(region)
        paused = self._paused_nodes(region)
        if paused:
            raise ConfigError(
                f"{fault} on {region.name}: its node containers are paused "
                f"({', '.join(paused)}), so its API server cannot answer: list blackhole last "
                "(e.g. faults=scale-to-zero,blackhole), or `docker unpause` them"
            )
        return plan(region, {"fault": fault, "region": region.name, "context": context,
                             "namespace": namespace})

    def _effective_api(self, fault: Fault, check: Callable[[ApiClient, str, dict[str, Any]], bool],
                       region: Region, undo: dict[str, Any], *, serving: bool) -> bool:
        """`check` the objects through the API; with `serving`, then the effect as well: the
        region's storefront cannot take an order."""
        context, namespace = self.kube.undo_target(undo)
        if region.name in self._paused_by_us:
            # injected before blackhole paused the region: nothing of it runs now, and its
            # API server would not answer the check (it would hold the drill until timeout)
            logger.debug("%s on %s: API check skipped, its nodes are paused", fault, region.name)
            return True
        try:
            with self.kube.cluster(context) as api:
                if not check(api, namespace, undo):
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
        return not faults.serving(region.storefront_url) if serving else True

    def _plan_scale(self, region: Region, base: dict[str, Any]) -> dict[str, Any]:
        with self.kube.cluster(base["context"]) as api:
            planned = [
                {"kind": kind, "name": name, "replicas": replicas}
                for kind, name, replicas, _ in faults.workloads(api, base["namespace"])
            ]
        return {**base, "workloads": planned}

    def _scale_to_zero(self, region: Region, undo: dict[str, Any]) -> None:
        context, namespace = self.kube.undo_target(undo)
        faults.scale_to_zero(self.kube, context, namespace, undo["workloads"])

    def _scaled_down(self, api: ApiClient, namespace: str, undo: dict[str, Any]) -> bool:
        return faults.scale_effective(api, namespace, undo["workloads"])

    def _restore_scale(self, region: Region, undo: dict[str, Any]) -> None:
        context, namespace = self.kube.undo_target(undo)
        if any(
            w["kind"] == "StatefulSet" and w["name"] == DB_STATEFULSET
            for w in undo["workloads"]
        ):
            self.db.fence_if_other_is_primary(region, context, namespace, undo)
        faults.restore_replicas(self.kube, context, namespace, undo["workloads"])
        self.back.wait(region, context, namespace)

    def _plan_cordon(self, region: Region, base: dict[str, Any]) -> dict[str, Any]:
        if not region.node_selector:
            return not_applicable("the region has no node_selector in the lab descriptor")
        with self.kube.cluster(base["context"]) as api:
            nodes = faults.nodes(api, region.node_selector)
        if not nodes:
            raise LabError(
                f"no node of context '{base['context']}' matches '{region.node_selector}': "
                "fix the region's node_selector in the lab descriptor"
            )
        return {
            **base,
            "node_selector": region.node_selector,
            "nodes": [{"name": n, "was_unschedulable": u} for n, u in nodes],
        }

    def _cordon(self, region: Region, undo: dict[str, Any]) -> None:
        context, _ = self.kube.undo_target(undo)
        names = [n["name"] for n in undo["nodes"] if not n["was_unschedulable"]]
        faults.cordon(self.kube, context, names)

    def _cordoned(self, api: ApiClient, namespace: str, undo: dict[str, Any]) -> bool:
        state = dict(faults.nodes(api, None))
        return all(state.get(n["name"], True) for n in undo["nodes"])

    def _uncordon(self, region: Region, undo: dict[str, Any]) -> None:
        context, namespace = self.kube.undo_target(undo)
        names = [n["name"] for n in undo["nodes"] if not n["was_unschedulable"]]
        faults.uncordon(self.kube, context, names)
        self.back.wait(region, context, namespace)

    def _plan_egress(self, region: Region, base: dict[str, Any]) -> dict[str, Any]:
        with self.kube.cluster(base["context"]) as api:
            running = [
                name
                for kind, name, replicas, _ in faults.workloads(api, base["namespace"])
                if kind == "Deployment" and replicas > 0
            ]
        return {**base, "policy": faults.EGRESS_POLICY, "restart": running}

    def _block_egress(self, region: Region, undo: dict[str, Any]) -> None:
        context, namespace = self.kube.undo_target(undo)
        faults.block_egress(self.kube, context, namespace, undo["policy"], undo.get("restart", []))

    def _egress_policy(self, api: ApiClient, namespace: str, undo: dict[str, Any]) -> bool:
        return faults.read_policy(api, namespace, undo["policy"]) is not None

    def _unblock_egress(self, region: Region, undo: dict[str, Any]) -> None:
        context, namespace = self.kube.undo_target(undo)
        faults.unblock_egress(self.kube, context, namespace, undo["policy"])

    # blackhole: `docker pause` of the region's node containers (kind only)

    def _plan_blackhole(self, region: Region) -> dict[str, Any]:
        if not region.node_containers:
            return not_applicable(
                "the region lists no node_containers (blackhole pauses the Docker "
                "containers that are its nodes: kind only)"
            )
        states = self.docker.paused(region.node_containers)
        return {
            "fault": Fault.BLACKHOLE,
            "region": region.name,
            "containers": list(region.node_containers),
            "paused_before": [c for c in region.node_containers if states[c]],
        }

    def _pause(self, region: Region, undo: dict[str, Any]) -> None:
        before = set(undo["paused_before"])
        todo = [c for c in undo["containers"] if c not in before]
        if todo:
            self.docker.each("pause", todo)
        self._paused_by_us.add(region.name)

    def _paused(self, region: Region, undo: dict[str, Any]) -> bool:
        return all(self.docker.paused(undo["containers"]).values())

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

    def rejoin_standby(self, primary: Region) -> str | None:
        return None  # kind-lab runs no HA manager: its failback resyncs the standby itself

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


def _check_undo(fault: Fault, undo: Mapping[str, Any]) -> None:
    if undo.get("applicable") is False:
        raise ConfigError(f"fault '{fault}' is not applicable here: {undo.get('reason')}")
    if undo.get("fault") != fault:
        raise ConfigError(f"undo record is for fault '{undo.get('fault')}', not '{fault}'")


if TYPE_CHECKING:
    # mypy checks here that the registry's factory makes a complete LabDriver
    # (Driver and DatabaseOps, start_database included)
    _FACTORY: DriverFactory = KubernetesDriver.from_settings
