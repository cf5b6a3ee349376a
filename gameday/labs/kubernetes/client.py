"""How the driver reaches a cluster: the context allow-list, the kubeconfig, one call at a
time, a timeout on every request, and the kubernetes client's errors turned into ours.

Why not chaostoolkit-kubernetes's actions: each builds its own client from the process-wide
configuration and sends its request without a timeout, so a paused region's API server
held the drill forever (issue 13). The driver makes the same requests (the same bodies)
through one client class that always sets one.

The allow-list exists so that a game day cannot scale a production cluster to zero by a typo
in a descriptor: a context is used only when it matches `kind-*`, or a pattern added by the
configuration key `kube_context_allowlist` or env GAMEDAY_KUBE_CONTEXT_ALLOWLIST (parsed
with the other settings: gameday.foundation.settings.KubeAccess).
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

from gameday.foundation.descriptor import Region
from gameday.foundation.errors import ConfigError, GamedayError, LabError, TargetError
from gameday.foundation.settings import DEFAULT_KUBE_TIMEOUT_S, KUBE_ALLOWLIST_KEY

logger = logging.getLogger(f"chaostoolkit.{__name__}")

# One call at a time: the design never addresses two clusters at once, and a drill's steps and
# its rollback may run in different threads.
_KUBE_LOCK = threading.RLock()

T = TypeVar("T")


class _TimedApiClient(ApiClient):
    """An ApiClient whose every request has a timeout unless the call passes its own.

    The generated API methods all pass `_request_timeout` by keyword to `call_api`; the
    kubernetes client sends it to urllib3 as the total time of the request, TCP and TLS
    handshakes included."""

    def __init__(self, configuration: Any, timeout_s: float) -> None:
        super().__init__(configuration)
        self.timeout_s = timeout_s

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = self.timeout_s
        return super().call_api(*args, **kwargs)


class Kube:
    """The guarded way in: every call names an allowed context, runs under one lock, and
    every request it makes has a timeout."""

    def __init__(
        self, allowed_contexts: Sequence[str], *, request_timeout_s: float = DEFAULT_KUBE_TIMEOUT_S,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.allowed_contexts = tuple(allowed_contexts)
        self.request_timeout_s = request_timeout_s
        self.credentials = dict(credentials or {})
        # context -> (the kubeconfig's signature when it was read, its client)
        self._clients: dict[str, tuple[tuple[Any, ...], ApiClient]] = {}

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
                f"break it, add it to configuration '{KUBE_ALLOWLIST_KEY}' "
                f"(e.g. --var {KUBE_ALLOWLIST_KEY}={context})"
            )

    @contextlib.contextmanager
    def cluster(self, context: str) -> Iterator[ApiClient]:
        """The client for `context`, with its own configuration (nothing process-wide).
        Errors inside the block become TargetError naming the context.

        One client per context is kept and reused, with its open connections: the drill
        polls `is_effective` for seconds inside its measured window, and a client built per
        call re-read the kubeconfig and opened a new (TLS) connection each time. It is
        rebuilt when the kubeconfig file changes (KUBECONFIG is read per call, so a file
        set after import, or rewritten by `kind export kubeconfig`, is the one used) and
        after an error that was not an answer from the API server."""
        with _KUBE_LOCK:
            api = self._client(context)
            try:
                yield api
            except GamedayError:
                raise
            except Exception as exc:
                from kubernetes.client.exceptions import ApiException

                if not isinstance(exc, ApiException):
                    self._forget(context)  # a timeout or a broken connection: start afresh
                raise translate(exc, f"context '{context}'", self.request_timeout_s) from exc

    def _client(self, context: str) -> ApiClient:
        """The cached client of `context`, or a new one read from the kubeconfig now."""
        from kubernetes.client import Configuration
        from kubernetes.config import kube_config
        from kubernetes.config.config_exception import ConfigException

        path = kubeconfig_path()
        signature = kubeconfig_signature(path)
        cached = self._clients.get(context)
        if cached is not None and cached[0] == signature:
            return cached[1]
        self._forget(context)
        try:
            contexts, _ = kube_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]  # untyped
                config_file=path
            )
        except (ConfigException, OSError) as exc:
            raise LabError(
                f"kubeconfig '{path}': {exc}: set KUBECONFIG to the file holding context "
                f"'{context}' (kind writes ~/.kube/config)"
            ) from exc
        if context not in {c["name"] for c in contexts}:
            raise LabError(
                f"kubeconfig '{path}' has no context '{context}': run kind-lab/up.sh, "
                "or `kind export kubeconfig --name <cluster>`"
            )
        configuration = Configuration()
        # no retry inside a request: a retried read would take a multiple of the timeout;
        # the driver's own waits retry
        configuration.retries = 0
        try:
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]  # untyped package
                config_file=path,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except ConfigException as exc:
            raise LabError(f"kube context '{context}': {exc}") from exc
        merge_credentials(configuration, self.credentials)
        api = _TimedApiClient(configuration, self.request_timeout_s)
        self._clients[context] = (signature, api)
        return api

    def _forget(self, context: str) -> None:
        cached = self._clients.pop(context, None)
        if cached is not None:
            cached[1].close()  # type: ignore[no-untyped-call]  # untyped in the client

    def close(self) -> None:
        """Close every cached client (their connections close with them)."""
        with _KUBE_LOCK:
            for context in list(self._clients):
                self._forget(context)

    def answers(self, context: str) -> bool:
        """True when the API server answers HTTP at all (any status): after an unpause,
        before the first call that must not fail."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            with self.cluster(context) as api, contextlib.suppress(ApiException):
                client.VersionApi(api).get_code()
        except TargetError:
            return False
        return True


def kubeconfig_path() -> str:
    """As kubectl reads it: KUBECONFIG (one file or a list), else ~/.kube/config."""
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def kubeconfig_signature(path: str) -> tuple[Any, ...]:
    """What changes when a kubeconfig file (or one of a KUBECONFIG list) is rewritten:
    its identity, size and modification time. A stat, not a read."""
    parts: list[Any] = [path]
    for one in path.split(os.pathsep):
        try:
            st = os.stat(one)
        except OSError:
            parts.append(None)
        else:
            parts.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(parts)


def or_none(read: Callable[[], T]) -> T | None:
    """The object, or None when the API answers 404."""
    from kubernetes.client.exceptions import ApiException

    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def translate(exc: Exception, where: str, timeout_s: float) -> GamedayError:
    """The client's exception as one line naming the context; a timeout says so, since
    that is what a paused (blackholed) region looks like."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError, MaxRetryError, TimeoutError

    if isinstance(exc, ApiException):
        return TargetError(f"{where}: API server answered {exc.status} {exc.reason}")
    cause: BaseException = exc
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        cause = exc.reason
    if isinstance(cause, TimeoutError):
        return TargetError(
            f"{where}: API server did not answer within {timeout_s:g} s "
            f"({cause.__class__.__name__}): is the region paused (blackhole)?"
        )
    if isinstance(exc, HTTPError):
        return TargetError(f"{where}: API server unreachable ({cause.__class__.__name__})")
    return TargetError(f"{where}: {exc.__class__.__name__}: {exc}")


# -- object fields the client types as optional ----------------------------------------------


def name_of(obj: Any) -> str:
    return str(obj.metadata.name)


def annotations_of(obj: Any) -> dict[str, str]:
    return dict((obj.metadata.annotations if obj.metadata else None) or {})


def labels_of(obj: Any) -> dict[str, str]:
    return dict((obj.metadata.labels if obj.metadata else None) or {})


def merge_credentials(configuration: Any, credentials: Mapping[str, str]) -> None:
    """Lay the credentials the experiment's secrets gave (scope `k8s`, chaostoolkit-
    kubernetes' key names) over what the kubeconfig context set: merged, not replaced, so
    each region keeps its own server and anything the secrets do not name. The server is
    never taken from secrets: one server for two regions would break both against one
    cluster."""
    c = credentials
    if c.get("KUBERNETES_API_KEY"):
        # where the kubeconfig loader puts a token, prefix included; it wins over any
        # other key the client knows
        prefix = c.get("KUBERNETES_API_KEY_PREFIX", "Bearer")
        # the loader's hook would put the kubeconfig's token back before every request
        configuration.refresh_api_key_hook = None
        configuration.api_key = {**(configuration.api_key or {}),
                                 "BearerToken": f"{prefix} {c['KUBERNETES_API_KEY']}".strip()}
    if c.get("KUBERNETES_CERT_FILE"):
        configuration.cert_file = c["KUBERNETES_CERT_FILE"]
    if c.get("KUBERNETES_KEY_FILE"):
        configuration.key_file = c["KUBERNETES_KEY_FILE"]
    if c.get("KUBERNETES_CA_CERT_FILE"):
        configuration.ssl_ca_cert = c["KUBERNETES_CA_CERT_FILE"]
    if "KUBERNETES_VERIFY_SSL" in c:
        configuration.verify_ssl = str(c["KUBERNETES_VERIFY_SSL"]).lower() not in ("0", "false", "no")
