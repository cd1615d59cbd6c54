"""`RightsizingLoop`: apply one service's recommended requests/limits safely (issue 14 item 7, docs/capacity.md).

A workflow rather than a runbook of existing steps: the loop must watch the canary while a release is in flight
and decide that release's ending (promote or abort), and no step type expresses "a child release, watched in
parallel by a loop of reads on durable timers, then signalled".

1. Refuse unless the team opted in (`closed_loop.enabled` in the capacity policy file; the CLI resolves it).
2. The service's lease (`workflows/lease.py`) with policy `refuse`: a second loop, a release or a mutating runbook
   on the same service makes this one end `refused` at once: never two loops on one service. The lease is held
   until the end; the child release runs with `lease: false` under it.
3. `capacity.loop_plan` (regional, read-only): what changes on the stable Deployment; nothing -> `unchanged`.
4. A child `ProgressiveRelease` (`<this id>/release`) whose candidate is the stable pod template with the new
   resources only (same image; version label `<stable>-rs-<hash>` so the canary subset selects only its pods),
   `canary_replicas` pods, the team's traffic `steps`, its own latency/success analysis, and a manual
   promotion gate that only this loop opens.
5. Every `interval_seconds` (a durable timer) until `window_seconds` have passed: the candidate's pods
   (`capacity.canary_pods`: restarts, OOM kills from container statuses) and Prometheus (`delivery.measure`:
   CFS throttling, canary and stable p95), judged by `pitstop.capacity.closed_loop.loop_verdict`. A failure
   signals the release `abort` (it rolls back: routes, subsets, candidate deleted, stable untouched); a window
   with passing looks and no failure signals `promote_signal` (the release promotes and finalizes: every pod
   gets the new resources); a window without a conclusive look reverts too.

Signal `abort(reason)` reverts; query `status`. Cancelling the loop cancels the release, which rolls back.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from pitstop.analysis import Verdict
    from pitstop.capacity.closed_loop import (
        LOOP_WORKFLOW, CanaryPodsInput, LoopDecision, LoopInput, LoopOutcome, LoopPlan, LoopPlanInput, LoopResult,
        LoopStatus, PodSignals, loop_summary, loop_verdict, signal_queries, signals_from, window_verdict,
    )
    from pitstop.config import regional_task_queue
    from pitstop.delivery.inputs import ReleaseInput
    from pitstop.delivery.models import ApproveRequest, MeasureInput, MeasureResult, ReleaseOutcome
    from pitstop.delivery.spec import RELEASE_WORKFLOW, AnalysisSpec, ReleaseSpec
    from pitstop.failures import failure_text
    from pitstop.runbook.leases import LeaseGrant, LeaseHolder, lease_id

from .activity_policies import ACTIVITY_TIMEOUT, MEASURE_RETRY, QUICK
from .lease import LeaseHolderSide, LeaseOutcome

LOOP_IDENTITY = "rightsizing-loop"


def release_spec(request: LoopInput, plan: LoopPlan) -> ReleaseSpec:
    """The rightsizing release: the stable image, new resources, the loop's gate in front of promotion."""
    s = request.settings
    return ReleaseSpec(
        service=request.service, namespace=request.namespace, deployment=request.deployment, image=plan.image,
        version=plan.candidate_version, steps=s.steps, approval=True, approvers=[LOOP_IDENTITY], warm_window=0,
        replicas=s.canary_replicas, resources=request.resources, progress_deadline=s.progress_deadline_seconds,
        analysis=AnalysisSpec(interval=s.interval_seconds, latency_p95_max_ms=s.latency_p95_max_ms,
                              window=s.rate_window, region_label=s.region_label),
    )


@workflow.defn(name=LOOP_WORKFLOW)
class RightsizingLoop:
    def __init__(self) -> None:
        self._lease = LeaseHolderSide()
        self._abort: str | None = None
        self._status = LoopStatus()

    @workflow.signal
    def abort(self, reason: str) -> None:
        if self._abort is None:
            self._abort = reason or "aborted"

    @workflow.signal
    def lease_granted(self, grant: LeaseGrant) -> None:
        self._lease.granted(grant)

    @workflow.signal
    def lease_refused(self, grant: LeaseGrant) -> None:
        self._lease.refused(grant)

    @workflow.query
    def status(self) -> LoopStatus:
        return self._status

    def _end(self, request: LoopInput, result: LoopResult, reason: str, **fields: object) -> LoopOutcome:
        status = self._status
        outcome = LoopOutcome(result=result, reason=reason, changes=status.changes, looks=status.looks,
                              last_checks=status.last_checks, signals=status.signals, **fields)  # type: ignore[arg-type]
        outcome.summary = loop_summary(outcome, request.service, request.region)
        status.phase, status.message = result, outcome.summary
        return outcome

    @workflow.run
    async def run(self, request: LoopInput) -> LoopOutcome:
        if not request.settings.enabled:
            return self._end(request, "refused", f"team {request.team or request.namespace!r} has not opted in "
                                                 "(capacity policy: closed_loop.enabled)")
        info = workflow.info()
        self._status.phase = "waiting_for_lease"
        lease = lease_id(cluster=request.region, namespace=request.namespace, service=request.service)
        try:
            got = await self._lease.wait_for_lease(
                lease=lease, holder=LeaseHolder(workflow_id=info.workflow_id, run_id=info.run_id,
                                                runbook=f"rightsizing {request.service}", policy="refuse"),
                timeout=None, stop=lambda: self._abort is not None, summary=f"lease {lease}",
            )
            if got is not LeaseOutcome.GRANTED:
                why = self._lease.grant.message if self._lease.grant is not None else self._abort or "stopped"
                return self._end(request, "refused", f"{lease} is busy: {why}")
            return await self._apply(request)
        finally:
            await self._lease.release()

    async def _apply(self, request: LoopInput) -> LoopOutcome:
        regional = regional_task_queue(request.task_queue or workflow.info().task_queue, request.region)
        self._status.phase = "planning"
        plan = await workflow.execute_activity(
            "capacity.loop_plan", LoopPlanInput(namespace=request.namespace, deployment=request.deployment_name,
                                                region=request.region, resources=request.resources),
            result_type=LoopPlan, task_queue=regional, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=QUICK,
            summary=f"{request.region}: plan")
        self._status.changes = plan.changes
        if not plan.changes:
            return self._end(request, "unchanged", "the Deployment already has these resources")
        info = workflow.info()
        self._status.phase = "canary"
        handle = await workflow.start_child_workflow(
            RELEASE_WORKFLOW,
            ReleaseInput(release=release_spec(request, plan), region=request.region,
                         task_queue=request.task_queue or info.task_queue, lease=False),
            id=f"{info.workflow_id}/release", task_queue=info.task_queue, result_type=ReleaseOutcome,
            parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
        )
        verdict, reason = await self._watch(request, plan, regional, handle)
        ended_itself = handle.done()
        if not ended_itself:
            if verdict is Verdict.PASS:
                self._status.phase = "rolling_out"
                await handle.signal("promote_signal", ApproveRequest(identity=LOOP_IDENTITY, comment=reason))
            else:
                self._status.phase = "reverting"
                await handle.signal("abort", f"rightsizing: {reason}")
        try:
            release: ReleaseOutcome = await handle
        except ChildWorkflowError as exc:
            reverted_by_us = not ended_itself and verdict is not Verdict.PASS
            why = reason if reverted_by_us else f"the release rolled back: {failure_text(exc)}"
            return self._end(request, "reverted", why, release_phase="rolled_back")
        if release.promoted:
            return self._end(request, "rolled_out", reason, release_phase=release.phase.value)
        return self._end(request, "reverted", release.reason or reason, release_phase=release.phase.value)

    async def _watch(self, request: LoopInput, plan: LoopPlan, regional: str,
                     handle: workflow.ChildWorkflowHandle[object, ReleaseOutcome]) -> tuple[Verdict, str]:
        """Look at the canary every interval until the window ends, a look fails, the release ends or an abort."""
        s = request.settings
        deadline = workflow.now().timestamp() + s.window_seconds
        decisions: list[LoopDecision] = []
        while True:
            try:
                await workflow.wait_condition(lambda: handle.done() or self._abort is not None,
                                              timeout=timedelta(seconds=s.interval_seconds))
            except TimeoutError:
                pass
            if self._abort is not None:
                return Verdict.FAIL, self._abort
            if handle.done():
                return Verdict.FAIL, "the release ended before the window did"
            decision = await self._look(request, plan, regional)
            decisions.append(decision)
            if decision.verdict is Verdict.FAIL:
                return Verdict.FAIL, decision.reason
            if workflow.now().timestamp() >= deadline:
                verdict = window_verdict(decisions)
                if verdict is Verdict.PASS:
                    return verdict, f"{len(decisions)} looks over {s.window_seconds:g}s: {decision.reason}"
                return Verdict.FAIL, f"no conclusive look in {s.window_seconds:g}s ({decision.reason})"

    async def _look(self, request: LoopInput, plan: LoopPlan, regional: str) -> LoopDecision:
        candidate = f"{request.deployment_name}-canary"
        try:
            pods = await workflow.execute_activity(
                "capacity.canary_pods", CanaryPodsInput(namespace=request.namespace, region=request.region,
                                                        candidate=candidate),
                result_type=PodSignals, task_queue=regional, start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=QUICK, summary=f"{request.region}: canary pods")
        except ActivityError:
            pods = PodSignals()
        queries = signal_queries(request, candidate=candidate, canary_version=plan.candidate_version,
                                 stable_version=plan.version)
        try:
            measured = await workflow.execute_activity(
                "delivery.measure", MeasureInput(checks=queries), result_type=MeasureResult,
                start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=MEASURE_RETRY, summary="canary signals")
            readings = dict(zip([q.name for q in queries], measured.measurements, strict=False))
        except ActivityError:
            readings = {}
        signals = signals_from(pods, readings)
        decision = loop_verdict(signals, request.settings)
        self._status.looks += 1
        self._status.signals, self._status.last_checks = signals, decision.checks
        self._status.message = f"look {self._status.looks}: {decision.verdict.value}: {decision.reason}"
        return decision
