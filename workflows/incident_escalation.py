"""Evidence and escalation of an `Incident`: what the cluster shows about the target, metric snapshots of the
alert's expression, and the hand-over to the on-call team (the catalog's escalation webhook).

All best effort: a failing evidence or snapshot activity is logged on the timeline, never fatal.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pitstop.config import regional_task_queue
    from pitstop.failures import failure_line
    from pitstop.incidents import IncidentPhase, MetricSnapshot, MetricSnapshotRequest, alert_expression
    from pitstop.remediation import RemediationPlan
    from pitstop.runbook.step_types import StepArgs, StepInvocation, StepResult
    from pitstop.steps.failover import GetWeightsArgs, WeightsResult
    from pitstop.steps.istio import RouteArgs, RoutesResult
    from pitstop.steps.kubernetes import (
        NodeEvidenceArgs, NodeEvidenceResult, ServiceEvidenceArgs, ServiceEvidenceResult,
    )
    from pitstop.steps.notify import NotifyResult, WebhookArgs

from .activity_policies import ACTIVITY_TIMEOUT, BEST_EFFORT, QUICK, SLOW_ACTIVITY_TIMEOUT
from .incident_context import IncidentContext

SNAPSHOT_VALUES_LOGGED = 5  # series values quoted in the timeline line (all of them stay in status.metrics)
ESCALATION_TIMELINE_ENTRIES = 50  # the latest timeline entries sent with an escalation: the story, not a dump


async def gather_evidence(ctx: IncidentContext, label: str) -> None:
    """What the cluster shows about the target, by its kind: a Deployment's pods and events; a node's
    conditions, pods and events; a VirtualService's routes; for a Region, the global traffic authority's weights
    (asked on the shared queue: the failing region's own API server may be gone). Best effort: a failure is
    logged, never fatal."""
    target = ctx.status.target
    if target is None:
        return
    activity_name: str
    args: StepArgs
    result_type: type[StepResult]
    task_queue = regional_task_queue(ctx.task_queue, target.region)
    if target.kind == "Region":
        activity_name, result_type, task_queue = "traffic.get_weights", WeightsResult, ctx.task_queue
        args = GetWeightsArgs(failing=target.region)
    elif target.kind == "Node":
        activity_name, result_type = "kubernetes.node_evidence", NodeEvidenceResult
        args = NodeEvidenceArgs(region=target.region, node=target.service, max_events=20)
    elif target.kind == "VirtualService":
        activity_name, result_type = "istio.get_routes", RoutesResult
        args = RouteArgs(region=target.region, namespace=target.namespace, name=target.service)
    else:
        activity_name, result_type = "kubernetes.service_evidence", ServiceEvidenceResult
        args = ServiceEvidenceArgs(region=target.region, namespace=target.namespace, name=target.service,
                                   max_events=20)
    try:
        result = await workflow.execute_activity(
            activity_name, StepInvocation(args=args, run_id=ctx.status.incident_id, step_id=f"evidence-{label}"),
            result_type=result_type, task_queue=task_queue,
            schedule_to_close_timeout=SLOW_ACTIVITY_TIMEOUT, retry_policy=BEST_EFFORT,
        )
    except ActivityError as exc:
        ctx.log("evidence", f"evidence {label} unavailable: {failure_line(exc)}")
        return
    ctx.status.evidence = {"label": label, "kind": target.kind,
                           **result.model_dump(mode="json", exclude={"changed"})}
    ctx.log("evidence", f"evidence {label}: {result.summary}")


async def snapshot_metrics(ctx: IncidentContext, label: str) -> None:
    """The alert expression's current values (from its `generatorURL`), appended to the status."""
    alert = ctx.status.alert
    promql = alert_expression(alert.generator_url) if alert else None
    if not promql:
        return
    try:
        snap = await workflow.execute_activity(
            "incident.metric_snapshot", MetricSnapshotRequest(promql=promql, label=label),
            result_type=MetricSnapshot, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=BEST_EFFORT,
        )
    except ActivityError as exc:
        ctx.log("metrics", f"metric snapshot {label} failed: {failure_line(exc)}")
        return
    ctx.status.metrics.append(snap.model_dump(mode="json"))
    values = ", ".join(f"{x['value']:g}" for x in snap.series[:SNAPSHOT_VALUES_LOGGED]) or snap.error or "no data"
    ctx.log("metrics", f"snapshot {label}: {values}")


async def escalate(ctx: IncidentContext, plan: RemediationPlan, reason: str) -> None:
    """Hand the incident over (once): release the lease, gather evidence, call the escalation webhook."""
    s = ctx.status
    if s.escalated:
        return
    s.escalated = True
    ctx.set_phase(IncidentPhase.ESCALATED)
    s.outcome = f"escalated: {reason}"
    await ctx.release_lease()
    if plan.rungs and s.target is not None:
        await gather_evidence(ctx, "at escalation")
    ctx.log("escalation", f"escalating to the on-call team: {reason}")
    escalation = plan.escalation
    if escalation is None or (escalation.url is None and escalation.url_env is None):
        ctx.log("escalation", "no escalation webhook configured (catalog `escalation`)")
        return
    payload: dict[str, Any] = {
        "incident": s.incident_id,
        "reason": reason,
        "alert": s.alert.model_dump(mode="json", by_alias=True) if s.alert else None,
        "target": s.target.model_dump() if s.target else None,
        "actions": [a.model_dump(mode="json") for a in s.actions],
        "evidence": s.evidence,
        "timeline": [e.model_dump(mode="json") for e in s.timeline[-ESCALATION_TIMELINE_ENTRIES:]],
    }
    args = WebhookArgs(url=escalation.url, url_env=escalation.url_env, token_env=escalation.token_env, payload=payload)
    try:
        result = await workflow.execute_activity(
            "notify.webhook", StepInvocation(args=args, run_id=s.incident_id, step_id="escalate"),
            result_type=NotifyResult, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=QUICK,
        )
        ctx.log("escalation", result.summary or "escalated")
    except ActivityError as exc:
        ctx.log("escalation", f"escalation webhook failed: {failure_line(exc)}")
