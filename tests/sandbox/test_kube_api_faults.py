"""A struggling Kubernetes API does not fail a runbook: 429 with Retry-After, 503 for 30 s and a kube-apiserver
restart in the middle of a step are ridden out (the step succeeds, nothing is compensated), and a 100-wide
fan-out keeps to the region's client-side rate limit — measured at a fault proxy in front of the real
kube-apiserver (`tests/fixtures/kube_fault_proxy.py`), with the real runbook interpreter on real Temporal."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities import build_activities
from activities.clients import ActivityClients
from activities.kube_api import KubeJson, deployment_path
from pitstop.config import Settings, regional_task_queue
from pitstop.runbook.model import RetrySpec
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from sandbox.clusters import SandboxClusters
from tests.fixtures.kube_fault_proxy import Fault, KubeFaultProxy, fault_proxy, proxy_kubeconfig
from tests.fixtures.temporal import running_worker
from tests.integration.runbook_harness import engine_activities
from workers.clients import build_activity_clients
from workflows import ALL_WORKFLOWS

from .step_library_support import NAMESPACE, REGION, create_deployment, deployment_manifest, unique

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

QPS, BURST = 20.0, 5


def scale_runbook(name: str, retry: str) -> str:
    """One scale step (compensated by scaling back to 1) followed by a log step."""
    return f"""
name: {name}
inputs:
  name: {{type: string}}
steps:
  - id: scale
    uses: kubernetes.scale
    retry: {retry}
    with: {{region: {REGION}, namespace: {NAMESPACE}, name: "${{{{ inputs.name }}}}", replicas: 3}}
    compensate:
      uses: kubernetes.scale
      with: {{region: {REGION}, namespace: {NAMESPACE}, name: "${{{{ inputs.name }}}}", replicas: 1}}
  - {{id: done, uses: log, needs: scale, with: {{message: scaled}}}}
"""


FANOUT_RUNBOOK = f"""
name: api-fault-fanout
inputs:
  name: {{type: string}}
  items: {{type: list}}
steps:
  - id: read
    uses: kubernetes.get_deployment
    for_each: {{items: "${{{{ inputs.items }}}}", parallelism: 100}}
    with: {{region: {REGION}, namespace: {NAMESPACE}, name: "${{{{ inputs.name }}}}"}}
"""


@dataclass
class Stack:
    client: Client
    task_queue: str
    proxy: KubeFaultProxy
    direct: KubeJson  # the API server without the proxy, for setup and checks

    async def run(self, runbook: str, **inputs: Any) -> tuple[RunbookOutcome, float]:
        started = time.monotonic()
        outcome = await self.client.execute_workflow(
            RUNBOOK_WORKFLOW, RunbookRequest(runbook=runbook, inputs=inputs, trigger="test", started_by="pytest"),
            id=f"{runbook}-{uuid.uuid4().hex[:8]}", task_queue=self.task_queue, result_type=RunbookOutcome,
        )
        return outcome, time.monotonic() - started

    def deployment(self) -> str:
        name = unique("api-fault")
        create_deployment(self.direct.api_client, deployment_manifest(name, "registry.example/api-fault:1.0", replicas=1))
        return name

    def replicas(self, name: str) -> int:
        return int(self.direct.get(deployment_path(NAMESPACE, name))["spec"]["replicas"])


@pytest.fixture
def proxy(kube_sandbox: SandboxClusters) -> Iterator[KubeFaultProxy]:
    with fault_proxy(kube_sandbox, REGION) as running:
        yield running


def proxied_clients(proxy: KubeFaultProxy, tmp_path: Path) -> ActivityClients:
    """The worker's clients (built by `workers.clients`) with the region's API server behind the proxy."""
    kubeconfig = proxy_kubeconfig(proxy, tmp_path / "proxy-kubeconfig.yaml", context=REGION)
    regions = {REGION: {"kubeconfig": kubeconfig, "context": REGION, "qps": QPS, "burst": BURST}}
    return build_activity_clients(Settings(kubernetes={"regions": regions}), require_clusters=True)


@pytest_asyncio.fixture
async def stack(
    temporal_client: Client, task_queue: str, kube_sandbox: SandboxClusters, proxy: KubeFaultProxy, tmp_path: Path
) -> AsyncIterator[Stack]:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "api-fault-scale.yaml").write_text(scale_runbook("api-fault-scale", "{attempts: 3}"))  # default window
    (runbooks / "api-fault-scale-5s.yaml").write_text(scale_runbook("api-fault-scale-5s", "{attempts: 3, api_outage: 5s}"))
    (runbooks / "api-fault-fanout.yaml").write_text(FANOUT_RUNBOOK)
    clients = proxied_clients(proxy, tmp_path)
    regional = build_activities(clients).regional[REGION]
    direct = KubeJson(build_activity_clients(
        Settings(kubernetes={"regions": {REGION: {"kubeconfig": kube_sandbox.kubeconfig, "context": kube_sandbox.contexts[REGION]}}})
    ).kube[REGION])
    async with (
        running_worker(temporal_client, task_queue=task_queue, workflows=ALL_WORKFLOWS,
                       activities=engine_activities(temporal_client, runbooks)),
        running_worker(temporal_client, task_queue=regional_task_queue(task_queue, REGION), activities=regional),
    ):
        yield Stack(client=temporal_client, task_queue=task_queue, proxy=proxy, direct=direct)
    clients.kube[REGION].close()
    direct.api_client.close()


def deployment_requests(stack: Stack, name: str) -> list[Any]:
    return stack.proxy.requests(path=f"/deployments/{name}$")


async def test_429_with_retry_after_is_waited_out_and_the_step_succeeds(stack: Stack) -> None:
    name = stack.deployment()
    stack.proxy.add(Fault(kind="status", status=429, retry_after="3", path=f"/deployments/{name}$", times=1))
    outcome, _ = await stack.run("api-fault-scale", name=name)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.steps == {"scale": "succeeded", "done": "succeeded"}  # nothing compensated
    assert stack.replicas(name) == 3
    calls = deployment_requests(stack, name)
    assert calls[0].status == 429 and calls[1].status == 200
    waited = calls[1].at - calls[0].at
    assert 3.0 <= waited <= 3.3 + 2.0, f"the retry came {waited:.2f}s after a 429 with Retry-After: 3"


async def test_503_for_30s_is_ridden_out_beyond_the_steps_attempts(stack: Stack) -> None:
    assert RetrySpec().api_outage >= 60  # the window this runbook uses: the default
    name = stack.deployment()
    stack.proxy.add(Fault(kind="status", status=503, path=f"/deployments/{name}$", until=time.monotonic() + 30))
    outcome, took = await stack.run("api-fault-scale", name=name)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.steps == {"scale": "succeeded", "done": "succeeded"}
    assert stack.replicas(name) == 3
    refused = [r for r in deployment_requests(stack, name) if r.status == 503]
    assert len(refused) > 3, "more tries than the step's 3 attempts"
    assert took >= 30
    gaps = [b.at - a.at for a, b in zip(refused, refused[1:], strict=False)]
    assert max(gaps) <= 15, f"the API was tried at least every few seconds: {gaps}"


async def test_an_outage_longer_than_the_window_fails_the_step(stack: Stack) -> None:
    name = stack.deployment()
    fault = stack.proxy.add(Fault(kind="status", status=503, path=f"/deployments/{name}$"))
    started = time.monotonic()
    with pytest.raises(WorkflowFailureError) as failed:
        await stack.run("api-fault-scale-5s", name=name)
    fault.until = time.monotonic()
    cause = failed.value.cause
    error = cause.message if isinstance(cause, ApplicationError) else str(cause)
    assert "unavailable" in error and "api_outage is 5s" in error, error
    assert time.monotonic() - started < 60
    assert stack.replicas(name) == 1


def _ready(api: KubeJson) -> bool:
    try:
        api.request("GET", "/version", timeout_seconds=3)
        return True
    except Exception:
        return False


async def test_a_100_wide_fan_out_keeps_to_the_regions_rate_limit(stack: Stack) -> None:
    name = stack.deployment()
    outcome, took = await stack.run("api-fault-fanout", name=name, items=list(range(100)))
    assert outcome.status == "succeeded", outcome.error
    calls = deployment_requests(stack, name)
    assert len(calls) == 100
    peak = stack.proxy.max_requests_per_window(1.0, path=f"/deployments/{name}$")
    assert peak <= QPS + BURST, f"{peak} requests within one second at the proxy (limit {QPS:g}/s, burst {BURST})"
    spread = calls[-1].at - calls[0].at
    assert spread >= (100 - BURST) / QPS - 0.5, f"100 calls in {spread:.2f}s: faster than {QPS:g}/s"


async def test_a_held_write_is_applied_before_the_step_sees_its_answer(stack: Stack) -> None:
    """The proxy's hold: the write reached the API server while the step still waits — where a kill would land."""
    name = stack.deployment()
    hold = stack.proxy.add(Fault(kind="hold", methods=frozenset({"PATCH"}), path=f"/deployments/{name}$", seconds=60, times=1))
    run = asyncio.create_task(stack.run("api-fault-scale", name=name))
    assert await asyncio.to_thread(hold.held.wait, 60), "the step's write never reached the proxy"
    assert stack.replicas(name) == 3 and not run.done()
    hold.release.set()
    outcome, _ = await asyncio.wait_for(run, 60)
    assert outcome.status == "succeeded", outcome.error
