"""How a `ProgressiveRelease` ends without promoting: rolled back (the snapshot written back) or refused before
any change. Both fail the run with `ApplicationError(type="ReleaseRolledBack" | "ReleaseRefused")` carrying the
`ReleaseOutcome`, and tell the waves parent first.
"""

from __future__ import annotations

from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pitstop.delivery.models import GitRevert, ReleasePhase, RestoreInput, RestoreResult
    from pitstop.failures import failure_text

from .delivery_context import ReleaseContext

REVERT_CALL_SLACK = 60  # seconds the revert may run past the progress deadline (a commit, then the engine's apply)


async def roll_back(ctx: ReleaseContext, reason: str) -> NoReturn:
    """Restore the snapshot, tell the parent, and fail the run (`ReleaseRolledBack`)."""
    await roll_back_quietly(ctx, reason)
    await ctx.notify_parent(ReleasePhase.ROLLED_BACK, reason)
    outcome = ctx.outcome(ReleasePhase.ROLLED_BACK, reason)
    raise ApplicationError(
        f"release of {ctx.target.service} in {ctx.target.region} rolled back: {reason}",
        outcome, type="ReleaseRolledBack", non_retryable=True,
    )


async def roll_back_quietly(ctx: ReleaseContext, reason: str) -> None:
    """Write the snapshot back (routes, subsets, scale), if one was taken."""
    status = ctx.status
    status.rollback_reason = reason
    ctx.set_phase(ReleasePhase.ROLLING_BACK, f"rolling back: {reason}")
    if ctx.snapshot is not None:
        restored = await ctx.cluster(
            "delivery.restore", RestoreInput(target=ctx.target, snapshot=ctx.snapshot), RestoreResult,
            summary="restore routes and scale",
        )
        status.weights = dict(restored.weights)
        status.canary_weight = 0
        if ctx.snapshot.stable.pending_template:  # released from git: traffic is back; now the revert in git
            await revert_in_git(ctx)
    ctx.set_phase(ReleasePhase.ROLLED_BACK, f"rolled back: {reason}")


async def revert_in_git(ctx: ReleaseContext) -> None:
    """A release from git rolled back: its revert committed to git (or proposed on a branch), the engine's apply
    awaited (bounded); recorded in the status and the outcome. A failure is recorded, not raised: traffic and the
    Deployment are already back on the old version."""
    spec = ctx.spec
    try:
        revert = await ctx.cluster(
            "delivery.revert_in_git", RestoreInput(target=ctx.target, snapshot=ctx.require_snapshot()), GitRevert,
            timeout=spec.progress_deadline + REVERT_CALL_SLACK, heartbeat=True, summary="revert in git",
        )
    except ActivityError as exc:
        ctx.event(f"revert in git failed: {failure_text(exc)}")
        return
    ctx.status.git_revert = revert
    ctx.event(revert.describe())


async def refuse(ctx: ReleaseContext, reason: str) -> NoReturn:
    """End before any change (`ReleaseRefused`)."""
    ctx.set_phase(ReleasePhase.FAILED, reason)
    await ctx.notify_parent(ReleasePhase.FAILED, reason)
    raise ApplicationError(
        f"release of {ctx.target.service} in {ctx.target.region} refused: {reason}",
        ctx.outcome(ReleasePhase.FAILED, reason), type="ReleaseRefused", non_retryable=True,
    )
