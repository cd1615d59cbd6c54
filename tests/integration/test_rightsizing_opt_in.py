"""`RightsizingLoop` on the real Temporal server refuses a service whose team has not opted in, before it asks
for the lease or touches a cluster (the CLI refuses too; this is the workflow's own guard for other callers)."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client

from pitstop.capacity.closed_loop import LOOP_WORKFLOW, LoopInput, LoopOutcome, LoopSettings
from pitstop.delivery.spec import ContainerResources
from tests.fixtures.temporal import running_worker
from pitstop.workflows.lease import TargetLease
from pitstop.workflows.rightsizing import RightsizingLoop

pytestmark = pytest.mark.integration


async def test_a_team_that_did_not_opt_in_is_refused_before_any_call(temporal_client: Client, task_queue: str) -> None:
    request = LoopInput(service="cart", namespace="shop", region="eu", team="team-shop", settings=LoopSettings(),
                        resources={"app": ContainerResources(limits={"memory": "64Mi"})})
    workflow_id = f"rightsizing-{uuid.uuid4().hex[:6]}"
    async with running_worker(temporal_client, task_queue=task_queue, workflows=[RightsizingLoop, TargetLease]):
        outcome = await temporal_client.execute_workflow(LOOP_WORKFLOW, request, id=workflow_id, task_queue=task_queue,
                                                         result_type=LoopOutcome)
    assert outcome.result == "refused" and "team 'team-shop' has not opted in" in outcome.reason, outcome
    assert outcome.summary.startswith("rightsizing cart in eu: refused")
    scheduled = [e async for e in temporal_client.get_workflow_handle(workflow_id).fetch_history_events()
                 if e.HasField("activity_task_scheduled_event_attributes")]
    assert scheduled == []
