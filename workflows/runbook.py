"""The runbook interpreter workflow (`Runbook`): walks a validated runbook DAG durably.

Input is one simple JSON object (`RunbookRequest`: runbook name + inputs), so a run can be started from the
Temporal Web UI. The runbook is loaded and validated by the `runbook.load` activity (`runbook_loading`: bad
inputs fail the run at once with the CLI's message); then:
lease (mutating runbooks) -> ready steps in parallel (bounded) -> compensations in reverse order on failure
or abort -> lease released. A run started by a schedule asks for the lease with policy `refuse` and ends
`skipped` with the reason (not failed) when the target is busy (`pitstop.schedules.skips`).
Pause / resume / abort / approve are updates; `status` is a query; search attributes (RunbookName, Target*,
Trigger, Phase) and the current details make the Web UI list runs usefully.

Long runs continue-as-new: once the history passes `request.history_limit` events (or Temporal suggests it),
no new step starts; when the steps in flight have finished (a safe point: no activity, child, timer or
approval pending), the run continues-as-new carrying its whole state (`CarriedRun`: the loaded runbook, step
states and outputs, the compensation stack, pause flag, lease, approval decisions), and the next run picks up
where it stopped. The workflow id stays the same, so queries, updates and the CLI follow the chain.

A single `for_each` step can be split too: once the history is long (and at least one of its items finished in
this run), the fan-out launches no new item, lets the items in flight finish and stops part-way; the run then
continues-as-new (also when it is the last step) carrying the step's partial state (`CarriedFanOut`: finished
indexes and their outputs, the items left), and the next run resumes the step with the remaining items (same
activity ids `step[index]`). Compensations of finished items are in the carried saga stack. Guarded by
`workflow.patched(FOR_EACH_CONTINUE_AS_NEW_PATCH)`, checked only when the limit is reached.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook import dag
    from pitstop.runbook import expressions as ex
    from pitstop.runbook.leases import LeaseGrant, LeaseHolder, lease_id
    from pitstop.runbook.model import Runbook, Step
    from pitstop.runbook.request import (
        RUNBOOK_WORKFLOW, CarriedFanOut, CarriedRun, LoadedRunbook, RunbookOutcome,
        RunbookRequest,
    )
    from pitstop.runbook.run_state import (
        ApprovalDecision, ControlRequest, Phase, RunStatus, StepState, StepStatus,
    )
    from pitstop.schedules.skips import lease_policy, skips_run
    # helper modules hold no state; passing them through saves re-importing them in every run's sandbox
    from workflows.approvals import ApprovalGate
    from workflows.lease import LeaseHolderSide
    from workflows.runbook_loading import load_runbook
    from workflows.saga import Saga
    from workflows.step_calls import STEP_TYPES, StepCalls, StepFailed, failure_text

SA_KEYS = {
    "runbook": SearchAttributeKey.for_keyword("RunbookName"),
    "service": SearchAttributeKey.for_keyword("TargetService"),
    "namespace": SearchAttributeKey.for_keyword("TargetNamespace"),
    "region": SearchAttributeKey.for_keyword("TargetRegion"),
    "trigger": SearchAttributeKey.for_keyword("Trigger"),
    "phase": SearchAttributeKey.for_keyword("Phase"),
}


FOR_EACH_CONTINUE_AS_NEW_PATCH = "for-each-continue-as-new"
SCHEDULED_SKIP_PATCH = "scheduled-run-skips-busy-target"  # a scheduled run refused the lease ends skipped


class Aborted(Exception):
    pass


class FanOutSuspended(Exception):
    """Internal: a for_each step stopped part-way (long history); its state is in `_fan_outs`."""


@workflow.defn(name=RUNBOOK_WORKFLOW)
class RunbookWorkflow:
    @workflow.init
    def __init__(self, request: RunbookRequest) -> None:
        self._request = request
        self._phase = Phase.LOADING
        self._paused = False
        self._abort: ControlRequest | None = None
        self._runbook: Runbook | None = None
        self._inputs: dict[str, Any] = {}
        self._steps: dict[str, StepStatus] = {}
        self._target: dict[str, str] = {}
        self._error = ""
        self._tick = 0
        self._approvals = ApprovalGate()
        self._lease = LeaseHolderSide()
        self._saga = Saga()
        self._waiting_approvals = 0
        self._loaded: LoadedRunbook | None = None
        self._started_at = workflow.info().start_time
        self._run_number = 1
        self._fan_outs: dict[str, CarriedFanOut] = {}  # for_each steps stopped part-way, by step id
        self._suspended: set[str] = set()  # ... of which these stopped in this run (continue-as-new due)
        self._skipped = False  # a scheduled run whose target was busy (pitstop.schedules.skips)

    # ------------------------------------------------------------ handlers

    @workflow.query
    def status(self) -> RunStatus:
        return RunStatus(
            workflow_id=workflow.info().workflow_id, runbook=self._request.runbook, phase=self._phase,
            paused=self._paused, dry_run=self._request.dry_run, target=self._target, lease_id=self._lease.lease_id,
            started_at=self._started_at, steps=list(self._steps.values()),
            approvals=list(self._approvals.waiting.values()), error=self._error, run_number=self._run_number,
        )

    @workflow.update
    def pause(self, request: ControlRequest) -> Phase:
        self._paused = True
        self._wake()
        workflow.logger.info("paused by %s: %s", request.identity, request.reason)
        return self._phase

    @workflow.update
    def resume(self, request: ControlRequest) -> Phase:
        self._paused = False
        self._wake()
        return self._phase

    @workflow.update
    def abort(self, request: ControlRequest) -> Phase:
        self._abort = self._abort or request
        self._wake()
        return self._phase

    @pause.validator
    def _check_pause(self, request: ControlRequest) -> None:
        self._check_active("pause")

    @resume.validator
    def _check_resume(self, request: ControlRequest) -> None:
        self._check_active("resume")
        if not self._paused:
            raise ValueError("the run is not paused")

    @abort.validator
    def _check_abort(self, request: ControlRequest) -> None:
        self._check_active("abort")

    @workflow.update
    def approve(self, decision: ApprovalDecision) -> str:
        self._approvals.decide(decision)
        self._wake()
        return f"{'approved' if decision.approved else 'rejected'} {decision.step} as {decision.identity}"

    @approve.validator
    def _check_approve(self, decision: ApprovalDecision) -> None:
        self._approvals.validate(decision)

    @workflow.signal
    def lease_granted(self, grant: LeaseGrant) -> None:
        self._lease.granted(grant)

    @workflow.signal
    def lease_refused(self, grant: LeaseGrant) -> None:
        self._lease.refused(grant)

    def _check_active(self, action: str) -> None:
        if self._phase.final or self._phase == Phase.COMPENSATING or self._abort is not None:
            raise ValueError(f"cannot {action}: the run is {self._phase.value}")

    def _wake(self) -> None:
        self._tick += 1

    # ------------------------------------------------------------ main

    @workflow.run
    async def run(self, request: RunbookRequest) -> RunbookOutcome:
        if request.carried is not None:
            self._restore(request.carried)
        else:
            self._setup(await load_runbook(request))
        cancelled = False
        continue_as_new = False
        try:
            if request.carried is None:
                await self._acquire_lease()
            if self._abort is None:
                self._set_phase(Phase.RUNNING)
            continue_as_new = await self._run_dag()
        except asyncio.CancelledError:
            cancelled = True  # Temporal cancellation ("Request cancellation" in the UI) = abort
            self._abort = self._abort or ControlRequest(identity="temporal", reason="workflow cancellation requested")
        except (ApplicationError, StepFailed) as exc:  # lease refused / timed out
            self._error = self._error or (exc.message if isinstance(exc, ApplicationError) else str(exc))
            failure_type = exc.type if isinstance(exc, ApplicationError) else None
            self._skipped = skips_run(trigger=self._request.trigger, failure_type=failure_type) and workflow.patched(
                SCHEDULED_SKIP_PATCH)
        if continue_as_new and not cancelled:
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._abort is None:  # an abort accepted meanwhile is handled here, by this run
                workflow.continue_as_new(self._carry())
        await self._finish()  # not in `finally`: an evicted workflow must not run workflow code
        await workflow.wait_condition(workflow.all_handlers_finished)
        if cancelled:
            raise asyncio.CancelledError()
        if self._phase == Phase.FAILED:
            raise ApplicationError(self._error, type="RunbookFailed", non_retryable=True)
        return self._outcome()

    def _setup(self, loaded: LoadedRunbook) -> None:
        self._loaded = loaded
        self._runbook = loaded.runbook
        self._inputs = loaded.inputs
        self._steps = {s.id: StepStatus(id=s.id, uses=s.uses) for s in loaded.runbook.steps}
        context = {"inputs": self._inputs}
        if loaded.runbook.target:
            target = loaded.runbook.target.model_dump()
            self._target = {k: str(ex.render(v, context) or "") for k, v in target.items()}
            self._target["cluster"] = self._target["cluster"] or self._target["region"]
        self._upsert_search_attributes(loaded)
        self._set_phase(Phase.LOADING)

    def _restore(self, carried: CarriedRun) -> None:
        """Resume from the state the previous run of the chain handed over (no load, no lease request)."""
        self._loaded = carried.loaded
        self._runbook = carried.loaded.runbook
        self._inputs = carried.loaded.inputs
        self._steps = {s.id: s for s in carried.steps}
        self._target = dict(carried.target)
        self._saga.restore(carried.loaded.runbook, carried.saga)
        self._paused = carried.paused
        self._lease.restore(lease_id=carried.lease_id, requested=carried.lease_requested, grant=carried.lease_grant)
        self._approvals.decisions = dict(carried.decisions)
        self._error = carried.error
        self._started_at = carried.started_at or workflow.info().start_time
        self._run_number = len(carried.earlier_runs) + 1
        self._fan_outs = {f.step_id: f for f in carried.fan_outs}
        self._upsert_search_attributes(carried.loaded)
        workflow.logger.info(
            "runbook %s continues (run %d of the chain; %d earlier history events)",
            carried.loaded.runbook.name, self._run_number, carried.earlier_events,
        )

    def _carry(self) -> RunbookRequest:
        """The next run's input: this request plus the whole interpreter state."""
        if self._loaded is None:
            raise ApplicationError("internal error: continue-as-new before the runbook was loaded", non_retryable=True)
        info = workflow.info()
        previous = self._request.carried
        carried = CarriedRun(
            loaded=self._loaded, steps=list(self._steps.values()), target=self._target, saga=self._saga.carry(),
            paused=self._paused, lease_id=self._lease.lease_id, lease_requested=self._lease.requested,
            lease_grant=self._lease.grant, decisions=dict(self._approvals.decisions), error=self._error,
            started_at=self._started_at,
            earlier_runs=(previous.earlier_runs if previous else []) + [info.run_id],
            earlier_events=(previous.earlier_events if previous else 0) + info.get_current_history_length(),
            fan_outs=list(self._fan_outs.values()),
        )
        return self._request.model_copy(update={"carried": carried})

    def _history_too_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= self._request.history_limit

    def _upsert_search_attributes(self, loaded: LoadedRunbook) -> None:
        attributes = [
            SA_KEYS["runbook"].value_set(loaded.runbook.name),
            SA_KEYS["trigger"].value_set(self._request.trigger or "ui"),
        ]
        for name in ("service", "namespace", "region"):
            if self._target.get(name):
                attributes.append(SA_KEYS[name].value_set(self._target[name]))
        workflow.upsert_search_attributes(attributes)

    async def _finish(self) -> None:
        if self._skipped:
            self._set_phase(Phase.SKIPPED)
        elif self._phase not in (Phase.SUCCEEDED,):
            failed = bool(self._error) or any(s.state == StepState.FAILED for s in self._steps.values())
            if self._abort is not None or failed:
                self._stop_split_fan_outs()
                if not self._request.dry_run and self._saga.entries:
                    self._set_phase(Phase.COMPENSATING)
                    await self._saga.compensate(self._calls(), self._context, self._steps)
                    self._error = self._saga.annotate(self._error)
                self._set_phase(Phase.ABORTED if self._abort is not None else Phase.FAILED)
                if self._abort is not None and not self._error:
                    self._error = f"aborted by {self._abort.identity or 'unknown'}: {self._abort.reason or 'no reason given'}"
            else:
                self._set_phase(Phase.SUCCEEDED)
        await self._lease.release()

    def _stop_split_fan_outs(self) -> None:
        """The run ends failed or aborted: a for_each stopped part-way will not go on (its finished items are
        compensated like any others)."""
        for sid, partial in self._fan_outs.items():
            status = self._steps[sid]
            if status.state in (StepState.RUNNING, StepState.WAITING_FOR_APPROVAL):
                status.state, status.ended_at = StepState.CANCELLED, workflow.now()
                status.error = status.error or (
                    f"stopped after {status.items_done}/{partial.items_total} items: the run "
                    f"{'was aborted' if self._abort is not None else 'failed'}"
                )

    async def _acquire_lease(self) -> None:
        runbook = self._runbook
        if runbook is None or self._request.dry_run or not self._target.get("service"):
            return
        if not runbook.mutates({name for name, kind in STEP_TYPES.items() if kind.mutating}):
            return
        lease = lease_id(cluster=self._target["cluster"], namespace=self._target["namespace"], service=self._target["service"])
        if lease in self._request.held_leases:
            return  # a parent run holds this target for us
        self._set_phase(Phase.WAITING_FOR_LEASE)
        info = workflow.info()
        policy = lease_policy(trigger=self._request.trigger, declared=runbook.lease.policy)
        holder = LeaseHolder(workflow_id=info.workflow_id, run_id=info.run_id, runbook=runbook.name, policy=policy)
        await self._lease.acquire(
            lease=lease, holder=holder, wait_timeout=runbook.lease.wait_timeout, stop=lambda: self._abort is not None
        )

    # ------------------------------------------------------------ the DAG

    async def _run_dag(self) -> bool:
        """Run the steps; True = stopped at a safe point to continue-as-new (the history grew long)."""
        runbook = self._runbook
        if runbook is None:
            return False
        graph = {s.id: s.needs for s in runbook.steps}
        running: dict[str, asyncio.Task[None]] = {}
        started = {sid for sid, st in self._steps.items() if st.state != StepState.PENDING}  # carried runs
        carried_in = len(started)
        for sid in self._fan_outs:  # for_each steps a previous run stopped part-way: go on with their items
            running[sid] = asyncio.create_task(self._run_step(runbook.step(sid)))  # type: ignore[arg-type]
        while True:
            if self._abort is not None:
                await self._cancel(running)
                return False
            # drain, then continue-as-new; never twice in a row without progress (no continue-as-new loop).
            # A fan-out that stopped part-way (`_suspended`) made progress itself: continue even after the last step.
            draining = not self._failed() and (
                bool(self._suspended) or (carried_in < len(started) < len(graph) and self._history_too_long())
            )
            if draining and not running:
                return True  # safe point: nothing in flight
            if not self._paused and not self._failed() and not draining:
                finished = [sid for sid, st in self._steps.items() if st.state.finished_ok]
                for sid in dag.ready(graph, finished, started):
                    if len(running) >= runbook.max_parallel:
                        break
                    started.add(sid)
                    running[sid] = asyncio.create_task(self._run_step(runbook.step(sid)))  # type: ignore[arg-type]
            if not running and (self._failed() or len(started) == len(graph)):
                return False
            self._refresh_phase()
            seen = self._tick
            await workflow.wait_condition(
                lambda: self._tick != seen or any(t.done() for t in running.values())
            )
            for sid in [s for s, t in running.items() if t.done()]:
                running.pop(sid).result()

    def _failed(self) -> bool:
        return any(s.state == StepState.FAILED for s in self._steps.values())

    async def _cancel(self, running: dict[str, asyncio.Task[None]]) -> None:
        for task in running.values():
            task.cancel()
        if running:
            await asyncio.gather(*running.values(), return_exceptions=True)

    async def _run_step(self, step: Step) -> None:
        status = self._steps[step.id]
        evicted = suspended = False
        resumed = step.id in self._fan_outs  # a for_each an earlier run stopped part-way: condition was true
        status.state = StepState.RUNNING
        if not resumed:
            status.started_at = workflow.now()
        try:
            if not resumed and not ex.truthy(step.if_, self._context()):
                status.state, status.summary = StepState.SKIPPED, "condition false"
                return
            if step.for_each is None:
                status.outputs = await self._run_item(step, None, None)
            else:
                status.outputs = await self._fan_out(step, status)
            status.state = StepState.SUCCEEDED
            status.summary = status.summary or self._item_summary(status.outputs)
        except asyncio.CancelledError:
            status.state, status.error = StepState.CANCELLED, "cancelled by abort"
            raise
        except (StepFailed, ex.ExpressionError) as exc:
            status.state, status.error = StepState.FAILED, str(exc)
            self._error = self._error or f"runbook {self._request.runbook!r} failed at step {step.id!r} ({step.uses}): {exc}"
        except FanOutSuspended:
            suspended = True  # stays running; the next run of the chain goes on with the remaining items
            self._suspended.add(step.id)
        except GeneratorExit:  # the worker evicted this run from its cache: no workflow calls now
            evicted = True
            raise
        finally:
            if not evicted:
                if not suspended:
                    status.ended_at = workflow.now()
                self._wake()

    async def _fan_out(self, step: Step, status: StepStatus) -> list[Any]:
        results: dict[int, Any] = {}
        items: dict[int, Any] = {}
        carried = self._fan_outs.pop(step.id, None)
        if carried is None:
            evaluated = ex.render(step.for_each.items, self._context()) if step.for_each else []
            if not isinstance(evaluated, list):
                raise StepFailed(f"for_each.items evaluated to {type(evaluated).__name__}, not a list")
            items = dict(enumerate(evaluated))
            total = status.items_total = len(evaluated)
        else:  # resumed: the items an earlier run of the chain did not run, with their original indexes
            total = carried.items_total
            results = dict(zip(carried.done_indexes(), carried.outputs))
            items = dict(zip(carried.remaining_indexes(), carried.remaining))
        limit = step.for_each.parallelism if step.for_each else 1
        pending = sorted(items)
        active: dict[int, asyncio.Task[Any]] = {}
        error: BaseException | None = None
        finished_here = 0  # items finished in this run: split only after progress (never a continue-as-new loop)
        splitting = False
        try:
            while pending or active:
                if (not splitting and pending and finished_here and error is None
                        and self._history_too_long() and workflow.patched(FOR_EACH_CONTINUE_AS_NEW_PATCH)):
                    splitting = True  # launch nothing more; the items in flight finish, then the run continues
                while (pending and len(active) < limit and error is None and not splitting
                       and not self._paused and self._abort is None):
                    index = pending.pop(0)
                    active[index] = asyncio.create_task(self._run_item(step, items[index], index))
                if not active:
                    if error is not None or splitting:
                        break
                    seen = self._tick
                    await workflow.wait_condition(lambda: self._tick != seen)
                    continue
                await workflow.wait_condition(lambda: any(t.done() for t in active.values()))
                for index in [i for i, t in active.items() if t.done()]:
                    task = active.pop(index)
                    if task.exception() is not None:
                        error = error or task.exception()
                    else:
                        results[index] = task.result()
                        status.items_done += 1
                        finished_here += 1
        except asyncio.CancelledError:
            for task in active.values():
                task.cancel()
            await asyncio.gather(*active.values(), return_exceptions=True)
            raise
        if error is not None:
            raise error
        if pending:  # split: hand the partial state to the next run
            done = sorted(results)
            self._fan_outs[step.id] = CarriedFanOut(
                step_id=step.id, items_total=total, done=CarriedFanOut.ranges(done),
                outputs=[results[i] for i in done], remaining=[items[i] for i in pending],
            )
            raise FanOutSuspended()
        return [results[i] for i in range(total)]

    async def _run_item(self, step: Step, item: Any, index: int | None) -> dict[str, Any]:
        key = step.id if index is None else f"{step.id}[{index}]"
        context = self._context(item)
        args = ex.render(step.with_, context)
        outputs = await self._calls().call(
            key=key, uses=step.uses, args=args, timeout=step.timeout, retry=step.retry, activity_id=key
        )
        if step.compensate is not None:
            self._saga.record(step, key, item, outputs)
        return outputs

    # ------------------------------------------------------------ helpers

    def _calls(self) -> StepCalls:
        return StepCalls(
            run_id=workflow.info().workflow_id, dry_run=self._request.dry_run, approvals=self._approvals,
            default_approvers=self._runbook.approvers if self._runbook else [],
            child_request=self._child_request, on_waiting=self._on_waiting, runbook=self._request.runbook,
        )

    def _child_request(self, name: str, inputs: dict[str, Any]) -> RunbookRequest:
        held = list(self._request.held_leases) + ([self._lease.lease_id] if self._lease.lease_id else [])
        return RunbookRequest(
            runbook=name, inputs=inputs, dry_run=self._request.dry_run, trigger="runbook",
            started_by=workflow.info().workflow_id, held_leases=held, history_limit=self._request.history_limit,
        )

    def _on_waiting(self, key: str, waiting: bool) -> None:
        self._waiting_approvals += 1 if waiting else -1
        step_id = key.split("[", 1)[0]
        if step_id in self._steps and self._steps[step_id].state in (StepState.RUNNING, StepState.WAITING_FOR_APPROVAL):
            self._steps[step_id].state = StepState.WAITING_FOR_APPROVAL if waiting else StepState.RUNNING
        self._refresh_phase()

    def _context(self, item: Any = None) -> dict[str, Any]:
        return {
            "inputs": self._inputs,
            "steps": {sid: {"status": st.state.value, "outputs": st.outputs} for sid, st in self._steps.items()},
            "item": item,
            "run": {"id": workflow.info().workflow_id, "dry_run": self._request.dry_run, "runbook": self._request.runbook},
        }

    def _refresh_phase(self) -> None:
        if self._phase.final or self._phase in (Phase.LOADING, Phase.WAITING_FOR_LEASE, Phase.COMPENSATING):
            return
        if self._waiting_approvals:
            self._set_phase(Phase.WAITING_FOR_APPROVAL)
        elif self._paused:
            self._set_phase(Phase.PAUSED)
        else:
            self._set_phase(Phase.RUNNING)

    def _set_phase(self, phase: Phase) -> None:
        changed = phase != self._phase or phase == Phase.LOADING
        self._phase = phase
        if changed:
            workflow.upsert_search_attributes([SA_KEYS["phase"].value_set(phase.value)])
        done = sum(1 for s in self._steps.values() if s.state in (StepState.SUCCEEDED, StepState.SKIPPED))
        target = "/".join(v for v in (self._target.get("namespace"), self._target.get("service")) if v)
        workflow.set_current_details(
            f"**{self._request.runbook}**{' on ' + target if target else ''} — {phase.value}, "
            f"{done}/{len(self._steps)} steps done{' (dry run)' if self._request.dry_run else ''}"
            + (f"\n\n{self._error}" if self._error else "")
        )

    def _item_summary(self, outputs: Any) -> str:
        if isinstance(outputs, dict):
            return str(outputs.get("summary", ""))
        if isinstance(outputs, list):
            return "; ".join(str(o.get("summary", "")) for o in outputs if isinstance(o, dict) and o.get("summary"))
        return ""

    def _outcome(self) -> RunbookOutcome:
        return RunbookOutcome(
            runbook=self._request.runbook, status=self._phase.value, error=self._error, dry_run=self._request.dry_run,
            outputs={sid: st.outputs for sid, st in self._steps.items() if st.outputs is not None},
            steps={sid: st.state.value for sid, st in self._steps.items()},
            summaries={sid: st.summary or st.error for sid, st in self._steps.items()},
        )


__all__ = ["RunbookWorkflow", "ActivityError", "failure_text", "STEP_TYPES"]
