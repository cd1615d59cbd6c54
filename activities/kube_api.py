"""`KubeJson`: plain-JSON access to one cluster's API through a `kubernetes.client.ApiClient`.

The activities work on plain dicts (the API's own JSON) rather than the generated models: the same code
then serves Deployments, ReplicaSets, Nodes and Istio custom resources, templates compare exactly as the
server returns them, and patches are sent with an explicit content type. Authentication, TLS and the
server address come from the ApiClient (built in `workers/clients.py`). Synchronous (urllib3); activities
call it from the worker's thread pool. Errors are the client's `ApiException` subclasses (status attached).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

PatchType = Literal["strategic", "merge", "json"]
CONTENT_TYPES: dict[str, str] = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}
REQUEST_TIMEOUT_SECONDS = 30.0
FIELD_MANAGER = "pitstop"


class KubeJson:
    def __init__(self, api_client: ApiClient, *, timeout_seconds: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.api_client = api_client
        self.timeout_seconds = timeout_seconds

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        method, url, header_params, serialized, _ = self.api_client.param_serialize(
            method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self.api_client.call_api(
            method, url, header_params=header_params, body=serialized, _request_timeout=self.timeout_seconds
        )
        response.read()
        text = response.data.decode("utf-8") if response.data else ""
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=text, data=None)
        return json.loads(text) if text else {}

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        return self.request("GET", path, query=query)

    def items(self, path: str, **query: Any) -> list[dict[str, Any]]:
        """All items of a list call (follows `continue` pages)."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self.request("GET", path, query={**query, "limit": 500, "continue": token})
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def patch(self, path: str, body: Any, *, patch_type: PatchType, dry_run: bool = False) -> dict[str, Any]:
        query = {"fieldManager": FIELD_MANAGER, "dryRun": "All" if dry_run else None}
        return self.request("PATCH", path, query=query, body=body, content_type=CONTENT_TYPES[patch_type])

    def put(self, path: str, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        query = {"fieldManager": FIELD_MANAGER, "dryRun": "All" if dry_run else None}
        return self.request("PUT", path, query=query, body=body)

    def post(self, path: str, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        query = {"dryRun": "All" if dry_run else None}
        return self.request("POST", path, query=query, body=body)


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
