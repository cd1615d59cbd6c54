"""`ensure_sandbox` brings up clusters, fleet, history, simulator and monitoring, and a second call
reuses what runs without reverting pitstop's changes. Real processes throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s

from pitstop.config import load_settings, Settings
from pitstop.sandbox.binaries import KubeBinaries
from pitstop.sandbox.clusters import api_client
from pitstop.sandbox.lifecycle import RunningSandbox, delete_sandbox, ensure_sandbox
from pitstop.sandbox.monitoring import free_loopback_port

pytestmark = pytest.mark.sandbox


@pytest.fixture
def settings(tmp_path: Path, kube_binaries: KubeBinaries) -> Iterator[Settings]:
    settings = load_settings(
        state_dir=tmp_path / "state",
        prometheus={"url": f"http://127.0.0.1:{free_loopback_port()}"},
        alertmanager={"url": f"http://127.0.0.1:{free_loopback_port()}"},
        sandbox={"regions": ["eu-central", "us-east"], "services": 6},
    )
    yield settings
    delete_sandbox(settings)


def query(prometheus_url: str, promql: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def test_ensure_sandbox_is_idempotent_and_keeps_pitstops_changes(settings: Settings) -> None:
    first: RunningSandbox | None = None
    second: RunningSandbox | None = None
    try:
        first = ensure_sandbox(settings, history_days=1, progress=print)
        assert first.simulator is not None and first.monitoring is not None
        endpoints = first.endpoints
        assert set(endpoints.clusters.contexts) == {"eu-central", "us-east"}

        deadline = time.monotonic() + 90
        regions_seen: set[str] = set()
        while time.monotonic() < deadline and regions_seen != {"eu-central", "us-east"}:
            rows = query(endpoints.prometheus_url, "count by (region) (kube_deployment_status_replicas_available)")
            regions_seen = {row["metric"]["region"] for row in rows}
            time.sleep(1)
        assert regions_seen == {"eu-central", "us-east"}, "Prometheus never scraped both regions"
        assert query(endpoints.prometheus_url, "count(count_over_time(container_cpu_usage_seconds_total[1d] offset 2h))")

        api = api_client(clusters=endpoints.clusters, region="eu-central")
        apps = k8s.AppsV1Api(api)
        deployment = apps.list_deployment_for_all_namespaces(label_selector="pitstop.dev/fleet=true").items[0]
        name, namespace = deployment.metadata.name, deployment.metadata.namespace
        apps.patch_namespaced_deployment(name, namespace, {"spec": {"replicas": 1}})

        second = ensure_sandbox(settings, progress=print)
        assert second.simulator is None and second.monitoring is None  # reused the running ones
        assert second.endpoints.simulator_url == endpoints.simulator_url
        assert apps.read_namespaced_deployment(name, namespace).spec.replicas == 1  # fleet not re-applied
        api.close()
    finally:
        for running in (second, first):
            if running is not None:
                running.stop_children()
