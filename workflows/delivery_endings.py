"""How a `ProgressiveRelease` ends without promoting: rolled back (the snapshot written back) or refused before
any change. Both fail the run with `ApplicationError(type="ReleaseRolledBack" | "ReleaseRefused")` carrying the
`ReleaseOutcome`, and tell the waves parent first.
"""

from __future__ import annotations

from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pitstop.delivery.models import ReleasePhase, RestoreInput, RestoreResult

from .delivery_context import ReleaseContext


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
    ctx.set_phase(ReleasePhase.ROLLED_BACK, f"rolled back: {reason}")


async def refuse(ctx: ReleaseContext, reason: str) -> NoReturn:
    """End before any change (`ReleaseRefused`)."""
    ctx.set_phase(ReleasePhase.FAILED, reason)
    await ctx.notify_parent(ReleasePhase.FAILED, reason)
    raise ApplicationError(
        f"release of {ctx.target.service} in {ctx.target.region} refused: {reason}",
        ctx.outcome(ReleasePhase.FAILED, reason), type="ReleaseRefused", non_retryable=True,
    )
