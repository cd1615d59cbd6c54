"""Progressive delivery end to end: real kube-apiserver/kwok per region with Istio CRDs, the traffic simulator
(Istio metrics split by the live VirtualService weights), Prometheus scraping every 1 s, real Temporal, and the
product's worker wiring (`activities.build_activities`, `workers.worker.build_workers`). Analysis every 2 s.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError

from activities import build_activities
from activities.kube_api import KubeJson
from pitstop.config import Settings
from pitstop.delivery.models import Phase, ReleaseOutcome, ReleaseStatus, WavesOutcome
from pitstop.delivery.promql import QueryScope, success_rate_query
from pitstop.delivery.routing import weights_of
from pitstop.delivery.spec import RELEASE_WORKFLOW, WAVES_WORKFLOW, ReleaseInput, ReleaseSpec, WavesSpec
from sandbox.faults import BadRelease, clear_fault, inject_fault
from workers.clients import build_activity_clients
from workers.worker import build_workers
from workflows.delivery import ProgressiveRelease
from workflows.delivery_waves import RegionWaves
from workflows.lease import TargetLease

pytestmark = pytest.mark.sandbox

INTERVAL, SCRAPE = 2.0, 1.0


def spec_for(service: Any, version: str, **overrides: Any) -> ReleaseSpec:
    values: dict[str, Any] = {
        "service": service.name, "namespace": service.team,
        "image": f"registry.pitstop.dev/{service.team}/{service.name}:{version}",
        "steps": [10, 50, 100], "warm_window": 0, "progress_deadline": 120,
        "analysis": {"interval": INTERVAL, "failure_threshold": 2, "window": "5s", "latency_p95_max_ms": 1000},
    }
    values.update(overrides)
    return ReleaseSpec.model_validate(values)


@asynccontextmanager
async def product_worker(client: Client, sandbox: Any, task_queue: str,
                         workflows: Sequence[type] = (ProgressiveRelease, RegionWaves, TargetLease)) -> AsyncIterator[None]:
    regions = {r: {"kubeconfig": sandbox.clusters.kubeconfig, "context": c} for r, c in sandbox.clusters.contexts.items()}
    settings = Settings(temporal={"task_queue": task_queue}, kubernetes={"regions": regions},
                        prometheus={"url": sandbox.monitoring.prometheus_url, "timeout_seconds": 2})
    clients = build_activity_clients(settings, temporal=client, require_clusters=True)
    with ThreadPoolExecutor(max_workers=64) as executor:
        workers = build_workers(client=client, settings=settings, activity_set=build_activities(clients),
                                executor=executor, workflows=list(workflows))
        runs = [asyncio.create_task(w.run()) for w in workers]
        try:
            yield
        finally:
            await asyncio.gather(*(w.shutdown() for w in workers))
            await asyncio.gather(*runs, return_exceptions=True)


def service_named(sandbox: Any, name: str) -> Any:
    return next(s for s in sandbox.services if s.name == name)


def live_weights(sandbox: Any, region: str, service: Any) -> dict[str, int]:
    vs = KubeJson(sandbox.api_clients[region]).get(
        f"/apis/networking.istio.io/v1/namespaces/{service.team}/virtualservices/{service.name}")
    return weights_of(vs["spec"]["http"], None)


def stable_version(sandbox: Any, region: str, service: Any) -> str:
    dep = KubeJson(sandbox.api_clients[region]).get(f"/apis/apps/v1/namespaces/{service.team}/deployments/{service.name}")
    return str(dep["spec"]["template"]["metadata"]["labels"]["version"])


async def test_good_release_promoted_in_every_region(temporal_client: Client, sandbox_monitoring: Any, task_queue: str) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "telematics-ingest")
    regions = list(sandbox.clusters.contexts)
    async with product_worker(temporal_client, sandbox, task_queue):
        started = time.monotonic()
        handle = await temporal_client.start_workflow(
            WAVES_WORKFLOW, WavesSpec(release=spec_for(service, "v5.1.0"), regions=regions),
            id=f"waves-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=WavesOutcome,
        )
        outcome = await handle.result()
    print(f"\nsandbox: {service.name} v5.1.0 promoted in {regions} in {time.monotonic() - started:.1f}s")
    assert outcome.phase == "succeeded"
    for region in regions:
        result = outcome.regions[region]
        assert result.promoted and result.failed_checks == 0, result
        assert stable_version(sandbox, region, service) == "v5.1.0"
        assert live_weights(sandbox, region, service) == {"stable": 100, "canary": 0}


async def test_bad_release_rolled_back_automatically(temporal_client: Client, sandbox_monitoring: Any, task_queue: str) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "api-gateway")
    region = list(sandbox.clusters.contexts)[0]
    api = sandbox.api_clients[region]
    before = live_weights(sandbox, region, service)
    old_version = stable_version(sandbox, region, service)
    query = success_rate_query(QueryScope(service=service.name, namespace=service.team, version="v9.9.9", region=region, window="5s"))
    visible: list[float] = []
    on_stable: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if not visible:
                body = httpx.get(f"{sandbox.monitoring.prometheus_url}/api/v1/query", params={"query": query}, timeout=2).json()
                result = body["data"]["result"]
                if result and float(result[0]["value"][1]) < 99.0:
                    visible.append(time.monotonic())
            elif not on_stable and live_weights(sandbox, region, service).get("canary") == 0:
                on_stable.append(time.monotonic())
                return
            time.sleep(0.05)

    fault_id = inject_fault(api_client=api, fault=BadRelease(service=service.name, version="v9.9.9", error_ratio=0.4)).id
    try:
        async with product_worker(temporal_client, sandbox, task_queue):
            handle = await temporal_client.start_workflow(
                RELEASE_WORKFLOW, ReleaseInput(release=spec_for(service, "v9.9.9", steps=[20, 50, 100]), region=region),
                id=f"bad-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
            )
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            watcher.join(10)
            stop.set()
            status = await handle.query("status", result_type=ReleaseStatus)
    finally:
        clear_fault(api_client=api, fault_id=fault_id)
    assert status.phase is Phase.ROLLED_BACK and "threshold" in status.rollback_reason
    assert visible and on_stable
    delay = on_stable[0] - visible[0]
    print(f"\nsandbox: fault visible in Prometheus -> traffic back on stable: {delay:.2f}s "
          f"(bound 2 x {INTERVAL:g}s + {SCRAPE:g}s = {2 * INTERVAL + SCRAPE:g}s)")
    assert delay <= 2 * INTERVAL + SCRAPE
    assert live_weights(sandbox, region, service) == before
    assert stable_version(sandbox, region, service) == old_version
