"""Failover activities: region health with hysteresis (`region.health`, shared), the survivors' capacity
inventory (`failover.capacity_inventory`, regional, read-only) and the capacity plan (`failover.capacity_plan`,
shared, pure). Decisions live in `pitstop.region_health` and `pitstop.failover_capacity`.

`region.health` reads every region's signals through the one `MetricsProvider` (Prometheus outside the regions),
one evaluation per `interval`, heartbeating each, until the hysteresis is met or can no longer be; a Prometheus
that cannot be reached makes that evaluation INCONCLUSIVE (it neither confirms nor clears anything).
`failover.capacity_inventory` lists (paged) Deployments, ResourceQuotas, HorizontalPodAutoscalers, Nodes and Pods
of one region with short API deadlines: RBAC `pitstop-failover-capacity` (docs/permissions.md).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.failover_capacity import NodeCapacity, QuotaUsage, ServiceCapacity, plan_failover_capacity
from pitstop.quantities import parse_quantity
from pitstop.region_health import RegionEvaluation, RegionHysteresis, RegionReading, RegionVerdict, evaluate_region
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.failover import (
    CapacityInventoryArgs,
    CapacityInventoryResult,
    CapacityPlanArgs,
    CapacityPlanResult,
    RegionHealthArgs,
    RegionHealthResult,
)

from .clients import ActivityClients
from .kube_api import KubeJson
from .kube_errors import kube_errors
from .metrics import MetricsProvider, MetricsQueryError, MetricsUnavailable

INVENTORY_REQUEST_TIMEOUT_SECONDS = 10.0  # a survivor's API: answer quickly or let Temporal retry


async def read_region(provider: MetricsProvider, args: RegionHealthArgs, region: str) -> RegionReading:
    """One reading of `region`'s signals; a signal Prometheus cannot answer is no data."""
    values: dict[str, float | None] = {}
    for signal, promql in args.queries.render(region=region, window=args.window,
                                              critical_services=args.critical_services).items():
        try:
            values[signal] = await provider.query(promql)
        except MetricsUnavailable:
            values[signal] = None
        except MetricsQueryError as exc:
            raise ApplicationError(f"region.health: query for {signal} rejected: {exc}", type="InvalidQuery",
                                   non_retryable=True) from None
    return RegionReading(region=region, at=time.time(), **values)


def combined_verdict(evaluations: list[RegionEvaluation]) -> RegionVerdict:
    """Across regions: BAD if any is bad, HEALTHY if all are healthy, else INCONCLUSIVE."""
    verdicts = {e.verdict for e in evaluations}
    if RegionVerdict.BAD in verdicts:
        return RegionVerdict.BAD
    return RegionVerdict.HEALTHY if verdicts == {RegionVerdict.HEALTHY} else RegionVerdict.INCONCLUSIVE


def _describe(evaluations: list[RegionEvaluation]) -> str:
    return "; ".join(f"{e.reading.region} {e.verdict.value}" + (f" ({', '.join(e.breaches)})" if e.breaches else "")
                     for e in evaluations)


async def watch_regions(provider: MetricsProvider, args: RegionHealthArgs) -> RegionHealthResult:
    hysteresis = RegionHysteresis(expect=RegionVerdict(args.expect), required=args.required,
                                  max_evaluations=args.max_evaluations)
    verdicts: list[RegionVerdict] = []
    times: list[float] = []
    first_bad_at: float | None = None
    while True:
        evaluations = [evaluate_region(await read_region(provider, args, region), args.thresholds)
                       for region in args.regions]
        verdict = combined_verdict(evaluations)
        verdicts.append(verdict)
        times.append(evaluations[0].reading.at)
        if verdict == RegionVerdict.BAD and first_bad_at is None:
            first_bad_at = times[-1]
        decision = hysteresis.decide(verdicts)
        activity.heartbeat({"evaluations": len(verdicts), "streak": decision.streak, "last": verdict.value})
        if decision.done:
            break
        await asyncio.sleep(args.interval)
    start = decision.first_expected_index
    result = RegionHealthResult(
        met=decision.met, reason=decision.reason, evaluations=len(verdicts),
        first_expected_at=times[start] if start is not None else None, first_bad_at=first_bad_at,
        met_at=times[-1] if decision.met else None, last=evaluations,
        summary=f"{', '.join(args.regions)} {args.expect}: {'met' if decision.met else 'unmet'} ({decision.reason}); "
                f"last: {_describe(evaluations)}")
    if not decision.met and args.fail_unmet:
        raise ApplicationError(result.summary, type="RegionHealthUnmet", non_retryable=True)
    return result


def _pod_requests(pod_or_template_spec: dict[str, Any]) -> tuple[float, float]:
    cpu = memory = 0.0
    for container in pod_or_template_spec.get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += parse_quantity(requests.get("cpu"))
        memory += parse_quantity(requests.get("memory"))
    return cpu, memory


def _hpa_max(hpas: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    found = {}
    for hpa in hpas:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") == "Deployment":
            found[(hpa["metadata"]["namespace"], ref.get("name", ""))] = int(hpa["spec"].get("maxReplicas", 0))
    return found


def node_capacity(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> NodeCapacity:
    """Free allocatable of the schedulable, Ready nodes: allocatable minus the requests of their non-terminal pods."""
    usable = {}
    for node in nodes:
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (node.get("status") or {}).get("conditions") or [])
        if ready and not (node.get("spec") or {}).get("unschedulable"):
            usable[node["metadata"]["name"]] = (node.get("status") or {}).get("allocatable") or {}
    free = {"cpu": sum(parse_quantity(a.get("cpu")) for a in usable.values()),
            "memory": sum(parse_quantity(a.get("memory")) for a in usable.values()),
            "pods": sum(parse_quantity(a.get("pods")) for a in usable.values())}
    for pod in pods:
        if (pod.get("spec") or {}).get("nodeName") not in usable:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        cpu, memory = _pod_requests(pod.get("spec") or {})
        free["cpu"] -= cpu
        free["memory"] -= memory
        free["pods"] -= 1
    return NodeCapacity(schedulable_nodes=len(usable), free_cpu=round(free["cpu"], 6),
                        free_memory=free["memory"], free_pods=int(free["pods"]))


def capacity_inventory(*, region: str, deployments: list[dict[str, Any]], quotas: list[dict[str, Any]],
                       hpas: list[dict[str, Any]], nodes: list[dict[str, Any]], pods: list[dict[str, Any]],
                       namespaces: list[str]) -> CapacityInventoryResult:
    wanted = set(namespaces)
    hpa_max = _hpa_max(hpas)
    services = []
    for d in deployments:
        namespace, name = d["metadata"]["namespace"], d["metadata"]["name"]
        if wanted and namespace not in wanted:
            continue
        cpu, memory = _pod_requests(((d.get("spec") or {}).get("template") or {}).get("spec") or {})
        services.append(ServiceCapacity(namespace=namespace, name=name, replicas=int(d["spec"].get("replicas", 1)),
                                        cpu_request=cpu, memory_request=memory,
                                        hpa_max_replicas=hpa_max.get((namespace, name))))
    quota_usage = [
        QuotaUsage(namespace=q["metadata"]["namespace"], name=q["metadata"]["name"],
                   hard={k: parse_quantity(v) for k, v in ((q.get("spec") or {}).get("hard") or {}).items()},
                   used={k: parse_quantity(v) for k, v in ((q.get("status") or {}).get("used") or {}).items()})
        for q in quotas if not wanted or q["metadata"]["namespace"] in wanted
    ]
    nodes_free = node_capacity(nodes, pods)
    return CapacityInventoryResult(
        region=region, services=sorted(services, key=lambda s: (s.namespace, s.name)), quotas=quota_usage,
        nodes=nodes_free,
        summary=f"{region}: {len(services)} Deployments, {len(quota_usage)} quotas, {nodes_free.schedulable_nodes} "
                f"schedulable nodes ({nodes_free.free_cpu:g} cores, {nodes_free.free_pods} pods free)")


class FailoverActivities:
    """Shared queue: region health and the capacity plan."""

    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    @activity.defn(name="region.health")
    async def region_health(self, invocation: StepInvocation[RegionHealthArgs]) -> RegionHealthResult:
        return await watch_regions(self._clients.metrics_provider(), invocation.args)

    @activity.defn(name="failover.capacity_plan")
    async def capacity_plan(self, invocation: StepInvocation[CapacityPlanArgs]) -> CapacityPlanResult:
        args = invocation.args
        plan = plan_failover_capacity(args.inventories, weights=args.weights, failing=args.failing,
                                      headroom=args.headroom, order=args.order)
        verdict = "sufficient" if plan.sufficient else "SHORT: " + "; ".join(plan.shortages)
        return CapacityPlanResult(**plan.model_dump(), summary=(
            f"survivors carry x{plan.load_factor:g} load: {len(plan.items)} Deployments to pre-scale; {verdict}"))


class FailoverClusterActivities:
    """Regional queue: what a survivor has room for (read-only)."""

    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    @activity.defn(name="failover.capacity_inventory")
    def capacity_inventory(self, invocation: StepInvocation[CapacityInventoryArgs]) -> CapacityInventoryResult:
        args = invocation.args
        api = KubeJson(self._clients.kube_client(args.region), timeout_seconds=INVENTORY_REQUEST_TIMEOUT_SECONDS)
        with kube_errors("the failover capacity inventory", args.region):
            deployments = api.items("/apis/apps/v1/deployments", labelSelector=args.selector)
            quotas = api.items("/api/v1/resourcequotas")
            hpas = api.items("/apis/autoscaling/v2/horizontalpodautoscalers")
            nodes = api.items("/api/v1/nodes")
            pods = api.items("/api/v1/pods", fieldSelector="status.phase!=Succeeded,status.phase!=Failed")
        return capacity_inventory(region=args.region, deployments=deployments, quotas=quotas, hpas=hpas,
                                  nodes=nodes, pods=pods, namespaces=list(args.namespaces))
