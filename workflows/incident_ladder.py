"""Climbing an `Incident`'s remediation ladder: for each rung that applies (an `alert_after_rollout` rung only after
a recent rollout), the gates before acting — [approval] -> the service's lease -> the remediation budget — then
the action and its verification (`incident_action`).

The ladder stops when the alert resolves, when a gate refuses (the incident escalates), or when a rung recovered
the service.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pitstop.config import regional_task_queue
    from pitstop.failures import failure_line
    from pitstop.incidents import IncidentPhase, ReserveAction, ReserveResult
    from pitstop.remediation import RemediationPlan, RungPlan, rung_applies
    from pitstop.runbook.leases import LeaseHolder, lease_id
    from pitstop.runbook.step_types import StepInvocation
    from pitstop.steps.kubernetes import DeploymentArgs, LastRolloutResult
    from pitstop.workflows.lease import LeaseOutcome  # passed through like `LeaseHolderSide` (IncidentContext): one enum

from .incident_action import act, verify, verify_other
from .activity_policies import ACTIVITY_TIMEOUT, BEST_EFFORT, QUICK, SLOW_ACTIVITY_TIMEOUT
from .incident_context import IncidentContext
from .incident_escalation import escalate


async def climb_ladder(ctx: IncidentContext, plan: RemediationPlan) -> bool:
    """True when a rung recovered the service. Stops (False) when resolved, refused, or escalated."""
    last_rollout: list[datetime | None] = []
    for rung in plan.rungs:
        if ctx.resolved:
            ctx.log("decision", f"skip rung {rung.name}: the alert already resolved")
            return False
        if rung.when == "alert_after_rollout":
            if not last_rollout:
                last_rollout.append(await _last_rollout(ctx, plan))
            verdict = rung_applies(rung, alert_started_at=ctx.alert.starts_at, last_rollout_at=last_rollout[0])
            ctx.log("decision", f"rung {rung.name} {'applies' if verdict.applies else 'skipped'}: {verdict.reason}")
            if not verdict.applies:
                continue
        if plan.requires_approval and not plan.policy.dry_run:
            if not await _await_approval(ctx, plan, rung):
                return False
        if not plan.policy.dry_run and not ctx.lease.held:
            if not await _hold_lease(ctx, plan):
                return False
        if ctx.resolved:
            ctx.log("decision", f"skip rung {rung.name}: the alert resolved before the action ran")
            return False
        if not plan.policy.dry_run:
            budget = await _reserve(ctx, plan, rung)
            if budget.coalesced_with:
                ctx.log("decision", f"rung {rung.name} not taken: {budget.reason}; verifying instead")
                if await verify_other(ctx, rung, budget):
                    return False
                continue
            if not budget.allowed:
                ctx.log("decision", f"rung {rung.name} not taken: {budget.reason}",
                        data={"retry_after_seconds": budget.retry_after_seconds})
                await escalate(ctx, plan, budget.reason)
                return False
        action = await act(ctx, plan, rung)
        if plan.policy.dry_run or action.status != "succeeded":
            continue
        if await verify(ctx, plan, rung, action):
            return True
    return False


async def _await_approval(ctx: IncidentContext, plan: RemediationPlan, rung: RungPlan) -> bool:
    """Wait for the `approve` update (escalate when rejected or on the deadline); False = do not act."""
    ctx.approval = None
    ctx.set_phase(IncidentPhase.WAITING_FOR_APPROVAL)
    ctx.log("approval", f"approval required before {rung.name} ({rung.runbook}); "
            f"`pitstop incident approve {ctx.status.incident_id}` within {plan.policy.approval_timeout:.0f}s")
    try:
        await workflow.wait_condition(lambda: ctx.approval is not None or ctx.resolved,
                                      timeout=timedelta(seconds=plan.policy.approval_timeout))
    except asyncio.TimeoutError:
        await escalate(ctx, plan, "no approval before the deadline")
        return False
    if ctx.resolved:
        return False
    if ctx.approval is not None and not ctx.approval.approved:
        await escalate(ctx, plan, f"action {rung.name} rejected by {ctx.approval.identity or 'unknown'}")
        return False
    return True


async def _hold_lease(ctx: IncidentContext, plan: RemediationPlan) -> bool:
    """Hold the service's lease before acting; a busy lease escalates. False = do not act."""
    outcome = await _acquire_lease(ctx, plan)
    if outcome is LeaseOutcome.STOPPED:
        return False
    if outcome is not LeaseOutcome.GRANTED:
        await escalate(ctx, plan, f"the service's lease {ctx.lease.lease_id} is busy ({outcome.value})")
        return False
    return True


async def _acquire_lease(ctx: IncidentContext, plan: RemediationPlan) -> LeaseOutcome:
    """Wait for the service's lease (policy `on_lease_busy`: wait up to `lease_wait_timeout`, or `escalate` =
    refuse at once); stops waiting when the alert resolves, and leaves the line then or on a timeout."""
    target = plan.target
    lease = lease_id(cluster=target.region, namespace=target.namespace, service=target.service)
    info = workflow.info()
    policy: Literal["wait", "refuse"] = "refuse" if plan.policy.on_lease_busy == "escalate" else "wait"
    ctx.set_phase(IncidentPhase.WAITING_FOR_LEASE)
    outcome = await ctx.lease.wait_for_lease(
        lease=lease,
        holder=LeaseHolder(workflow_id=info.workflow_id, run_id=info.run_id, runbook=f"incident:{plan.rule}",
                           policy=policy),
        timeout=timedelta(seconds=plan.policy.lease_wait_timeout),
        stop=lambda: ctx.resolved,
        activity_id=None,  # recorded incident histories carry the default (sequence number) activity id
        retry_policy=QUICK,
    )
    if outcome is LeaseOutcome.GRANTED:
        ctx.log("lease", f"holding {lease}")
    elif outcome is LeaseOutcome.REFUSED:
        ctx.log("lease", f"refused: {ctx.lease.grant.message if ctx.lease.grant else ''}")
    elif outcome is LeaseOutcome.TIMED_OUT:
        ctx.log("lease", f"still waiting for {lease} after {plan.policy.lease_wait_timeout:.0f}s")
        await ctx.lease.leave()
    else:
        ctx.log("lease", f"stopped waiting for {lease}: the alert resolved")
        await ctx.lease.leave()
    return outcome


async def _reserve(ctx: IncidentContext, plan: RemediationPlan, rung: RungPlan) -> ReserveResult:
    """Ask the service's remediation budget (circuit breaker) for this rung's action."""
    return await workflow.execute_activity(
        "incident.reserve_action",
        ReserveAction(target_key=plan.target.key, action_key=f"{ctx.status.incident_id}/{rung.name}",
                      max_per_hour=plan.policy.max_actions_per_hour,
                      coalesce_seconds=rung.recovery_deadline_seconds),
        result_type=ReserveResult, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=QUICK,
    )


async def _last_rollout(ctx: IncidentContext, plan: RemediationPlan) -> datetime | None:
    """When the target's Deployment last rolled out (None when unknown), for `alert_after_rollout` rungs."""
    target = plan.target
    try:
        result = await workflow.execute_activity(
            "kubernetes.last_rollout",
            StepInvocation(args=DeploymentArgs(region=target.region, namespace=target.namespace, name=target.service),
                           run_id=ctx.status.incident_id, step_id="last-rollout"),
            result_type=LastRolloutResult, task_queue=regional_task_queue(ctx.task_queue, target.region),
            schedule_to_close_timeout=SLOW_ACTIVITY_TIMEOUT, retry_policy=BEST_EFFORT,
        )
    except ActivityError as exc:
        ctx.log("evidence", f"last rollout unknown: {failure_line(exc)}")
        return None
    ctx.log("evidence", result.summary or f"last rollout at {result.rolled_out_at}")
    return result.rolled_out_at
