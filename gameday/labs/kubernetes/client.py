"""How the driver reaches a cluster: the context allow-list, the kubeconfig, one call at a
time, and the kubernetes client's errors turned into ours.

The allow-list exists so that a game day cannot scale a production cluster to zero by a typo
in a descriptor: a context is used only when it matches `kind-*`, or a pattern added by the
configuration key `kube_context_allowlist` or env GAMEDAY_KUBE_CONTEXT_ALLOWLIST.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from kubernetes.client import ApiClient

from gameday.errors import ConfigError, GamedayError, LabError, TargetError
from gameday.labs.descriptor import Region

logger = logging.getLogger(f"chaostoolkit.{__name__}")

DEFAULT_ALLOWED_CONTEXTS: tuple[str, ...] = ("kind-*",)
ALLOWLIST_KEY = "kube_context_allowlist"
ALLOWLIST_ENV = "GAMEDAY_KUBE_CONTEXT_ALLOWLIST"

# The kubernetes client and chaostoolkit-kubernetes load one process-wide configuration per
# call; holding this lock around every use keeps two regions' calls from interleaving.
_KUBE_LOCK = threading.RLock()

T = TypeVar("T")


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


class Kube:
    """The guarded way in: every call names an allowed context and runs under one lock."""

    def __init__(self, allowed_contexts: Sequence[str]) -> None:
        self.allowed_contexts = tuple(allowed_contexts)

    def target(self, region: Region) -> tuple[str, str]:
        """(context, namespace) of a region, after the allow-list check."""
        if not region.kube_context or not region.namespace:
            raise ConfigError(
                f"region '{region.name}': the kubernetes driver needs 'kube_context' and "
                "'namespace' in the lab descriptor"
            )
        self.allow(region.kube_context)
        return region.kube_context, region.namespace

    def undo_target(self, undo: Mapping[str, Any]) -> tuple[str, str]:
        """(context, namespace) an undo record names: guarded too, since a ledger is a file."""
        context, namespace = undo.get("context"), undo.get("namespace")
        if not isinstance(context, str) or not isinstance(namespace, str):
            raise ConfigError("undo record: 'context' and 'namespace' are missing")
        self.allow(context)
        return context, namespace

    def allow(self, context: str) -> None:
        if not any(fnmatch.fnmatchcase(context, p) for p in self.allowed_contexts):
            allowed = ", ".join(self.allowed_contexts)
            raise ConfigError(
                f"kube context '{context}' is not in the allow-list ({allowed}): to really "
                f"break it, add it to configuration '{ALLOWLIST_KEY}' "
                f"(e.g. --var {ALLOWLIST_KEY}={context})"
            )

    @contextlib.contextmanager
    def cluster(self, context: str) -> Iterator[ApiClient]:
        """Hold the process-wide client for `context`: an ApiClient built the way
        chaostoolkit-kubernetes builds its own, after checking the kubeconfig really has it."""
        from chaosk8s import create_k8s_api_client, get_config_path  # type: ignore[import-untyped]
        from kubernetes.config import kube_config
        from kubernetes.config.config_exception import ConfigException

        with _KUBE_LOCK:
            path: str = get_config_path()
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
                # untyped in the kubernetes package
                contexts, _ = kube_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                    config_file=path
                )
            except ConfigException as exc:
                raise LabError(f"kubeconfig '{path}': {exc}") from exc
            if context not in {c["name"] for c in contexts}:
                raise LabError(
                    f"kubeconfig '{path}' has no context '{context}': run kind-lab/up.sh, "
                    "or `kind export kubeconfig --name <cluster>`"
                )
            try:
                api: ApiClient = create_k8s_api_client(secrets(context))
            except ConfigException as exc:
                raise LabError(f"kube context '{context}': {exc}") from exc
            try:
                yield api
            except GamedayError:
                raise
            except Exception as exc:
                raise translate(exc, f"context '{context}'") from exc
            finally:
                api.close()  # type: ignore[no-untyped-call]  # untyped in the client


def secrets(context: str) -> dict[str, str]:
    """What chaostoolkit-kubernetes reads the context from."""
    return {"KUBERNETES_CONTEXT": context}


def chaos(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a chaostoolkit-kubernetes action, mapping its failures onto ours."""
    from chaoslib.exceptions import ActivityFailed  # type: ignore[import-untyped]

    try:
        return func(*args, **kwargs)
    except ActivityFailed as exc:
        raise TargetError(f"{func.__name__}: {exc}") from exc


def or_none(read: Callable[[], T]) -> T | None:
    """The object, or None when the API answers 404."""
    from kubernetes.client.exceptions import ApiException

    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def translate(exc: Exception, where: str) -> GamedayError:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        return TargetError(f"{where}: API server answered {exc.status} {exc.reason}")
    if isinstance(exc, HTTPError):
        return TargetError(f"{where}: API server unreachable ({exc.__class__.__name__})")
    return TargetError(f"{where}: {exc.__class__.__name__}: {exc}")


# -- object fields the client types as optional ----------------------------------------------


def name_of(obj: Any) -> str:
    return str(obj.metadata.name)


def annotations_of(obj: Any) -> dict[str, str]:
    return dict((obj.metadata.annotations if obj.metadata else None) or {})


def labels_of(obj: Any) -> dict[str, str]:
    return dict((obj.metadata.labels if obj.metadata else None) or {})
