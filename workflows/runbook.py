"""The runbook interpreter workflow (foundation placeholder: echoes its request; the engine replaces it)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest


@workflow.defn(name=RUNBOOK_WORKFLOW)
class RunbookWorkflow:
    @workflow.run
    async def run(self, request: RunbookRequest) -> RunbookOutcome:
        return RunbookOutcome(runbook=request.runbook, status="succeeded", outputs=dict(request.inputs))
