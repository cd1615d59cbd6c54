"""The gates of a `ProgressiveRelease`: before any change the service's lease and the SLO error budget (a refusal
ends the release before it touched anything), and after the analysis the manual promotion gate.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pitstop.delivery.models import ApproveRequest, ReleasePhase
    from pitstop.failures import failure_text
    from pitstop.runbook.leases import LeaseHolder, lease_id

from .delivery_context import ReleaseContext
from .delivery_endings import refuse
from .error_budget import measure_error_budget


async def start(ctx: ReleaseContext) -> None:
    """Lease, then the error-budget gate; refuses (raises) before any change."""
    request, spec = ctx.request, ctx.spec
    try:
        if request.lease:
            ctx.set_phase(ReleasePhase.WAITING_FOR_LEASE, f"waiting for the lease on {ctx.target.lease_key}")
            info = workflow.info()
            await ctx.lease.acquire(
                lease=lease_id(cluster=request.region, namespace=spec.namespace, service=spec.service),
                holder=LeaseHolder(workflow_id=info.workflow_id, run_id=info.run_id, runbook=f"release {spec.service}"),
                wait_timeout=None,
                stop=lambda: ctx.rollback_reason is not None,
            )
        if ctx.rollback_reason is not None:
            await refuse(ctx, f"aborted before any change: {ctx.rollback_reason}")
        if spec.error_budget is not None:
            refusal = await check_budget(ctx)
            if refusal:
                await refuse(ctx, refusal)
    except ActivityError as exc:
        await refuse(ctx, f"could not start: {failure_text(exc)}")


async def check_budget(ctx: ReleaseContext) -> str:
    """The refusal reason when the service has burnt its error budget, else ""."""
    request, spec, gate = ctx.request, ctx.spec, ctx.spec.error_budget
    if gate is None:
        return ""
    ctx.set_phase(ReleasePhase.CHECKING_BUDGET, "checking the SLO error budget")
    decision = await measure_error_budget(gate, service=spec.service, namespace=spec.namespace, region=request.region,
                                          region_label=spec.analysis.region_label)
    ctx.event(decision.reason)
    return "" if decision.allowed else decision.reason


async def approval_gate(ctx: ReleaseContext) -> None:
    """With `approval: true`, wait for a manual promote (or a rollback request)."""
    if not ctx.spec.approval:
        return
    status = ctx.status
    ctx.set_phase(ReleasePhase.AWAITING_APPROVAL, "waiting for a manual promote (pitstop release promote)")
    status.awaiting_approval = True
    await workflow.wait_condition(lambda: ctx.approved is not None or ctx.rollback_reason is not None)
    status.awaiting_approval = False
    ctx.stop_if_rollback_requested()
    approved = ctx.approved or ApproveRequest()
    comment = f": {approved.comment}" if approved.comment else ""
    ctx.event(f"promotion approved by {approved.identity or 'unknown'}{comment}")
