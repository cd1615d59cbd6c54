"""GitOps coexistence under a real Flux (issue 18 items 1-2): source-controller + kustomize-controller v1.9.6 sync
team-analytics of the session's fleet from a git server on loopback, prune on, interval 10 s (tests/fixtures/flux.py).

- the engine is real: a manual change to a git-managed Deployment is reverted by Flux;
- a bad canary of that service rolls back, git is not touched and Flux corrects nothing;
- a canary release of a git-managed service promotes and no release step is reverted by the engine: weights,
  subsets and the stable template only ever move forward (watched through the run), the promotion is committed to
  git (signed off with the run id) and applied by Flux, Flux's events show no correction of pitstop's objects, and
  a forced reconcile after the release leaves everything as the release left it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError

from pitstop.activities.kube_api import KubeJson
from pitstop.config import Settings
from pitstop.delivery.inputs import ReleaseInput
from pitstop.delivery.models import ReleaseOutcome, ReleasePhase, ReleaseStatus
from pitstop.delivery.spec import RELEASE_WORKFLOW
from pitstop.sandbox.faults import BadRelease, clear_fault, inject_fault
from pitstop.traffic_routes import service_route_weights
from pitstop.sandbox.flux import FLUX_NAMESPACE, KUSTOMIZATION, applied_revision, flux_events, kustomization, repository_name, wait_applied
from pitstop.workers.clients import build_activity_clients
from pitstop.workflows.delivery import ProgressiveRelease
from pitstop.workflows.lease import TargetLease

from .step_library_support import product_workers
from .test_delivery_sandbox import route_weights, spec_for

pytestmark = pytest.mark.sandbox

FLUX_INTERVAL = 10.0


def _paths(service: Any) -> dict[str, str]:
    ns, name = service.team, service.name
    return {"deployment": f"/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            "vs": f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/{name}",
            "dr": f"/apis/networking.istio.io/v1/namespaces/{ns}/destinationrules/{name}"}


def observe(kube: KubeJson, service: Any) -> tuple[int | None, str, str]:
    """(canary weight, canary subset's version, stable Deployment's image) as the cluster has them now."""
    paths = _paths(service)
    vs, dr, dep = (kube.get(paths[k]) for k in ("vs", "dr", "deployment"))
    subsets = {s["name"]: s["labels"].get("version", "") for s in dr["spec"]["subsets"]}
    return (service_route_weights(vs["spec"]["http"], None).get("canary"), subsets.get("canary", ""),
            dep["spec"]["template"]["spec"]["containers"][0]["image"])


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def deduplicated(values: list[Any]) -> list[Any]:
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def is_subsequence(part: list[Any], whole: list[Any]) -> bool:
    remaining = iter(whole)
    return all(any(v == w for w in remaining) for v in part)


def force_reconcile(api: Any, region: str, timeout: float = 60) -> None:
    """Ask Flux to reconcile the region now (`reconcile.fluxcd.io/requestedAt`) and wait until it has (bounded)."""
    stamp = datetime.now(timezone.utc).isoformat()
    kube = KubeJson(api, field_manager="pitstop-test")
    path = KUSTOMIZATION.object_path(name=repository_name(region), namespace=FLUX_NAMESPACE)
    kube.patch(path, {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}}, patch_type="merge")
    deadline = time.monotonic() + timeout
    while (kustomization(api, region).get("status") or {}).get("lastHandledReconcileAt") != stamp or not applied_revision(api, region):
        assert time.monotonic() < deadline, f"Flux did not reconcile {region} within {timeout}s"
        time.sleep(0.5)


def test_flux_corrects_drift_on_a_git_managed_deployment(flux_gitops: Any, sandbox_monitoring: Any) -> None:
    region = flux_gitops.regions[0]
    service = flux_gitops.services[0]
    kube = KubeJson(sandbox_monitoring.api_clients[region], field_manager="someone-by-hand")
    path = _paths(service)["deployment"]
    in_git = kube.get(path)["spec"]["replicas"]
    kube.patch(path, {"spec": {"replicas": in_git + 3}}, patch_type="merge")
    changed = time.monotonic()
    deadline = changed + 3 * FLUX_INTERVAL + 10
    while (replicas := kube.get(path)["spec"]["replicas"]) != in_git:
        assert time.monotonic() < deadline, f"Flux did not revert the drift: replicas {replicas}, git says {in_git}"
        time.sleep(0.5)
    print(f"\nflux: manual scale of {service.name} reverted to git's {in_git} replicas "
          f"{time.monotonic() - changed:.1f}s later (interval {FLUX_INTERVAL:g}s)")
    messages = [e.get("message", "") for e in flux_events(flux_gitops.home_api, region)]
    assert any(f"Deployment/{service.team}/{service.name} configured" in m for m in messages), messages[-5:]


@asynccontextmanager
async def gitops_worker(client: Client, sandbox: Any, flux_gitops: Any, task_queue: str) -> AsyncIterator[None]:
    regions = {r: {"kubeconfig": sandbox.clusters.kubeconfig, "context": c} for r, c in sandbox.clusters.contexts.items()}
    settings = Settings(temporal={"task_queue": task_queue}, kubernetes={"regions": regions},
                        prometheus={"url": sandbox.monitoring.prometheus_url, "timeout_seconds": 2},
                        gitops=flux_gitops.settings())
    clients = build_activity_clients(settings, temporal=client, require_clusters=True)
    async with product_workers(client, settings, clients, (ProgressiveRelease, TargetLease)):
        yield


async def test_canary_of_a_git_managed_service_promotes_once_and_flux_never_corrects_its_routes(
    temporal_client: Client, flux_gitops: Any, sandbox_monitoring: Any, task_queue: str
) -> None:
    """Weights move only as commanded, the promotion lands in git, Flux applies it before pitstop writes the
    template (the stable image moves old -> new once, never back), and Flux corrects neither the VirtualService nor
    the DestinationRule nor the canary."""
    sandbox = sandbox_monitoring
    region = flux_gitops.regions[0]
    service = flux_gitops.services[0]
    version = "v1.10.0"
    image = f"registry.pitstop.dev/{service.team}/{service.name}:{version}"
    kube = KubeJson(sandbox.api_clients[region])
    seen: list[tuple[int | None, str, str]] = [observe(kube, service)]
    old_image = seen[0][2]
    since = utc_stamp()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(observe(kube, service))
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    async with gitops_worker(temporal_client, sandbox, flux_gitops, task_queue):
        watcher.start()
        started = time.monotonic()
        handle = await temporal_client.start_workflow(
            RELEASE_WORKFLOW, ReleaseInput(release=spec_for(service, version, steps=[10, 50, 100]), region=region),
            id=f"gitops-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
        )
        outcome = await handle.result()
        elapsed = time.monotonic() - started
        commanded = await route_weights(handle)
    # the promotion is in git, signed off with the run, and Flux applied it
    workspace = flux_gitops.workspace(region)
    head = workspace.sync()
    assert head is not None
    log = workspace._git("log", "-1", "--format=%B").stdout
    assert f"Signed-off-by: pitstop run {handle.id}/" in log, log
    assert image in (workspace.read(f"{service.team}/{service.name}.yaml") or "")
    applied_after = wait_applied(flux_gitops.home_api, region, head, timeout=3 * FLUX_INTERVAL + 10)
    force_reconcile(flux_gitops.home_api, region)  # one more full apply of git: nothing of the release moves
    seen.append(observe(kube, service))
    stop.set()
    watcher.join(5)
    history = deduplicated(seen)
    print(f"\nflux: {service.name} {version} promoted under Flux in {elapsed:.1f}s; promotion commit {head[:10]} "
          f"applied {applied_after:.1f}s after the release ended; observed states: {history}")
    assert outcome.promoted, outcome
    assert commanded == [10, 50, 100, 100, 0], commanded
    # every observed weight was commanded, in order: nothing moved a weight back (0 only at the start and the end)
    weights = deduplicated([w for w, _, _ in history])
    assert is_subsequence(weights, [0, *commanded]), weights
    # the stable template moves old -> new exactly once: the promotion waits until Flux applied its commit before
    # writing the template, so no reconcile that fetched git earlier can put the old template back
    images = deduplicated([i for _, _, i in history])
    assert images == [old_image, image], images
    assert history[-1] == (0, version, image)
    # Flux's events during the run: no correction of the pitstop-owned objects
    new_events = [e.get("message", "") for e in flux_events(flux_gitops.home_api, region)
                  if (e.get("lastTimestamp") or e.get("eventTime") or "") >= since]
    corrected = [m for m in new_events for kind in ("VirtualService", "DestinationRule")
                 if f"{kind}/{service.team}/{service.name} configured" in m or f"{service.name}-canary" in m]
    assert not corrected, corrected


async def test_a_bad_canary_of_a_git_managed_service_rolls_back_and_flux_corrects_nothing(
    temporal_client: Client, flux_gitops: Any, sandbox_monitoring: Any, task_queue: str
) -> None:
    """A canary whose version fails 40 % of requests rolls back; git is never touched (nothing was promoted), the
    stable template never moves, and Flux's events show no correction of the routes, subsets or candidate."""
    sandbox = sandbox_monitoring
    region = flux_gitops.regions[0]
    service = flux_gitops.services[0]
    version = "v6.6.6-bad"
    kube = KubeJson(sandbox.api_clients[region])
    before = observe(kube, service)
    head_before = flux_gitops.workspace(region).sync()
    since = utc_stamp()
    fault_id = inject_fault(api_client=sandbox.api_clients[region],
                            fault=BadRelease(service=service.name, version=version, error_ratio=0.4)).id
    try:
        async with gitops_worker(temporal_client, sandbox, flux_gitops, task_queue):
            handle = await temporal_client.start_workflow(
                RELEASE_WORKFLOW, ReleaseInput(release=spec_for(service, version, steps=[20, 50, 100]), region=region),
                id=f"gitops-bad-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
            )
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            status = await handle.query("status", result_type=ReleaseStatus)
    finally:
        clear_fault(api_client=sandbox.api_clients[region], fault_id=fault_id)
    assert status.phase is ReleasePhase.ROLLED_BACK, status
    force_reconcile(flux_gitops.home_api, region)  # a full apply of git after the rollback moves nothing
    after = observe(kube, service)
    assert after == before, (before, after)
    assert flux_gitops.workspace(region).sync() == head_before, "a rolled-back release committed to git"
    new_events = [e.get("message", "") for e in flux_events(flux_gitops.home_api, region)
                  if (e.get("lastTimestamp") or e.get("eventTime") or "") >= since]
    corrected = [m for m in new_events for kind in ("VirtualService", "DestinationRule")
                 if f"{kind}/{service.team}/{service.name} configured" in m or f"{service.name}-canary" in m]
    assert not corrected, corrected
    print(f"\nflux: bad canary {version} of {service.name} rolled back ({status.rollback_reason}); git untouched, "
          f"no Flux correction")
