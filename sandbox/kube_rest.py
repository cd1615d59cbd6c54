"""Thin JSON access to the Kubernetes REST API over a `kubernetes.client.ApiClient`.

The sandbox handles thousands of objects (500 services x 4 kinds x regions); going through the raw
REST paths with plain dicts keeps server-side apply and watches fast and uniform for built-in and
custom resources (Istio). Auth, TLS and the server address all come from the ApiClient's kubeconfig.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes.client import ApiClient

FIELD_MANAGER = "pitstop-sandbox"

JsonObject = dict[str, Any]


class KubeApiError(RuntimeError):
    """The API server answered with a non-2xx status."""

    def __init__(self, *, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        self.path = path
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:500]}")


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


KINDS: dict[str, ResourceKind] = {
    "Namespace": ResourceKind("v1", "namespaces", namespaced=False),
    "Node": ResourceKind("v1", "nodes", namespaced=False),
    "ResourceQuota": ResourceKind("v1", "resourcequotas"),
    "ConfigMap": ResourceKind("v1", "configmaps"),
    "Service": ResourceKind("v1", "services"),
    "Pod": ResourceKind("v1", "pods"),
    "Deployment": ResourceKind("apps/v1", "deployments"),
    "ReplicaSet": ResourceKind("apps/v1", "replicasets"),
    "VirtualService": ResourceKind("networking.istio.io/v1", "virtualservices"),
    "DestinationRule": ResourceKind("networking.istio.io/v1", "destinationrules"),
}


def kube_request(
    api_client: ApiClient,
    *,
    method: str,
    path: str,
    query: Mapping[str, str] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    timeout_seconds: float | tuple[float, float] | None = 30.0,
    stream: bool = False,
) -> Any:
    """One REST call; returns the decoded JSON (or the raw urllib3 response when `stream`)."""
    headers = {"Accept": "application/json", "Content-Type": content_type}
    _method, url, headers, _body, _post = api_client.param_serialize(
        method=method,
        resource_path=path,
        query_params=list((query or {}).items()),
        header_params=headers,
        auth_settings=["BearerToken"],
    )
    # The REST client JSON-encodes structured bodies itself for JSON and YAML content types.
    response = api_client.call_api(
        method, url, header_params=headers, body=body, _request_timeout=timeout_seconds
    )
    raw = response.response
    if stream and 200 <= response.status < 300:
        return raw
    data = raw.data
    raw.release_conn()
    if not 200 <= response.status < 300:
        raise KubeApiError(
            method=method, path=path, status=response.status, body=data.decode(errors="replace")
        )
    return json.loads(data) if data else None


def kind_of(obj: Mapping[str, Any]) -> ResourceKind:
    try:
        return KINDS[obj["kind"]]
    except KeyError as exc:
        raise ValueError(f"sandbox cannot apply kind {obj.get('kind')!r}") from exc


def server_side_apply(api_client: ApiClient, obj: Mapping[str, Any]) -> JsonObject:
    """Create or update `obj` with server-side apply (idempotent; our field manager owns its fields)."""
    meta = obj["metadata"]
    path = kind_of(obj).object_path(name=meta["name"], namespace=meta.get("namespace"))
    result: JsonObject = kube_request(
        api_client,
        method="PATCH",
        path=path,
        query={"fieldManager": FIELD_MANAGER, "force": "true"},
        body=obj,
        content_type="application/apply-patch+yaml",
    )
    return result


def merge_patch(
    api_client: ApiClient, *, kind: str, name: str, namespace: str | None, patch: Mapping[str, Any]
) -> JsonObject:
    result: JsonObject = kube_request(
        api_client,
        method="PATCH",
        path=KINDS[kind].object_path(name=name, namespace=namespace),
        body=patch,
        content_type="application/merge-patch+json",
    )
    return result


def get_object(api_client: ApiClient, *, kind: str, name: str, namespace: str | None) -> JsonObject | None:
    """The object, or None when it does not exist."""
    try:
        result: JsonObject = kube_request(
            api_client, method="GET", path=KINDS[kind].object_path(name=name, namespace=namespace)
        )
    except KubeApiError as exc:
        if exc.status == 404:
            return None
        raise
    return result


def list_objects(
    api_client: ApiClient, *, kind: str, namespace: str | None = None, label_selector: str | None = None
) -> tuple[list[JsonObject], str]:
    """All objects of a kind (paged) and the list's resourceVersion (to start a watch from)."""
    items: list[JsonObject] = []
    query: dict[str, str] = {"limit": "500"}
    if label_selector:
        query["labelSelector"] = label_selector
    path = KINDS[kind].collection_path(namespace)
    while True:
        page = kube_request(api_client, method="GET", path=path, query=query, timeout_seconds=60)
        items.extend(page.get("items") or [])
        cont = page.get("metadata", {}).get("continue")
        if not cont:
            return items, page["metadata"]["resourceVersion"]
        query["continue"] = cont


def watch_events(
    api_client: ApiClient,
    *,
    kind: str,
    resource_version: str,
    namespace: str | None = None,
    label_selector: str | None = None,
    timeout_seconds: int = 300,
) -> Iterator[tuple[str, JsonObject]]:
    """Yield (type, object) watch events until the server closes the watch.

    Raises `KubeApiError(status=410)` when the resourceVersion is too old (the caller re-lists).
    """
    query = {
        "watch": "1",
        "resourceVersion": resource_version,
        "allowWatchBookmarks": "true",
        "timeoutSeconds": str(timeout_seconds),
    }
    if label_selector:
        query["labelSelector"] = label_selector
    path = KINDS[kind].collection_path(namespace)
    raw = kube_request(
        api_client,
        method="GET",
        path=path,
        query=query,
        timeout_seconds=(10.0, timeout_seconds + 30.0),
        stream=True,
    )
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
                    status = event.get("object", {})
                    raise KubeApiError(
                        method="WATCH", path=path, status=int(status.get("code", 500)), body=str(status)
                    )
                yield event["type"], event["object"]
    finally:
        raw.release_conn()
