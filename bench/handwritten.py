"""The benchmark's baseline: a hand-written workflow calling the same no-op activity N times in sequence."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook.native_steps import LogArgs, LogResult
    from pitstop.runbook.step_types import StepInvocation


@workflow.defn(name="HandWritten50")
class HandWritten50:
    """The baseline: what a developer would write by hand for the same 50 sequential steps."""

    @workflow.run
    async def run(self, steps: int) -> list[str]:
        messages = []
        for i in range(steps):
            result = await workflow.execute_activity(
                "runbook.log",
                StepInvocation[LogArgs](args=LogArgs(message=f"step {i}"), run_id=workflow.info().workflow_id, step_id=f"s{i}"),
                result_type=LogResult,
                activity_id=f"s{i}",
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
            messages.append(result.message)
        return messages
