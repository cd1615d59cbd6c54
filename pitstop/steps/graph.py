"""The service dependency graph steps: `graph.discover` reads who calls whom from Istio telemetry in Prometheus;
`graph.order` puts services callees first (what a failover pre-scales first). Models only: the graph and its
algorithms are pure, in `pitstop.dependency_graph`; both steps run on the shared task queue
(`activities.dependency_graph`). Read-only.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from pitstop.delivery.spec import checked_window
from pitstop.dependency_graph import DependencyGraph, ServiceOrder, ServiceRef
from pitstop.kubernetes_names import KubeLabelNameOrEmpty
from pitstop.runbook.step_types import StepArgs, StepResult, StepType, register_step_type


class DiscoverArgs(StepArgs):
    window: str = Field("1h", description="PromQL range the request rates are averaged over")
    min_rps: float = Field(0.01, ge=0, description="edges with fewer requests per second are left out")
    region: KubeLabelNameOrEmpty = Field("", description="only this region's calls; empty = every region, summed")

    @field_validator("window")
    @classmethod
    def _range(cls, value: str) -> str:
        return checked_window(value, example="'1h' or '30m'")


class GraphDiscovery(StepResult):
    graph: DependencyGraph
    regions: list[str] = Field(default_factory=list, description="regions the telemetry carries")
    query: str = Field("", description="the PromQL the graph was read with")
    series: int = Field(0, description="series the query returned (0: no Istio telemetry in the window)")


class OrderArgs(StepArgs):
    graph: DependencyGraph = Field(description="the `graph` of a `graph.discover` step's output")
    services: list[ServiceRef] | None = Field(
        None, description="the services to order (`NAMESPACE/WORKLOAD` or {namespace, workload}); default every one"
    )

    @field_validator("services", mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        if isinstance(value, list):
            return [ServiceRef.parse(v) if isinstance(v, str) else v for v in value]
        return value


class GraphOrder(ServiceOrder, StepResult):
    pass


@register_step_type
class DiscoverGraphStep(StepType):
    name = "graph.discover"
    description = "The service dependency graph (workload -> workload, requests per second) from istio_requests_total."
    args_model = DiscoverArgs
    result_model = GraphDiscovery
    activity = "graph.discover"
    default_timeout_seconds = 60.0


@register_step_type
class OrderGraphStep(StepType):
    name = "graph.order"
    description = "Services callees before callers by a discovered graph; cycles reported and broken at their lightest edge."
    args_model = OrderArgs
    result_model = GraphOrder
    activity = "graph.order"
    default_timeout_seconds = 30.0
