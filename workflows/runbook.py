"""The runbook interpreter workflow (`Runbook`): walks a validated runbook DAG durably.

Input is one simple JSON object (`RunbookRequest`: runbook name + inputs), so a run can be started from the
Temporal Web UI. The runbook is loaded and validated by the `runbook.load` activity (`runbook_loading`: bad
inputs fail the run at once with the CLI's message); then:
lease (mutating runbooks) -> ready steps in parallel (bounded) -> compensations in reverse order on failure
or abort -> lease released. A run started by a schedule asks for the lease with policy `refuse` and ends
`skipped` with the reason (not failed) when the target is busy (`pitstop.schedules.skips`), or when the
schedule's `error_budget` (in the request) is exhausted — checked before the lease and the first step.
Pause / resume / abort / approve are updates; `status` is a query; search attributes (RunbookName, Target*,
Trigger, Phase) and the current details make the Web UI list runs usefully.

Long runs continue-as-new: once the history passes `request.history_limit` events (or Temporal suggests it),
no new step starts; when the steps in flight have finished (a safe point: no activity, child, timer or
approval pending), the run continues-as-new carrying its whole state (`CarriedRun`: the loaded runbook, step
states and outputs, the compensation stack, pause flag, lease, approval decisions), and the next run picks up
where it stopped. The workflow id stays the same, so queries, updates and the CLI follow the chain. A single
`for_each` step can be split across runs too (see `runbook_fan_out`).

This module holds only the workflow class: its messages and its `run`. The parts live beside it, each small
enough to read at once, and are passed through the sandbox (only this module is re-imported by every run):
  runbook_state       the run's state model (`RunState`): status, outcome, expression context, carry/restore
  runbook_visibility  search attributes and current details (what the Web UI shows)
  runbook_lifecycle   before and after the steps: lease, compensation, final phase
  runbook_steps       the DAG loop, one step, one call (`StepScheduler`)
  runbook_fan_out     a `for_each` step's items, split across runs when the history is long (`FanOut`)
  step_calls / saga / approvals   one call of a step type / compensations / approval waits
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook.leases import LeaseGrant
    from pitstop.runbook.request import (
        RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest,
    )
    from pitstop.runbook.run_state import ApprovalDecision, ControlRequest, Phase, RunStatus
    from pitstop.schedules.skips import skips_run
    # the parts hold no module state; passing them through saves re-importing them in every run's sandbox
    from pitstop.workflows.runbook_fan_out import FOR_EACH_CONTINUE_AS_NEW_PATCH
    from pitstop.workflows.runbook_lifecycle import acquire_lease, check_error_budget, finish
    from pitstop.workflows.runbook_loading import load_runbook
    from pitstop.workflows.runbook_state import RunState
    from pitstop.workflows.runbook_steps import StepScheduler
    from pitstop.workflows.step_calls import STEP_TYPES, StepFailed, failure_text


SCHEDULED_SKIP_PATCH = "scheduled-run-skips-busy-target"  # a scheduled run refused the lease ends skipped


@workflow.defn(name=RUNBOOK_WORKFLOW)
class RunbookWorkflow:
    @workflow.init
    def __init__(self, request: RunbookRequest) -> None:
        self._state = RunState(request, started_at=workflow.info().start_time)
        self._steps = StepScheduler(self._state)

    # ------------------------------------------------------------ messages

    @workflow.query
    def status(self) -> RunStatus:
        return self._state.status()

    @workflow.update
    def pause(self, request: ControlRequest) -> Phase:
        self._state.paused = True
        self._state.wake()
        workflow.logger.info("paused by %s: %s", request.identity, request.reason)
        return self._state.phase

    @workflow.update
    def resume(self, request: ControlRequest) -> Phase:
        self._state.paused = False
        self._state.wake()
        return self._state.phase

    @workflow.update
    def abort(self, request: ControlRequest) -> Phase:
        self._state.abort = self._state.abort or request
        self._state.wake()
        return self._state.phase

    @pause.validator
    def _check_pause(self, request: ControlRequest) -> None:
        self._state.check_active("pause")

    @resume.validator
    def _check_resume(self, request: ControlRequest) -> None:
        self._state.check_active("resume")
        if not self._state.paused:
            raise ValueError("the run is not paused")

    @abort.validator
    def _check_abort(self, request: ControlRequest) -> None:
        self._state.check_active("abort")

    @workflow.update
    def approve(self, decision: ApprovalDecision) -> str:
        self._state.approvals.decide(decision)
        self._state.wake()
        return f"{'approved' if decision.approved else 'rejected'} {decision.step} as {decision.identity}"

    @approve.validator
    def _check_approve(self, decision: ApprovalDecision) -> None:
        self._state.approvals.validate(decision)

    @workflow.signal
    def lease_granted(self, grant: LeaseGrant) -> None:
        self._state.lease.granted(grant)

    @workflow.signal
    def lease_refused(self, grant: LeaseGrant) -> None:
        self._state.lease.refused(grant)

    # ------------------------------------------------------------ main

    @workflow.run
    async def run(self, request: RunbookRequest) -> RunbookOutcome:
        state = self._state
        if request.carried is not None:
            state.restore(request.carried)
        else:
            state.setup(await load_runbook(request))
        cancelled = False
        continue_as_new = False
        try:
            if request.carried is None:
                await check_error_budget(state)  # only with `request.error_budget` (a schedule's), behind a patch
                await acquire_lease(state)
            if state.abort is None:
                state.set_phase(Phase.RUNNING)
            continue_as_new = await self._steps.run_dag()
        except asyncio.CancelledError:
            cancelled = True  # Temporal cancellation ("Request cancellation" in the UI) = abort
            state.abort = state.abort or ControlRequest(identity="temporal", reason="workflow cancellation requested")
        except (ApplicationError, StepFailed) as exc:  # lease refused / timed out
            state.error = state.error or (exc.message if isinstance(exc, ApplicationError) else str(exc))
            failure_type = exc.type if isinstance(exc, ApplicationError) else None
            state.skipped = skips_run(trigger=request.trigger, failure_type=failure_type) and workflow.patched(
                SCHEDULED_SKIP_PATCH)
        if continue_as_new and not cancelled:
            await workflow.wait_condition(workflow.all_handlers_finished)
            if state.abort is None:  # an abort accepted meanwhile is handled here, by this run
                workflow.continue_as_new(state.carry())
        await finish(state, self._steps.calls())  # not in `finally`: an evicted workflow must not run workflow code
        await workflow.wait_condition(workflow.all_handlers_finished)
        if cancelled:
            raise asyncio.CancelledError()
        if state.phase == Phase.FAILED:
            raise ApplicationError(state.error, type="RunbookFailed", non_retryable=True)
        return state.outcome()


__all__ = ["RunbookWorkflow", "FOR_EACH_CONTINUE_AS_NEW_PATCH", "failure_text", "STEP_TYPES"]
