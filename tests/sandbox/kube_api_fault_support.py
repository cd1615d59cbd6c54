"""Shared by the Kubernetes API fault tests (test_kube_api_faults.py, test_kube_apiserver_restart.py): the real
runbook interpreter on real Temporal, with one region's API server reached through the fault proxy
(`tests/fixtures/kube_fault_proxy.py`), and a direct client to the same API server for setup and checks."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client

from pitstop.activities import build_activities
from pitstop.activities.clients import ActivityClients
from pitstop.activities.kube_api import KubeJson, deployment_path
from pitstop.config import Settings, regional_task_queue
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.sandbox.clusters import SandboxClusters
from tests.fixtures.kube_fault_proxy import KubeFaultProxy, LoggedRequest, proxy_kubeconfig
from tests.fixtures.temporal import running_worker
from tests.integration.runbook_harness import engine_activities
from pitstop.workers.clients import build_activity_clients
from pitstop.workflows import ALL_WORKFLOWS

from .step_library_support import NAMESPACE, REGION, create_deployment, deployment_manifest, unique

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

    def deployment_requests(self, name: str) -> list[LoggedRequest]:
        return self.proxy.requests(path=f"/deployments/{name}$")


def proxied_clients(proxy: KubeFaultProxy, tmp_path: Path) -> ActivityClients:
    """The worker's clients (built by `workers.clients`) with the region's API server behind the proxy."""
    kubeconfig = proxy_kubeconfig(proxy, tmp_path / "proxy-kubeconfig.yaml", context=REGION)
    regions = {REGION: {"kubeconfig": kubeconfig, "context": REGION, "qps": QPS, "burst": BURST}}
    return build_activity_clients(Settings(kubernetes={"regions": regions}), require_clusters=True)


@asynccontextmanager
async def running_stack(
    client: Client, task_queue: str, clusters: SandboxClusters, proxy: KubeFaultProxy, tmp_path: Path,
    runbooks: dict[str, str],
) -> AsyncIterator[Stack]:
    """Workers (engine + the region's activities through `proxy`) serving `runbooks` (file name -> YAML)."""
    runbooks_dir = tmp_path / "runbooks"
    runbooks_dir.mkdir()
    for file_name, text in runbooks.items():
        (runbooks_dir / file_name).write_text(text)
    clients = proxied_clients(proxy, tmp_path)
    regional = build_activities(clients).regional[REGION]
    direct = KubeJson(build_activity_clients(
        Settings(kubernetes={"regions": {REGION: {"kubeconfig": clusters.kubeconfig, "context": clusters.contexts[REGION]}}})
    ).kube[REGION])
    try:
        async with (
            running_worker(client, task_queue=task_queue, workflows=ALL_WORKFLOWS,
                           activities=engine_activities(client, runbooks_dir)),
            running_worker(client, task_queue=regional_task_queue(task_queue, REGION), activities=regional),
        ):
            yield Stack(client=client, task_queue=task_queue, proxy=proxy, direct=direct)
    finally:
        clients.kube[REGION].close()
        direct.api_client.close()
