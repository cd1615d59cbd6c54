"""The capacity report over every region: node plans (today vs recommended vs the cluster as it is),
chargeback, savings, forecast flags (namespaces over their ResourceQuota, clusters out of nodes), as a typed
model (the JSON), Markdown (`markdown`) and HTML (`pitstop.capacity.render`).

Projected requests: today's requests of a namespace x its forecast growth (the peak of the forecast's last week
over the peak of the history's last week), per resource - load grows, teams scale out with it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from .binpack import CurrentCluster, NodePlan, Pod, current_cluster, node_types, plan_nodes
from .collection import RegionCapacity
from .cost import Charge, Chargeback, Savings, chargeback, savings, unit_prices
from .strategies import Status
from .workloads import WorkloadRecommendation

GIB = 2**30


class Flag(BaseModel):
    kind: str = Field(description="quota or nodes")
    region: str
    subject: str
    detail: str


class RegionReport(BaseModel):
    region: str
    current: CurrentCluster
    today: NodePlan
    recommended: NodePlan
    by_requests: Chargeback
    by_usage: Chargeback
    savings: Savings
    mape_percent: dict[str, float] = Field(default_factory=dict, description="namespace/resource -> back-test MAPE")


class Counts(BaseModel):
    workloads: int = 0
    containers: int = 0
    recommended: int = 0
    not_enough_data: int = 0
    no_data: int = 0
    hpa_skipped: int = 0
    excluded: int = 0


class CapacityReport(BaseModel):
    strategy: str
    regions: list[RegionReport]
    flags: list[Flag] = Field(default_factory=list)
    counts: Counts = Field(default_factory=Counts)
    monthly_cost_usd: float = 0.0
    monthly_savings_usd: float = 0.0
    markdown: str = ""


def pods_of(workloads: Sequence[WorkloadRecommendation], *, recommended: bool, growth: dict[str, float] | None = None) -> list[Pod]:
    pods: list[Pod] = []
    for w in workloads:
        replicas = w.replicas if growth is None else int(-(-w.replicas * growth.get(w.namespace, 1.0) // 1))
        pods += [w.pod_requests(recommended=recommended)] * replicas
    return pods


def charges_of(workloads: Sequence[WorkloadRecommendation]) -> list[Charge]:
    charges = []
    for w in workloads:
        (cpu, memory), (rcpu, rmemory) = w.pod_requests(recommended=False), w.pod_requests(recommended=True)
        charges.append(Charge(namespace=w.namespace, team=w.team, requested_cpu_cores=cpu * w.replicas,
                              requested_memory_bytes=memory * w.replicas, used_cpu_cores=w.mean_cpu_cores,
                              used_memory_bytes=w.mean_memory_bytes, recommended_cpu_cores=rcpu * w.replicas,
                              recommended_memory_bytes=rmemory * w.replicas))
    return charges


def region_report(capacity: RegionCapacity) -> RegionReport:
    types = node_types(capacity.nodes)
    today = pods_of(capacity.workloads, recommended=False)
    recommended_plan = plan_nodes(pods_of(capacity.workloads, recommended=True), types, scenario="recommended")
    current = current_cluster(capacity.nodes, today)
    prices = unit_prices(capacity.nodes)
    charges = charges_of(capacity.workloads)
    best = recommended_plan.best
    return RegionReport(
        region=capacity.region, current=current, today=plan_nodes(today, types, scenario="today"),
        recommended=recommended_plan, by_requests=chargeback(charges, prices, basis="requests"),
        by_usage=chargeback(charges, prices, basis="usage"),
        savings=savings(charges, prices, current_hourly=current.hourly_cost_usd,
                        planned_hourly=best.hourly_cost_usd if best else None),
        mape_percent={f"{f.name}/{f.resource}": round(f.mape_percent, 2) for f in capacity.namespace_forecasts
                      if f.mape_percent is not None},
    )


def flags_of(capacity: RegionCapacity) -> list[Flag]:
    growth = {(f.name, f.resource): f.growth for f in capacity.namespace_forecasts}
    requested: dict[str, list[float]] = {}
    for w in capacity.workloads:
        cpu, memory = w.pod_requests(recommended=False)
        totals = requested.setdefault(w.namespace, [0.0, 0.0])
        totals[0] += cpu * w.replicas
        totals[1] += memory * w.replicas
    flags = []
    for q in capacity.quotas:
        cpu, memory = requested.get(q.namespace, [0.0, 0.0])
        for resource, now, hard, unit in (("cpu", cpu, q.requests_cpu_cores, 1.0), ("memory", memory, q.requests_memory_bytes, GIB)):
            projected = now * growth.get((q.namespace, resource), 1.0)
            if hard is not None and projected > hard:
                flags.append(Flag(kind="quota", region=capacity.region, subject=q.namespace, detail=(
                    f"requests.{resource} projected {projected / unit:.2f} > quota {q.name} {hard / unit:.2f}"
                    f" (today {now / unit:.2f}, growth x{growth.get((q.namespace, resource), 1.0):.2f})")))
    for resource, index, unit in (("cpu", 0, 1.0), ("memory", 1, GIB)):
        projected = sum(v[index] * growth.get((ns, resource), 1.0) for ns, v in requested.items())
        allocatable = sum(n.cpu_cores if index == 0 else n.memory_bytes for n in capacity.nodes)
        if projected > allocatable:
            flags.append(Flag(kind="nodes", region=capacity.region, subject=capacity.region, detail=(
                f"projected {resource} requests {projected / unit:.1f} > allocatable {allocatable / unit:.1f}"
                f" on {len(capacity.nodes)} nodes")))
    return flags


def count(regions: Sequence[RegionCapacity]) -> Counts:
    c = Counts()
    for r in regions:
        for w in r.workloads:
            c.workloads += 1
            c.excluded += w.excluded
            for rec in w.containers:
                c.containers += 1
                statuses = {rec.cpu_status, rec.memory_status}
                c.recommended += Status.OK in statuses
                c.not_enough_data += Status.NOT_ENOUGH_DATA in statuses
                c.no_data += Status.NO_DATA in statuses
                c.hpa_skipped += Status.HPA in statuses
    return c


def capacity_report(regions: Sequence[RegionCapacity]) -> CapacityReport:
    reports = [region_report(r) for r in regions]
    report = CapacityReport(
        strategy=",".join(sorted({r.strategy.value for r in regions})), regions=reports,
        flags=[f for r in regions for f in flags_of(r)], counts=count(regions),
        monthly_cost_usd=round(sum(r.by_requests.cluster_hourly_usd for r in reports) * 730, 2),
        monthly_savings_usd=round(sum(r.savings.requests_monthly_usd for r in reports), 2),
    )
    from .markdown import markdown

    report.markdown = markdown(report, regions)
    return report
