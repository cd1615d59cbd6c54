"""Helpers for the engine's integration tests: a test worker with the engine's workflows and activities (the
test-only `debug.*` steps included, see tests/fixtures/worker_reach.py)."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from pitstop.activities.clients import ActivityClients
from pitstop.activities.leases import LeaseActivities
from pitstop.activities.notify import NotifyActivities
from pitstop.activities.runbook_catalog import RunbookCatalog
from pitstop.activities.runbook_debug import DebugSteps, EngineSteps
from pitstop.config import Settings
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.runbook.run_state import RunStatus
from tests.fixtures.temporal import running_worker
from tests.fixtures.worker_reach import TEST_REACH, TEST_SECURITY_SETTINGS
from pitstop.workflows import ALL_WORKFLOWS

TEST_RUNBOOKS = Path(__file__).resolve().parents[1] / "data" / "runbooks"


def engine_activities(client: Client, runbooks_dir: Path = TEST_RUNBOOKS, lease_check_seconds: float = 1.0) -> list[Any]:
    notify = NotifyActivities(ActivityClients(settings=Settings(security=TEST_SECURITY_SETTINGS)))  # escalations
    return [
        *RunbookCatalog(runbooks_dir, reach=TEST_REACH).activities(),
        *EngineSteps().activities(),
        *DebugSteps(record_dir=Path(tempfile.gettempdir())).activities(),
        *LeaseActivities(client, check_seconds=lease_check_seconds).activities(),
        notify.webhook,
        notify.slack,
    ]


@asynccontextmanager
async def engine(
    client: Client, task_queue: str, runbooks_dir: Path = TEST_RUNBOOKS, extra_activities: Sequence[Any] = (),
) -> AsyncIterator[None]:
    async with running_worker(
        client, task_queue=task_queue, workflows=ALL_WORKFLOWS,
        activities=[*engine_activities(client, runbooks_dir), *extra_activities],
    ):
        yield


async def start(
    client: Client, task_queue: str, runbook: str, workflow_id: str | None = None, *,
    history_limit: int | None = None, **inputs: Any,
) -> WorkflowHandle[Any, RunbookOutcome]:
    request = RunbookRequest(runbook=runbook, inputs=inputs, trigger="test", started_by="pytest")
    if history_limit is not None:
        request.history_limit = history_limit
    return await client.start_workflow(
        RUNBOOK_WORKFLOW,
        request,
        id=workflow_id or f"{runbook}-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        result_type=RunbookOutcome,
    )


async def status(handle: WorkflowHandle[Any, Any]) -> RunStatus:
    return await handle.query("status", result_type=RunStatus)


async def wait_until(handle: WorkflowHandle[Any, Any], predicate: Callable[[RunStatus], bool], timeout: float = 30) -> RunStatus:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            current = await status(handle)
            if predicate(current):
                return current
        except Exception:  # the first workflow task may not have run yet
            current = None
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s; last status: {current}")
        await asyncio.sleep(0.1)


def step_state(current: RunStatus, step_id: str) -> str:
    return next(s.state.value for s in current.steps if s.id == step_id)
