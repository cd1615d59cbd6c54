"""Step activities served by a real Worker on the real Temporal server: regional activities on
`<queue>-<region>` (sync, thread pool), shared ones on the main queue (async), pydantic payloads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError

from pitstop.activities import build_activities
from pitstop.activities.clients import ActivityClients
from pitstop.activities.kube_api import KubeJson, deployment_path
from pitstop.config import regional_task_queue
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.kubernetes import DeploymentArgs, ScaleArgs, SetImageArgs, WaitForRolloutArgs
from pitstop.steps.prometheus import ThresholdArgs
from pitstop.sandbox.clusters import SandboxClusters
from tests.fixtures.temporal import running_worker

from .step_library_support import NAMESPACE, REGION, closed_after, create_deployment, deployment_manifest, sandbox_activity_clients, unique
from .step_probe_workflow import StepProbeRequest, StepProbeWorkflow

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]


@pytest.fixture(scope="module")
def clients(kube_sandbox: SandboxClusters) -> Iterator[ActivityClients]:
    yield from closed_after(sandbox_activity_clients(kube_sandbox, prometheus={"url": "http://127.0.0.1:9", "timeout_seconds": 2}))


async def test_steps_run_through_real_workers_on_their_task_queues(
    temporal_client: Client, task_queue: str, clients: ActivityClients
) -> None:
    name = unique("via-worker")
    api = KubeJson(clients.kube[REGION])
    create_deployment(api.api_client, deployment_manifest(name, "registry.example/via-worker:1.0", replicas=1))
    activity_set = build_activities(clients)
    assert set(activity_set.regional) == set(clients.kube)
    regional_queue = regional_task_queue(task_queue, REGION)

    async def run(request: StepProbeRequest) -> dict:
        return await temporal_client.execute_workflow(
            StepProbeWorkflow.run, request, id=f"step-probe-{uuid.uuid4().hex[:8]}", task_queue=task_queue
        )

    async with (
        running_worker(temporal_client, task_queue=task_queue, workflows=[StepProbeWorkflow], activities=activity_set.shared),
        running_worker(temporal_client, task_queue=regional_queue, activities=activity_set.regional[REGION]),
    ):
        scale = StepInvocation[ScaleArgs](
            args=ScaleArgs(region=REGION, namespace=NAMESPACE, name=name, replicas=3), run_id="run-w", step_id="scale"
        )
        result = await run(StepProbeRequest(activity="kubernetes.scale", task_queue=regional_queue, invocation=scale.model_dump(mode="json")))
        assert result["changed"] is True and result["previous_replicas"] == 1 and result["replicas"] == 3
        assert api.get(deployment_path(NAMESPACE, name))["spec"]["replicas"] == 3

        # a heartbeating sync activity (thread pool) under a heartbeat timeout shorter than the rollout
        image = StepInvocation[SetImageArgs](args=SetImageArgs(region=REGION, namespace=NAMESPACE, name=name, container="app", image="registry.example/via-worker:2.0"))
        assert (await run(StepProbeRequest(activity="kubernetes.set_image", task_queue=regional_queue, invocation=image.model_dump(mode="json"))))["changed"]
        wait = StepInvocation[WaitForRolloutArgs](args=WaitForRolloutArgs(region=REGION, namespace=NAMESPACE, name=name, poll_interval_seconds=0.3))
        rolled = await run(StepProbeRequest(activity="kubernetes.wait_for_rollout", task_queue=regional_queue,
                                            invocation=wait.model_dump(mode="json"), heartbeat_seconds=2))
        assert rolled["rollout_complete"] and rolled["images"] == {"app": "registry.example/via-worker:2.0"}

        again = await run(StepProbeRequest(activity="kubernetes.scale", task_queue=regional_queue, invocation=scale.model_dump(mode="json")))
        assert again["changed"] is False

        # a domain error fails the step at once: one attempt, no retries
        missing = StepInvocation[DeploymentArgs](args=DeploymentArgs(region=REGION, namespace=NAMESPACE, name="no-such-service"))
        with pytest.raises(WorkflowFailureError) as info:
            await run(StepProbeRequest(activity="kubernetes.get_deployment", task_queue=regional_queue, invocation=missing.model_dump(mode="json")))
        activity_error = info.value.cause
        assert isinstance(activity_error, ActivityError)
        cause = activity_error.cause
        assert isinstance(cause, ApplicationError) and cause.non_retryable and cause.type == "NotFound"
        assert "no-such-service" in cause.message

        # a shared (async) step on the main queue: Prometheus is down -> an inconclusive value, not a failure
        check = StepInvocation[ThresholdArgs](args=ThresholdArgs(query="up", min=1))
        verdict = await run(StepProbeRequest(activity="prometheus.check_threshold", task_queue=task_queue, invocation=check.model_dump(mode="json")))
        assert verdict["verdict"] == "inconclusive" and verdict["error"]
