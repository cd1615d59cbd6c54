"""A `for_each` step's items (`FanOut`): launched up to the step's `parallelism` at once, each as its own call
(`step[index]`), outputs collected in item order; the first failure stops new launches and fails the step.

A long fan-out can split across continue-as-new runs: once the history is long (and at least one item
finished in this run), no new item is launched, the items in flight finish, and `FanOutSuspended` hands the
partial state (`CarriedFanOut`, kept in `RunState.fan_outs`) to the next run, which resumes with the items
left under their original indexes. Guarded by `workflow.patched(FOR_EACH_CONTINUE_AS_NEW_PATCH)`, checked
only when the limit is reached. Passed through the workflow sandbox (no module state).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook import expressions as ex
    from pitstop.runbook.model import Step
    from pitstop.runbook.request import CarriedFanOut
    from pitstop.runbook.run_state import StepStatus

from .runbook_state import RunState
from .step_calls import StepFailed

FOR_EACH_CONTINUE_AS_NEW_PATCH = "for-each-continue-as-new"

RunItem = Callable[[Step, Any, "int | None"], Coroutine[Any, Any, dict[str, Any]]]


class FanOutSuspended(Exception):
    """A for_each step stopped part-way (long history); its state is in `RunState.fan_outs`."""


class FanOut:
    def __init__(self, state: RunState, step: Step, status: StepStatus, run_item: RunItem) -> None:
        self._state, self._step, self._status, self._run_item = state, step, status, run_item
        self._items: dict[int, Any] = {}  # index -> item, the items to run in this run
        self._results: dict[int, Any] = {}  # index -> outputs, finished here or in earlier runs
        self._total = 0

    async def run(self) -> list[Any]:
        """The outputs of every item, in item order; raises the first item's failure, or `FanOutSuspended`."""
        self._take_items()
        pending = sorted(self._items)
        active: dict[int, asyncio.Task[Any]] = {}
        try:
            error = await self._drive(pending, active)
        except asyncio.CancelledError:
            for task in active.values():
                task.cancel()
            await asyncio.gather(*active.values(), return_exceptions=True)
            raise
        if error is not None:
            raise error
        if pending:  # split: hand the partial state to the next run
            done = sorted(self._results)
            self._state.fan_outs[self._step.id] = CarriedFanOut(
                step_id=self._step.id, items_total=self._total, done=CarriedFanOut.ranges(done),
                outputs=[self._results[i] for i in done], remaining=[self._items[i] for i in pending],
            )
            raise FanOutSuspended()
        return [self._results[i] for i in range(self._total)]

    def _take_items(self) -> None:
        carried = self._state.fan_outs.pop(self._step.id, None)
        if carried is None:
            for_each = self._step.for_each
            evaluated = ex.render(for_each.items, self._state.context()) if for_each else []
            if not isinstance(evaluated, list):
                raise StepFailed(f"for_each.items evaluated to {type(evaluated).__name__}, not a list")
            self._items = dict(enumerate(evaluated))
            self._total = self._status.items_total = len(evaluated)
        else:  # resumed: the items an earlier run of the chain did not run, with their original indexes
            self._total = carried.items_total
            self._results = dict(zip(carried.done_indexes(), carried.outputs))
            self._items = dict(zip(carried.remaining_indexes(), carried.remaining))

    async def _drive(self, pending: list[int], active: dict[int, asyncio.Task[Any]]) -> BaseException | None:
        """Launch and collect items until none is left, one failed, or the run splits (`pending` not empty)."""
        state, step = self._state, self._step
        limit = step.for_each.parallelism if step.for_each else 1
        error: BaseException | None = None
        finished_here = 0  # items finished in this run: split only after progress (never a continue-as-new loop)
        splitting = False
        while pending or active:
            if (not splitting and pending and finished_here and error is None
                    and state.history_too_long() and workflow.patched(FOR_EACH_CONTINUE_AS_NEW_PATCH)):
                splitting = True  # launch nothing more; the items in flight finish, then the run continues
            while (pending and len(active) < limit and error is None and not splitting
                   and not state.paused and state.abort is None):
                index = pending.pop(0)
                active[index] = asyncio.create_task(self._run_item(step, self._items[index], index))
            if not active:
                if error is not None or splitting:
                    break
                seen = state.tick
                await workflow.wait_condition(lambda: state.tick != seen)
                continue
            await workflow.wait_condition(lambda: any(t.done() for t in active.values()))
            for index in [i for i, t in active.items() if t.done()]:
                task = active.pop(index)
                if task.exception() is not None:
                    error = error or task.exception()
                else:
                    self._results[index] = task.result()
                    self._status.items_done += 1
                    finished_here += 1
        return error
