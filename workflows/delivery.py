"""`ProgressiveRelease`: one service's release in one region (canary, blue-green or A/B through Istio).

Phases (`pitstop.delivery.models.ReleasePhase`): pending -> waiting_for_lease -> checking_budget -> initializing
(snapshot of routes/subsets/scale, candidate Deployment) -> progressing (analysis every interval; weights
shift on passes) -> [awaiting_approval] -> promoting (candidate at full scale, all traffic to it) -> promoted
(old version warm: instant rollback) -> finalizing (new version becomes stable, old retired) -> succeeded.
Any failure after the snapshot goes through rolling_back -> rolled_back, which writes the snapshot back.

Decisions are `pitstop.delivery.decisions.next_action`; analysis runs are in `workflows/delivery_analysis.py`.
Cluster activities run on the region's task queue; the analysis queries on the shared one.
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
from datetime import timedelta
from typing import NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pitstop.config import regional_task_queue
    from pitstop.delivery.budget import budget_gate
    from pitstop.delivery.carried import CarriedRelease, ResumeAt
    from pitstop.delivery.decisions import Action, AnalysisPolicy, AnalysisState, current_weight
    from pitstop.delivery.models import (
        ApproveRequest,
        CandidateStatus,
        DeployCandidateInput,
        FinalizeInput,
        FinalizeResult,
        MeasureInput,
        MeasurementRecord,
        MeasureResult,
        ReleasePhase,
        RegionResult,
        ReleaseEvent,
        ReleaseOutcome,
        ReleaseSnapshot,
        ReleaseStatus,
        RestoreInput,
        RestoreResult,
        RetireInput,
        RollbackRequest,
        RoutesInput,
        RoutesResult,
        ScaleCandidateInput,
        SubsetsInput,
        TargetInput,
        release_summary,
    )
    from pitstop.delivery.promql import CheckQuery, error_ratio_query
    from pitstop.delivery.routing import RouteState, desired_http, subset_version, subsets_with_version
    from pitstop.delivery.inputs import ReleaseInput
    from pitstop.delivery.spec import RELEASE_WORKFLOW, Strategy
    from pitstop.runbook.leases import LeaseGrant, LeaseHolder, lease_id

from .delivery_analysis import AnalysisLoop
from .lease import LeaseHolderSide

MAX_EVENTS = 100
CONTINUE_AS_NEW_PATCH = "release-continue-as-new"
ResultT = TypeVar("ResultT")
ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5))
HEARTBEAT = timedelta(seconds=15)


class Rollback(Exception):
    """Internal: leave the happy path and roll back with this reason."""


class ContinueAsNew(Exception):
    """Internal: a safe point was reached with a long history; `run` continues-as-new (lease kept)."""


@workflow.defn(name=RELEASE_WORKFLOW)
class ProgressiveRelease:
    def __init__(self) -> None:
        self._input: ReleaseInput | None = None
        self._status: ReleaseStatus | None = None
        self._snapshot: ReleaseSnapshot | None = None
        self._rollback_reason: str | None = None
        self._approved: ApproveRequest | None = None
        self._finalize = False
        self._lease = LeaseHolderSide()
        self._analysis: AnalysisLoop | None = None
        self._analysis_stable_version = ""
        self._resume: tuple[ResumeAt, float | None] = (ResumeAt.ANALYSIS, None)
        self._runs_at_start = 0

    # ------------------------------------------------------------ queries, signals, updates

    @workflow.query
    def status(self) -> ReleaseStatus:
        if self._status is None:
            raise ValueError("the release has not started yet")
        if self._analysis is not None:
            self._analysis.fill(self._status)
        return self._status

    @workflow.query
    def measurements(self, since_run: int = 0) -> list[MeasurementRecord]:
        """Every recorded check (query, value, threshold, verdict) of runs after `since_run`."""
        if self._analysis is None:
            return []
        return [r for r in self._analysis.records if r.run > since_run]

    @workflow.query
    def phase(self) -> ReleasePhase:
        return self._status.phase if self._status else ReleasePhase.PENDING

    @workflow.signal
    def abort(self, reason: str) -> None:
        if self._rollback_reason is None:
            self._rollback_reason = reason or "aborted"

    @workflow.signal
    def finalize(self) -> None:
        self._finalize = True

    @workflow.signal
    def promote_signal(self, request: ApproveRequest) -> None:
        if self._approved is None:
            self._approved = request

    @workflow.signal
    def lease_granted(self, grant: LeaseGrant) -> None:
        self._lease.granted(grant)

    @workflow.signal
    def lease_refused(self, grant: LeaseGrant) -> None:
        self._lease.refused(grant)

    @workflow.update
    async def rollback(self, request: RollbackRequest) -> ReleaseStatus:
        """Roll back now (instant during the warm window: one route write); returns once traffic is back."""
        if self._rollback_reason is None:
            who = f" by {request.identity}" if request.identity else ""
            self._rollback_reason = f"{request.reason}{who}"
        await workflow.wait_condition(lambda: self._status is not None and self._status.phase.terminal)
        return self.status()

    @rollback.validator
    def _validate_rollback(self, request: RollbackRequest) -> None:
        phase = self._status.phase if self._status else ReleasePhase.PENDING
        if phase in (ReleasePhase.FINALIZING, ReleasePhase.SUCCEEDED, ReleasePhase.FAILED, ReleasePhase.ROLLED_BACK):
            raise ValueError(f"cannot roll back a release in phase {phase.value}: the previous version is no longer warm")

    @workflow.update
    def promote(self, request: ApproveRequest) -> ReleaseStatus:
        """The manual gate before promotion."""
        if self._approved is None:
            self._approved = request
        return self.status()

    @promote.validator
    def _validate_promote(self, request: ApproveRequest) -> None:
        if self._status is None or self._input is None:
            raise ValueError("the release has not started yet")
        if not self._input.release.approval:
            raise ValueError("this release has no manual promotion gate")
        if self._status.phase.terminal:
            raise ValueError(f"the release is already {self._status.phase.value}")
        approvers = self._input.release.approvers
        if approvers and request.identity not in approvers:
            raise ValueError(f"{request.identity!r} may not promote; allowed: {', '.join(approvers)}")

    # ------------------------------------------------------------ run

    @workflow.run
    async def run(self, request: ReleaseInput) -> ReleaseOutcome:
        self._input = request
        spec = request.release
        self._target = spec.target(request.region)
        base = request.task_queue or workflow.info().task_queue
        self._regional_queue = regional_task_queue(base, request.region)
        self._policy = AnalysisPolicy.of(spec)
        self._status = ReleaseStatus(
            service=spec.service, namespace=spec.namespace, region=request.region, strategy=spec.strategy.value,
            phase=ReleasePhase.PENDING, new_version=spec.new_version, steps=list(spec.steps),
            failure_threshold=spec.analysis.failure_threshold,
        )
        self._analysis = AnalysisLoop(spec=spec, region=request.region, policy=self._policy, status=self._status)
        if request.carried is not None:
            self._restore(request.carried)
        continuing = False
        try:
            return await self._release()
        except ContinueAsNew:
            continuing = True
        finally:
            if not continuing:  # the next run of the chain (same workflow id) keeps holding the lease
                await self._lease.release()
        workflow.continue_as_new(self._carry())

    async def _release(self) -> ReleaseOutcome:
        request = self._require_input()
        if request.carried is None:
            await self._start()
        try:
            resume_at = request.carried.resume_at if request.carried else None
            if resume_at is None:
                await self._initialize()
            if resume_at in (None, ResumeAt.ANALYSIS):
                await self._progress(resumed=resume_at is ResumeAt.ANALYSIS)
                await self._approval_gate()
                await self._promote()
                resume_at = None
            await self._warm(resume_at, request.carried.warm_deadline if request.carried else None)
        except Rollback as exc:
            return await self._roll_back(str(exc))
        except ActivityError as exc:
            return await self._roll_back(f"{_cause(exc)}")
        except asyncio.CancelledError:
            await self._roll_back_quietly("the release was cancelled")
            raise
        await self._finalize_promotion()
        return self._outcome(ReleasePhase.SUCCEEDED, "promoted")

    async def _start(self) -> None:
        """Lease, then the error-budget gate; refuses (raises) before any change."""
        request = self._require_input()
        spec = request.release
        try:
            if request.lease:
                self._set_phase(ReleasePhase.WAITING_FOR_LEASE, f"waiting for the lease on {self._target.lease_key}")
                info = workflow.info()
                await self._lease.acquire(
                    lease=lease_id(cluster=request.region, namespace=spec.namespace, service=spec.service),
                    holder=LeaseHolder(workflow_id=info.workflow_id, run_id=info.run_id, runbook=f"release {spec.service}"),
                    wait_timeout=None,
                    stop=lambda: self._rollback_reason is not None,
                )
            if self._rollback_reason is not None:
                await self._refuse(f"aborted before any change: {self._rollback_reason}")
            if spec.error_budget is not None:
                refusal = await self._check_budget()
                if refusal:
                    await self._refuse(refusal)
        except ActivityError as exc:
            await self._refuse(f"could not start: {_cause(exc)}")

    # ------------------------------------------------------------ phases

    async def _check_budget(self) -> str:
        request = self._require_input()
        spec, gate = request.release, request.release.error_budget
        if gate is None:
            return ""
        self._set_phase(ReleasePhase.CHECKING_BUDGET, "checking the SLO error budget")
        query = error_ratio_query(gate, service=spec.service, namespace=spec.namespace, region=request.region,
                                  region_label=spec.analysis.region_label)
        result = await workflow.execute_activity(
            "delivery.measure", MeasureInput(checks=[CheckQuery.model_validate({"name": "error-budget", "query": query, "threshold": {"min": 0}})]),
            result_type=MeasureResult, start_to_close_timeout=timedelta(seconds=60), retry_policy=ACTIVITY_RETRY,
        )
        decision = budget_gate(result.measurements[0], gate)
        self._event(decision.reason)
        return "" if decision.allowed else decision.reason

    async def _initialize(self) -> None:
        request = self._require_input()
        spec = request.release
        self._set_phase(ReleasePhase.INITIALIZING, "recording routes and scale")
        self._snapshot = await self._cluster("delivery.snapshot", TargetInput(target=self._target), ReleaseSnapshot,
                                             summary="snapshot routes and scale")
        snap = self._snapshot
        status = self._require_status()
        status.weights = dict(snap.weights)
        status.stable_version = snap.stable.version
        self._analysis_stable_version = snap.stable.version
        if self._rollback_reason is not None:
            raise Rollback(self._rollback_reason)
        replicas = spec.replicas or (snap.stable.replicas if spec.strategy is Strategy.BLUE_GREEN else 1)
        subsets = subsets_with_version(snap.subsets, subset=self._target.canary_subset,
                                       version_label=self._target.version_label, version=spec.new_version)
        self._event(f"deploying {spec.image} as {self._target.candidate_name} ({replicas} replicas)")
        await self._cluster(
            "delivery.deploy_candidate",
            DeployCandidateInput(target=self._target, image=spec.image, version=spec.new_version, replicas=replicas,
                                 subsets=subsets, deadline_seconds=spec.progress_deadline,
                                 release_id=workflow.info().workflow_id),
            CandidateStatus, timeout=spec.progress_deadline + 60, heartbeat=True, summary="deploy candidate",
        )
        if self._rollback_reason is not None:
            raise Rollback(self._rollback_reason)
        await self._route(self._analysis_route_state(AnalysisState()))

    def _analysis_route_state(self, state: AnalysisState) -> RouteState:
        spec = self._require_input().release
        if spec.strategy is Strategy.CANARY:
            return RouteState(canary_weight=current_weight(self._policy, state))
        if spec.strategy is Strategy.AB:
            return RouteState(header_match={k: v.as_istio() for k, v in spec.headers.items()})
        return RouteState(mirror_percent=spec.mirror_percent if spec.mirror else None)

    async def _progress(self, *, resumed: bool = False) -> None:
        spec = self._require_input().release
        loop = self._require_analysis()
        if not resumed:
            self._set_phase(ReleasePhase.PROGRESSING, f"analysing every {spec.analysis.interval:g}s")
            loop.start(now=workflow.now().timestamp())
        while True:
            await self._continue_as_new_if_due(ResumeAt.ANALYSIS)
            decision = await loop.run_once(
                stable_version=self._analysis_stable_version,
                weight=self._require_status().canary_weight,
                stop=lambda: self._rollback_reason is not None,
            )
            if decision is None:
                raise Rollback(self._rollback_reason or "aborted")
            self._event(decision.reason)
            if decision.action is Action.ROLLBACK:
                raise Rollback(decision.reason)
            if decision.action is Action.ADVANCE:
                await self._route(self._analysis_route_state(decision.state))
            if decision.action is Action.PROMOTE:
                return

    async def _approval_gate(self) -> None:
        spec = self._require_input().release
        if not spec.approval:
            return
        status = self._require_status()
        self._set_phase(ReleasePhase.AWAITING_APPROVAL, "waiting for a manual promote (pitstop release promote)")
        status.awaiting_approval = True
        await workflow.wait_condition(lambda: self._approved is not None or self._rollback_reason is not None)
        status.awaiting_approval = False
        if self._rollback_reason is not None:
            raise Rollback(self._rollback_reason)
        approved = self._approved or ApproveRequest()
        comment = f": {approved.comment}" if approved.comment else ""
        self._event(f"promotion approved by {approved.identity or 'unknown'}{comment}")

    async def _promote(self) -> None:
        spec = self._require_input().release
        snap = self._require_snapshot()
        self._set_phase(ReleasePhase.PROMOTING, f"scaling {self._target.candidate_name} to {snap.stable.replicas} and routing all traffic to it")
        await self._cluster(
            "delivery.scale_candidate",
            ScaleCandidateInput(target=self._target, replicas=snap.stable.replicas, deadline_seconds=spec.progress_deadline),
            CandidateStatus, timeout=spec.progress_deadline + 60, heartbeat=True, summary="scale candidate",
        )
        if self._rollback_reason is not None:
            raise Rollback(self._rollback_reason)
        await self._route(RouteState(canary_weight=100))
        self._set_phase(ReleasePhase.PROMOTED, f"all traffic on {spec.new_version}; {snap.stable.version} kept warm")

    async def _warm(self, resume_at: ResumeAt | None = None, warm_deadline: float | None = None) -> None:
        """Keep the old version warm: analysis goes on; a failure or a rollback request rolls back at once.

        `resume_at` (HOLD or WARM_WINDOW): a continued run picks up there, with the carried warm deadline."""
        request = self._require_input()
        spec = request.release
        loop = self._require_analysis()
        if resume_at is None:
            loop.start(now=workflow.now().timestamp(), keep_counts=False)
        if request.hold_after_promotion and resume_at in (None, ResumeAt.HOLD):
            if resume_at is None:
                await self._notify_parent(ReleasePhase.PROMOTED, "promoted; waiting for the other regions")
            until_finalize = lambda: self._finalize  # noqa: E731
            await self._watch(until_finalize, resume_at=ResumeAt.HOLD)
        if spec.warm_window > 0:
            if resume_at is ResumeAt.WARM_WINDOW and warm_deadline is not None:
                deadline = warm_deadline
            else:
                deadline = workflow.now().timestamp() + spec.warm_window
                self._event(f"keeping {self._require_snapshot().stable.version} warm for {spec.warm_window:g}s")
            await self._watch(lambda: workflow.now().timestamp() >= deadline, deadline=deadline,
                              resume_at=ResumeAt.WARM_WINDOW)

    async def _watch(self, done: object, deadline: float | None = None, *, resume_at: ResumeAt) -> None:
        loop = self._require_analysis()
        stop_when = done if callable(done) else (lambda: False)
        while not stop_when():
            await self._continue_as_new_if_due(resume_at, deadline)
            decision = await loop.run_once(
                stable_version=self._analysis_stable_version, weight=100,
                stop=lambda: self._rollback_reason is not None or bool(stop_when()), deadline=deadline,
            )
            if self._rollback_reason is not None:
                raise Rollback(self._rollback_reason)
            if decision is None:
                continue
            if decision.action is Action.ROLLBACK:
                raise Rollback(f"after promotion: {decision.reason}")

    async def _finalize_promotion(self) -> None:
        spec = self._require_input().release
        snap = self._require_snapshot()
        self._set_phase(ReleasePhase.FINALIZING, f"{spec.new_version} becomes stable; retiring {snap.stable.version}")
        result = await self._cluster(
            "delivery.finalize_stable", FinalizeInput(target=self._target, deadline_seconds=spec.progress_deadline),
            FinalizeResult, timeout=spec.progress_deadline + 60, heartbeat=True, summary="finalize stable",
        )
        live_subsets = subsets_with_version(snap.subsets, subset=self._target.canary_subset,
                                            version_label=self._target.version_label, version=spec.new_version)
        promoted = subsets_with_version(live_subsets, subset=self._target.stable_subset,
                                        version_label=self._target.version_label, version=spec.new_version)
        await self._cluster("delivery.set_subsets", SubsetsInput(target=self._target, subsets=promoted), bool,
                            summary="stable subset -> new version")
        await self._route(RouteState(canary_weight=0))
        await self._cluster("delivery.retire_candidate", RetireInput(target=self._target, snapshot=snap), str,
                            summary="retire candidate")
        status = self._require_status()
        status.stable_version = result.version or (subset_version(promoted, subset=self._target.stable_subset,
                                                                  version_label=self._target.version_label) or "")
        self._set_phase(ReleasePhase.SUCCEEDED, f"{spec.new_version} is stable ({result.image})")
        await self._notify_parent(ReleasePhase.SUCCEEDED, "finalized")

    # ------------------------------------------------------------ continue-as-new

    async def _continue_as_new_if_due(self, resume_at: ResumeAt, warm_deadline: float | None = None) -> None:
        """At a safe point between analysis runs: raise `ContinueAsNew` once the history is long.

        Not before this run has analysed at least once (a run always makes progress), not while a rollback is
        asked for (that rolls back instead), and only after every update handler has finished."""
        request = self._require_input()
        if self._require_analysis().total_runs <= self._runs_at_start or self._rollback_reason is not None:
            return
        info = workflow.info()
        if not (info.is_continue_as_new_suggested() or info.get_current_history_length() >= request.history_limit):
            return
        if not workflow.patched(CONTINUE_AS_NEW_PATCH):
            return  # replaying a history recorded before releases continued-as-new
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() or self._rollback_reason is not None)
        if self._rollback_reason is not None:
            return
        self._resume = (resume_at, warm_deadline)
        raise ContinueAsNew()

    def _carry(self) -> ReleaseInput:
        """The next run's input: this request plus everything the release keeps."""
        request = self._require_input()
        status = self._require_status()
        loop = self._require_analysis()
        loop.fill(status)
        info = workflow.info()
        previous = request.carried
        resume_at, warm_deadline = self._resume
        carried = CarriedRelease(
            resume_at=resume_at, warm_deadline=warm_deadline, status=status, snapshot=self._require_snapshot(),
            analysis=loop.carry(), approved=self._approved, finalize=self._finalize,
            rollback_reason=self._rollback_reason, lease_id=self._lease.lease_id,
            lease_requested=self._lease.requested, lease_grant=self._lease.grant,
            earlier_runs=(previous.earlier_runs if previous else []) + [info.run_id],
            earlier_events=(previous.earlier_events if previous else 0) + info.get_current_history_length(),
        )
        carried.status.measurements_dropped = carried.analysis.dropped_records
        return request.model_copy(update={"carried": carried})

    def _restore(self, carried: CarriedRelease) -> None:
        """Resume from the previous run of the chain (signals this run already received are kept)."""
        self._status = carried.status
        self._status.run_number = len(carried.earlier_runs) + 1
        self._snapshot = carried.snapshot
        self._analysis_stable_version = carried.snapshot.stable.version
        loop = self._require_analysis()
        loop.status = self._status
        loop.restore(carried.analysis)
        self._runs_at_start = loop.total_runs
        self._approved = self._approved or carried.approved
        self._finalize = self._finalize or carried.finalize
        self._rollback_reason = self._rollback_reason or carried.rollback_reason
        self._lease.restore(lease_id=carried.lease_id, requested=carried.lease_requested,
                            grant=self._lease.grant or carried.lease_grant)
        self._event(f"continued as new: run {self._status.run_number} of this release "
                    f"({carried.earlier_events} history events before)")

    # ------------------------------------------------------------ rollback

    async def _roll_back(self, reason: str) -> ReleaseOutcome:
        await self._roll_back_quietly(reason)
        await self._notify_parent(ReleasePhase.ROLLED_BACK, reason)
        outcome = self._outcome(ReleasePhase.ROLLED_BACK, reason)
        raise ApplicationError(
            f"release of {self._target.service} in {self._target.region} rolled back: {reason}",
            outcome, type="ReleaseRolledBack", non_retryable=True,
        )

    async def _roll_back_quietly(self, reason: str) -> None:
        status = self._require_status()
        status.rollback_reason = reason
        self._set_phase(ReleasePhase.ROLLING_BACK, f"rolling back: {reason}")
        if self._snapshot is not None:
            restored = await self._cluster(
                "delivery.restore", RestoreInput(target=self._target, snapshot=self._snapshot), RestoreResult,
                summary="restore routes and scale",
            )
            status.weights = dict(restored.weights)
            status.canary_weight = 0
        self._set_phase(ReleasePhase.ROLLED_BACK, f"rolled back: {reason}")

    async def _refuse(self, reason: str) -> NoReturn:
        self._set_phase(ReleasePhase.FAILED, reason)
        await self._notify_parent(ReleasePhase.FAILED, reason)
        raise ApplicationError(
            f"release of {self._target.service} in {self._target.region} refused: {reason}",
            self._outcome(ReleasePhase.FAILED, reason), type="ReleaseRefused", non_retryable=True,
        )

    # ------------------------------------------------------------ helpers

    async def _route(self, state: RouteState) -> None:
        snap = self._require_snapshot()
        http = desired_http(snap.http, self._target, state)
        result = await self._cluster("delivery.set_routes", RoutesInput(target=self._target, http=http), RoutesResult,
                                     summary=f"routes: {state.describe()}")
        status = self._require_status()
        status.weights = dict(result.weights)
        status.canary_weight = state.canary_weight
        self._event(f"routes set: {state.describe()}")

    async def _cluster(self, name: str, arg: object, result_type: type[ResultT], *, timeout: float | None = None,
                       heartbeat: bool = False, summary: str = "") -> ResultT:
        spec = self._require_input().release
        return await workflow.execute_activity(
            name, arg, result_type=result_type, task_queue=self._regional_queue,
            start_to_close_timeout=timedelta(seconds=timeout or spec.activity_timeout),
            heartbeat_timeout=HEARTBEAT if heartbeat else None, retry_policy=ACTIVITY_RETRY,
            summary=f"{self._target.region}: {summary}" if summary else None,
        )

    async def _notify_parent(self, phase: ReleasePhase, reason: str) -> None:
        request = self._input
        if request is None or not request.parent_workflow_id:
            return
        try:
            await workflow.get_external_workflow_handle(request.parent_workflow_id).signal(
                "region_result", RegionResult(region=request.region, phase=phase, reason=reason)
            )
        except FailureError:
            workflow.logger.warning("parent %s is gone", request.parent_workflow_id)

    def _outcome(self, phase: ReleasePhase, reason: str) -> ReleaseOutcome:
        loop = self._require_analysis()
        outcome = ReleaseOutcome(
            region=self._target.region, phase=phase, promoted=phase is ReleasePhase.SUCCEEDED,
            rolled_back=phase is ReleasePhase.ROLLED_BACK, reason=reason, analysis_runs=loop.total_runs,
            failed_runs=loop.total_failed_runs, failed_checks=loop.failed_checks,
            new_version=self._require_input().release.new_version, changed=phase is ReleasePhase.SUCCEEDED,
        )
        outcome.summary = release_summary(outcome)
        return outcome

    def _set_phase(self, phase: ReleasePhase, message: str) -> None:
        status = self._require_status()
        status.phase = phase
        status.message = message
        self._event(message)

    def _event(self, message: str) -> None:
        status = self._require_status()
        status.events.append(ReleaseEvent(at=workflow.now().isoformat(), phase=status.phase, message=message))
        del status.events[:-MAX_EVENTS]

    def _require_input(self) -> ReleaseInput:
        if self._input is None:
            raise ApplicationError("release input missing", non_retryable=True)
        return self._input

    def _require_status(self) -> ReleaseStatus:
        if self._status is None:
            raise ApplicationError("release status missing", non_retryable=True)
        return self._status

    def _require_snapshot(self) -> ReleaseSnapshot:
        if self._snapshot is None:
            raise ApplicationError("no snapshot recorded", non_retryable=True)
        return self._snapshot

    def _require_analysis(self) -> AnalysisLoop:
        if self._analysis is None:
            raise ApplicationError("analysis not set up", non_retryable=True)
        return self._analysis


def _cause(exc: BaseException) -> str:
    """The innermost failure message (activity errors wrap the real one)."""
    while isinstance(exc, FailureError) and exc.cause is not None:
        exc = exc.cause
    return str(exc)
