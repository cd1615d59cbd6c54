"""kube-state-metrics and the kubelet's machine series, rendered from a region's live objects.

Real clusters run kube-state-metrics (KSM) next to cAdvisor, and rightsizing tools and dashboards read both; the
sandbox serves the same names with the same labels (KSM's docs/metrics/*), from the objects the simulator's
`RegionWatcher` watches (so only workloads' pods and ReplicaSets, those labelled `app`), plus `region` and
`cluster` like every sandbox series:

- `kube_pod_owner{namespace,pod,uid,owner_kind,owner_name,owner_is_controller}`
- `kube_replicaset_owner{namespace,replicaset,owner_kind,owner_name,owner_is_controller}`
- `kube_pod_container_resource_requests` / `_limits{namespace,pod,uid,container,node,resource,unit}`
  (cpu in `core`, memory in `byte`; a resource without a limit has no `_limits` series, as in KSM)
- `kube_pod_container_status_last_terminated_reason{namespace,pod,uid,container,reason}`
- `kube_deployment_spec_replicas` / `kube_deployment_status_replicas_available{namespace,deployment}`
- `kube_horizontalpodautoscaler_spec_max_replicas` / `_min_replicas{namespace,horizontalpodautoscaler}`
- `kube_node_info{node,kernel_version,os_image,container_runtime_version,kubelet_version,kubeproxy_version,
  pod_cidr,provider_id,system_uuid,internal_ip}`
- `kube_node_status_allocatable` / `_capacity{node,resource,unit}`
- `kube_node_labels{node,label_<name>...}`: every node label, as KSM does with
  `--metric-labels-allowlist=nodes=[*]` (names sanitised: `node.kubernetes.io/instance-type` becomes
  `label_node_kubernetes_io_instance_type`)
- cAdvisor's `machine_cpu_cores` and `machine_memory_bytes{node}` (the node's capacity).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes.client import ApiClient

from pitstop.sandbox.cluster_watch import NodeSummary, OwnerRef, RegionSnapshot, RegionWatcher
from pitstop.sandbox.kube_objects import list_objects

Labels = Sequence[tuple[str, str]]

UNITS = {"cpu": "core", "memory": "byte", "pods": "integer", "ephemeral-storage": "byte"}

FAMILIES: tuple[tuple[str, str], ...] = (
    ("kube_pod_owner", "Information about the Pod's owner."),
    ("kube_replicaset_owner", "Information about the ReplicaSet's owner."),
    ("kube_pod_container_resource_requests", "The number of requested request resource by a container."),
    ("kube_pod_container_resource_limits", "The number of requested limit resource by a container."),
    ("kube_pod_container_status_last_terminated_reason",
     "Describes the last reason the container was in terminated state."),
    ("kube_deployment_spec_replicas", "Number of desired pods for a deployment."),
    ("kube_deployment_status_replicas_available", "The number of available replicas per deployment."),
    ("kube_horizontalpodautoscaler_spec_max_replicas", "Upper limit for the number of pods set by the autoscaler."),
    ("kube_horizontalpodautoscaler_spec_min_replicas", "Lower limit for the number of pods set by the autoscaler."),
    ("kube_node_info", "Information about a cluster node."),
    ("kube_node_labels", "Kubernetes labels converted to Prometheus labels."),
    ("kube_node_status_allocatable", "The allocatable for different resources of a node that are available for scheduling."),
    ("kube_node_status_capacity", "The capacity for different resources of a node."),
    ("machine_cpu_cores", "Number of logical CPU cores."),
    ("machine_memory_bytes", "Amount of memory installed on the machine."),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_text(labels: Labels) -> str:
    """`k="v",...` with values escaped as the text exposition format requires."""
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels)


def _sample(name: str, labels: Labels, value: float) -> str:
    return f"{name}{{{label_text(labels)}}} {float(value)!r}"


def sanitize_label_name(name: str) -> str:
    """KSM's conversion of a Kubernetes label key into a Prometheus label name (`label_` prefix added)."""
    return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _owners(owners: Sequence[OwnerRef]) -> list[tuple[str, str, str]]:
    """(kind, name, is_controller) per owner; KSM reports `<none>` for an object without owners."""
    if not owners:
        return [("<none>", "<none>", "<none>")]
    return [(o.kind, o.name, "true" if o.controller else "false") for o in owners]


def _node_lines(node: NodeSummary, common: Labels) -> list[tuple[str, str]]:
    """(family, sample line) pairs of one node."""
    out: list[tuple[str, str]] = []
    n = (*common, ("node", node.name))
    out.append(("kube_node_info", _sample("kube_node_info", (*n, *node.info), 1)))
    out.append(("kube_node_labels", _sample("kube_node_labels", (*n, *(
        (sanitize_label_name(k), v) for k, v in node.labels)), 1)))
    for family, amounts in (("kube_node_status_allocatable", node.allocatable),
                            ("kube_node_status_capacity", node.capacity)):
        for resource, amount in amounts:
            out.append((family, _sample(family, (*n, ("resource", resource.replace("-", "_")),
                                                 ("unit", UNITS.get(resource, "integer"))), amount)))
    capacity = dict(node.capacity)
    if "cpu" in capacity:
        out.append(("machine_cpu_cores", _sample("machine_cpu_cores", n, capacity["cpu"])))
    if "memory" in capacity:
        out.append(("machine_memory_bytes", _sample("machine_memory_bytes", n, capacity["memory"])))
    return out


def kube_state_samples(snapshot: RegionSnapshot, *, extra: Labels = ()) -> list[tuple[str, str]]:
    """(family, sample line) pairs for one region's live objects (`extra` labels after region and cluster)."""
    common = (("region", snapshot.region), ("cluster", snapshot.region), *extra)
    out: list[tuple[str, str]] = []
    add: Callable[[str, Labels, float], None] = lambda name, labels, value: out.append(  # noqa: E731
        (name, _sample(name, labels, value)))
    for p in snapshot.pods:
        pod = (*common, ("namespace", p.namespace), ("pod", p.name), ("uid", p.uid))
        for kind, name, controller in _owners(p.owners):
            add("kube_pod_owner", (*pod, ("owner_kind", kind), ("owner_name", name),
                                   ("owner_is_controller", controller)), 1)
        container = (*pod, ("container", p.container))
        for resource, unit, request, limit, limit_set in (
                ("cpu", "core", p.cpu_request, p.cpu_limit, p.cpu_limit_set),
                ("memory", "byte", p.memory_request, p.memory_limit, p.memory_limit_set)):
            resource_labels: Labels = (*container, ("node", p.node), ("resource", resource), ("unit", unit))
            if request > 0:
                add("kube_pod_container_resource_requests", resource_labels, request)
            if limit_set:
                add("kube_pod_container_resource_limits", resource_labels, limit)
        if p.last_terminated_reason:
            add("kube_pod_container_status_last_terminated_reason",
                (*container, ("reason", p.last_terminated_reason)), 1)
    for rs in snapshot.replicasets:
        for kind, name, controller in _owners(rs.owners):
            add("kube_replicaset_owner", (*common, ("namespace", rs.namespace), ("replicaset", rs.name),
                                          ("owner_kind", kind), ("owner_name", name),
                                          ("owner_is_controller", controller)), 1)
    for d in snapshot.deployments:
        deployment: Labels = (*common, ("namespace", d.namespace), ("deployment", d.name))
        add("kube_deployment_spec_replicas", deployment, d.replicas)
        add("kube_deployment_status_replicas_available", deployment, d.available_replicas)
    for h in snapshot.hpas:
        hpa: Labels = (*common, ("namespace", h.namespace), ("horizontalpodautoscaler", h.name))
        add("kube_horizontalpodautoscaler_spec_max_replicas", hpa, h.max_replicas)
        add("kube_horizontalpodautoscaler_spec_min_replicas", hpa, h.min_replicas)
    for node in snapshot.nodes:
        out.extend(_node_lines(node, common))
    return out


def restart_samples(snapshot: RegionSnapshot, *, extra: Labels = ()) -> list[str]:
    """`kube_pod_container_status_restarts_total` of the pods as they are (the simulator serves its own, which
    also counts the synthetic restarts of crash-loop faults on clusters without kwok's Stages)."""
    return [_sample("kube_pod_container_status_restarts_total",
                    (("region", snapshot.region), ("cluster", snapshot.region), *extra, ("namespace", p.namespace),
                     ("pod", p.name), ("container", p.container), ("uid", p.uid)), p.restart_count)
            for p in snapshot.pods]


def live_snapshot(api_client: ApiClient, *, region: str) -> RegionSnapshot:
    """One listing of the objects the series are made from (what `RegionWatcher` watches), e.g. for a backfill."""
    watcher = RegionWatcher(region=region, api_client=api_client)
    items: dict[str, list[Any]] = {}
    for kind in ("Pod", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "Node"):
        objects, _ = list_objects(api_client, kind=kind, **watcher.query(kind))
        items[kind] = [summary for obj in objects if (summary := watcher.summarize(kind, obj)) is not None]
    return RegionSnapshot(region=region, deployments=items["Deployment"], pods=items["Pod"], routes={}, subsets={},
                          faults=[], replicasets=items["ReplicaSet"], hpas=items["HorizontalPodAutoscaler"],
                          nodes=items["Node"])


def render_kube_state(snapshots: Sequence[RegionSnapshot]) -> list[str]:
    """Text exposition lines (HELP, TYPE, samples) of every family, regions' samples together."""
    by_family: dict[str, list[str]] = {name: [] for name, _ in FAMILIES}
    for snapshot in snapshots:
        for family, line in kube_state_samples(snapshot):
            by_family[family].append(line)
    lines: list[str] = []
    for name, help_text in FAMILIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *by_family[name]]
    return lines
