"""The shipped runbooks under the shipped RBAC: `deploy/rbac.yaml` applied to the sandbox's real API servers, and a
product worker (`workers.worker.build_workers`, every workflow) whose every Kubernetes request is made as the
worker's service account (`Impersonate-User: system:serviceaccount:pitstop:pitstop-worker`). A missing verb fails
here with `Forbidden`.

Run as that service account, concurrently on objects of their own (services created here, deleted afterwards):
the release runbooks `canary` (promoted; and rolled back by a bad release), `blue-green`, `ab-test` and
`multi-region-release`, and the operational runbooks `scale-service`, `restart-service` and every
`remediate-*` runbook (started directly, as an incident's rung would start them). Also: the service account is
refused what it must not do, and a worker impersonating a user without any grant fails its runbook with
`Forbidden` (so the runs above really were the service account's).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from temporalio.client import Client, WorkflowFailureError

from pitstop.activities.kube_api import KubeJson, deployment_path
from pitstop.activities.kubernetes import RESTARTED_AT_ANNOTATION
from pitstop.delivery.promql import error_ratio_query
from pitstop.traffic_routes import service_route_weights
from pitstop.delivery.spec import AnalysisSpec, ErrorBudgetGate
from pitstop.rollout import rollout_progress
from pitstop.runbook.request import RunbookOutcome
from pitstop.sandbox.faults import BadRelease, clear_fault, inject_fault
from pitstop.sandbox.fleet import EntryTraffic, ServiceSpec, apply_fleet, fleet_manifests
from pitstop.sandbox.kube_objects import kind_of
from pitstop.workflows import ALL_WORKFLOWS

from .step_library_support import (
    NAMESPACE,
    WORKER_SA,
    apply_deploy_rbac,
    create_deployment,
    deployment_manifest,
    eventually,
    impersonating,
    tainted_node,
    unique,
)
from .test_delivery_runbooks import FAST, failure_of, image_of, routes_and_scale, start_runbook
from .test_delivery_sandbox import product_worker

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

REGION = "eu-central"
NEW_VERSION = "1.1.0"
RUN_TIMEOUT = 240.0
WAVES_SLO = 99.0


@dataclass
class RbacFleet:
    """What this module created: release services (fleet objects, followed by the traffic simulator), plain
    Deployments for the operational runbooks, and a dedicated node to cordon."""

    sandbox: Any
    releases: dict[str, ServiceSpec]
    deployments: dict[str, str]
    node: str

    def admin(self, region: str = REGION) -> KubeJson:
        return KubeJson(self.sandbox.api_clients[region])

    @property
    def regions(self) -> list[str]:
        return list(self.sandbox.clusters.contexts)


def release_service(role: str, suffix: str, *, traffic: bool) -> ServiceSpec:
    return ServiceSpec(name=f"rbac-{role}-{suffix}", team=NAMESPACE, version="1.0.0", replicas=2,
                       entry=EntryTraffic(peak_rps=60, profile="flat") if traffic else None)


def available(api: KubeJson, name: str, replicas: int) -> bool:
    dep = api.get(deployment_path(NAMESPACE, name))
    return rollout_progress(dep).done and int((dep.get("status") or {}).get("availableReplicas") or 0) >= replicas


def delete_ignoring_absent(api: KubeJson, path: str) -> None:
    try:
        api.request("DELETE", path)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture(scope="module")
def rbac_fleet(sandbox_monitoring: Any) -> Iterator[RbacFleet]:
    sandbox = sandbox_monitoring
    suffix = uuid.uuid4().hex[:5]
    roles = ("canary", "rollback", "bluegreen", "ab", "waves", "traffic")
    releases = {role: release_service(role, suffix, traffic=True) for role in roles}
    deployments = {role: f"rbac-{role}-{suffix}" for role in ("scale", "restart", "remrestart", "scaleout", "undo")}
    for region in sandbox.clusters.contexts:
        apply_deploy_rbac(sandbox.clusters, region)
    created = RbacFleet(sandbox=sandbox, releases=releases, deployments=deployments, node="")
    try:
        # without traffic until their pods are available (requests to a version without pods are 503s, which
        # would count against the error budget `multi-region-release` checks before it starts)
        for region, api_client in sandbox.api_clients.items():
            apply_fleet(api_client=api_client, region=region, services=[release_service(role, suffix, traffic=False) for role in roles])
        admin = created.admin()
        for role, name in deployments.items():
            regions = created.regions if role == "restart" else [REGION]
            for region in regions:
                create_deployment(sandbox.api_clients[region], deployment_manifest(name, "registry.example/rbac:1.0", replicas=1))
        # remediate-rollback needs a previous revision to go back to
        eventually("first revision of the rollback target", lambda: available(admin, deployments["undo"], 1))
        admin.patch(deployment_path(NAMESPACE, deployments["undo"]),
                    {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.example/rbac:2.0"}]}}}},
                    patch_type="strategic")
        for region in created.regions:
            api = created.admin(region)
            for service in releases.values():
                eventually(f"{service.name} available in {region}",
                           partial(available, api, service.name, service.replicas), timeout=120)
        for region, api_client in sandbox.api_clients.items():
            apply_fleet(api_client=api_client, region=region, services=list(releases.values()))
        for region in created.regions:  # the error budget multi-region-release checks first has data (no data = refuse)
            budget = error_ratio_query(ErrorBudgetGate(slo_percent=WAVES_SLO), service=releases["waves"].name,
                                       namespace=NAMESPACE, region=region, region_label=AnalysisSpec().region_label)
            eventually(f"error-budget data of {releases['waves'].name} in {region}", partial(sandbox.query, budget), timeout=60)
        for name in deployments.values():
            eventually(f"{name} available", partial(available, admin, name, 1), timeout=120)
        with tainted_node(admin, "rbac-node") as node:
            created.node = node
            yield created
    finally:
        for region in created.regions:
            api = created.admin(region)
            for service in releases.values():
                for obj in fleet_manifests(service):
                    delete_ignoring_absent(api, kind_of(obj).object_path(name=obj["metadata"]["name"], namespace=NAMESPACE))
                delete_ignoring_absent(api, deployment_path(NAMESPACE, f"{service.name}-canary"))
            for name in deployments.values():
                delete_ignoring_absent(api, deployment_path(NAMESPACE, name))


def test_the_worker_service_account_is_refused_what_it_must_not_do(rbac_fleet: RbacFleet) -> None:
    admin = rbac_fleet.admin()
    secret = unique("rbac-secret")
    admin.post(f"/api/v1/namespaces/{NAMESPACE}/secrets",
               {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret}, "stringData": {"token": "s3cret"}})
    service = rbac_fleet.releases["canary"]
    as_worker = impersonating(rbac_fleet.sandbox.clusters, WORKER_SA)
    worker = KubeJson(as_worker.kube[REGION])
    refused: Callable[[], Any]
    try:
        for what, refused in {
            "list secrets": lambda: worker.get(f"/api/v1/namespaces/{NAMESPACE}/secrets"),
            "list secrets in every namespace": lambda: worker.get("/api/v1/secrets"),
            "read a secret": lambda: worker.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/{secret}"),
            "delete a secret": lambda: worker.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/secrets/{secret}"),
            "delete a service": lambda: worker.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/services/{service.name}"),
            "delete a virtualservice": lambda: worker.request(
                "DELETE", f"/apis/networking.istio.io/v1/namespaces/{NAMESPACE}/virtualservices/{service.name}"),
            "create a pod": lambda: worker.post(f"/api/v1/namespaces/{NAMESPACE}/pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": unique("rbac-pod")},
                "spec": {"containers": [{"name": "app", "image": "registry.example/rbac:1.0"}]}}),
            "delete pods": lambda: worker.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods"),
            "read its own role": lambda: worker.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/pitstop-workloads"),
            "watch deployments": lambda: worker.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", watch="true",
                                                    timeoutSeconds=1),
        }.items():
            with pytest.raises(ApiException) as denied:
                refused()
            assert denied.value.status == 403, f"{what}: {denied.value.status} {denied.value.reason}"
        assert admin.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/{secret}")["metadata"]["name"] == secret
        assert admin.get(f"/api/v1/namespaces/{NAMESPACE}/services/{service.name}")["metadata"]["name"] == service.name
    finally:
        admin.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/secrets/{secret}")
        for api_client in as_worker.kube.values():
            api_client.close()


async def test_a_worker_without_grants_fails_its_runbook_forbidden(
    temporal_client: Client, rbac_fleet: RbacFleet, task_queue: str
) -> None:
    """The control: the same worker wiring as the next test, impersonating a service account with no grant."""
    name = rbac_fleet.deployments["scale"]
    async with product_worker(temporal_client, rbac_fleet.sandbox, task_queue, workflows=ALL_WORKFLOWS,
                              kube_user="system:serviceaccount:pitstop:nobody"):
        handle = await start_runbook(temporal_client, task_queue, "scale-service",
                                     {"service": name, "namespace": NAMESPACE, "region": REGION, "replicas": 2})
        with pytest.raises(WorkflowFailureError) as info:
            await asyncio.wait_for(handle.result(), 60)
    assert "forbidden" in failure_of(info).lower(), failure_of(info)
    assert rbac_fleet.admin().get(deployment_path(NAMESPACE, name))["spec"]["replicas"] == 1


# ------------------------------------------------------------------ the runbooks, as the worker's service account


async def run_to_end(client: Client, task_queue: str, runbook: str, inputs: dict[str, Any]) -> RunbookOutcome:
    handle = await start_runbook(client, task_queue, runbook, inputs)
    try:
        return await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
    except WorkflowFailureError as exc:
        raise AssertionError(f"{runbook} ({handle.id}) failed: {exc.cause}") from exc


def succeeded(outcome: RunbookOutcome) -> None:
    assert outcome.status == "succeeded" and not outcome.error, outcome


async def canary_promoted(fleet: RbacFleet, client: Client, task_queue: str) -> str:
    service = fleet.releases["canary"]
    outcome = await run_to_end(client, task_queue, "canary", {
        "service": service.name, "namespace": NAMESPACE, "region": REGION, "image": image_of(service, NEW_VERSION),
        "steps": [50, 100], "warm_window": "0s", **FAST})
    succeeded(outcome)
    assert outcome.outputs["release"]["promoted"] is True, outcome
    after = routes_and_scale(fleet.sandbox, REGION, service)
    assert after["version"] == NEW_VERSION and after["candidate"] is False, after
    assert service_route_weights(after["http"], None) == {"stable": 100, "canary": 0}
    return "canary: created, scaled, promoted and deleted the candidate"


async def canary_rolled_back(fleet: RbacFleet, client: Client, task_queue: str) -> str:
    service = fleet.releases["rollback"]
    before = routes_and_scale(fleet.sandbox, REGION, service)
    api_client = fleet.sandbox.api_clients[REGION]
    fault = inject_fault(api_client=api_client, fault=BadRelease(service=service.name, version="6.6.6", error_ratio=0.5)).id
    try:
        handle = await start_runbook(client, task_queue, "canary", {
            "service": service.name, "namespace": NAMESPACE, "region": REGION, "image": image_of(service, "6.6.6"),
            "steps": [50, 100], "warm_window": "0s", **FAST})
        with pytest.raises(WorkflowFailureError) as info:
            await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
    finally:
        clear_fault(api_client=api_client, fault_id=fault)
    message = failure_of(info)
    assert "rolled back" in message and "threshold" in message, message  # by the analysis, after the candidate ran
    assert routes_and_scale(fleet.sandbox, REGION, service) == before
    return "canary (bad release): restored routes, subsets and scale, deleted the candidate"


async def blue_green_promoted(fleet: RbacFleet, client: Client, task_queue: str) -> str:
    service = fleet.releases["bluegreen"]
    outcome = await run_to_end(client, task_queue, "blue-green", {
        "service": service.name, "namespace": NAMESPACE, "region": REGION, "image": image_of(service, NEW_VERSION),
        "mirror": True, "iterations": 2, "warm_window": "0s", **FAST})
    succeeded(outcome)
    after = routes_and_scale(fleet.sandbox, REGION, service)
    assert after["version"] == NEW_VERSION and after["candidate"] is False and "mirror" not in after["http"][-1], after
    return "blue-green: mirrored, switched, promoted"


async def ab_promoted(fleet: RbacFleet, client: Client, task_queue: str) -> str:
    service = fleet.releases["ab"]
    outcome = await run_to_end(client, task_queue, "ab-test", {
        "service": service.name, "namespace": NAMESPACE, "region": REGION, "image": image_of(service, NEW_VERSION),
        "iterations": 2, "approval": False, "warm_window": "0s", **FAST})
    succeeded(outcome)
    after = routes_and_scale(fleet.sandbox, REGION, service)
    assert after["version"] == NEW_VERSION and [r.get("name") for r in after["http"]] == ["primary"], after
    return "ab-test: header route added and removed, promoted"


async def waves_promoted(fleet: RbacFleet, client: Client, task_queue: str) -> str:
    service = fleet.releases["waves"]
    outcome = await run_to_end(client, task_queue, "multi-region-release", {
        "service": service.name, "namespace": NAMESPACE, "image": image_of(service, NEW_VERSION),
        "regions": fleet.regions, "steps": [100], "slo_percent": WAVES_SLO, "warm_window": "0s", **FAST})
    succeeded(outcome)
    for region in fleet.regions:
        assert routes_and_scale(fleet.sandbox, region, service)["version"] == NEW_VERSION, region
    return f"multi-region-release: promoted in {fleet.regions}"


async def scaled_to_three(runbook: str, role: str, replicas_input: str, fleet: RbacFleet, client: Client, task_queue: str) -> str:
    """`scale-service` (absolute count) and `remediate-scale-out` (to the quota) on a one-replica Deployment."""
    name = fleet.deployments[role]
    succeeded(await run_to_end(client, task_queue, runbook,
                               {"service": name, "namespace": NAMESPACE, "region": REGION, replicas_input: 3}))
    assert fleet.admin().get(deployment_path(NAMESPACE, name))["spec"]["replicas"] == 3
    return f"{runbook}: scaled from 1 to 3 replicas"


def restarted_at(api: KubeJson, name: str) -> str | None:
    template = api.get(deployment_path(NAMESPACE, name))["spec"]["template"]
    return ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT_ANNOTATION)


async def restarted_everywhere(fleet: RbacFleet, client: Client, task_queue: str) -> str:
    name = fleet.deployments["restart"]
    succeeded(await run_to_end(client, task_queue, "restart-service",
                               {"service": name, "namespace": NAMESPACE, "regions": fleet.regions, "require_approval": False}))
    for region in fleet.regions:
        assert restarted_at(fleet.admin(region), name), region
    return f"restart-service: restarted in {fleet.regions}"


async def remediation_restarted(fleet: RbacFleet, client: Client, task_queue: str) -> str:
    name = fleet.deployments["remrestart"]
    succeeded(await run_to_end(client, task_queue, "remediate-restart", {"service": name, "namespace": NAMESPACE, "region": REGION}))
    assert restarted_at(fleet.admin(), name)
    return "remediate-restart: restarted"


async def remediation_rolled_back(fleet: RbacFleet, client: Client, task_queue: str) -> str:
    name = fleet.deployments["undo"]
    succeeded(await run_to_end(client, task_queue, "remediate-rollback", {"service": name, "namespace": NAMESPACE, "region": REGION}))
    containers = fleet.admin().get(deployment_path(NAMESPACE, name))["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "registry.example/rbac:1.0", containers
    return "remediate-rollback: back on the previous revision"


async def remediation_shifted_traffic(fleet: RbacFleet, client: Client, task_queue: str) -> str:
    service = fleet.releases["traffic"]
    weights = {"stable": 0, "canary": 100}
    succeeded(await run_to_end(client, task_queue, "remediate-shift-traffic",
                               {"service": service.name, "namespace": NAMESPACE, "region": REGION, "weights": weights}))
    assert service_route_weights(routes_and_scale(fleet.sandbox, REGION, service)["http"], None) == weights
    return "remediate-shift-traffic: weights set"


async def remediation_cordoned(fleet: RbacFleet, client: Client, task_queue: str) -> str:
    succeeded(await run_to_end(client, task_queue, "remediate-cordon-node", {"node": fleet.node, "region": REGION}))
    assert fleet.admin().get(f"/api/v1/nodes/{fleet.node}")["spec"].get("unschedulable") is True
    return "remediate-cordon-node: cordoned"


RUNS: dict[str, Callable[[RbacFleet, Client, str], Awaitable[str]]] = {
    "canary": canary_promoted,
    "canary (rolled back)": canary_rolled_back,
    "blue-green": blue_green_promoted,
    "ab-test": ab_promoted,
    "multi-region-release": waves_promoted,
    "scale-service": partial(scaled_to_three, "scale-service", "scale", "replicas"),
    "restart-service": restarted_everywhere,
    "remediate-restart": remediation_restarted,
    "remediate-scale-out": partial(scaled_to_three, "remediate-scale-out", "scaleout", "max_replicas"),
    "remediate-rollback": remediation_rolled_back,
    "remediate-shift-traffic": remediation_shifted_traffic,
    "remediate-cordon-node": remediation_cordoned,
}


async def test_every_shipped_runbook_that_changes_a_cluster_passes_under_the_shipped_rbac(
    temporal_client: Client, rbac_fleet: RbacFleet, task_queue: str
) -> None:
    started = time.monotonic()
    async with product_worker(temporal_client, rbac_fleet.sandbox, task_queue, workflows=ALL_WORKFLOWS, kube_user=WORKER_SA):
        results = await asyncio.gather(*(run(rbac_fleet, temporal_client, task_queue) for run in RUNS.values()),
                                       return_exceptions=True)
    took = time.monotonic() - started
    passed = [r for r in results if isinstance(r, str)]
    failed = [f"{name}: {type(r).__name__}: {r}" for name, r in zip(RUNS, results, strict=True) if not isinstance(r, str)]
    print(f"\nsandbox rbac: {len(passed)}/{len(RUNS)} runbook runs as {WORKER_SA} in {took:.1f}s\n  " + "\n  ".join(passed))
    assert not failed, "\n".join(failed)
