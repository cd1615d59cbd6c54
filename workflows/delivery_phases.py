"""The happy path of a `ProgressiveRelease`, phase by phase: initialize (snapshot, candidate Deployment, first
routes) -> progress (analysis every interval; routes shift on passes) -> promote (candidate at full scale, all
traffic to it) -> keep warm (analysis goes on; a failure rolls back at once) -> finalize (the new version
becomes stable, the candidate is retired).

A phase raises `Rollback` to leave the happy path; the decisions are `pitstop.delivery.decisions.next_action`
(run by `AnalysisLoop`).
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pitstop.delivery.carried import ResumeAt
    from pitstop.delivery.decisions import Action, AnalysisState, current_weight
    from pitstop.delivery.models import (
        CandidateStatus,
        DeployCandidateInput,
        FinalizeInput,
        FinalizeResult,
        ReleasePhase,
        ReleaseSnapshot,
        RetireInput,
        ScaleCandidateInput,
        SubsetsInput,
        TargetInput,
    )
    from pitstop.delivery.routing import RouteState, subset_version, subsets_with_version
    from pitstop.delivery.spec import Strategy

from .delivery_chain import continue_as_new_if_due
from .delivery_context import ReleaseContext, Rollback

CANDIDATE_CALL_SLACK = 60  # seconds a candidate call may run past the rollout's own progress deadline


async def initialize(ctx: ReleaseContext) -> None:
    """Snapshot routes and scale, deploy the candidate, and route the analysis' first traffic to it."""
    spec = ctx.spec
    ctx.set_phase(ReleasePhase.INITIALIZING, "recording routes and scale")
    ctx.snapshot = await ctx.cluster("delivery.snapshot", TargetInput(target=ctx.target), ReleaseSnapshot,
                                     summary="snapshot routes and scale")
    snap = ctx.snapshot
    ctx.status.weights = dict(snap.weights)
    ctx.status.stable_version = snap.stable.version
    ctx.analysis_stable_version = snap.stable.version
    ctx.stop_if_rollback_requested()
    replicas = spec.replicas or (snap.stable.replicas if spec.strategy is Strategy.BLUE_GREEN else 1)
    subsets = subsets_with_version(snap.subsets, subset=ctx.target.canary_subset,
                                   version_label=ctx.target.version_label, version=spec.new_version)
    ctx.event(f"deploying {spec.image} as {ctx.target.candidate_name} ({replicas} replicas)")
    await ctx.cluster(
        "delivery.deploy_candidate",
        DeployCandidateInput(target=ctx.target, image=spec.image, version=spec.new_version, replicas=replicas,
                             subsets=subsets, deadline_seconds=spec.progress_deadline,
                             release_id=workflow.info().workflow_id,
                             resources={name: r.as_json() for name, r in spec.resources.items()}),
        CandidateStatus, timeout=spec.progress_deadline + CANDIDATE_CALL_SLACK, heartbeat=True,
        summary="deploy candidate",
    )
    ctx.stop_if_rollback_requested()
    await ctx.route(analysis_route_state(ctx, AnalysisState()))


def analysis_route_state(ctx: ReleaseContext, state: AnalysisState) -> RouteState:
    """The routes during analysis, by strategy: a canary weight, a header match (A/B), or mirroring."""
    spec = ctx.spec
    if spec.strategy is Strategy.CANARY:
        return RouteState(canary_weight=current_weight(ctx.policy, state))
    if spec.strategy is Strategy.AB:
        return RouteState(header_match={k: v.as_istio() for k, v in spec.headers.items()})
    return RouteState(mirror_percent=spec.mirror_percent if spec.mirror else None)


async def progress(ctx: ReleaseContext, *, resumed: bool = False) -> None:
    """Analyse every interval until the decision is to promote; advance the routes on passes."""
    loop = ctx.analysis
    if not resumed:
        ctx.set_phase(ReleasePhase.PROGRESSING, f"analysing every {ctx.spec.analysis.interval:g}s")
        loop.start(now=workflow.now().timestamp())
    while True:
        await continue_as_new_if_due(ctx, ResumeAt.ANALYSIS)
        decision = await loop.run_once(
            stable_version=ctx.analysis_stable_version,
            weight=ctx.status.canary_weight,
            stop=lambda: ctx.rollback_reason is not None,
        )
        if decision is None:
            raise Rollback(ctx.rollback_reason or "aborted")
        ctx.event(decision.reason)
        if decision.action is Action.ROLLBACK:
            raise Rollback(decision.reason)
        if decision.action is Action.ADVANCE:
            await ctx.route(analysis_route_state(ctx, decision.state))
        if decision.action is Action.PROMOTE:
            return


async def promote(ctx: ReleaseContext) -> None:
    """Scale the candidate to the stable replica count and send it all traffic (the old version stays warm)."""
    spec, snap = ctx.spec, ctx.require_snapshot()
    ctx.set_phase(ReleasePhase.PROMOTING,
                  f"scaling {ctx.target.candidate_name} to {snap.stable.replicas} and routing all traffic to it")
    await ctx.cluster(
        "delivery.scale_candidate",
        ScaleCandidateInput(target=ctx.target, replicas=snap.stable.replicas, deadline_seconds=spec.progress_deadline),
        CandidateStatus, timeout=spec.progress_deadline + CANDIDATE_CALL_SLACK, heartbeat=True,
        summary="scale candidate",
    )
    ctx.stop_if_rollback_requested()
    await ctx.route(RouteState(canary_weight=100))
    ctx.set_phase(ReleasePhase.PROMOTED, f"all traffic on {spec.new_version}; {snap.stable.version} kept warm")


async def keep_warm(ctx: ReleaseContext, resume_at: ResumeAt | None = None, warm_deadline: float | None = None) -> None:
    """Keep the old version warm: analysis goes on; a failure or a rollback request rolls back at once.

    `resume_at` (HOLD or WARM_WINDOW): a continued run picks up there, with the carried warm deadline."""
    request, spec = ctx.request, ctx.spec
    if resume_at is None:
        ctx.analysis.start(now=workflow.now().timestamp(), keep_counts=False)
    if request.hold_after_promotion and resume_at in (None, ResumeAt.HOLD):
        if resume_at is None:
            await ctx.notify_parent(ReleasePhase.PROMOTED, "promoted; waiting for the other regions")
        await watch(ctx, lambda: ctx.finalize, resume_at=ResumeAt.HOLD)
    if spec.warm_window > 0:
        if resume_at is ResumeAt.WARM_WINDOW and warm_deadline is not None:
            deadline = warm_deadline
        else:
            deadline = workflow.now().timestamp() + spec.warm_window
            ctx.event(f"keeping {ctx.require_snapshot().stable.version} warm for {spec.warm_window:g}s")
        await watch(ctx, lambda: workflow.now().timestamp() >= deadline, deadline=deadline,
                    resume_at=ResumeAt.WARM_WINDOW)


async def watch(ctx: ReleaseContext, done: Callable[[], bool], deadline: float | None = None, *,
                resume_at: ResumeAt) -> None:
    """Analyse at full weight until `done()`; roll back on a failed analysis or a rollback request."""
    while not done():
        await continue_as_new_if_due(ctx, resume_at, deadline)
        decision = await ctx.analysis.run_once(
            stable_version=ctx.analysis_stable_version, weight=100,
            stop=lambda: ctx.rollback_reason is not None or done(), deadline=deadline,
        )
        ctx.stop_if_rollback_requested()
        if decision is None:
            continue
        if decision.action is Action.ROLLBACK:
            raise Rollback(f"after promotion: {decision.reason}")


async def finalize(ctx: ReleaseContext) -> None:
    """The new version becomes stable (stable Deployment and subset), all traffic to stable, candidate retired."""
    spec, snap, target = ctx.spec, ctx.require_snapshot(), ctx.target
    ctx.set_phase(ReleasePhase.FINALIZING, f"{spec.new_version} becomes stable; retiring {snap.stable.version}")
    result = await ctx.cluster(
        "delivery.finalize_stable", FinalizeInput(target=target, deadline_seconds=spec.progress_deadline),
        FinalizeResult, timeout=spec.progress_deadline + CANDIDATE_CALL_SLACK, heartbeat=True,
        summary="finalize stable",
    )
    live_subsets = subsets_with_version(snap.subsets, subset=target.canary_subset,
                                        version_label=target.version_label, version=spec.new_version)
    promoted = subsets_with_version(live_subsets, subset=target.stable_subset,
                                    version_label=target.version_label, version=spec.new_version)
    await ctx.cluster("delivery.set_subsets", SubsetsInput(target=target, subsets=promoted), bool,
                      summary="stable subset -> new version")
    await ctx.route(RouteState(canary_weight=0))
    await ctx.cluster("delivery.retire_candidate", RetireInput(target=target, snapshot=snap), str,
                      summary="retire candidate")
    ctx.status.stable_version = result.version or (subset_version(promoted, subset=target.stable_subset,
                                                                  version_label=target.version_label) or "")
    ctx.set_phase(ReleasePhase.SUCCEEDED, f"{spec.new_version} is stable ({result.image})")
    await ctx.notify_parent(ReleasePhase.SUCCEEDED, "finalized")
