"""One region's capacity picture, built from streamed usage and the cluster's objects (pure).

`region_capacity` turns a region's `UsageAccumulator` plus its Deployments, HPAs, nodes and quotas into
`RegionCapacity`: a recommendation per workload (the team's strategy), forecasts per namespace (hourly, with
band and back-test) and per service (back-test and growth only, to keep the result small), and the figures of
the collection itself. This is the `capacity.collect` step's output; `report.capacity_report` combines regions.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from .binpack import NodeInfo
from .forecast import ForecastSettings, SeriesForecast, forecast_series
from .policy import CapacityPolicy
from .strategies import Strategy
from .usage import HOUR, UsageAccumulator, UsageProfile, WorkloadKey, hourly_means
from .workloads import WorkloadInfo, WorkloadRecommendation, recommend_workload


PLOTTED_WORKLOADS = 24  # usage profiles kept (the report plots the workloads whose requests change most)


class QuotaInfo(BaseModel):
    namespace: str
    name: str
    requests_cpu_cores: float | None = None
    requests_memory_bytes: float | None = None


class ServiceForecast(BaseModel):
    workload: str = Field(description="namespace/workload")
    resource: str
    mape_percent: float | None
    peak_now: float
    peak_forecast: float


class CollectionFigures(BaseModel):
    range_queries: int = 0
    instant_queries: int = 0
    samples: int = 0
    series: int = 0
    seconds: float = 0.0


class RegionCapacity(BaseModel):
    region: str
    strategy: Strategy
    start_unix: float
    end_unix: float
    step_seconds: float
    nodes: list[NodeInfo] = Field(default_factory=list)
    quotas: list[QuotaInfo] = Field(default_factory=list)
    workloads: list[WorkloadRecommendation] = Field(default_factory=list)
    namespace_forecasts: list[SeriesForecast] = Field(default_factory=list)
    service_forecasts: list[ServiceForecast] = Field(default_factory=list)
    figures: CollectionFigures = Field(default_factory=CollectionFigures)


def region_capacity(*, region: str, usage: UsageAccumulator, workloads: Sequence[WorkloadInfo],
                    nodes: Sequence[NodeInfo], quotas: Sequence[QuotaInfo], policy: CapacityPolicy,
                    strategy: Strategy, forecast: ForecastSettings) -> RegionCapacity:
    start, end = usage.start_unix, usage.end_unix
    recs = []
    namespace_hours: dict[tuple[str, str], dict[int, float]] = {}
    service_forecasts = []
    for info in sorted(workloads, key=lambda w: (w.namespace, w.name)):
        history = usage.workloads.get(WorkloadKey(namespace=info.namespace, workload=info.name))
        recs.append(recommend_workload(info, history, policy=policy, requested=strategy, start_unix=start, end_unix=end))
        if history is None:
            continue
        for resource, buckets in (("cpu", history.hourly_cpu), ("memory", history.hourly_memory)):
            summed = namespace_hours.setdefault((info.namespace, resource), {})
            for hour, value in buckets.items():
                summed[hour] = summed.get(hour, 0.0) + value
            series = hourly_means(buckets, start_unix=start, end_unix=end, step_seconds=usage.step_seconds)
            found = forecast_series(f"{info.namespace}/{info.name}", resource, series, start_unix=start, settings=forecast)
            if found is not None:
                service_forecasts.append(ServiceForecast(
                    workload=found.name, resource=resource, mape_percent=found.mape_percent,
                    peak_now=found.peak_now, peak_forecast=found.peak_forecast))
    keep = {id(w) for w in sorted(recs, key=lambda w: w.requests_change(), reverse=True)[:PLOTTED_WORKLOADS]}
    for w in recs:
        if id(w) not in keep:
            w.profile = UsageProfile()  # only the plotted ones carry theirs: the step's output stays small
    namespace_forecasts = []
    first_hour = (int(start // HOUR) + 1) * HOUR
    for (namespace, resource), buckets in sorted(namespace_hours.items()):
        series = hourly_means(buckets, start_unix=start, end_unix=end, step_seconds=usage.step_seconds)
        found = forecast_series(namespace, resource, series, start_unix=first_hour, settings=forecast)
        if found is not None:
            namespace_forecasts.append(found)
    return RegionCapacity(
        region=region, strategy=strategy, start_unix=start, end_unix=end, step_seconds=usage.step_seconds,
        nodes=list(nodes), quotas=list(quotas), workloads=recs, namespace_forecasts=namespace_forecasts,
        service_forecasts=service_forecasts,
    )
