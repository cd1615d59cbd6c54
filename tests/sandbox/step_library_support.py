"""Shared helpers of the step-library sandbox tests: clients built the production way, test objects."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from pitstop.activities import build_activities
from pitstop.activities.clients import ActivityClients
from pitstop.activities.kube_api import KubeJson
from pitstop.config import Settings
from pitstop.sandbox.clusters import SandboxClusters
from pitstop.workers.clients import build_activity_clients
from pitstop.workers.worker import build_workers

NAMESPACE = "team-platform"
REGION = "eu-central"
RBAC_FILE = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"
WORKER_SA = "system:serviceaccount:pitstop:pitstop-worker"


def sandbox_activity_clients(clusters: SandboxClusters, **settings: Any) -> ActivityClients:
    """What the worker would build for these clusters (`workers.clients.build_activity_clients`)."""
    regions = {region: {"kubeconfig": clusters.kubeconfig, "context": ctx} for region, ctx in clusters.contexts.items()}
    return build_activity_clients(Settings(kubernetes={"regions": regions}, **settings), require_clusters=True)


def closed_after(clients: ActivityClients) -> Iterator[ActivityClients]:
    """A clients fixture's body: yield the clients, then close their API connections."""
    yield clients
    for api in clients.kube.values():
        api.close()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:5]}"


def eventually(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def deployment_manifest(name: str, image: str, replicas: int = 2, **pod_spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**labels, "version": "stable"}},
                "spec": {"containers": [{"name": "app", "image": image}], **pod_spec},
            },
        },
    }


def create_deployment(api: ApiClient, manifest: dict[str, Any], namespace: str = NAMESPACE) -> None:
    KubeJson(api).post(f"/apis/apps/v1/namespaces/{namespace}/deployments", manifest)


@contextmanager
def tainted_node(api: KubeJson, prefix: str) -> Iterator[str]:
    """A dedicated kwok node, Ready, tainted `pitstop.test/drain` so only pods that tolerate it land there;
    deleted afterwards."""
    name = unique(prefix)
    resources = {"cpu": "8", "memory": "32Gi", "pods": "110"}
    api.post(
        "/api/v1/nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"}, "labels": {"kubernetes.io/hostname": name, "type": "kwok"}},
            "spec": {"taints": [{"key": "pitstop.test/drain", "value": "true", "effect": "NoSchedule"}]},
            "status": {"allocatable": resources, "capacity": resources},
        },
    )
    try:
        eventually(f"node {name} Ready", lambda: any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (api.get(f"/api/v1/nodes/{name}").get("status") or {}).get("conditions") or []
        ))
        yield name
    finally:
        api.request("DELETE", f"/api/v1/nodes/{name}")


class Recorder:
    """An ActivityEnvironment that keeps every heartbeat."""

    def __init__(self) -> None:
        self.heartbeats: list[Any] = []
        self.env = ActivityEnvironment()
        self.env.on_heartbeat = lambda *details: self.heartbeats.append(details)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.env.run(fn, *args)


def apply_deploy_rbac(clusters: SandboxClusters, region: str = REGION) -> None:
    """`kubectl apply -f deploy/rbac.yaml` against the region's real API server."""
    applied = subprocess.run(
        ["/usr/bin/kubectl", "--kubeconfig", str(clusters.kubeconfig), "--context", clusters.contexts[region],
         "apply", "-f", str(RBAC_FILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr


def impersonate(clients: ActivityClients, user: str) -> ActivityClients:
    """Make every Kubernetes request of `clients` as `user` (Impersonate-User); returns `clients`."""
    for api_client in clients.kube.values():
        api_client.set_default_header("Impersonate-User", user)
    return clients


def impersonating(clusters: SandboxClusters, user: str, **settings: Any) -> ActivityClients:
    """Clients built like the worker's, whose every request is made as `user` (Impersonate-User)."""
    return impersonate(sandbox_activity_clients(clusters, **settings), user)


@asynccontextmanager
async def product_workers(
    client: Client, settings: Settings, clients: ActivityClients, workflows: Sequence[type]
) -> AsyncIterator[None]:
    """The product's workers (`workers.worker.build_workers`) in-process, serving the activities of `clients`."""
    with ThreadPoolExecutor(max_workers=64) as executor:
        workers = build_workers(client=client, settings=settings, activity_set=build_activities(clients),
                                executor=executor, workflows=list(workflows))
        runs = [asyncio.create_task(w.run()) for w in workers]
        try:
            yield
        finally:
            await asyncio.gather(*(w.shutdown() for w in workers))
            await asyncio.gather(*runs, return_exceptions=True)
