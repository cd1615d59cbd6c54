"""pitstop on its production topology, as local processes: a real Temporal server (built from Go modules) on
PostgreSQL, two `pitstop worker` processes and two `pitstop webhook` replicas (`sandbox.production_topology`).
Runbooks complete; a worker killed with SIGKILL mid-step loses nothing (the other worker takes the step over after a
missed heartbeat); the Temporal server killed with SIGKILL and started again on the same database lets runs in flight
finish; an alert accepted by a webhook replica that is then killed (while Temporal is down) reaches Temporal once
the replica and the server are back."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.sandbox.production_topology import ProductionTopology
from tests.integration.test_webhook_journal import alert, incident_of

pytestmark = pytest.mark.integration

TEST_RUNBOOKS = Path(__file__).resolve().parents[1] / "data" / "runbooks"


@pytest.fixture(scope="module")
def topology() -> Iterator[ProductionTopology]:
    started = time.monotonic()
    topology = ProductionTopology(workers=2, webhooks=2, task_queue=f"topology-{uuid.uuid4().hex[:6]}", extra_env={
        "PITSTOP_RUNBOOKS_DIR": str(TEST_RUNBOOKS), "PITSTOP_WORKER__ENABLE_DEBUG_STEPS": "true"})
    try:
        topology.start()
        print(f"production topology up in {time.monotonic() - started:.1f}s (Temporal on PostgreSQL, 2 workers, 2 webhooks)")
        yield topology
    finally:
        topology.stop(remove_state=True)


@pytest_asyncio.fixture
async def client(topology: ProductionTopology) -> AsyncIterator[Client]:
    yield await Client.connect(topology.temporal.address, data_converter=pydantic_data_converter)


async def start(client: Client, topology: ProductionTopology, runbook: str, **inputs: object) -> str:
    workflow_id = f"{runbook}-{uuid.uuid4().hex[:8]}"
    await client.start_workflow(RUNBOOK_WORKFLOW, RunbookRequest(runbook=runbook, inputs=inputs, trigger="test", started_by="pytest"),
                                id=workflow_id, task_queue=topology.task_queue, result_type=RunbookOutcome)
    return workflow_id


async def outcome_of(client: Client, workflow_id: str, timeout: float = 120) -> RunbookOutcome:
    deadline = time.monotonic() + timeout
    handle = client.get_workflow_handle(workflow_id, result_type=RunbookOutcome)
    while time.monotonic() < deadline:
        try:
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                return await handle.result()
        except RPCError:
            pass  # the server is coming back
        time.sleep(0.3)
    pytest.fail(f"{workflow_id} still running after {timeout}s")


async def test_runbooks_complete_on_the_real_server(client: Client, topology: ProductionTopology) -> None:
    runs = [await start(client, topology, "fanout", items=[0.1] * 6) for _ in range(8)]
    outcomes = [await outcome_of(client, run) for run in runs]
    assert [o.status for o in outcomes] == ["succeeded"] * 8
    assert all(len(o.outputs["fan"]) == 6 for o in outcomes)


async def test_a_worker_killed_mid_step_loses_nothing(client: Client, topology: ProductionTopology, tmp_path: Path) -> None:
    record = tmp_path / "completions.txt"
    run = await start(client, topology, "long", seconds=6, record_to=str(record), service=f"svc-{uuid.uuid4().hex[:5]}")
    time.sleep(2.5)
    topology.worker_processes[0].kill()
    try:
        outcome = await outcome_of(client, run)
    finally:
        topology.worker_processes[0].start()
    assert outcome.status == "succeeded", outcome
    assert outcome.steps == {"prepare": "succeeded", "work": "succeeded", "after": "succeeded"}


async def test_server_restart_and_a_killed_webhook_replica_lose_no_run_and_no_alert(
    client: Client, topology: ProductionTopology, tmp_path: Path
) -> None:
    in_flight = await start(client, topology, "long", seconds=5, service=f"svc-{uuid.uuid4().hex[:5]}")
    time.sleep(1.5)
    topology.temporal.kill()  # kill -9 the server with a runbook step in flight
    fingerprint = uuid.uuid4().hex[:16]
    answer = httpx.post(topology.webhook_url(0), json=alert(fingerprint), timeout=10,
                        headers={"Authorization": f"Bearer {topology.webhook_token}"})
    assert answer.status_code == 200 and answer.json()["incidents"][0]["delivered"] == "accepted", answer.text
    topology.webhook_processes[0].kill()  # the alert is only in this replica's journal now
    topology.temporal.start()
    topology.webhook_processes[0].start()

    assert (await outcome_of(client, in_flight, timeout=180)).status == "succeeded"
    handle = client.get_workflow_handle(incident_of(fingerprint))
    deadline = time.monotonic() + 60
    while True:
        try:
            await handle.describe()
            break
        except RPCError:
            if time.monotonic() > deadline:
                pytest.fail(f"the alert journaled by the killed replica never reached Temporal (log {topology.webhook_processes[0].log_path})")
            time.sleep(0.5)
