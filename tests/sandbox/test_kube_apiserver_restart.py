"""A region's kube-apiserver restarted in the middle of a runbook step is ridden out (issue 11 item 3): the step
succeeds without compensation, within its `retry.api_outage` window, and the cluster is whole afterwards — a
Deployment rollout still completes (kube-controller-manager, kube-scheduler and kwok working again).

On a one-region cluster of its own, created and deleted by this module: restarting the session's shared API
server once left its controller-manager gone (it exits on "leaderelection lost" while the API server is down)
and every later rollout in that cluster timed out. The restart itself is `sandbox.control_plane`, which now
restarts the leader-elected components too; a cluster of its own keeps a failure here from spreading.

The step's first read is held 2 s at the fault proxy while the API server is stopped, so the step is in flight
when the API server goes away and its next call meets it down. Prints the measured ride-out figures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from pitstop.activities.kube_api import deployment_path
from pitstop.rollout import rollout_progress
from pitstop.sandbox.binaries import KubeBinaries
from pitstop.sandbox.clusters import SandboxClusters
from pitstop.sandbox.control_plane import KUBE_APISERVER, KWOK_CONTROLLER, LEADER_ELECTED, KwokCluster, component_pid, restart_kube_apiserver
from tests.fixtures.kube import owned_sandbox_clusters
from tests.fixtures.kube_fault_proxy import Fault, KubeFaultProxy, fault_proxy

from .kube_api_fault_support import Stack, running_stack, scale_runbook
from .step_library_support import NAMESPACE, REGION, eventually

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]


@pytest.fixture(scope="module")
def own_cluster(kube_binaries: KubeBinaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxClusters]:
    """A one-region cluster only this module uses (its control plane is restarted)."""
    with owned_sandbox_clusters([REGION], kube_binaries, tmp_path_factory.mktemp("apiserver-restart")) as clusters:
        yield clusters


@pytest.fixture
def proxy(own_cluster: SandboxClusters) -> Iterator[KubeFaultProxy]:
    with fault_proxy(own_cluster, REGION) as running:
        yield running


@pytest_asyncio.fixture
async def stack(
    temporal_client: Client, task_queue: str, own_cluster: SandboxClusters, proxy: KubeFaultProxy, tmp_path: Path
) -> AsyncIterator[Stack]:
    runbooks = {"apiserver-restart-scale.yaml": scale_runbook("apiserver-restart-scale", "{attempts: 3}")}
    async with running_stack(temporal_client, task_queue, own_cluster, proxy, tmp_path, runbooks) as running:
        yield running


def rolled_out(stack: Stack, name: str) -> str | None:
    progress = rollout_progress(stack.direct.get(deployment_path(NAMESPACE, name)))
    return progress.message if progress.done else None


async def test_kube_apiserver_restart_mid_step_is_ridden_out(stack: Stack, own_cluster: SandboxClusters) -> None:
    cluster = KwokCluster.of(own_cluster, REGION)
    before = {c: component_pid(cluster, c) for c in (KUBE_APISERVER, *LEADER_ELECTED)}
    name = stack.deployment()
    read = stack.proxy.add(Fault(kind="latency", seconds=2.0, methods=frozenset({"GET"}), path=f"/deployments/{name}$", times=1))
    run = asyncio.create_task(stack.run("apiserver-restart-scale", name=name))
    await asyncio.to_thread(eventually, "the step's first read at the proxy", lambda: read.hits, 30)
    outage = await asyncio.to_thread(restart_kube_apiserver, cluster)
    outcome, took = await asyncio.wait_for(run, 150)

    assert outcome.status == "succeeded", outcome.error
    assert outcome.steps == {"scale": "succeeded", "done": "succeeded"}  # nothing compensated
    assert stack.replicas(name) == 3
    assert any(r.status == 0 for r in stack.deployment_requests(name)), "no call of the step met the API server down"
    after = {c: component_pid(cluster, c) for c in before}
    assert all(after[c] is not None and after[c] != before[c] for c in before), (before, after)
    assert component_pid(cluster, KWOK_CONTROLLER) is not None

    # the cluster is whole: the scale to 3 and a new image both roll out (controller-manager, scheduler, kwok)
    await asyncio.to_thread(eventually, "the scale to 3 rolled out", lambda: rolled_out(stack, name), 90)
    image = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.example/api-fault:1.1"}]}}}}
    stack.direct.patch(deployment_path(NAMESPACE, name), image, patch_type="strategic")
    done = await asyncio.to_thread(eventually, "the image change rolled out", lambda: rolled_out(stack, name), 90)
    print(f"\nkube-apiserver unreachable {outage:.1f}s (SIGTERM, SIGKILL after 10 s, start, /readyz); "
          f"the run took {took:.1f}s and succeeded; {done}")
