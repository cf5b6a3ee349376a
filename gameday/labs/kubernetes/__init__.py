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
                   the ones this fault paused (control planes first).

The package, by concern:

    client.py      the allow-list, the kubeconfig, one call at a time, error translation
    faults.py      scale-to-zero, cordon, block-egress through the API
    blackhole.py   docker pause / unpause of node containers
    database.py    the database role, fencing on revert, and the failback's DatabaseOps
    driver.py      KubernetesDriver, which puts them together behind gameday.foundation.driver

Guard: a context is used only when it matches the allow-list (`kind-*` unless widened by the
configuration key `kube_context_allowlist` or env GAMEDAY_KUBE_CONTEXT_ALLOWLIST; parsed in
gameday.foundation.settings), so a game
day cannot scale a production cluster to zero by a typo in a descriptor.
"""

from gameday.labs.kubernetes.database import (
    DB_CONFIGMAP,
    DB_POD,
    DB_STATEFULSET,
    FENCE_ANNOTATION,
    STALE_POD_ANNOTATION,
)
from gameday.labs.kubernetes.driver import KubernetesDriver
from gameday.labs.kubernetes.faults import EGRESS_POLICY, REPLICAS_ANNOTATION

__all__ = [
    "DB_CONFIGMAP",
    "DB_POD",
    "DB_STATEFULSET",
    "EGRESS_POLICY",
    "FENCE_ANNOTATION",
    "REPLICAS_ANNOTATION",
    "STALE_POD_ANNOTATION",
    "KubernetesDriver",
]
