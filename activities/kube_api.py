"""`KubeJson`: pitstop's one plain-JSON client of a cluster's REST API, over a `kubernetes.client.ApiClient`.

The activities work on plain dicts (the API's own JSON) rather than the generated models: the same code
then serves Deployments, ReplicaSets, Nodes and Istio custom resources, templates compare exactly as the
server returns them, and patches are sent with an explicit content type. Authentication, TLS and the
server address come from the ApiClient (built in `workers/clients.py`, or by the sandbox from its
kubeconfig). Synchronous (urllib3); activities call it from the worker's thread pool.

Besides reads and writes it does server-side apply, paged lists with their resourceVersion and watches:
the local sandbox (`sandbox/kube_objects.py`) uses the same client with its own field manager.

Errors: every non-2xx answer (a watch's ERROR event too) raises the kubernetes client's `ApiException`
(`.status`, `.reason`, `.body`, `.headers`); no answer at all (refused, reset, timed out) raises its subclass
`ApiUnreachable` with status 0. `activities.kube_errors` maps them to domain errors, to "API unavailable,
retry after ..." for 429/5xx/unreachable, and retries conflicts. The client itself never retries.

Rate limit: `limit_rate(api_client, qps=, burst=)` (called by `workers/clients.py` with the region's
settings) gives an ApiClient a token bucket; every `KubeJson` over that ApiClient — every activity of the
worker process — waits for a token before each request. N worker processes allow N times the rate.

Observation: `observe_calls(api_client, observer)` (called by `workers/clients.py`: pitstop's own metrics and
trace spans, `workers/metrics.py`, `workers/tracing.py`) wraps every request over that ApiClient in
`observer(call)` (`activities/call_observer.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote
from weakref import WeakKeyDictionary

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTResponse
from urllib3.exceptions import HTTPError as TransportError

from pitstop.api_backoff import UNREACHABLE_STATUS
from pitstop.token_bucket import TokenBucket

from .call_observer import ApiCall, CallObserver

JsonObject = dict[str, Any]
PatchType = Literal["strategic", "merge", "json"]
CONTENT_TYPES: dict[str, str] = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"  # a JSON body is valid YAML
REQUEST_TIMEOUT_SECONDS = 30.0
FIELD_MANAGER = "pitstop"
LIST_PAGE_SIZE = 500
RequestTimeout = float | tuple[float, float]  # total, or (connect, read)

_RATE_LIMITS: WeakKeyDictionary[ApiClient, TokenBucket] = WeakKeyDictionary()

_OBSERVERS: WeakKeyDictionary[ApiClient, CallObserver] = WeakKeyDictionary()


def observe_calls(api_client: ApiClient, observer: CallObserver) -> None:
    """Wrap every request over `api_client` (one cluster's) in `observer(call)`: metrics, trace spans."""
    _OBSERVERS[api_client] = observer


def limit_rate(api_client: ApiClient, *, qps: float, burst: int) -> TokenBucket:
    """Give `api_client` (one cluster's) a client-side rate limit shared by every `KubeJson` over it."""
    bucket = TokenBucket(rate=qps, burst=burst)
    _RATE_LIMITS[api_client] = bucket
    return bucket


def rate_limit_of(api_client: ApiClient) -> TokenBucket | None:
    return _RATE_LIMITS.get(api_client)


class ApiUnreachable(ApiException):  # type: ignore[misc]  # the kubernetes client is untyped
    """No HTTP answer from the API server (connection refused or reset, timeout, TLS failure): status 0."""

    def __init__(self, reason: str) -> None:
        super().__init__(status=UNREACHABLE_STATUS, reason=reason)


@dataclass(frozen=True)
class ObjectList:
    """All items of a list call and the list's resourceVersion (where a watch starts)."""

    items: list[JsonObject]
    resource_version: str


class KubeJson:
    """One cluster's API as JSON. `field_manager` names the writer in the objects' managedFields."""

    def __init__(
        self,
        api_client: ApiClient,
        *,
        field_manager: str = FIELD_MANAGER,
        timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self.api_client = api_client
        self.field_manager = field_manager
        self.timeout_seconds = timeout_seconds
        self.rate_limit = rate_limit_of(api_client)
        self.observer = _OBSERVERS.get(api_client)

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None,
        body: Any,
        content_type: str,
        timeout_seconds: RequestTimeout | None,
    ) -> RESTResponse:
        """One call, the response unread; a non-2xx answer raises `ApiException` (with the call noted)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        method, url, header_params, serialized, _ = self.api_client.param_serialize(
            method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        if self.rate_limit is not None:
            self.rate_limit.acquire()
        timeout = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        if self.observer is None:
            response = self._call(method, path, url, header_params, serialized, timeout)
        else:
            call = ApiCall("kubernetes", method, path)
            with self.observer(call):
                response = self._call(method, path, url, header_params, serialized, timeout)
                call.status = response.status
        if 200 <= response.status <= 299:
            return response
        text = _read(response).decode("utf-8", errors="replace")
        try:
            ApiException.from_response(http_resp=response, body=text, data=None)
        except ApiException as exc:
            exc.add_note(f"{method} {path}")
            raise
        raise AssertionError("unreachable: from_response always raises")

    def _call(self, method: str, path: str, url: str, headers: Any, body: Any, timeout: RequestTimeout) -> RESTResponse:
        try:
            return self.api_client.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
        except TransportError as exc:
            unreachable = ApiUnreachable(f"{type(exc).__name__}: {exc}")
            unreachable.add_note(f"{method} {path}")
            raise unreachable from exc

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout_seconds: RequestTimeout | None = None,
    ) -> JsonObject:
        """One call; the decoded JSON answer ({} when empty)."""
        response = self._send(
            method, path, query=query, body=body, content_type=content_type, timeout_seconds=timeout_seconds
        )
        text = _read(response).decode("utf-8")
        result: JsonObject = json.loads(text) if text else {}
        return result

    def get(self, path: str, **query: Any) -> JsonObject:
        return self.request("GET", path, query=query)

    def get_optional(self, path: str, **query: Any) -> JsonObject | None:
        """The object, or None when it does not exist (404)."""
        try:
            return self.get(path, **query)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_all(self, path: str, *, timeout_seconds: RequestTimeout | None = None, **query: Any) -> ObjectList:
        """All items of a list call (follows `continue` pages) and the list's resourceVersion."""
        items: list[JsonObject] = []
        token: str | None = None
        while True:
            page = self.request(
                "GET", path, query={**query, "limit": LIST_PAGE_SIZE, "continue": token}, timeout_seconds=timeout_seconds
            )
            items.extend(page.get("items") or [])
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                return ObjectList(items=items, resource_version=metadata.get("resourceVersion", ""))

    def items(self, path: str, **query: Any) -> list[JsonObject]:
        """All items of a list call (follows `continue` pages)."""
        return self.list_all(path, **query).items

    def patch(self, path: str, body: Any, *, patch_type: PatchType, dry_run: bool = False) -> JsonObject:
        query = {"fieldManager": self.field_manager, "dryRun": "All" if dry_run else None}
        return self.request("PATCH", path, query=query, body=body, content_type=CONTENT_TYPES[patch_type])

    def apply(self, path: str, obj: JsonObject, *, force: bool = True, dry_run: bool = False) -> JsonObject:
        """Server-side apply `obj` at its object path: created or updated, our field manager owns its fields."""
        query = {"fieldManager": self.field_manager, "force": "true" if force else None, "dryRun": "All" if dry_run else None}
        return self.request("PATCH", path, query=query, body=obj, content_type=APPLY_CONTENT_TYPE)

    def put(self, path: str, body: JsonObject, *, dry_run: bool = False) -> JsonObject:
        query = {"fieldManager": self.field_manager, "dryRun": "All" if dry_run else None}
        return self.request("PUT", path, query=query, body=body)

    def post(self, path: str, body: JsonObject, *, dry_run: bool = False) -> JsonObject:
        query = {"dryRun": "All" if dry_run else None}
        return self.request("POST", path, query=query, body=body)

    def watch(
        self, path: str, *, resource_version: str, timeout_seconds: int = 300, **query: Any
    ) -> Iterator[tuple[str, JsonObject]]:
        """Yield (type, object) events of a collection from `resource_version` until the server ends the watch.

        An ERROR event raises `ApiException` with its code (410 Gone: the version is too old; list again)."""
        watch_query = {
            **query,
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        response = self._send(
            "GET", path, query=watch_query, body=None, content_type="application/json",
            timeout_seconds=(10.0, timeout_seconds + 30.0),
        )
        raw = response.response
        buffer = b""
        try:
            for chunk in raw.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        error = ApiException(status=int(status.get("code", 500)), reason=status.get("reason"),
                                             body=json.dumps(status))
                        error.add_note(f"WATCH {path}")
                        raise error
                    yield event["type"], event["object"]
        finally:
            raw.release_conn()


def _read(response: RESTResponse) -> bytes:
    """The whole body; the connection goes back to the pool."""
    data: bytes = response.read() or b""
    response.response.release_conn()
    return data


@dataclass(frozen=True)
class ResourceKind:
    """Where a kind lives in the REST API."""

    group_version: str  # "v1", "apps/v1", "networking.istio.io/v1"
    plural: str
    namespaced: bool = True

    def collection_path(self, namespace: str | None = None) -> str:
        prefix = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            return f"{prefix}/namespaces/{quote(namespace)}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def object_path(self, *, name: str, namespace: str | None = None) -> str:
        return f"{self.collection_path(namespace)}/{quote(name)}"


def deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


WORKLOAD_PATHS: dict[str, str] = {
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
    "DaemonSet": "/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}",
}


def label_selector(selector: dict[str, Any]) -> str:
    """A LabelSelector object as the `labelSelector` query string."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)
