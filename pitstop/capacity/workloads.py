"""Workloads and their recommendations: what a region's collection yields per Deployment.

`recommend_workload` applies the team's strategy and settings (`policy`) to every container of a workload and
carries the evidence and a usage profile for the report. Per-pod totals (today's requests, recommended ones)
are what the node plan packs and the cost model charges.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from .policy import CapacityPolicy
from .strategies import ContainerRecommendation, ContainerSpec, HpaTargets, Strategy, simple, vpa
from .usage import ContainerHistory, UsageProfile, WorkloadHistory


class WorkloadInfo(BaseModel):
    """A Deployment as the Kubernetes API shows it (only what capacity needs)."""

    namespace: str
    name: str
    team: str
    replicas: int
    containers: list[ContainerSpec]
    hpa: HpaTargets | None = None


class WorkloadRecommendation(BaseModel):
    namespace: str
    workload: str
    team: str
    replicas: int
    strategy: Strategy
    hpa: HpaTargets | None = None
    excluded: bool = Field(False, description="the policy excludes this team")
    specs: list[ContainerSpec] = Field(default_factory=list, description="the containers as deployed")
    containers: list[ContainerRecommendation] = Field(default_factory=list)
    profile: UsageProfile = Field(default_factory=UsageProfile)
    mean_cpu_cores: float = Field(0.0, description="mean usage of all pods together over the window")
    mean_memory_bytes: float = 0.0

    def pod_requests(self, *, recommended: bool) -> tuple[float, float]:
        """(cores, bytes) one pod requests today, or with the recommendations applied where there is one."""
        by_name = {c.container: c for c in self.containers} if recommended else {}
        cpu = memory = 0.0
        for spec in self.specs:
            now_cpu, now_mem = spec.requests.cpu_cores or 0.0, spec.requests.memory_bytes or 0.0
            c = by_name.get(spec.name)
            cpu += c.cpu_request if c is not None and c.cpu_request is not None else now_cpu
            memory += c.memory_request if c is not None and c.memory_request is not None else now_mem
        return cpu, memory

    def requests_change(self) -> float:
        """Requested cores + GiB freed (or added) by the recommendations, all replicas: what "largest" sorts by."""
        (cpu, memory), (rcpu, rmemory) = self.pod_requests(recommended=False), self.pod_requests(recommended=True)
        return abs((cpu - rcpu) + (memory - rmemory) / 2**30) * self.replicas

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.workload}"


def recommend_workload(info: WorkloadInfo, history: WorkloadHistory | None, *, policy: CapacityPolicy,
                       requested: Strategy, start_unix: float, end_unix: float) -> WorkloadRecommendation:
    strategy = policy.strategy_for(info.team, requested)
    rec = WorkloadRecommendation(namespace=info.namespace, workload=info.name, team=info.team, replicas=info.replicas,
                                 strategy=strategy, hpa=info.hpa, excluded=policy.excluded(info.team),
                                 specs=info.containers)
    if history is not None:
        rec.profile = history.profile(start_unix=start_unix, end_unix=end_unix)
        cpu = history.hourly_series(start_unix=start_unix, end_unix=end_unix)
        memory = history.hourly_series(start_unix=start_unix, end_unix=end_unix, memory=True)
        rec.mean_cpu_cores = sum(cpu) / len(cpu) if cpu else 0.0
        rec.mean_memory_bytes = sum(memory) / len(memory) if memory else 0.0
    if rec.excluded:
        return rec
    for spec in info.containers:
        container = (history.containers.get(spec.name) if history else None) or ContainerHistory()
        container.start_unix, container.end_unix = start_unix, end_unix
        if strategy is Strategy.VPA:
            rec.containers.append(vpa(container, spec, policy.vpa_settings(info.team), info.hpa))
        else:
            rec.containers.append(simple(container, spec, policy.simple_settings(info.team), info.hpa))
    return rec
