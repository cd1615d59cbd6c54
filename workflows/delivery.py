"""`ProgressiveRelease`: one service's release in one region (canary, blue-green or A/B through Istio).

Phases (`pitstop.delivery.models.ReleasePhase`): pending -> waiting_for_lease -> checking_budget -> initializing
(snapshot of routes/subsets/scale, candidate Deployment) -> progressing (analysis every interval; weights
shift on passes) -> [awaiting_approval] -> promoting (candidate at full scale, all traffic to it) -> promoted
(old version warm: instant rollback) -> finalizing (new version becomes stable, old retired) -> succeeded.
Any failure after the snapshot goes through rolling_back -> rolled_back, which writes the snapshot back.

Decisions are `pitstop.delivery.decisions.next_action`; analysis runs are in `workflows/delivery_analysis.py`.
Cluster activities run on the region's task queue; the analysis queries on the shared one.

Where the parts live: this class holds the message handlers (signals, the `rollback` / `promote` updates, the
queries) and the main line; the shared state is `ReleaseContext` (`delivery_context.py`); the phases are
`delivery_gates.py` (lease, error budget, manual promotion gate), `delivery_phases.py` (initialize, progress,
promote, keep warm, finalize), `delivery_endings.py` (roll back, refuse) and `delivery_chain.py`
(continue-as-new).
Live state: query `status`; control: signal `abort`, updates `rollback` (instant rollback) and `promote`
(manual gate); waves parents use signals `finalize` / `abort` and receive `region_result`.
A release that does not promote fails with `ApplicationError(type="ReleaseRolledBack" | "ReleaseRefused")`.

Long releases continue-as-new: between two analysis runs (progressing, holding for the waves parent, warm
window), once the history passes `request.history_limit` events or Temporal suggests it, and no update handler
is running, the run continues-as-new with `ReleaseInput.carried` (`pitstop.delivery.carried.CarriedRelease`:
where to resume, the snapshot, analysis state and latest records, status, signals received, the lease). The
workflow id stays, so queries, signals (also the waves parent's) and the lease (keyed by workflow id) follow
the chain; the lease is not released when a run continues. Guarded by `workflow.patched(CONTINUE_AS_NEW_PATCH)`.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pitstop.delivery.carried import ResumeAt
    from pitstop.delivery.inputs import ReleaseInput
    from pitstop.delivery.models import (
        ApproveRequest,
        MeasurementRecord,
        ReleaseOutcome,
        ReleasePhase,
        ReleaseStatus,
        RollbackRequest,
    )
    from pitstop.delivery.spec import RELEASE_WORKFLOW
    from pitstop.failures import failure_text
    from pitstop.access import Action, Target
    from pitstop.policy.guard import AccessDenial
    from pitstop.runbook.leases import LeaseGrant
    from pitstop.workflows.access_checks import may_approve, record_denial, require

from . import delivery_phases as phases
from .delivery_chain import carry, restore
from .delivery_context import ContinueAsNew, ReleaseContext, Rollback
from .delivery_endings import roll_back, roll_back_quietly
from .delivery_gates import approval_gate, start

NOT_ROLLBACK_PHASES = (ReleasePhase.FINALIZING, ReleasePhase.SUCCEEDED, ReleasePhase.FAILED, ReleasePhase.ROLLED_BACK)


@workflow.defn(name=RELEASE_WORKFLOW)
class ProgressiveRelease:
    def __init__(self) -> None:
        self._ctx = ReleaseContext()
        self._denials: list[AccessDenial] = []

    # ------------------------------------------------------------ queries

    @workflow.query
    def status(self) -> ReleaseStatus:
        if not self._ctx.started:
            raise ValueError("the release has not started yet")
        self._ctx.analysis.fill(self._ctx.status)
        return self._ctx.status

    @workflow.query
    def measurements(self, since_run: int = 0) -> list[MeasurementRecord]:
        """Every recorded check (query, value, threshold, verdict) of runs after `since_run`."""
        if not self._ctx.started:
            return []
        return [r for r in self._ctx.analysis.records if r.run > since_run]

    @workflow.query
    def phase(self) -> ReleasePhase:
        return self._ctx.phase

    # ------------------------------------------------------------ signals

    @workflow.signal
    def abort(self, reason: str) -> None:
        if self._ctx.rollback_reason is None:
            self._ctx.rollback_reason = reason or "aborted"

    @workflow.signal
    def finalize(self) -> None:
        self._ctx.finalize = True

    @workflow.signal
    def promote_signal(self, request: ApproveRequest) -> None:
        if self._ctx.approved is None:
            self._ctx.approved = request

    @workflow.signal
    def lease_granted(self, grant: LeaseGrant) -> None:
        self._ctx.lease.granted(grant)

    @workflow.signal
    def lease_refused(self, grant: LeaseGrant) -> None:
        self._ctx.lease.refused(grant)

    # ------------------------------------------------------------ updates

    @workflow.update
    async def rollback(self, request: RollbackRequest) -> ReleaseStatus:
        """Roll back now (instant during the warm window: one route write); returns once traffic is back."""
        ctx = self._ctx
        if ctx.rollback_reason is None:
            who = f" by {request.identity}" if request.identity else ""
            ctx.rollback_reason = f"{request.reason}{who}"
        await workflow.wait_condition(lambda: ctx.started and ctx.status.phase.terminal)
        return self.status()

    @rollback.validator
    def _validate_rollback(self, request: RollbackRequest) -> None:
        self._require(Action.RELEASE_ROLLBACK, request.identity, request.groups)
        phase = self._ctx.phase
        if phase in NOT_ROLLBACK_PHASES:
            raise ValueError(f"cannot roll back a release in phase {phase.value}: the previous version is no longer warm")

    @workflow.update
    def promote(self, request: ApproveRequest) -> ReleaseStatus:
        """The manual gate before promotion."""
        if self._ctx.approved is None:
            self._ctx.approved = request
        return self.status()

    @promote.validator
    def _validate_promote(self, request: ApproveRequest) -> None:
        self._require(Action.RELEASE_PROMOTE, request.identity, request.groups)
        ctx = self._ctx
        if not ctx.started:
            raise ValueError("the release has not started yet")
        if not ctx.spec.approval:
            raise ValueError("this release has no manual promotion gate")
        if ctx.status.phase.terminal:
            raise ValueError(f"the release is already {ctx.status.phase.value}")
        approvers = ctx.spec.approvers
        if not may_approve(approvers, identity=request.identity, groups=request.groups):
            raise ValueError(f"{request.identity!r} may not promote; allowed: {', '.join(approvers)}")

    def _require(self, action: Action, identity: str, groups: list[str]) -> None:
        """The policy re-check (pitstop.policy.guard) on runbook `release` and this release's target."""
        ctx = self._ctx
        target = (Target(namespace=ctx.target.namespace, service=ctx.target.service, region=ctx.target.region or None)
                  if ctx.started else Target())
        require(identity=identity, groups=groups, action=action, runbook="release", target=target)

    @workflow.signal(name="access_denied")
    def access_denied(self, denial: AccessDenial) -> None:
        """A refused update, signalled by the worker: the audit record in this release's history."""
        record_denial(self._denials, denial)

    # ------------------------------------------------------------ main line

    @workflow.run
    async def run(self, request: ReleaseInput) -> ReleaseOutcome:
        ctx = self._ctx
        ctx.begin(request)
        if request.carried is not None:
            restore(ctx, request.carried)
        continuing = False
        try:
            return await self._release()
        except ContinueAsNew:
            continuing = True
        finally:
            if not continuing:  # the next run of the chain (same workflow id) keeps holding the lease
                await ctx.lease.release()
        workflow.continue_as_new(carry(ctx))

    async def _release(self) -> ReleaseOutcome:
        ctx = self._ctx
        carried = ctx.request.carried
        if carried is None:
            await start(ctx)
        try:
            resume_at = carried.resume_at if carried else None
            if resume_at is None:
                await phases.initialize(ctx)
            if resume_at in (None, ResumeAt.ANALYSIS):
                await phases.progress(ctx, resumed=resume_at is ResumeAt.ANALYSIS)
                await approval_gate(ctx)
                await phases.promote(ctx)
                resume_at = None
            await phases.keep_warm(ctx, resume_at, carried.warm_deadline if carried else None)
        except Rollback as exc:
            await roll_back(ctx, str(exc))
        except ActivityError as exc:
            await roll_back(ctx, f"{failure_text(exc)}")
        except asyncio.CancelledError:
            await roll_back_quietly(ctx, "the release was cancelled")
            raise
        await phases.finalize(ctx)
        return ctx.outcome(ReleasePhase.SUCCEEDED, "promoted")
