"""What every sandbox region's cluster holds before the fleet arrives.

- kwok-managed fake nodes of a few instance types, labelled like cloud nodes
  (`node.kubernetes.io/instance-type`, `topology.kubernetes.io/region`/`zone`) plus
  `pitstop.dev/hourly-price-usd`, with CPU/memory/pods capacity;
- team namespaces, each with a ResourceQuota and a LimitRange giving containers default requests/limits;
- the Istio networking CRDs (VirtualService, DestinationRule) from `sandbox/crds/`, with Istio's real
  openAPI schemas, so the API server rejects malformed routing objects.

`populate_cluster` is idempotent: existing objects are left as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

CRDS_DIR = Path(__file__).resolve().parent / "crds"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
HOURLY_PRICE_LABEL = "pitstop.dev/hourly-price-usd"
TEAM_LABEL = "pitstop.dev/team"

TEAM_NAMESPACES = ["team-telematics", "team-ota", "team-identity", "team-analytics", "team-platform"]


class InstanceType(BaseModel):
    """A cloud machine type the sandbox's fake nodes imitate."""

    name: str
    cpu: int
    memory_gib: int
    hourly_price_usd: float


INSTANCE_TYPES = [
    InstanceType(name="m6i.xlarge", cpu=4, memory_gib=16, hourly_price_usd=0.192),
    InstanceType(name="m6i.2xlarge", cpu=8, memory_gib=32, hourly_price_usd=0.384),
    InstanceType(name="c6i.2xlarge", cpu=8, memory_gib=16, hourly_price_usd=0.340),
    InstanceType(name="r6i.xlarge", cpu=4, memory_gib=32, hourly_price_usd=0.252),
]
NODES_PER_INSTANCE_TYPE = 2
# Prices differ by region, as they do at cloud providers.
REGION_PRICE_FACTOR = {"eu-central": 1.15, "us-east": 1.0}


class TeamQuota(BaseModel):
    """ResourceQuota `hard` limits every team namespace gets, and its containers' defaults."""

    requests_cpu: str = "24"
    requests_memory: str = "48Gi"
    limits_cpu: str = "48"
    limits_memory: str = "96Gi"
    pods: str = "200"
    default_request_cpu: str = "100m"
    default_request_memory: str = "128Mi"
    default_limit_cpu: str = "500m"
    default_limit_memory: str = "512Mi"


class ClusterContentsError(RuntimeError):
    """Populating a sandbox cluster failed or did not converge; the message names the object."""


def populate_cluster(*, api: k8s.ApiClient, region: str, quota: TeamQuota | None = None) -> None:
    """Install CRDs, team namespaces with quotas and the region's nodes; wait until they are usable."""
    _apply_istio_crds(api=api)
    _apply_team_namespaces(api=api, quota=quota or TeamQuota())
    _apply_nodes(api=api, region=region)
    _wait_until_usable(api=api)


def node_manifests(*, region: str) -> list[dict[str, Any]]:
    """The kwok nodes of one region: NODES_PER_INSTANCE_TYPE of each instance type, spread over zones."""
    factor = REGION_PRICE_FACTOR.get(region, 1.0)
    nodes = []
    for instance_type in INSTANCE_TYPES:
        for index in range(NODES_PER_INSTANCE_TYPE):
            name = f"{region}-{instance_type.name.replace('.', '-')}-{index}"
            zone = f"{region}-{'abc'[index % 3]}"
            resources = {"cpu": str(instance_type.cpu), "memory": f"{instance_type.memory_gib}Gi", "pods": "110"}
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                            INSTANCE_TYPE_LABEL: instance_type.name,
                            REGION_LABEL: region,
                            ZONE_LABEL: zone,
                            HOURLY_PRICE_LABEL: f"{instance_type.hourly_price_usd * factor:.3f}",
                        },
                    },
                    "status": {"allocatable": resources, "capacity": resources},
                }
            )
    return nodes


def team_namespace_manifests(*, quota: TeamQuota) -> list[dict[str, Any]]:
    """Namespace, ResourceQuota and LimitRange of every team."""
    manifests: list[dict[str, Any]] = []
    for namespace in TEAM_NAMESPACES:
        team = namespace.removeprefix("team-")
        manifests.append(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {TEAM_LABEL: team}}}
        )
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "team-quota", "namespace": namespace},
                "spec": {
                    "hard": {
                        "requests.cpu": quota.requests_cpu,
                        "requests.memory": quota.requests_memory,
                        "limits.cpu": quota.limits_cpu,
                        "limits.memory": quota.limits_memory,
                        "pods": quota.pods,
                    }
                },
            }
        )
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": {"name": "container-defaults", "namespace": namespace},
                "spec": {
                    "limits": [
                        {
                            "type": "Container",
                            "defaultRequest": {
                                "cpu": quota.default_request_cpu,
                                "memory": quota.default_request_memory,
                            },
                            "default": {"cpu": quota.default_limit_cpu, "memory": quota.default_limit_memory},
                        }
                    ]
                },
            }
        )
    return manifests


def istio_crd_manifests() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(CRDS_DIR.glob("*.yaml")):
        documents.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return documents


def _as_body(manifest: dict[str, Any]) -> Any:
    """The official client sends plain dicts as they are; its stubs only declare its model classes."""
    return manifest


def _create_if_absent(create: Callable[[], object], what: str) -> None:
    try:
        create()
    except ApiException as exc:
        if exc.status != 409:
            raise ClusterContentsError(f"creating {what} failed: {exc.status} {exc.reason}: {exc.body}") from exc


def _apply_istio_crds(*, api: k8s.ApiClient) -> None:
    extensions = k8s.ApiextensionsV1Api(api)
    names = []
    for crd in istio_crd_manifests():
        name = crd["metadata"]["name"]
        names.append(name)
        _create_if_absent(partial(extensions.create_custom_resource_definition, body=_as_body(crd)), f"CRD {name}")

    def established() -> bool:
        for name in names:
            status = extensions.read_custom_resource_definition(name).status
            conditions = (status.conditions if status else None) or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_for(f"CRDs {', '.join(names)} to be Established", established, timeout=60)


def _apply_team_namespaces(*, api: k8s.ApiClient, quota: TeamQuota) -> None:
    core = k8s.CoreV1Api(api)
    for manifest in team_namespace_manifests(quota=quota):
        kind, meta = manifest["kind"], manifest["metadata"]
        what = f"{kind} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")
        if kind == "Namespace":
            _create_if_absent(partial(core.create_namespace, body=_as_body(manifest)), what)
        elif kind == "ResourceQuota":
            _create_if_absent(partial(core.create_namespaced_resource_quota, meta["namespace"], _as_body(manifest)), what)
        else:
            _create_if_absent(partial(core.create_namespaced_limit_range, meta["namespace"], _as_body(manifest)), what)


def _apply_nodes(*, api: k8s.ApiClient, region: str) -> None:
    core = k8s.CoreV1Api(api)
    for manifest in node_manifests(region=region):
        _create_if_absent(partial(core.create_node, body=_as_body(manifest)), f"Node {manifest['metadata']['name']}")


def _wait_until_usable(*, api: k8s.ApiClient) -> None:
    """Nodes Ready (kwok), each team's `default` ServiceAccount present (controller-manager)."""
    core = k8s.CoreV1Api(api)

    def nodes_ready() -> bool:
        nodes = core.list_node(label_selector="type=kwok").items
        return bool(nodes) and all(node_is_ready(node) for node in nodes)

    wait_for("every kwok node to be Ready (is the kwok controller running?)", nodes_ready, timeout=90)

    def service_accounts_exist() -> bool:
        for namespace in TEAM_NAMESPACES:
            core.read_namespaced_service_account("default", namespace)
        return True

    wait_for(
        "the `default` ServiceAccount in every team namespace (is kube-controller-manager running?)",
        service_accounts_exist,
        timeout=90,
    )


def node_is_ready(node: k8s.V1Node) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def wait_for(what: str, predicate: Callable[[], bool], *, timeout: float, interval: float = 0.5) -> None:
    """Poll `predicate()` until it is true; raise ClusterContentsError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except ApiException as exc:  # the object waited for may not exist yet
            last_error = f" (last error: {exc.status} {exc.reason})"
        time.sleep(interval)
    raise ClusterContentsError(f"timed out after {timeout:.0f}s waiting for {what}{last_error}")
