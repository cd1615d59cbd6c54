"""The time-skipping test server from the venv: a 30-minute durable sleep completes in wall-clock seconds."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment

with workflow.unsafe.imports_passed_through():
    from tests.fixtures.temporal import running_worker

pytestmark = pytest.mark.integration


@workflow.defn
class LongSoak:
    @workflow.run
    async def run(self, minutes: int) -> float:
        started = workflow.now()
        await workflow.sleep(timedelta(minutes=minutes))
        return (workflow.now() - started).total_seconds()


async def test_thirty_minutes_pass_in_seconds(time_skipping_env: WorkflowEnvironment, task_queue: str) -> None:
    wall = time.monotonic()
    async with running_worker(time_skipping_env.client, task_queue=task_queue, workflows=[LongSoak]):
        elapsed = await time_skipping_env.client.execute_workflow(
            LongSoak.run, 30, id=f"soak-{task_queue}", task_queue=task_queue
        )
    assert elapsed >= 30 * 60
    assert time.monotonic() - wall < 60
