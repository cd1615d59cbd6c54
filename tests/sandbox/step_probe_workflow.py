"""A minimal workflow that runs one step activity by name on a given task queue (test harness only:
the product's interpreter is `workflows.runbook`). Input and output stay plain JSON, as in history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy


class StepProbeRequest(BaseModel):
    activity: str
    task_queue: str
    invocation: dict[str, Any]
    timeout_seconds: float = 120.0
    heartbeat_seconds: float | None = None


@workflow.defn(name="StepLibraryProbe")
class StepProbeWorkflow:
    @workflow.run
    async def run(self, request: StepProbeRequest) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_activity(
            request.activity,
            request.invocation,
            task_queue=request.task_queue,
            start_to_close_timeout=timedelta(seconds=request.timeout_seconds),
            heartbeat_timeout=timedelta(seconds=request.heartbeat_seconds) if request.heartbeat_seconds else None,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3),
            result_type=dict,
        )
        return result
