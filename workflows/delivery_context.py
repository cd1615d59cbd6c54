"""The state every phase of a `ProgressiveRelease` run shares, and the calls they all make. Workflow code:
deterministic, no I/O.

`ReleaseContext` is created by `ProgressiveRelease.__init__` (signals may arrive before `run` starts, so what
they set lives here from the first moment); `begin(request)` adds what the run's input decides (target, queues,
live status, analysis loop). The phase modules (`delivery_gates`, `delivery_phases`, `delivery_endings`,
`delivery_chain`) take it as their first argument.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pitstop.config import regional_task_queue
    from pitstop.delivery.carried import ResumeAt
    from pitstop.delivery.decisions import AnalysisPolicy
    from pitstop.delivery.inputs import ReleaseInput
    from pitstop.delivery.models import (
        ApproveRequest,
        RegionResult,
        ReleaseEvent,
        ReleaseOutcome,
        ReleasePhase,
        ReleaseSnapshot,
        ReleaseStatus,
        RoutesInput,
        RoutesResult,
        release_summary,
    )
    from pitstop.delivery.routing import RouteState, desired_http
    from pitstop.delivery.spec import ReleaseSpec, ReleaseTarget

from .activity_policies import HEARTBEAT_TIMEOUT, RELEASE_ACTIVITY_RETRY
from .delivery_analysis import AnalysisLoop
from .lease import LeaseHolderSide

MAX_EVENTS = 100  # status.events keeps the latest ones: the query stays small however long the release runs
ResultT = TypeVar("ResultT")


class Rollback(Exception):
    """Internal: leave the happy path and roll back with this reason."""


class ContinueAsNew(Exception):
    """Internal: a safe point was reached with a long history; `run` continues-as-new (lease kept)."""


class ReleaseContext:
    """One release run's state (what the handlers and phases read and write)."""

    request: ReleaseInput
    target: ReleaseTarget
    regional_queue: str  # the region's cluster activities run here; analysis queries on the shared queue
    policy: AnalysisPolicy
    status: ReleaseStatus
    analysis: AnalysisLoop

    def __init__(self) -> None:
        self.started = False  # `begin` ran: request, target, status and analysis are set
        self.snapshot: ReleaseSnapshot | None = None
        self.rollback_reason: str | None = None  # set by `abort`, the `rollback` update, or carried over
        self.approved: ApproveRequest | None = None
        self.finalize = False  # the waves parent's `finalize`
        self.lease = LeaseHolderSide()
        self.analysis_stable_version = ""
        self.resume: tuple[ResumeAt, float | None] = (ResumeAt.ANALYSIS, None)  # where the next run of a chain resumes
        self.runs_at_start = 0  # analysis runs before this run of the chain

    def begin(self, request: ReleaseInput) -> None:
        spec = request.release
        self.request = request
        self.target = spec.target(request.region)
        self.regional_queue = regional_task_queue(request.task_queue or workflow.info().task_queue, request.region)
        self.policy = AnalysisPolicy.of(spec)
        self.status = ReleaseStatus(
            service=spec.service, namespace=spec.namespace, region=request.region, strategy=spec.strategy.value,
            phase=ReleasePhase.PENDING, new_version=spec.new_version, steps=list(spec.steps),
            failure_threshold=spec.analysis.failure_threshold,
        )
        self.analysis = AnalysisLoop(spec=spec, region=request.region, policy=self.policy, status=self.status)
        self.started = True

    @property
    def spec(self) -> ReleaseSpec:
        return self.request.release

    @property
    def phase(self) -> ReleasePhase:
        return self.status.phase if self.started else ReleasePhase.PENDING

    def require_snapshot(self) -> ReleaseSnapshot:
        if self.snapshot is None:
            raise ApplicationError("no snapshot recorded", non_retryable=True)
        return self.snapshot

    def stop_if_rollback_requested(self) -> None:
        """Raise `Rollback` once an abort or a rollback was asked for (checked between cluster changes)."""
        if self.rollback_reason is not None:
            raise Rollback(self.rollback_reason)

    # ------------------------------------------------------------ status

    def set_phase(self, phase: ReleasePhase, message: str) -> None:
        self.status.phase = phase
        self.status.message = message
        self.event(message)

    def event(self, message: str) -> None:
        status = self.status
        status.events.append(ReleaseEvent(at=workflow.now().isoformat(), phase=status.phase, message=message))
        del status.events[:-MAX_EVENTS]

    def outcome(self, phase: ReleasePhase, reason: str) -> ReleaseOutcome:
        loop = self.analysis
        outcome = ReleaseOutcome(
            region=self.target.region, phase=phase, promoted=phase is ReleasePhase.SUCCEEDED,
            rolled_back=phase is ReleasePhase.ROLLED_BACK, reason=reason, analysis_runs=loop.total_runs,
            failed_runs=loop.total_failed_runs, failed_checks=loop.failed_checks,
            new_version=self.spec.new_version, changed=phase is ReleasePhase.SUCCEEDED, git_revert=self.status.git_revert,
        )
        outcome.summary = release_summary(outcome)
        return outcome

    # ------------------------------------------------------------ calls

    async def cluster(self, name: str, arg: object, result_type: type[ResultT], *, timeout: float | None = None,
                      heartbeat: bool = False, summary: str = "") -> ResultT:
        """One cluster activity on the region's task queue."""
        return await workflow.execute_activity(
            name, arg, result_type=result_type, task_queue=self.regional_queue,
            start_to_close_timeout=timedelta(seconds=timeout or self.spec.activity_timeout),
            heartbeat_timeout=HEARTBEAT_TIMEOUT if heartbeat else None, retry_policy=RELEASE_ACTIVITY_RETRY,
            summary=f"{self.target.region}: {summary}" if summary else None,
        )

    async def route(self, state: RouteState) -> None:
        """Write the routes `state` asks for (derived from the snapshot's routes)."""
        http = desired_http(self.require_snapshot().http, self.target, state)
        result = await self.cluster("delivery.set_routes", RoutesInput(target=self.target, http=http), RoutesResult,
                                    summary=f"routes: {state.describe()}")
        self.status.weights = dict(result.weights)
        self.status.canary_weight = state.canary_weight
        self.event(f"routes set: {state.describe()}")

    async def notify_parent(self, phase: ReleasePhase, reason: str) -> None:
        """Tell the waves parent (if any) how this region stands; a parent that is gone is only logged."""
        request = self.request if self.started else None
        if request is None or not request.parent_workflow_id:
            return
        try:
            await workflow.get_external_workflow_handle(request.parent_workflow_id).signal(
                "region_result", RegionResult(region=request.region, phase=phase, reason=reason)
            )
        except FailureError:
            workflow.logger.warning("parent %s is gone", request.parent_workflow_id)
