"""The sandbox's Kubernetes objects by kind, over pitstop's one JSON client (`activities.kube_api.KubeJson`).

The sandbox handles thousands of objects (500 services x 4 kinds x regions); raw REST paths with plain
dicts keep server-side apply and watches fast and uniform for built-in and custom resources (Istio).
What is sandbox-specific lives here: the kinds it manages (`KINDS`) and its field manager. Auth, TLS and
the server address come from the ApiClient's kubeconfig; errors are `ApiException` (with `.status`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kubernetes.client import ApiClient

from pitstop.activities.kube_api import JsonObject, KubeJson, ResourceKind

FIELD_MANAGER = "pitstop-sandbox"
LIST_TIMEOUT_SECONDS = 60.0

KINDS: dict[str, ResourceKind] = {
    "Namespace": ResourceKind("v1", "namespaces", namespaced=False),
    "Node": ResourceKind("v1", "nodes", namespaced=False),
    "ResourceQuota": ResourceKind("v1", "resourcequotas"),
    "ConfigMap": ResourceKind("v1", "configmaps"),
    "Service": ResourceKind("v1", "services"),
    "Pod": ResourceKind("v1", "pods"),
    "Deployment": ResourceKind("apps/v1", "deployments"),
    "ReplicaSet": ResourceKind("apps/v1", "replicasets"),
    "PodDisruptionBudget": ResourceKind("policy/v1", "poddisruptionbudgets"),
    "VirtualService": ResourceKind("networking.istio.io/v1", "virtualservices"),
    "DestinationRule": ResourceKind("networking.istio.io/v1", "destinationrules"),
}


def sandbox_kube(api_client: ApiClient) -> KubeJson:
    """The JSON client of one sandbox cluster, writing as the sandbox's field manager."""
    return KubeJson(api_client, field_manager=FIELD_MANAGER)


def kind_of(obj: Mapping[str, Any]) -> ResourceKind:
    try:
        return KINDS[obj["kind"]]
    except KeyError as exc:
        raise ValueError(f"sandbox cannot apply kind {obj.get('kind')!r}") from exc


def server_side_apply(api_client: ApiClient, obj: Mapping[str, Any]) -> JsonObject:
    """Create or update `obj` with server-side apply (idempotent; our field manager owns its fields)."""
    meta = obj["metadata"]
    path = kind_of(obj).object_path(name=meta["name"], namespace=meta.get("namespace"))
    return sandbox_kube(api_client).apply(path, dict(obj))


def merge_patch(
    api_client: ApiClient, *, kind: str, name: str, namespace: str | None, patch: Mapping[str, Any]
) -> JsonObject:
    path = KINDS[kind].object_path(name=name, namespace=namespace)
    return sandbox_kube(api_client).patch(path, dict(patch), patch_type="merge")


def get_object(api_client: ApiClient, *, kind: str, name: str, namespace: str | None) -> JsonObject | None:
    """The object, or None when it does not exist."""
    return sandbox_kube(api_client).get_optional(KINDS[kind].object_path(name=name, namespace=namespace))


def list_objects(
    api_client: ApiClient, *, kind: str, namespace: str | None = None, label_selector: str | None = None
) -> tuple[list[JsonObject], str]:
    """All objects of a kind (paged) and the list's resourceVersion (to start a watch from)."""
    listed = sandbox_kube(api_client).list_all(
        KINDS[kind].collection_path(namespace), labelSelector=label_selector, timeout_seconds=LIST_TIMEOUT_SECONDS
    )
    return listed.items, listed.resource_version


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

    Raises `ApiException(status=410)` when the resourceVersion is too old (the caller re-lists)."""
    return sandbox_kube(api_client).watch(
        KINDS[kind].collection_path(namespace), resource_version=resource_version,
        timeout_seconds=timeout_seconds, labelSelector=label_selector,
    )
