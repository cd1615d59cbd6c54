"""Durable undo values end to end: the worker dies between a step's PATCH and its recorded result, another
worker retries the step, the run fails later, and the compensations restore what was there before the run.

The runbook `scale-and-set-image` (tests/data/runbooks) scales a Deployment and sets its image, each with a
compensation fed by the step's own output (`previous_replicas`, `previous_image`), then fails. Its regional
activities first run in `worker_dying_after_write` processes, which exit right after the write on a step's
first attempt; the retries run on the product's regional activities. Real Temporal dev server, real
kube-apiserver of the sandbox.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError

from pitstop.activities import build_activities
from pitstop.activities.clients import ActivityClients
from pitstop.activities.kube_api import KubeJson, deployment_path
from pitstop.config import regional_task_queue
from pitstop.sandbox.clusters import SandboxClusters
from tests.fixtures.temporal import running_worker
from tests.integration.runbook_harness import engine, start, status, step_state

from .step_library_support import NAMESPACE, REGION, closed_after, create_deployment, deployment_manifest, sandbox_activity_clients, unique
from .worker_dying_after_write import EXIT_CODE

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clients(kube_sandbox: SandboxClusters) -> Iterator[ActivityClients]:
    yield from closed_after(sandbox_activity_clients(kube_sandbox))


def dying_worker(address: str, queue: str, sandbox: SandboxClusters, step_id: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.sandbox.worker_dying_after_write", address, queue, REGION,
             str(sandbox.kubeconfig), sandbox.contexts[REGION], step_id],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def died(worker: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while worker.poll() is None:
        if asyncio.get_running_loop().time() > deadline:
            worker.kill()
            worker.wait(timeout=10)
            pytest.fail(f"the worker did not die after the write within {timeout}s; its log:\n{log.read_text()}")
        await asyncio.sleep(0.2)
    assert worker.returncode == EXIT_CODE, f"worker exited {worker.returncode}; its log:\n{log.read_text()}"


async def test_compensations_restore_the_original_values_after_a_worker_died_after_the_patch(
    temporal_client: Client, task_queue: str, kube_sandbox: SandboxClusters, clients: ActivityClients, tmp_path: Path
) -> None:
    name = unique("undo-kill")
    api = KubeJson(clients.kube[REGION])
    path = deployment_path(NAMESPACE, name)
    create_deployment(api.api_client, deployment_manifest(name, "registry.example/undo-kill:1.0", replicas=2))
    address = temporal_client.service_client.config.target_host
    queue = regional_task_queue(task_queue, REGION)
    log = tmp_path / "workers.log"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with engine(temporal_client, task_queue):
            workers.append(dying_worker(address, queue, kube_sandbox, "scale", log))
            handle = await start(temporal_client, task_queue, "scale-and-set-image", service=name, namespace=NAMESPACE,
                                 region=REGION, replicas=5, image="registry.example/undo-kill:2.0")
            await died(workers[-1], log)
            assert api.get(path)["spec"]["replicas"] == 5, "the PATCH went through before the worker died"
            assert step_state(await status(handle), "scale") == "running", "no result was recorded"

            # the next worker retries `scale` (attempt 2, finds the change already made), then dies after set_image's PATCH
            workers.append(dying_worker(address, queue, kube_sandbox, "image", log))
            await died(workers[-1], log)
            image = api.get(path)["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image == "registry.example/undo-kill:2.0", "the PATCH went through before the worker died"
            assert step_state(await status(handle), "image") == "running", "no result was recorded"

            async with running_worker(temporal_client, task_queue=queue, activities=build_activities(clients).regional[REGION]):
                with pytest.raises(WorkflowFailureError) as info:
                    await asyncio.wait_for(handle.result(), timeout=120)
            final = await status(handle)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)

    assert "the run fails after both changes" in str(info.value.cause)
    assert "compensated (in order): image, scale" in str(info.value.cause), info.value.cause
    assert [step_state(final, s) for s in ("scale", "image", "fail")] == ["compensated", "compensated", "failed"]
    # the steps' results, recorded on their retries, carry the values found before the run
    outputs = {s.id: s.outputs for s in final.steps}
    assert outputs["scale"]["previous_replicas"] == 2 and outputs["image"]["previous_image"] == "registry.example/undo-kill:1.0"
    restored = api.get(path)
    assert restored["spec"]["replicas"] == 2
    assert restored["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/undo-kill:1.0"

    history = await handle.fetch_history()
    activity_ids = {e.event_id: e.activity_task_scheduled_event_attributes.activity_id
                    for e in history.events if e.HasField("activity_task_scheduled_event_attributes")}
    attempts = {activity_ids[e.activity_task_started_event_attributes.scheduled_event_id]: e.activity_task_started_event_attributes.attempt
                for e in history.events if e.HasField("activity_task_started_event_attributes")}
    assert attempts["scale"] >= 2 and attempts["image"] >= 2, f"the results came from retries: {attempts}"
