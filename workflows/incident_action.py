"""A rung's action and its verification, in an `Incident`: the rung's runbook runs as a child workflow of the
runbook interpreter (holding the incident's lease for it), then recovery is verified within the rung's deadline
— the alert resolves, or the rung's `recovered_when` PromQL holds.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from pitstop.incidents import ActionRecord, IncidentPhase, RecoveryCheck, RecoveryCheckRequest, ReserveResult
    from pitstop.remediation import RemediationPlan, RungPlan
    from pitstop.failures import failure_line, failure_text
    from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest

from .activity_policies import ACTIVITY_TIMEOUT, BEST_EFFORT
from .incident_context import IncidentContext

ACTION_SUMMARY_LIMIT = 2000  # an action's summary in the incident's status: the runbook's step summaries, bounded
# so a long list of them (or a long failure) cannot grow the status query and the history without limit


async def act(ctx: IncidentContext, plan: RemediationPlan, rung: RungPlan) -> ActionRecord:
    """Run the rung's runbook (child workflow `<incident>-<rung>`) and record it as an action."""
    s = ctx.status
    ctx.set_phase(IncidentPhase.ACTING)
    child_id = f"{s.incident_id}-{rung.name}"
    now = workflow.now()
    action = ActionRecord(rung=rung.name, runbook=rung.runbook, workflow_id=child_id, started_at=now,
                          dry_run=plan.policy.dry_run)
    s.actions.append(action)
    if s.first_action_at is None and not plan.policy.dry_run:
        s.first_action_at = now
    ctx.log("action", f"{'dry run of' if plan.policy.dry_run else 'running'} {rung.name}: runbook {rung.runbook}",
            data={"workflow_id": child_id, "inputs": rung.inputs})
    request = RunbookRequest(
        runbook=rung.runbook, inputs=rung.inputs, dry_run=plan.policy.dry_run, trigger="alert",
        started_by=s.incident_id, held_leases=[ctx.lease.lease_id] if ctx.lease.held else [],
    )
    try:
        outcome = await workflow.execute_child_workflow(
            RUNBOOK_WORKFLOW, request, id=child_id, task_queue=ctx.task_queue, result_type=RunbookOutcome,
        )
        action.status = outcome.status
        action.summary = "; ".join(v for v in outcome.summaries.values() if v)[:ACTION_SUMMARY_LIMIT]
    except ChildWorkflowError as exc:
        action.status = "failed"
        action.summary = failure_text(exc)[:ACTION_SUMMARY_LIMIT]
    action.ended_at = workflow.now()
    ctx.log("action", f"{rung.name} {action.status}" + (f": {action.summary}" if action.summary else ""))
    return action


async def verify(ctx: IncidentContext, plan: RemediationPlan, rung: RungPlan, action: ActionRecord) -> bool:
    """Wait up to the rung's deadline for recovery: the alert resolves, or `recovered_when` holds (polled)."""
    ctx.set_phase(IncidentPhase.VERIFYING)
    deadline = workflow.now() + timedelta(seconds=rung.recovery_deadline_seconds)
    promql = rung.recovered_when  # None once its check failed: then only the alert's resolution counts
    how = "the alert resolves" + (f" or `{promql}` > 0" if promql else "")
    ctx.log("verification", f"waiting up to {rung.recovery_deadline_seconds:.0f}s for recovery ({how})")
    while True:
        if ctx.resolved:
            action.recovered = True
            ctx.log("recovered", f"recovered after {rung.name}: the alert resolved")
            return True
        remaining = (deadline - workflow.now()).total_seconds()
        if remaining <= 0:
            action.recovered = False
            ctx.log("verification", f"not recovered {rung.recovery_deadline_seconds:.0f}s after {rung.name}")
            return False
        wait = min(remaining, plan.poll_interval_seconds) if promql else remaining
        try:
            await workflow.wait_condition(lambda: ctx.resolved, timeout=timedelta(seconds=wait))
        except asyncio.TimeoutError:
            pass
        if promql and not ctx.resolved:
            try:
                check = await workflow.execute_activity(
                    "incident.check_recovery", RecoveryCheckRequest(promql=promql),
                    result_type=RecoveryCheck, start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=BEST_EFFORT,
                )
            except ActivityError as exc:  # e.g. a query Prometheus rejects: inconclusive, never a pass or a crash
                promql = None
                ctx.log("verification", f"recovery check failed: {failure_line(exc)}; "
                        "waiting for the alert to resolve instead")
                continue
            if check.recovered:
                action.recovered = True
                ctx.log("recovered", f"recovered after {rung.name}: {check.detail}")
                return True


async def verify_other(ctx: IncidentContext, rung: RungPlan, budget: ReserveResult) -> bool:
    """Another incident just acted on the same service: wait for recovery from its action, not ours."""
    ctx.set_phase(IncidentPhase.VERIFYING)
    since = budget.coalesced_at or workflow.now()
    remaining = rung.recovery_deadline_seconds - (workflow.now() - since).total_seconds()
    if remaining > 0 and not ctx.resolved:
        try:
            await workflow.wait_condition(lambda: ctx.resolved, timeout=timedelta(seconds=remaining))
        except asyncio.TimeoutError:
            pass
    if ctx.resolved:
        ctx.log("decision", f"the alert resolved after {budget.coalesced_with}")
    return ctx.resolved
