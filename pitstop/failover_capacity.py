"""Can the surviving regions carry a failing region's traffic? The capacity decision of a failover (pure).

Each survivor's inventory (`RegionCapacityInventory`, read by the regional activity `failover.capacity_inventory`)
holds its services' Deployments (replicas, per-pod requests, the HorizontalPodAutoscaler's max if one scales
it), its ResourceQuotas (hard and used) and its nodes' free allocatable resources. `plan_failover_capacity` scales
every service by the survivors' load factor (`pitstop.traffic_authority.load_factor`: survivors keep their
relative weights, so each grows by `sum(all) / sum(survivors)`), plus `headroom`, and checks the extra pods
against, in this order: the HPA's `maxReplicas`, each namespace's quota (`requests.cpu`, `requests.memory`,
`pods`, and `cpu`/`memory` as their aliases), and the region's free node allocatable. Any shortage makes the plan
insufficient: the failover runbook escalates and moves no traffic.

The plan's items come callees first when a `graph.order` is given (pre-scale the services others call before
their callers), each with its `original` replica count so failback scales back to it.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from pitstop.traffic_authority import load_factor

QUOTA_KEYS = {"cpu": ("requests.cpu", "cpu"), "memory": ("requests.memory", "memory"), "pods": ("pods",)}


class ServiceCapacity(BaseModel):
    namespace: str
    name: str = Field(description="Deployment name")
    replicas: int = Field(ge=0)
    cpu_request: float = Field(0.0, ge=0, description="cores per pod")
    memory_request: float = Field(0.0, ge=0, description="bytes per pod")
    hpa_max_replicas: int | None = Field(None, description="maxReplicas of the HPA scaling it, if any")


class QuotaUsage(BaseModel):
    namespace: str
    name: str
    hard: dict[str, float] = Field(default_factory=dict, description="resource -> base units (cores, bytes, count)")
    used: dict[str, float] = Field(default_factory=dict)


class NodeCapacity(BaseModel):
    schedulable_nodes: int = 0
    free_cpu: float = Field(0.0, description="allocatable minus requested, cores, over schedulable nodes")
    free_memory: float = Field(0.0, description="bytes")
    free_pods: int = 0


class RegionCapacityInventory(BaseModel):
    region: str
    services: list[ServiceCapacity] = Field(default_factory=list)
    quotas: list[QuotaUsage] = Field(default_factory=list)
    nodes: NodeCapacity = Field(default_factory=NodeCapacity)


class ScaleItem(BaseModel):
    region: str
    namespace: str
    name: str
    replicas: int = Field(description="replicas the pre-scale sets")
    original: int = Field(description="replicas before the failover (what failback restores)")


class CapacityPlan(BaseModel):
    sufficient: bool
    load_factor: float
    items: list[ScaleItem] = Field(default_factory=list, description="services to pre-scale, callees first")
    shortages: list[str] = Field(default_factory=list)


def required_replicas(replicas: int, *, factor: float, headroom: float) -> int:
    """Replicas that carry `factor` times today's load with `headroom` (0.2 = 20 %) spare."""
    if replicas == 0:
        return 0
    return max(replicas, math.ceil(round(replicas * factor * (1.0 + headroom), 6)))


def _quota_shortages(inventory: RegionCapacityInventory, extra: dict[str, dict[str, float]]) -> list[str]:
    shortages = []
    for quota in inventory.quotas:
        needs = extra.get(quota.namespace)
        if not needs:
            continue
        for resource, keys in QUOTA_KEYS.items():
            for key in keys:
                if key not in quota.hard:
                    continue
                free = quota.hard[key] - quota.used.get(key, 0.0)
                if needs[resource] > free + 1e-9:
                    shortages.append(f"{inventory.region}: quota {quota.namespace}/{quota.name} {key}: needs "
                                     f"{needs[resource]:g} more, {max(0.0, free):g} free")
    return shortages


def _region_plan(inventory: RegionCapacityInventory, *, factor: float,
                 headroom: float) -> tuple[list[ScaleItem], list[str]]:
    items, shortages = [], []
    extra: dict[str, dict[str, float]] = {}
    for service in inventory.services:
        target = required_replicas(service.replicas, factor=factor, headroom=headroom)
        if target == service.replicas:
            continue
        if service.hpa_max_replicas is not None and target > service.hpa_max_replicas:
            shortages.append(f"{inventory.region}: {service.namespace}/{service.name} needs {target} replicas, "
                             f"its HorizontalPodAutoscaler allows {service.hpa_max_replicas}")
        added = target - service.replicas
        need = extra.setdefault(service.namespace, {"cpu": 0.0, "memory": 0.0, "pods": 0.0})
        need["cpu"] += added * service.cpu_request
        need["memory"] += added * service.memory_request
        need["pods"] += added
        items.append(ScaleItem(region=inventory.region, namespace=service.namespace, name=service.name,
                               replicas=target, original=service.replicas))
    shortages += _quota_shortages(inventory, extra)
    total = {key: sum(n[key] for n in extra.values()) for key in ("cpu", "memory", "pods")}
    nodes = inventory.nodes
    for key, free in (("cpu", nodes.free_cpu), ("memory", nodes.free_memory), ("pods", float(nodes.free_pods))):
        if total[key] > free + 1e-9:
            shortages.append(f"{inventory.region}: nodes have {max(0.0, free):g} {key} free, the pre-scale needs "
                             f"{total[key]:g}")
    return items, shortages


def plan_failover_capacity(
    inventories: list[RegionCapacityInventory], *, weights: dict[str, int], failing: str,
    headroom: float = 0.0, order: list[str] | None = None,
) -> CapacityPlan:
    """The pre-scale plan for the survivors (`inventories`) when `failing` gets no traffic.

    `order`: `namespace/name` callees first (a `graph.order`); services it does not name come after, by name.
    """
    factor = load_factor(weights, failing=failing)
    if math.isinf(factor):
        return CapacityPlan(sufficient=False, load_factor=0.0,
                            shortages=[f"no region but {failing} has a traffic weight above 0"])
    items: list[ScaleItem] = []
    shortages: list[str] = []
    for inventory in inventories:
        if inventory.region == failing:
            continue
        region_items, region_shortages = _region_plan(inventory, factor=factor, headroom=headroom)
        items += region_items
        shortages += region_shortages
    rank = {ref: index for index, ref in enumerate(order or [])}
    items.sort(key=lambda i: (rank.get(f"{i.namespace}/{i.name}", len(rank)), i.namespace, i.name, i.region))
    return CapacityPlan(sufficient=not shortages, load_factor=round(factor, 4), items=items, shortages=shortages)
