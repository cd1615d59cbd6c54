"""Progressive delivery end to end: real kube-apiserver/kwok per region with Istio CRDs, the traffic simulator
(Istio metrics split by the live VirtualService weights), Prometheus scraping every 1 s, real Temporal, and the
product's worker wiring (`activities.build_activities`, `workers.worker.build_workers`). Analysis every 2 s.

Also here: the manual gate then an instant rollback during the warm window, and the error-budget gate refusing
to start while a real fault burns the stable version's budget. Resilience (Prometheus stopped, worker killed)
lives in test_delivery_resilience.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pitstop.activities.kube_api import KubeJson
from pitstop.config import Settings
from pitstop.delivery.models import ApproveRequest, ReleasePhase, ReleaseOutcome, ReleaseStatus, RollbackRequest, WavesOutcome
from pitstop.delivery.promql import QueryScope, success_rate_query
from pitstop.delivery.inputs import ReleaseInput
from pitstop.delivery.spec import RELEASE_WORKFLOW, WAVES_WORKFLOW, ReleaseSpec, WavesSpec
from pitstop.traffic_routes import service_route_weights
from pitstop.sandbox.faults import BadRelease, clear_fault, inject_fault
from pitstop.workers.clients import build_activity_clients
from pitstop.workflows.delivery import ProgressiveRelease
from pitstop.workflows.delivery_waves import RegionWaves
from pitstop.workflows.lease import TargetLease

from .step_library_support import impersonate, product_workers

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
                         workflows: Sequence[type] = (ProgressiveRelease, RegionWaves, TargetLease),
                         *, prometheus_url: str | None = None, kube_user: str | None = None) -> AsyncIterator[None]:
    """The product's workers in-process; `prometheus_url` overrides the sandbox's Prometheus (analysis source);
    with `kube_user` every Kubernetes request is made as that user (e.g. the worker's service account)."""
    regions = {r: {"kubeconfig": sandbox.clusters.kubeconfig, "context": c} for r, c in sandbox.clusters.contexts.items()}
    settings = Settings(temporal={"task_queue": task_queue}, kubernetes={"regions": regions},
                        prometheus={"url": prometheus_url or sandbox.monitoring.prometheus_url, "timeout_seconds": 2})
    clients = build_activity_clients(settings, temporal=client, require_clusters=True)
    if kube_user is not None:
        impersonate(clients, kube_user)
    async with product_workers(client, settings, clients, workflows):
        yield


def service_named(sandbox: Any, name: str) -> Any:
    return next(s for s in sandbox.services if s.name == name)


def live_weights(sandbox: Any, region: str, service: Any) -> dict[str, int]:
    vs = KubeJson(sandbox.api_clients[region]).get(
        f"/apis/networking.istio.io/v1/namespaces/{service.team}/virtualservices/{service.name}")
    return service_route_weights(vs["spec"]["http"], None)


def candidate_exists(sandbox: Any, region: str, service: Any) -> bool:
    try:
        KubeJson(sandbox.api_clients[region]).get(f"/apis/apps/v1/namespaces/{service.team}/deployments/{service.name}-canary")
    except Exception as exc:  # noqa: BLE001 - ApiException 404 = absent
        if getattr(exc, "status", None) == 404:
            return False
        raise
    return True


def cluster_state(sandbox: Any, region: str, service: Any) -> dict[str, Any]:
    """What a refused or rolled-back release must leave exactly as it was: routes, subsets, Deployment, candidate."""
    kube = KubeJson(sandbox.api_clients[region])
    ns, name = service.team, service.name
    vs = kube.get(f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/{name}")
    dr = kube.get(f"/apis/networking.istio.io/v1/namespaces/{ns}/destinationrules/{name}")
    dep = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    return {"http": vs["spec"]["http"], "subsets": dr["spec"]["subsets"], "replicas": dep["spec"]["replicas"],
            "template": dep["spec"]["template"], "candidate": candidate_exists(sandbox, region, service)}


async def scheduled_activities(handle: WorkflowHandle[Any, Any]) -> list[tuple[float, str, Any]]:
    """(event time, activity type, decoded input) for every activity the workflow scheduled, from its history."""
    found: list[tuple[float, str, Any]] = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            payloads = attrs.input.payloads
            found.append((event.event_time.ToDatetime().timestamp(), attrs.activity_type.name,
                          json.loads(payloads[0].data) if payloads else None))
    return found


async def route_weights(handle: WorkflowHandle[Any, Any]) -> list[int | None]:
    """Canary weight of every `delivery.set_routes` the workflow scheduled, in order (retries are not new events)."""
    return [service_route_weights(arg["http"], None).get("canary") for _, name, arg in await scheduled_activities(handle)
            if name == "delivery.set_routes"]


async def cli(temporal_server: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": temporal_server.address, "PITSTOP_IDENTITY": "test"}
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "pitstop.workers.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=60)


async def wait_phase(handle: WorkflowHandle[Any, Any], phases: set[ReleasePhase], timeout: float = 90) -> ReleaseStatus:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await handle.query("status", result_type=ReleaseStatus)
            if last.phase in phases:
                return last
        except Exception:  # noqa: BLE001 - not started yet
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"phase {phases} not reached in {timeout}s; last status {last}")


def stable_version(sandbox: Any, region: str, service: Any) -> str:
    dep = KubeJson(sandbox.api_clients[region]).get(f"/apis/apps/v1/namespaces/{service.team}/deployments/{service.name}")
    return str(dep["spec"]["template"]["metadata"]["labels"]["version"])


async def test_good_release_promoted_in_every_region(
    temporal_client: Client, temporal_server: Any, sandbox_monitoring: Any, task_queue: str
) -> None:
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
        elapsed = time.monotonic() - started
        shown = await cli(temporal_server, "release", "status", handle.id)  # queries need a running worker
    children = {region: temporal_client.get_workflow_handle(f"{handle.id}/{region}") for region in regions}
    # replay: the recorded histories still run deterministically with the current code
    replayer = Replayer(workflows=[ProgressiveRelease, RegionWaves], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(await handle.fetch_history())
    for child in children.values():
        await replayer.replay_workflow(await child.fetch_history())
    activities = {region: await scheduled_activities(child) for region, child in children.items()}
    print(f"\nsandbox: {service.name} v5.1.0 promoted in {regions} in {elapsed:.1f}s")
    assert outcome.phase == "succeeded" and outcome.promoted_regions == regions
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert all(f"{region}: succeeded" in shown.stdout for region in regions), shown.stdout
    for region in regions:
        result = outcome.regions[region]
        assert result.promoted and result.failed_checks == 0 and result.failed_runs == 0, result
        assert stable_version(sandbox, region, service) == "v5.1.0"
        assert live_weights(sandbox, region, service) == {"stable": 100, "canary": 0}
        state = cluster_state(sandbox, region, service)
        assert {s["name"]: s["labels"]["version"] for s in state["subsets"]} == {"stable": "v5.1.0", "canary": "v5.1.0"}
        assert state["candidate"] is False
        assert await route_weights(children[region]) == [10, 50, 100, 100, 0], region
    # region waves: the second region's first change came only after the first region was promoted
    first, second = regions
    first_promoted = next(t for t, name, _ in activities[first] if name == "delivery.scale_candidate")
    assert min(t for t, name, _ in activities[second] if name != "delivery.snapshot") > first_promoted


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
    assert status.phase is ReleasePhase.ROLLED_BACK and "threshold" in status.rollback_reason
    assert visible and on_stable
    delay = on_stable[0] - visible[0]
    print(f"\nsandbox: fault visible in Prometheus -> traffic back on stable: {delay:.2f}s "
          f"(bound 2 x {INTERVAL:g}s + {SCRAPE:g}s = {2 * INTERVAL + SCRAPE:g}s)")
    assert delay <= 2 * INTERVAL + SCRAPE
    assert live_weights(sandbox, region, service) == before
    assert stable_version(sandbox, region, service) == old_version


async def test_manual_gate_then_instant_rollback_during_warm_window(
    temporal_client: Client, temporal_server: Any, sandbox_monitoring: Any, task_queue: str
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "firmware-catalog")
    region = list(sandbox.clusters.contexts)[0]
    before = cluster_state(sandbox, region, service)
    async with product_worker(temporal_client, sandbox, task_queue):
        handle = await temporal_client.start_workflow(
            RELEASE_WORKFLOW,
            ReleaseInput(release=spec_for(service, "v7.0.0", steps=[50], approval=True, approvers=["alice"],
                                          warm_window=120), region=region),
            id=f"gate-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
        )
        await wait_phase(handle, {ReleasePhase.AWAITING_APPROVAL})
        assert live_weights(sandbox, region, service) == {"stable": 50, "canary": 50}
        shown = await cli(temporal_server, "release", "status", handle.id)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "awaiting_approval" in shown.stdout and "stable=50%, canary=50%" in shown.stdout, shown.stdout
        assert "request-success-rate" in shown.stdout and "pitstop release promote" in shown.stdout, shown.stdout
        refused = await cli(temporal_server, "release", "promote", handle.id, "--as", "mallory")
        assert refused.returncode != 0 and "may not promote" in refused.stdout + refused.stderr
        with pytest.raises(Exception) as rejected:
            await handle.execute_update("promote", ApproveRequest(identity="mallory"), result_type=ReleaseStatus)
        assert "may not promote" in str(getattr(rejected.value, "cause", rejected.value))
        approved = await cli(temporal_server, "release", "promote", handle.id, "--as", "alice")
        assert approved.returncode == 0, approved.stdout + approved.stderr
        await wait_phase(handle, {ReleasePhase.PROMOTED})
        assert live_weights(sandbox, region, service) == {"stable": 0, "canary": 100}  # warm window: all on v7.0.0
        asked = time.monotonic()
        status = await handle.execute_update("rollback", RollbackRequest(reason="customer reports", identity="bob"),
                                             result_type=ReleaseStatus)
        weights_after = live_weights(sandbox, region, service)
        took = time.monotonic() - asked
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    print(f"\nsandbox: instant rollback during the warm window: traffic back on stable {took:.2f}s after the request")
    assert status.phase is ReleasePhase.ROLLED_BACK and "customer reports by bob" in status.rollback_reason
    assert weights_after == {"stable": 100, "canary": 0}
    assert any("approved by alice" in e.message for e in status.events)
    assert took < 2.0
    assert cluster_state(sandbox, region, service) == before


async def test_error_budget_gate_refuses_to_start(temporal_client: Client, sandbox_monitoring: Any, task_queue: str) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "campaign-manager")
    region = list(sandbox.clusters.contexts)[0]
    api = sandbox.api_clients[region]
    current = stable_version(sandbox, region, service)
    before = cluster_state(sandbox, region, service)
    # the stable version itself fails 40 % of requests: a 99.9 % SLO's budget over 30 s is soon spent
    fault_id = inject_fault(api_client=api, fault=BadRelease(service=service.name, version=current, error_ratio=0.4)).id
    try:
        selector = f'reporter="destination",destination_service_name="{service.name}"'
        ratio = (f'sum(increase(istio_requests_total{{{selector},response_code=~"5.*"}}[30s]))'
                 f' / sum(increase(istio_requests_total{{{selector}}}[30s]))')
        deadline = time.monotonic() + 60
        while not (found := sandbox.query(ratio)) or float(found[0]["value"][1]) < 0.01:  # 10 x the whole budget
            assert time.monotonic() < deadline, f"the fault never burned the budget in Prometheus: {found}"
            await asyncio.sleep(0.5)
        async with product_worker(temporal_client, sandbox, task_queue):
            handle = await temporal_client.start_workflow(
                RELEASE_WORKFLOW,
                ReleaseInput(release=spec_for(service, "v8.0.0", error_budget={"slo_percent": 99.9, "window": "30s"}),
                             region=region),
                id=f"budget-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
            )
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
            status = await handle.query("status", result_type=ReleaseStatus)
            scheduled = [name for _, name, _ in await scheduled_activities(handle)]
    finally:
        clear_fault(api_client=api, fault_id=fault_id)
    print(f"\nsandbox: error-budget gate: {status.message}")
    assert "refused" in str(failure.value.cause)
    assert status.phase is ReleasePhase.FAILED and "exhausted" in status.message
    mutating = {"delivery.deploy_candidate", "delivery.set_routes", "delivery.set_subsets", "delivery.scale_candidate",
                "delivery.finalize_stable", "delivery.restore", "delivery.retire_candidate"}
    assert not mutating & set(scheduled), scheduled
    assert cluster_state(sandbox, region, service) == before
