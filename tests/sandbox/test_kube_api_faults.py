"""A struggling Kubernetes API does not fail a runbook: 429 with Retry-After and 503 for 30 s are ridden out
(the step succeeds, nothing is compensated), and a 100-wide fan-out keeps to the region's client-side rate
limit — measured at a fault proxy in front of the real kube-apiserver (`tests/fixtures/kube_fault_proxy.py`),
with the real runbook interpreter on real Temporal. A kube-apiserver restart mid-step, on a cluster of its own:
test_kube_apiserver_restart.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from pitstop.runbook.model import RetrySpec
from pitstop.sandbox.clusters import SandboxClusters
from tests.fixtures.kube_fault_proxy import Fault, KubeFaultProxy, fault_proxy

from .kube_api_fault_support import BURST, QPS, Stack, running_stack, scale_runbook
from .step_library_support import NAMESPACE, REGION

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]


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


@pytest.fixture
def proxy(kube_sandbox: SandboxClusters) -> Iterator[KubeFaultProxy]:
    with fault_proxy(kube_sandbox, REGION) as running:
        yield running


@pytest_asyncio.fixture
async def stack(
    temporal_client: Client, task_queue: str, kube_sandbox: SandboxClusters, proxy: KubeFaultProxy, tmp_path: Path
) -> AsyncIterator[Stack]:
    runbooks = {
        "api-fault-scale.yaml": scale_runbook("api-fault-scale", "{attempts: 3}"),  # the default window
        "api-fault-scale-5s.yaml": scale_runbook("api-fault-scale-5s", "{attempts: 3, api_outage: 5s}"),
        "api-fault-fanout.yaml": FANOUT_RUNBOOK,
    }
    async with running_stack(temporal_client, task_queue, kube_sandbox, proxy, tmp_path, runbooks) as running:
        yield running


async def test_429_with_retry_after_is_waited_out_and_the_step_succeeds(stack: Stack) -> None:
    name = stack.deployment()
    stack.proxy.add(Fault(kind="status", status=429, retry_after="3", path=f"/deployments/{name}$", times=1))
    outcome, _ = await stack.run("api-fault-scale", name=name)
    assert outcome.status == "succeeded", outcome.error
    assert outcome.steps == {"scale": "succeeded", "done": "succeeded"}  # nothing compensated
    assert stack.replicas(name) == 3
    calls = stack.deployment_requests(name)
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
    refused = [r for r in stack.deployment_requests(name) if r.status == 503]
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


async def test_a_100_wide_fan_out_keeps_to_the_regions_rate_limit(stack: Stack) -> None:
    name = stack.deployment()
    outcome, took = await stack.run("api-fault-fanout", name=name, items=list(range(100)))
    assert outcome.status == "succeeded", outcome.error
    calls = stack.deployment_requests(name)
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
