"""`RegionWaves`: one release, region after region, as one durable run.

For each region in order a child `ProgressiveRelease` (id `<waves id>/<region>`) runs with
`hold_after_promotion`: once promoted it reports `region_result` and keeps the old version warm until this
workflow sends `finalize` (every region promoted) or `abort` (a later region failed). A failure anywhere
halts the waves and rolls back the regions already promoted, in reverse order. A region's release may
continue-as-new while it holds (`WavesSpec.history_limit`): it keeps its workflow id, so `finalize` / `abort`
still reach it and its `region_result` still comes back. Optional manual approval
between regions (update `promote`, or `approve_region`).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from pitstop.delivery.models import (
        ApproveRequest,
        ReleasePhase,
        WavesPhase,
        RegionResult,
        ReleaseOutcome,
        WavesOutcome,
        WavesStatus,
        waves_summary,
    )
    from pitstop.delivery.inputs import ReleaseInput
    from pitstop.delivery.spec import RELEASE_WORKFLOW, WAVES_WORKFLOW, WavesSpec
    from pitstop.access import Action, Target
    from pitstop.policy.guard import AccessDenial
    from pitstop.workflows.access_checks import record_denial, require


@workflow.defn(name=WAVES_WORKFLOW)
class RegionWaves:
    def __init__(self) -> None:
        self._status = WavesStatus(phase=WavesPhase.PENDING, regions=[])
        self._results: dict[str, RegionResult] = {}
        self._approved_regions: set[str] = set()
        self._abort: str | None = None
        self._children: dict[str, workflow.ChildWorkflowHandle[Any, ReleaseOutcome]] = {}
        self._approval_waiting = ""
        self._spec: WavesSpec | None = None  # set when the run starts (the policy re-check's target)
        self._denials: list[AccessDenial] = []

    @workflow.query
    def status(self) -> WavesStatus:
        return self._status

    @workflow.query
    def children(self) -> dict[str, str]:
        """region -> workflow id of its `ProgressiveRelease` (query those for weights and verdicts)."""
        return {region: handle.id for region, handle in self._children.items()}

    @workflow.signal
    def region_result(self, result: RegionResult) -> None:
        self._results[result.region] = result
        self._status.region_phases[result.region] = result.phase

    @workflow.signal(name="access_denied")
    def access_denied(self, denial: AccessDenial) -> None:
        """A refused update, signalled by the worker: the audit record in this release's history."""
        record_denial(self._denials, denial)

    @workflow.signal
    def abort(self, reason: str) -> None:
        if self._abort is None:
            self._abort = reason or "aborted"

    @workflow.update
    async def promote(self, request: ApproveRequest) -> WavesStatus:
        """Approve the next region (between-region gate) or the current region's promotion gate."""
        if self._approval_waiting:
            self._approved_regions.add(self._approval_waiting)
        elif self._status.current_region in self._children:
            await self._children[self._status.current_region].signal("promote_signal", request)
        return self._status

    @promote.validator
    def _validate_promote(self, request: ApproveRequest) -> None:
        release = self._spec.release if self._spec else None
        region = self._approval_waiting or self._status.current_region
        target = Target(namespace=release.namespace if release else None, service=release.service if release else None,
                        region=region or None)
        require(identity=request.identity, groups=request.groups, action=Action.RELEASE_PROMOTE, runbook="release",
                target=target)
        if self._status.phase in (WavesPhase.SUCCEEDED, WavesPhase.ROLLED_BACK):
            raise ValueError(f"the waves are already {self._status.phase}")

    @workflow.run
    async def run(self, spec: WavesSpec) -> WavesOutcome:
        self._spec = spec
        self._status = WavesStatus(phase=WavesPhase.PROGRESSING, regions=list(spec.regions))
        outcomes: dict[str, ReleaseOutcome] = {}
        promoted: list[str] = []
        failure = await self._release_in_order(spec, outcomes, promoted)
        if failure is None and self._abort is None:
            failure = await self._finalize_every_region(spec, outcomes)
            if failure is None:
                self._status.phase = WavesPhase.SUCCEEDED
                self._status.message = f"promoted in {', '.join(spec.regions)}"
                done = WavesOutcome(phase=WavesPhase.SUCCEEDED, promoted_regions=list(spec.regions), regions=outcomes, changed=True)
                done.summary = waves_summary(done)
                return done
        failed_region, reason = failure or ("", self._abort or "aborted")
        await self._roll_back_promoted(promoted, outcomes, failed_region, reason)
        halted = WavesOutcome(
            phase=WavesPhase.ROLLED_BACK, promoted_regions=[], rolled_back_regions=list(self._status.rolled_back_regions),
            failed_region=failed_region, reason=reason, regions=outcomes,
        )
        halted.summary = waves_summary(halted)
        raise ApplicationError(
            f"release halted in {failed_region or 'all regions'}: {reason}; rolled back {self._status.rolled_back_regions}",
            halted, type="ReleaseRolledBack", non_retryable=True,
        )

    async def _release_in_order(
        self, spec: WavesSpec, outcomes: dict[str, ReleaseOutcome], promoted: list[str]
    ) -> tuple[str, str] | None:
        """Release region after region until each is promoted (None) or one fails or the waves are aborted
        ((failed region or "", reason))."""
        for index, region in enumerate(spec.regions):
            if index > 0 and spec.approval_between_regions:
                await self._approval_before(region)
            if self._abort is not None:
                return ("", self._abort)
            result = await self._release_region(spec, region)
            if result is not None and result.phase is ReleasePhase.PROMOTED:
                promoted.append(region)
                self._status.promoted_regions = list(promoted)
                continue
            if result is None and self._abort is not None:
                await self._children[region].signal("abort", f"waves aborted: {self._abort}")
            outcome = await self._child_outcome(region)
            outcomes[region] = outcome
            if outcome.rolled_back:
                self._status.rolled_back_regions.append(region)
            return (region, outcome.reason or (result.reason if result else "failed"))
        return None

    async def _approval_before(self, region: str) -> None:
        self._approval_waiting = region
        self._status.awaiting_approval = True
        self._status.message = f"waiting for approval to release {region}"
        await workflow.wait_condition(lambda: region in self._approved_regions or self._abort is not None)
        self._approval_waiting = ""
        self._status.awaiting_approval = False

    async def _release_region(self, spec: WavesSpec, region: str) -> RegionResult | None:
        """Start the region's `ProgressiveRelease` and wait for its `region_result` (None: aborted or it ended)."""
        info = workflow.info()
        self._status.current_region = region
        self._status.message = f"releasing in {region}"
        handle = await workflow.start_child_workflow(
            RELEASE_WORKFLOW,
            ReleaseInput(release=spec.release, region=region, task_queue=spec.task_queue or info.task_queue,
                         hold_after_promotion=True, parent_workflow_id=info.workflow_id,
                         history_limit=spec.history_limit),
            id=f"{info.workflow_id}/{region}",
            task_queue=info.task_queue,
            result_type=ReleaseOutcome,
        )
        self._children[region] = handle
        await workflow.wait_condition(lambda: region in self._results or self._abort is not None or handle.done())
        return self._results.get(region)

    async def _finalize_every_region(self, spec: WavesSpec, outcomes: dict[str, ReleaseOutcome]) -> tuple[str, str] | None:
        """Every region promoted: tell each to finalize, then collect; the first region that did not promote."""
        self._status.message = "every region promoted; finalizing"
        for region in spec.regions:
            await self._children[region].signal("finalize")
        for region in spec.regions:
            outcomes[region] = await self._child_outcome(region)
        failed = [r for r, o in outcomes.items() if not o.promoted]
        return (failed[0], outcomes[failed[0]].reason) if failed else None

    async def _roll_back_promoted(self, promoted: list[str], outcomes: dict[str, ReleaseOutcome],
                                  failed_region: str, reason: str) -> None:
        """Abort the regions already promoted, newest first (each rolls back to its warm previous version)."""
        self._status.phase = WavesPhase.ROLLING_BACK
        self._status.message = f"halted ({failed_region or 'aborted'}: {reason}); rolling back {list(reversed(promoted))}"
        for region in reversed(promoted):
            if region in outcomes:  # already finished (a late failure during finalize)
                continue
            await self._children[region].signal("abort", f"region {failed_region or '-'} failed: {reason}")
            outcomes[region] = await self._child_outcome(region)
            if outcomes[region].rolled_back:
                self._status.rolled_back_regions.append(region)
        self._status.phase = WavesPhase.ROLLED_BACK

    async def _child_outcome(self, region: str) -> ReleaseOutcome:
        handle = self._children[region]
        try:
            raw = await handle
        except ChildWorkflowError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.details:
                detail = cause.details[0]
                outcome = detail if isinstance(detail, ReleaseOutcome) else ReleaseOutcome.model_validate(detail)
                self._status.region_phases[region] = outcome.phase
                return outcome
            self._status.region_phases[region] = ReleasePhase.FAILED
            return ReleaseOutcome(region=region, phase=ReleasePhase.FAILED, promoted=False, rolled_back=False, reason=str(cause or exc))
        outcome = raw if isinstance(raw, ReleaseOutcome) else ReleaseOutcome.model_validate(raw)
        self._status.region_phases[region] = outcome.phase
        return outcome
