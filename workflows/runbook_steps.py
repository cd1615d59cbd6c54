"""Running a runbook's steps (`StepScheduler`): the DAG loop that starts ready steps (at most `max_parallel`
at once), one step's life (condition, call or fan-out, its status), and one call with rendered arguments.

The loop stops at a safe point to continue-as-new once the history is long (no step in flight), and never
twice in a row without progress. Passed through the workflow sandbox (no module state; one scheduler per run).
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook import dag
    from pitstop.runbook import expressions as ex
    from pitstop.runbook.model import Step
    from pitstop.runbook.request import RunbookRequest
    from pitstop.runbook.run_state import StepState, StepStatus

from .runbook_fan_out import FanOut, FanOutSuspended
from .run_metrics import step_finished
from .runbook_state import RunState
from .step_calls import StepCalls, StepFailed

Running = dict[str, "asyncio.Task[None]"]


class StepScheduler:
    def __init__(self, state: RunState) -> None:
        self._state = state
        self._calls: StepCalls | None = None
        self._templated: dict[str, bool] = {}  # step id -> its `with:` holds expressions (else no context needed)

    # ------------------------------------------------------------ the DAG

    async def run_dag(self) -> bool:
        """Run the steps; True = stopped at a safe point to continue-as-new (the history grew long)."""
        state, runbook = self._state, self._state.runbook
        if runbook is None:
            return False
        graph = {s.id: s.needs for s in runbook.steps}
        steps = {s.id: s for s in runbook.steps}
        running: Running = {}
        started = {sid for sid, st in state.steps.items() if st.state != StepState.PENDING}  # carried runs
        finished = {sid for sid, st in state.steps.items() if st.state.finished_ok}
        waiting = {sid: needs for sid, needs in graph.items() if sid not in started}  # not started yet
        carried_in = len(started)
        for sid in state.fan_outs:  # for_each steps a previous run stopped part-way: go on with their items
            running[sid] = asyncio.create_task(self.run_step(steps[sid]))
        while True:
            if state.abort is not None:
                await self._cancel(running)
                return False
            failed = state.failed()
            # drain, then continue-as-new; never twice in a row without progress (no continue-as-new loop).
            # A fan-out that stopped part-way (`suspended`) made progress itself: continue even after the last step.
            draining = not failed and (
                bool(state.suspended) or (carried_in < len(started) < len(graph) and state.history_too_long())
            )
            if draining and not running:
                return True  # safe point: nothing in flight
            if not state.paused and not failed and not draining:
                for sid in dag.ready(waiting, finished, ())[: max(runbook.max_parallel - len(running), 0)]:
                    del waiting[sid]
                    started.add(sid)
                    running[sid] = asyncio.create_task(self.run_step(steps[sid]))
            if not running and (failed or len(started) == len(graph)):
                return False
            state.refresh_phase()
            seen = state.tick
            await workflow.wait_condition(lambda: state.tick != seen or any(t.done() for t in running.values()))
            for sid in [s for s, t in running.items() if t.done()]:
                running.pop(sid).result()
                if state.steps[sid].state.finished_ok:  # a step's state changes only while its task runs
                    finished.add(sid)

    async def _cancel(self, running: Running) -> None:
        for task in running.values():
            task.cancel()
        if running:
            await asyncio.gather(*running.values(), return_exceptions=True)

    # ------------------------------------------------------------ one step

    async def run_step(self, step: Step) -> None:
        state = self._state
        status = state.steps[step.id]
        evicted = suspended = False
        resumed = step.id in state.fan_outs  # a for_each an earlier run stopped part-way: condition was true
        status.state = StepState.RUNNING
        if not resumed:
            status.started_at = workflow.now()
        try:
            if not resumed and step.if_ is not None and not ex.truthy(step.if_, state.context()):
                status.state, status.summary = StepState.SKIPPED, "condition false"
                return
            if step.for_each is None:
                status.outputs = await self.run_item(step, None, None)
            else:
                status.outputs = await FanOut(state, step, status, self.run_item).run()
            status.state = StepState.SUCCEEDED
            status.summary = status.summary or _summary(status.outputs)
        except asyncio.CancelledError:
            status.state, status.error = StepState.CANCELLED, "cancelled by abort"
            raise
        except (StepFailed, ex.ExpressionError) as exc:
            status.state, status.error = StepState.FAILED, str(exc)
            state.error = state.error or f"runbook {state.request.runbook!r} failed at step {step.id!r} ({step.uses}): {exc}"
        except FanOutSuspended:
            suspended = True  # stays running; the next run of the chain goes on with the remaining items
            state.suspended.add(step.id)
        except GeneratorExit:  # the worker evicted this run from its cache: no workflow calls now
            evicted = True
            raise
        finally:
            if not evicted:
                if not suspended:
                    status.ended_at = workflow.now()
                    step_finished(runbook=state.request.runbook, step_type=step.uses, state=status.state.value,
                                  started_at=status.started_at)
                state.wake()

    async def run_item(self, step: Step, item: Any, index: int | None) -> dict[str, Any]:
        """One call of the step (or of one fan-out item) with its arguments rendered."""
        key = step.id if index is None else f"{step.id}[{index}]"
        args = ex.render(step.with_, self._state.context(item) if self._is_templated(step) else {})
        outputs = await self.calls().call(
            key=key, uses=step.uses, args=args, timeout=step.timeout, retry=step.retry, activity_id=key
        )
        if step.compensate is not None:
            self._state.saga.record(step, key, item, outputs)
        return outputs

    def _is_templated(self, step: Step) -> bool:
        templated = self._templated.get(step.id)
        if templated is None:
            templated = self._templated[step.id] = bool(ex.strings_in(step.with_))
        return templated

    # ------------------------------------------------------------ calls

    def calls(self) -> StepCalls:
        """How this run calls step types (dry run, approvals, child runbooks); the runbook must be loaded."""
        if self._calls is None:
            state = self._state
            self._calls = StepCalls(
                run_id=workflow.info().workflow_id, dry_run=state.request.dry_run, approvals=state.approvals,
                default_approvers=state.runbook.approvers if state.runbook else [],
                child_request=self._child_request, on_waiting=self._on_waiting, runbook=state.request.runbook,
            )
        return self._calls

    def _child_request(self, name: str, inputs: dict[str, Any]) -> RunbookRequest:
        request, lease = self._state.request, self._state.lease
        held = list(request.held_leases) + ([lease.lease_id] if lease.lease_id else [])
        return RunbookRequest(
            runbook=name, inputs=inputs, dry_run=request.dry_run, trigger="runbook",
            started_by=workflow.info().workflow_id, held_leases=held, history_limit=request.history_limit,
        )

    def _on_waiting(self, key: str, waiting: bool) -> None:
        state = self._state
        state.waiting_approvals += 1 if waiting else -1
        status: StepStatus | None = state.steps.get(key.split("[", 1)[0])
        if status is not None and status.state in (StepState.RUNNING, StepState.WAITING_FOR_APPROVAL):
            status.state = StepState.WAITING_FOR_APPROVAL if waiting else StepState.RUNNING
        state.refresh_phase()


def _summary(outputs: Any) -> str:
    """A step's one-line summary from its outputs (a fan-out's: its items' summaries joined)."""
    if isinstance(outputs, dict):
        return str(outputs.get("summary", ""))
    if isinstance(outputs, list):
        return "; ".join(str(o.get("summary", "")) for o in outputs if isinstance(o, dict) and o.get("summary"))
    return ""
