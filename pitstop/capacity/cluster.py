"""What capacity reads from a cluster's objects (Kubernetes JSON in, typed models out; pure).

Deployments -> `WorkloadInfo` (team: label `pitstop.dev/team`, else the namespace, as the fleet-hygiene report);
HorizontalPodAutoscalers (autoscaling/v2) -> which Deployments they scale and on which resources (an HPA without
metrics scales on CPU, Kubernetes' default); Nodes -> allocatable and price (label, or a price file per instance
type); ResourceQuotas -> their `requests.cpu` / `requests.memory` (or `cpu` / `memory`). A pod belongs to the
Deployment whose name is its name without the ReplicaSet and pod suffixes (`<deployment>-<hash>-<id>`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pitstop.hygiene.inventory import team_of

from .binpack import NodeInfo
from .collection import QuotaInfo
from .strategies import ContainerSpec, HpaTargets, Resources
from .workloads import WorkloadInfo

JsonObject = dict[str, Any]
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
PRICE_LABEL = "pitstop.dev/hourly-price-usd"
_SUFFIXES = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
             "E": 1e18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]{0,2})$")


def quantity(raw: object) -> float:
    """A Kubernetes resource quantity ("500m", "1.5", "512Mi", "1G") as a number (cores or bytes)."""
    match = _QUANTITY.match(str(raw).strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {raw!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def _resources(values: Mapping[str, Any] | None) -> Resources:
    values = values or {}
    return Resources(cpu_cores=quantity(values["cpu"]) if "cpu" in values else None,
                     memory_bytes=quantity(values["memory"]) if "memory" in values else None)


def hpa_targets(hpas: Iterable[JsonObject]) -> dict[tuple[str, str], HpaTargets]:
    """(namespace, Deployment name) -> the resources its HPA scales on."""
    found = {}
    for hpa in hpas:
        spec, meta = hpa.get("spec") or {}, hpa.get("metadata") or {}
        target = spec.get("scaleTargetRef") or {}
        if target.get("kind") != "Deployment":
            continue
        metrics = spec.get("metrics") or []
        names = {(m.get("resource") or m.get("containerResource") or {}).get("name") for m in metrics
                 if m.get("type") in ("Resource", "ContainerResource")}
        found[(meta.get("namespace", ""), target.get("name", ""))] = HpaTargets(
            name=meta.get("name", ""), cpu="cpu" in names or not metrics, memory="memory" in names)
    return found


def workloads(deployments: Iterable[JsonObject], hpas: Iterable[JsonObject], *,
              exclude_namespaces: Iterable[str] = (), namespaces: Iterable[str] = ()) -> list[WorkloadInfo]:
    targets = hpa_targets(hpas)
    excluded, only = set(exclude_namespaces), set(namespaces)
    found = []
    for d in deployments:
        meta = d.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        if namespace in excluded or (only and namespace not in only):
            continue
        pod_spec = ((d.get("spec") or {}).get("template") or {}).get("spec") or {}
        containers = [ContainerSpec(name=c.get("name", ""), requests=_resources((c.get("resources") or {}).get("requests")),
                                    limits=_resources((c.get("resources") or {}).get("limits")))
                      for c in pod_spec.get("containers") or []]
        found.append(WorkloadInfo(namespace=namespace, name=name, team=team_of(d), containers=containers,
                                  replicas=int((d.get("spec") or {}).get("replicas", 1) or 0),
                                  hpa=targets.get((namespace, name))))
    return found


def nodes(objects: Iterable[JsonObject], *, prices: Mapping[str, float] | None = None,
          price_label: str = PRICE_LABEL) -> list[NodeInfo]:
    """Nodes with their allocatable; price from `prices[instance type]` when given, else the price label."""
    found = []
    for n in objects:
        meta, status = n.get("metadata") or {}, n.get("status") or {}
        labels = meta.get("labels") or {}
        allocatable = status.get("allocatable") or status.get("capacity") or {}
        instance_type = labels.get(INSTANCE_TYPE_LABEL, "unknown")
        price = (prices or {}).get(instance_type)
        if price is None and price_label in labels:
            try:
                price = float(labels[price_label])
            except ValueError:
                price = None
        found.append(NodeInfo(name=meta.get("name", ""), instance_type=instance_type,
                              cpu_cores=quantity(allocatable.get("cpu", "0")),
                              memory_bytes=quantity(allocatable.get("memory", "0")),
                              pods=int(quantity(allocatable.get("pods", "110"))), hourly_price_usd=price))
    return found


def quotas(objects: Iterable[JsonObject]) -> list[QuotaInfo]:
    found = []
    for q in objects:
        meta, hard = q.get("metadata") or {}, (q.get("spec") or {}).get("hard") or {}
        cpu, memory = hard.get("requests.cpu", hard.get("cpu")), hard.get("requests.memory", hard.get("memory"))
        found.append(QuotaInfo(namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                               requests_cpu_cores=quantity(cpu) if cpu is not None else None,
                               requests_memory_bytes=quantity(memory) if memory is not None else None))
    return found


def workload_of_pod(pod: str, names: set[str]) -> str | None:
    """The Deployment (among `names`) a pod belongs to: its name without `-<replicaset hash>-<pod id>`."""
    parts = pod.rsplit("-", 2)
    if len(parts) == 3 and parts[0] in names:
        return parts[0]
    return None
