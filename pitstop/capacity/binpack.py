"""Node plans: how many nodes of each instance type the pods need, by first-fit and best-fit decreasing over
CPU and memory together (and pods per node), with a lower bound and the gap to it.

Pods are packed by their requests (today's, or the recommended ones). Items are sorted by their dominant share
(the larger of CPU / node CPU and memory / node memory), largest first. First fit puts a pod on the first node
with room; best fit on the node left with the least room (normalised CPU + memory). The lower bound is the
volume bound max(ceil(sum CPU / node CPU), ceil(sum memory / node memory), ceil(pods / pods per node)) - the LP
relaxation's optimum for one instance type - so `gap_percent` says how far a plan can be from the optimum at most.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, Field


class NodeInfo(BaseModel):
    """A node as the Kubernetes API shows it: allocatable resources, instance type, price label."""

    name: str
    instance_type: str
    cpu_cores: float
    memory_bytes: float
    pods: int
    hourly_price_usd: float | None = None


class NodeType(BaseModel):
    name: str
    cpu_cores: float
    memory_bytes: float
    pods: int
    hourly_price_usd: float | None = None


class Algorithm(StrEnum):
    FIRST_FIT = "first_fit_decreasing"
    BEST_FIT = "best_fit_decreasing"


class NodeUse(BaseModel):
    cpu_percent: float
    memory_percent: float
    pods: int


class PackResult(BaseModel):
    instance_type: str
    algorithm: Algorithm
    nodes: int
    lower_bound: int
    gap_percent: float
    unplaceable: int = Field(0, description="pods bigger than one node of this type")
    hourly_cost_usd: float | None = None
    utilisation: list[NodeUse] = Field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return self.unplaceable == 0


Pod = tuple[float, float]  # (cores, bytes) requested by one pod


def node_types(nodes: Sequence[NodeInfo]) -> list[NodeType]:
    """One type per instance type: the smallest allocatable seen and the median price."""
    by_type: dict[str, list[NodeInfo]] = {}
    for n in nodes:
        by_type.setdefault(n.instance_type, []).append(n)
    types = []
    for name, group in sorted(by_type.items()):
        prices = sorted(n.hourly_price_usd for n in group if n.hourly_price_usd is not None)
        types.append(NodeType(name=name, cpu_cores=min(n.cpu_cores for n in group),
                              memory_bytes=min(n.memory_bytes for n in group), pods=min(n.pods for n in group),
                              hourly_price_usd=prices[len(prices) // 2] if prices else None))
    return types


def lower_bound(pods: Sequence[Pod], node: NodeType) -> int:
    if not pods:
        return 0
    return max(math.ceil(sum(p[0] for p in pods) / node.cpu_cores - 1e-9),
               math.ceil(sum(p[1] for p in pods) / node.memory_bytes - 1e-9),
               math.ceil(len(pods) / node.pods))


def pack(pods: Sequence[Pod], node: NodeType, algorithm: Algorithm) -> PackResult:
    """Pack every pod that fits a node of this type; count those that fit none."""
    def share(p: Pod) -> tuple[float, float]:
        c, m = p[0] / node.cpu_cores, p[1] / node.memory_bytes
        return max(c, m), c + m

    items = sorted((p for p in pods if p[0] <= node.cpu_cores and p[1] <= node.memory_bytes), key=share, reverse=True)
    free: list[list[float]] = []  # per node: [cpu left, memory left, pods left]
    for cpu, memory in items:
        chosen = -1
        best = math.inf
        for i, (fc, fm, fp) in enumerate(free):
            if fc + 1e-9 >= cpu and fm + 1e-6 >= memory and fp >= 1:
                if algorithm is Algorithm.FIRST_FIT:
                    chosen = i
                    break
                slack = (fc - cpu) / node.cpu_cores + (fm - memory) / node.memory_bytes
                if slack < best:
                    chosen, best = i, slack
        if chosen < 0:
            free.append([node.cpu_cores, node.memory_bytes, float(node.pods)])
            chosen = len(free) - 1
        free[chosen][0] -= cpu
        free[chosen][1] -= memory
        free[chosen][2] -= 1
    bound = lower_bound(items, node)
    return PackResult(
        instance_type=node.name, algorithm=algorithm, nodes=len(free), lower_bound=bound,
        gap_percent=round(100.0 * (len(free) - bound) / bound, 2) if bound else 0.0,
        unplaceable=len(pods) - len(items),
        hourly_cost_usd=round(len(free) * node.hourly_price_usd, 4) if node.hourly_price_usd is not None else None,
        utilisation=[NodeUse(cpu_percent=round(100 * (1 - fc / node.cpu_cores), 1),
                             memory_percent=round(100 * (1 - fm / node.memory_bytes), 1),
                             pods=node.pods - int(fp)) for fc, fm, fp in free],
    )


class CurrentCluster(BaseModel):
    nodes: int
    nodes_by_type: dict[str, int]
    cpu_cores: float
    memory_bytes: float
    requested_cpu_cores: float
    requested_memory_bytes: float
    hourly_cost_usd: float | None

    @property
    def cpu_percent(self) -> float:
        return 100 * self.requested_cpu_cores / self.cpu_cores if self.cpu_cores else 0.0

    @property
    def memory_percent(self) -> float:
        return 100 * self.requested_memory_bytes / self.memory_bytes if self.memory_bytes else 0.0


class NodePlan(BaseModel):
    """One scenario's plan (today's requests or the recommended ones): each type by both algorithms, the best."""

    scenario: str
    pods: int
    cpu_cores: float
    memory_bytes: float
    plans: list[PackResult]
    best: PackResult | None = Field(None, description="the cheapest feasible plan (fewest nodes without prices)")


def plan_nodes(pods: Sequence[Pod], types: Sequence[NodeType], *, scenario: str) -> NodePlan:
    plans = [pack(pods, t, a) for t in types for a in Algorithm]
    feasible = [p for p in plans if p.feasible]
    best = min(feasible, key=lambda p: (p.hourly_cost_usd if p.hourly_cost_usd is not None else math.inf, p.nodes),
               default=None)
    return NodePlan(scenario=scenario, pods=len(pods), cpu_cores=round(sum(p[0] for p in pods), 4),
                    memory_bytes=sum(p[1] for p in pods), plans=plans, best=best)


def current_cluster(nodes: Sequence[NodeInfo], pods: Sequence[Pod]) -> CurrentCluster:
    prices = [n.hourly_price_usd for n in nodes]
    by_type: dict[str, int] = {}
    for n in nodes:
        by_type[n.instance_type] = by_type.get(n.instance_type, 0) + 1
    return CurrentCluster(
        nodes=len(nodes), nodes_by_type=by_type, cpu_cores=sum(n.cpu_cores for n in nodes),
        memory_bytes=sum(n.memory_bytes for n in nodes), requested_cpu_cores=sum(p[0] for p in pods),
        requested_memory_bytes=sum(p[1] for p in pods),
        hourly_cost_usd=round(sum(p for p in prices if p is not None), 4) if any(p is not None for p in prices) else None,
    )
