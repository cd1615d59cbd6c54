"""Continue-as-new for long releases: when a `ProgressiveRelease` run hands over to the next run of its chain,
what it carries (`pitstop.delivery.carried.CarriedRelease`), and how the next run takes it back.

The hand-over happens only at a safe point between two analysis runs, and only under
`workflow.patched(CONTINUE_AS_NEW_PATCH)` (histories recorded before releases continued-as-new never do).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pitstop.delivery.carried import CarriedRelease, ResumeAt
    from pitstop.delivery.inputs import ReleaseInput

from .delivery_context import ContinueAsNew, ReleaseContext

CONTINUE_AS_NEW_PATCH = "release-continue-as-new"


async def continue_as_new_if_due(ctx: ReleaseContext, resume_at: ResumeAt, warm_deadline: float | None = None) -> None:
    """At a safe point between analysis runs: raise `ContinueAsNew` once the history is long.

    Not before this run has analysed at least once (a run always makes progress), not while a rollback is
    asked for (that rolls back instead), and only after every update handler has finished."""
    if ctx.analysis.total_runs <= ctx.runs_at_start or ctx.rollback_reason is not None:
        return
    info = workflow.info()
    if not (info.is_continue_as_new_suggested() or info.get_current_history_length() >= ctx.request.history_limit):
        return
    if not workflow.patched(CONTINUE_AS_NEW_PATCH):
        return  # replaying a history recorded before releases continued-as-new
    await workflow.wait_condition(lambda: workflow.all_handlers_finished() or ctx.rollback_reason is not None)
    if ctx.rollback_reason is not None:
        return
    ctx.resume = (resume_at, warm_deadline)
    raise ContinueAsNew()


def carry(ctx: ReleaseContext) -> ReleaseInput:
    """The next run's input: this request plus everything the release keeps."""
    request, status, loop = ctx.request, ctx.status, ctx.analysis
    loop.fill(status)
    info = workflow.info()
    previous = request.carried
    resume_at, warm_deadline = ctx.resume
    carried = CarriedRelease(
        resume_at=resume_at, warm_deadline=warm_deadline, status=status, snapshot=ctx.require_snapshot(),
        analysis=loop.carry(), approved=ctx.approved, finalize=ctx.finalize,
        rollback_reason=ctx.rollback_reason, lease_id=ctx.lease.lease_id,
        lease_requested=ctx.lease.requested, lease_grant=ctx.lease.grant,
        earlier_runs=(previous.earlier_runs if previous else []) + [info.run_id],
        earlier_events=(previous.earlier_events if previous else 0) + info.get_current_history_length(),
    )
    carried.status.measurements_dropped = carried.analysis.dropped_records
    return request.model_copy(update={"carried": carried})


def restore(ctx: ReleaseContext, carried: CarriedRelease) -> None:
    """Resume from the previous run of the chain (signals this run already received are kept)."""
    ctx.status = carried.status
    ctx.status.run_number = len(carried.earlier_runs) + 1
    ctx.snapshot = carried.snapshot
    ctx.analysis_stable_version = carried.snapshot.stable.version
    loop = ctx.analysis
    loop.status = ctx.status
    loop.restore(carried.analysis)
    ctx.runs_at_start = loop.total_runs
    ctx.approved = ctx.approved or carried.approved
    ctx.finalize = ctx.finalize or carried.finalize
    ctx.rollback_reason = ctx.rollback_reason or carried.rollback_reason
    ctx.lease.restore(lease_id=carried.lease_id, requested=carried.lease_requested,
                      grant=ctx.lease.grant or carried.lease_grant)
    ctx.event(f"continued as new: run {ctx.status.run_number} of this release "
              f"({carried.earlier_events} history events before)")
