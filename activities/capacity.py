"""Capacity activities: `capacity.collect` (regional, read-only) and `capacity.report` (shared).

`collect_region` is what both the step and `pitstop capacity report` run: it lists the region's Deployments,
HPAs, nodes and ResourceQuotas through the one Kubernetes JSON client (`KubeJson`, paged lists; RBAC
`pitstop-capacity`), then reads usage through the one `MetricsProvider` with a bounded number of range queries
per NAMESPACE (never per container): CPU as `sum by (pod, container) (rate(container_cpu_usage_seconds_total
[window]))` and memory as `max by (pod, container) (container_memory_working_set_bytes)`, each split into
chunks of `points_per_query` steps (2 x ceil(history / chunk) queries per namespace), every answer folded into
`pitstop.capacity.usage.UsageAccumulator` and dropped before the next is asked. OOM kills and restarts come
from kube-state-metrics series (two instant queries per region; absent series mean none). The computation
(strategies, forecasts) runs in a thread so heartbeats keep flowing.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.capacity import cluster as cluster_objects
from pitstop.capacity.binpack import NodeInfo
from pitstop.capacity.collection import CollectionFigures, QuotaInfo, region_capacity
from pitstop.capacity.render import html
from pitstop.capacity.report import capacity_report
from pitstop.capacity.usage import UsageAccumulator, WorkloadKey
from pitstop.capacity.workloads import WorkloadInfo
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.capacity import CollectArgs, CollectResult, ReportArgs, ReportResult

from .clients import ActivityClients
from .kube_api import KubeJson
from .kube_errors import kube_errors
from .metrics import MetricsProvider, MetricsQueryError, MetricsUnavailable

Progress = Callable[[str], None]
CLUSTER_PATHS = {  # what capacity.collect lists, cluster-wide (RBAC: pitstop-capacity)
    "deployments": "/apis/apps/v1/deployments",
    "hpas": "/apis/autoscaling/v2/horizontalpodautoscalers",
    "nodes": "/api/v1/nodes",
    "quotas": "/api/v1/resourcequotas",
}


@dataclass
class ClusterObjects:
    workloads: list[WorkloadInfo]
    nodes: list[NodeInfo]
    quotas: list[QuotaInfo]


def read_cluster(api: KubeJson, args: CollectArgs) -> ClusterObjects:
    with kube_errors("the capacity collection", args.region):
        listed = {kind: api.items(path) for kind, path in CLUSTER_PATHS.items()}
    return ClusterObjects(
        workloads=cluster_objects.workloads(listed["deployments"], listed["hpas"],
                                            exclude_namespaces=args.exclude_namespaces, namespaces=args.namespaces),
        nodes=cluster_objects.nodes(listed["nodes"], prices=args.prices, price_label=args.price_label),
        quotas=[q for q in cluster_objects.quotas(listed["quotas"]) if q.namespace not in args.exclude_namespaces],
    )


def selector(args: CollectArgs, namespace: str = "") -> str:
    parts = [f'{args.region_label}="{args.region}"'] if args.region_label else []
    if namespace:
        parts.append(f'namespace="{namespace}"')
    return ",".join(parts + ['container!=""', 'container!="POD"'])


def usage_queries(args: CollectArgs, namespace: str) -> tuple[str, str]:
    window = args.rate_window_seconds or 2 * args.step_seconds
    s = selector(args, namespace)
    return (f"sum by (pod, container) (rate(container_cpu_usage_seconds_total{{{s}}}[{window}s]))",
            f"max by (pod, container) (container_memory_working_set_bytes{{{s}}})")


def chunks(start: float, end: float, step: float, points: int) -> list[tuple[float, float]]:
    """[start, end] split into ranges of at most `points` steps that share no step."""
    found, t = [], start
    while t <= end:
        last = min(end, t + (points - 1) * step)
        found.append((t, last))
        t = last + step
    return found


async def fetch_usage(provider: MetricsProvider, args: CollectArgs, workloads: list[WorkloadInfo], *, end: float,
                      progress: Progress) -> tuple[UsageAccumulator, CollectionFigures]:
    step = float(args.step_seconds)
    start = math.ceil((end - args.history_hours * 3600) / step) * step
    usage = UsageAccumulator(start_unix=start, end_unix=end, step_seconds=step)
    figures = CollectionFigures()
    names: dict[str, set[str]] = {}
    for w in workloads:
        names.setdefault(w.namespace, set()).add(w.name)
    ranges = chunks(start, end, step, args.points_per_query)
    for index, namespace in enumerate(sorted(names)):
        cpu_query, memory_query = usage_queries(args, namespace)
        for chunk_start, chunk_end in ranges:
            for query, add in ((cpu_query, usage.add_cpu_series), (memory_query, usage.add_memory_series)):
                for s in await provider.query_range(query, start=chunk_start, end=chunk_end, step=step):
                    pod, container = s.labels.get("pod", ""), s.labels.get("container", "")
                    workload = cluster_objects.workload_of_pod(pod, names[namespace])
                    if workload is not None and s.points:
                        add(WorkloadKey(namespace=namespace, workload=workload), pod=pod, container=container,
                            points=s.points)
                        figures.series += 1
                figures.range_queries += 1
        progress(f"{args.region}: namespace {index + 1}/{len(names)} {namespace}: {figures.range_queries} range queries,"
                 f" {usage.samples} samples")
    await _add_events(provider, args, usage, names, figures)
    figures.samples = usage.samples
    return usage, figures


async def _add_events(provider: MetricsProvider, args: CollectArgs, usage: UsageAccumulator,
                      names: dict[str, set[str]], figures: CollectionFigures) -> None:
    """OOM kills (pods whose last termination in the window was OOMKilled) and restarts, from kube-state-metrics."""
    s, window = selector(args), f"{int(args.history_hours * 3600)}s"
    queries = {
        "oom_kills": f'max by (namespace, pod, container) (max_over_time(kube_pod_container_status_last_terminated_reason'
                     f'{{{s},reason="OOMKilled"}}[{window}]))',
        "restarts": f"max by (namespace, pod, container) (increase(kube_pod_container_status_restarts_total{{{s}}}[{window}]))",
    }
    for field, query in queries.items():
        for series in await provider.query_series(query):
            namespace, pod = series.labels.get("namespace", ""), series.labels.get("pod", "")
            workload = cluster_objects.workload_of_pod(pod, names.get(namespace, set()))
            if workload is None or not series.value > 0:
                continue
            history = usage.workload(WorkloadKey(namespace=namespace, workload=workload))
            container = history.container(series.labels.get("container", ""))
            if field == "oom_kills":
                container.oom_kills += 1  # a pod whose last termination in the window was an OOM kill
            else:
                container.restarts += round(series.value)
        figures.instant_queries += 1


async def collect_region(api: KubeJson, provider: MetricsProvider, args: CollectArgs, *,
                         progress: Progress = lambda line: None) -> CollectResult:
    """The region's capacity picture (see the module docstring); raises `MetricsUnavailable`/`MetricsQueryError`."""
    started = time.monotonic()
    objects = await asyncio.to_thread(read_cluster, api, args)
    progress(f"{args.region}: {len(objects.workloads)} Deployments, {len(objects.nodes)} nodes, {len(objects.quotas)} quotas")
    return await collect_usage(objects, provider, args, progress=progress, started=started)


async def collect_usage(objects: ClusterObjects, provider: MetricsProvider, args: CollectArgs, *,
                        progress: Progress, started: float) -> CollectResult:
    """Usage of the listed workloads from Prometheus, then the recommendations and forecasts (in a thread)."""
    end = args.end_unix if args.end_unix is not None else time.time()
    usage, figures = await fetch_usage(provider, args, objects.workloads, end=end, progress=progress)
    capacity = await asyncio.to_thread(
        region_capacity, region=args.region, usage=usage, workloads=objects.workloads, nodes=objects.nodes,
        quotas=objects.quotas, policy=args.policy, strategy=args.strategy, forecast=args.forecast)
    figures.seconds = round(time.monotonic() - started, 2)
    capacity.figures = figures
    recommended = sum(1 for w in capacity.workloads for c in w.containers if c.cpu_request or c.memory_request)
    summary = (f"{args.region}: {len(capacity.workloads)} workloads, {recommended} containers recommended ({args.strategy.value}),"
               f" {figures.range_queries} range queries, {figures.samples} samples in {figures.seconds:g}s")
    progress(summary)
    return CollectResult(**capacity.model_dump(), summary=summary)


def write_report(args: ReportArgs, out_dir: Path | None) -> ReportResult:
    report = capacity_report(args.regions)
    page = html(report, args.regions)
    encoded = page.encode()
    path = ""
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "capacity.html").write_bytes(encoded)
        (out_dir / "capacity.md").write_text(report.markdown)
        (out_dir / "capacity.json").write_text(json.dumps({
            "report": report.model_dump(mode="json", exclude={"markdown"}),
            "regions": [r.model_dump(mode="json") for r in args.regions]}, separators=(",", ":")))
        path = str(out_dir / "capacity.html")
    summary = (f"{report.counts.workloads} workloads over {len(report.regions)} region(s), {len(report.flags)} flag(s),"
               f" cost ${report.monthly_cost_usd:,.0f}/month, savings if applied ${report.monthly_savings_usd:,.0f}/month")
    return ReportResult(report=report, html=page if len(encoded) <= args.inline_html_max_bytes else "",
                        html_path=path, html_bytes=len(encoded), summary=summary)


class CapacityActivities:
    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    @activity.defn(name="capacity.collect")
    async def collect(self, invocation: StepInvocation[CollectArgs]) -> CollectResult:
        args = invocation.args
        api = KubeJson(self._clients.kube_client(args.region))
        try:
            return await collect_region(api, self._clients.metrics_provider(), args,
                                        progress=lambda line: activity.heartbeat(line))
        except MetricsUnavailable as exc:
            raise ApplicationError(str(exc), type="MetricsUnavailable") from None
        except MetricsQueryError as exc:
            raise ApplicationError(str(exc), type="InvalidQuery", non_retryable=True) from None

    @activity.defn(name="capacity.report")
    async def report(self, invocation: StepInvocation[ReportArgs]) -> ReportResult:
        """The report, also written under `<state_dir>/capacity/<run id>/` (HTML, Markdown, JSON)."""
        run = invocation.run_id or "adhoc"
        out_dir = self._clients.settings.state_dir / "capacity" / run
        return await asyncio.to_thread(write_report, invocation.args, out_dir)
