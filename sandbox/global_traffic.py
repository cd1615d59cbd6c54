"""The sandbox's global traffic policy: how vehicles are spread over regions (GSLB-style weights).

Each region's cluster holds its own weight in the ConfigMap `pitstop-sandbox/global-traffic`
(`data.weight`, default 100). The simulator gives a region `weight / sum(weights)` of the global
vehicle traffic, so setting a region's weight to 0 fails its traffic over to the others, as a
weighted DNS record would. pitstop's failover runbooks change it through these functions or a plain
ConfigMap patch.
"""

from __future__ import annotations

from kubernetes.client import ApiClient

from sandbox.fleet import GLOBAL_TRAFFIC_CONFIGMAP, SANDBOX_NAMESPACE
from sandbox.kube_objects import get_object, server_side_apply

DEFAULT_WEIGHT = 100


def set_region_traffic_weight(*, api_client: ApiClient, weight: int) -> None:
    """Set the weight of the region behind `api_client` (0 drains it)."""
    if weight < 0:
        raise ValueError(f"a region's traffic weight must be >= 0, not {weight}")
    server_side_apply(api_client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SANDBOX_NAMESPACE}})
    server_side_apply(api_client, {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": GLOBAL_TRAFFIC_CONFIGMAP, "namespace": SANDBOX_NAMESPACE},
        "data": {"weight": str(weight)},
    })


def get_region_traffic_weight(*, api_client: ApiClient) -> int:
    """The region's current weight (DEFAULT_WEIGHT when never set)."""
    configmap = get_object(api_client, kind="ConfigMap", name=GLOBAL_TRAFFIC_CONFIGMAP, namespace=SANDBOX_NAMESPACE)
    value = ((configmap or {}).get("data") or {}).get("weight")
    return DEFAULT_WEIGHT if value is None else int(float(value))
