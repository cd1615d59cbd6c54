"""Compensation (saga): undo steps that succeeded, in reverse completion order, when a run fails or is aborted.

Each successful call of a step with `compensate:` is recorded (per fan-out item); its compensation sees
`steps.<id>.outputs` as that call's own outputs. A failing compensation is reported and the others still run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook import expressions as ex
    from pitstop.runbook.model import Runbook, Step
    from pitstop.runbook.request import SagaEntry
    from pitstop.runbook.run_state import StepState, StepStatus

from .step_calls import StepCalls, StepFailed


@dataclass
class Done:
    step: Step
    key: str
    item: Any
    outputs: Any


@dataclass
class Saga:
    entries: list[Done] = field(default_factory=list)
    compensated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def record(self, step: Step, key: str, item: Any, outputs: Any) -> None:
        self.entries.append(Done(step, key, item, outputs))

    def carry(self) -> list[SagaEntry]:
        """The compensation stack as data, for continue-as-new."""
        return [SagaEntry(step_id=e.step.id, key=e.key, item=e.item, outputs=e.outputs) for e in self.entries]

    def restore(self, runbook: Runbook, entries: list[SagaEntry]) -> None:
        for entry in entries:
            step = runbook.step(entry.step_id)
            if step is not None:
                self.entries.append(Done(step, entry.key, entry.item, entry.outputs))

    async def compensate(
        self, calls: StepCalls, context: Callable[[Any], dict[str, Any]], steps: dict[str, StepStatus]
    ) -> None:
        for entry in reversed(self.entries):
            undo = entry.step.compensate
            if undo is None:
                continue
            ctx = context(entry.item)
            ctx["steps"][entry.step.id] = {"status": "succeeded", "outputs": entry.outputs}
            key = f"compensate:{entry.key}"
            try:
                await calls.call(
                    key=key, uses=undo.uses, args=ex.render(undo.with_, ctx), timeout=undo.timeout,
                    retry=undo.retry, activity_id=key,
                )
            except (StepFailed, ex.ExpressionError) as exc:
                self.failed.append(f"{entry.key}: {exc}")
                steps[entry.step.id].state = StepState.COMPENSATION_FAILED
                continue
            self.compensated.append(entry.key)
            if steps[entry.step.id].state != StepState.COMPENSATION_FAILED:
                steps[entry.step.id].state = StepState.COMPENSATED

    def annotate(self, error: str) -> str:
        parts = [error] if error else []
        if self.compensated:
            parts.append(f"compensated (in order): {', '.join(self.compensated)}")
        if self.failed:
            parts.append(f"COMPENSATION FAILED: {'; '.join(self.failed)} — check these by hand")
        return "; ".join(parts)
