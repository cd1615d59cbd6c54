"""chaostoolkit-istio's probes: `get_virtual_service`, same arguments and return shape as the original."""

from __future__ import annotations

import json
from typing import Any

from chaoslib.types import Configuration, Secrets
from kubernetes.client.exceptions import ApiException

from pitstop.activities.kube_api import ResourceKind
from pitstop.chaos_toolkit.istio import istio_client

__all__ = ["get_virtual_service"]

DEFAULT_VERSION = "networking.istio.io/v1alpha3"


def virtual_service_path(name: str, ns: str, version: str) -> str:
    return ResourceKind(version, "virtualservices").object_path(name=name, namespace=ns)


def error_result(exc: ApiException) -> dict[str, Any]:
    """The original's answer for a failed call: the status, the decoded body and the headers."""
    headers = dict(exc.headers or {})
    body: Any = exc.body
    if isinstance(body, str | bytes) and "json" in str(headers.get("Content-Type", "")):
        try:
            body = json.loads(body)
        except ValueError:
            pass
    return {"status": exc.status, "body": body, "headers": headers}


def get_virtual_service(
    virtual_service_name: str,
    ns: str = "default",
    version: str = DEFAULT_VERSION,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> dict[str, Any]:
    """The virtual service `virtual_service_name` in `ns`: `{"status": 200, "body": <object>, "headers": {}}`,
    or the API server's status and answer (e.g. 404) when it cannot be read."""
    client = istio_client(configuration, secrets)
    try:
        body = client.get(virtual_service_path(virtual_service_name, ns, version))
    except ApiException as exc:
        return error_result(exc)
    finally:
        client.api_client.close()
    return {"status": 200, "body": body, "headers": {}}
