"""GitOps-mode remediation and the bounded suspend, under a real Flux (issue 18 item 4; tests/fixtures/flux.py).

- A crash-looping bad version arrives through git (a commit Flux applies). The real Prometheus fires `CrashLooping`,
  the real Alertmanager delivers it to pitstop's webhook, and the incident's rollback rung rolls back *through git*:
  a revert commit signed off with the run, which Flux applies before pitstop verifies. A forced reconcile afterwards
  leaves the good version in place. The worker runs as its service account under deploy/rbac.yaml (plus the
  `pitstop-gitops-engine` RoleBinding in flux-system). Prints MTTR beside the figure of the non-GitOps test
  (test_incident_remediation.py prints it in the same run).
- A rightsizing rollout (`RightsizingLoop`) of the git-managed service commits the new requests and limits to git,
  Flux applies them, and a forced reconcile keeps them.
- `gitops-suspend` stops Flux from correcting a hand-made change to the Deployment while it runs; cancelling it
  resumes (compensation) and Flux corrects the change again. `gitops-resume-expired` lifts a pitstop suspension
  past its end and leaves a suspension made by hand alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from pitstop.activities.kube_api import KubeJson
from pitstop.capacity.closed_loop import LOOP_WORKFLOW, LoopInput, LoopOutcome, LoopSettings
from pitstop.config import Settings
from pitstop.delivery.spec import ContainerResources
from pitstop.gitops import (
    FLUX_RECONCILE_ANNOTATION,
    SUSPENDED_UNTIL_ANNOTATION,
    DeploymentEdit,
    edit_deployment_in_manifests,
    suspension_of,
)
from pitstop.incidents import IncidentPhase
from pitstop.runbook.request import RunbookOutcome
from pitstop.sandbox.faults import CrashLoop, clear_fault, inject_fault
from pitstop.sandbox.flux import FLUX_NAMESPACE, applied_revision, wait_applied
from pitstop.workers.clients import build_activity_clients
from pitstop.workers.webhook import serve
from pitstop.workflows import ALL_WORKFLOWS

from .step_library_support import WORKER_SA, apply_deploy_rbac, impersonate, product_workers
from .test_delivery_runbooks import start_runbook
from .test_gitops_flux import FLUX_INTERVAL, force_reconcile
from .test_incident_remediation import _deployment_ready, _free_port, start_fast_monitoring, wait_for_recovery

pytestmark = pytest.mark.sandbox

BAD_VERSION = "v9.9.9-bad"
WAIT = 3 * FLUX_INTERVAL + 20  # bound for anything Flux must apply


def _bind_gitops_engine_role(sandbox: Any, region: str) -> None:
    """The RoleBinding docs/permissions.md asks for: ClusterRole pitstop-gitops-engine in flux-system."""
    done = subprocess.run(
        ["/usr/bin/kubectl", "--kubeconfig", str(sandbox.clusters.kubeconfig), "--context", sandbox.clusters.contexts[region],
         "-n", FLUX_NAMESPACE, "create", "rolebinding", "pitstop-gitops-engine", "--clusterrole", "pitstop-gitops-engine",
         "--serviceaccount", "pitstop:pitstop-worker"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 or "already exists" in done.stderr, done.stderr


def _settings(sandbox: Any, flux_gitops: Any, base: Settings, **extra: Any) -> Settings:
    return Settings(
        state_dir=base.state_dir, temporal=base.temporal.model_dump(), worker={"metrics_port": 0},
        kubernetes={"regions": {r: {"kubeconfig": sandbox.clusters.kubeconfig, "context": c}
                                for r, c in sandbox.clusters.contexts.items()}},
        gitops=flux_gitops.settings(), **extra)


def _version(kube: KubeJson, path: str) -> tuple[str, str]:
    template = kube.get(path)["spec"]["template"]
    return template["metadata"]["labels"].get("version", ""), template["spec"]["containers"][0]["image"]


async def _wait_for(condition: Any, what: str, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:g}s"
        await asyncio.sleep(0.5)
    return time.monotonic() - started


def _commit_version(flux_gitops: Any, region: str, service: Any, version: str, image: str) -> str:
    workspace = flux_gitops.workspace(region)
    path = f"{service.team}/{service.name}.yaml"
    edit = DeploymentEdit(images={service.name: image}, template_labels={"version": version})
    head = workspace.commit(lambda read: {path: edit_deployment_in_manifests(read(path) or "", name=service.name, edit=edit)},
                            message=f"release {service.name} {version}", sign_off="a developer")
    return head or workspace.head()


async def test_a_crash_loop_from_git_is_rolled_back_through_git_and_stays_rolled_back(
    sandbox_monitoring: Any, flux_gitops: Any, temporal_client: Client, pitstop_settings: Settings, tmp_path: Path,
) -> None:
    sm = sandbox_monitoring
    region, service = flux_gitops.regions[0], flux_gitops.services[0]
    namespace, name = service.team, service.name
    api = sm.api_clients[region]
    kube = KubeJson(api)
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    # the module's seed commit put git's version back: wait until it runs
    good_version, good_image = _version(kube, path)
    await _wait_for(lambda: _deployment_ready(api, namespace, name, good_version), "the seeded version rolled out", 120)
    for each in sm.clusters.contexts:  # the worker's service account acts in every region (alerts may come from any)
        apply_deploy_rbac(sm.clusters, each)
    _bind_gitops_engine_role(sm, region)
    token, port = secrets.token_urlsafe(16), _free_port()
    monitoring = None
    fault_id = None
    try:
        monitoring = start_fast_monitoring(sm, port=port, token=token, state_dir=tmp_path / "monitoring")
        settings = _settings(sm, flux_gitops, pitstop_settings, prometheus={"url": monitoring.prometheus_url},
                             webhook={"token": token, "listen": f"127.0.0.1:{port}"})
        clients = impersonate(build_activity_clients(settings, temporal=temporal_client, require_clusters=True), WORKER_SA)
        ready, stop = asyncio.Event(), asyncio.Event()
        async with product_workers(temporal_client, settings, clients, ALL_WORKFLOWS):
            webhook = asyncio.create_task(serve(settings, client=temporal_client, ready=ready, stop=stop, port=port))
            await asyncio.wait_for(ready.wait(), 15)
            # a bad version arrives through git ...
            started = datetime.now(UTC)
            bad_image = f"registry.pitstop.dev/{namespace}/{name}:{BAD_VERSION}"
            bad_commit = _commit_version(flux_gitops, region, service, BAD_VERSION, bad_image)
            wait_applied(flux_gitops.home_api, region, bad_commit, timeout=WAIT)
            await _wait_for(lambda: _deployment_ready(api, namespace, name, BAD_VERSION), "the bad version rolled out", 120)
            # ... and crash-loops
            fault = inject_fault(api_client=api, fault=CrashLoop(service=name, version=BAD_VERSION, restart_interval_seconds=2))
            fault_id, fault_wall = fault.id, datetime.now(UTC)
            incidents = await wait_for_recovery(temporal_client, name, started, timeout=300)
            stop.set()
            await asyncio.wait_for(webhook, 15)
        recovered = next(i for i in incidents if i.phase == IncidentPhase.RECOVERED)
        acted = [a for i in incidents for a in i.actions if not a.dry_run]
        assert [a.rung for a in acted] == ["rollback"], [(i.incident_id, [e.message for e in i.timeline]) for i in incidents]
        assert acted[0].status == "succeeded"
        # the rollback is a commit in git, signed off with the incident's run, applied by Flux
        workspace = flux_gitops.workspace(region)
        head = workspace.sync()
        assert head is not None and head != bad_commit
        message = workspace._git("log", "-1", "--format=%B").stdout
        assert f"rollback {namespace}/{name} in {region}" in message and "Signed-off-by: pitstop run " in message, message
        manifest = workspace.read(f"{namespace}/{name}.yaml") or ""
        assert good_image in manifest and BAD_VERSION not in manifest, manifest
        assert (applied_revision(flux_gitops.home_api, region) or "").endswith(head)
        # the next full apply of git keeps the good version
        force_reconcile(flux_gitops.home_api, region)
        assert _version(kube, path) == (good_version, good_image)
        assert _deployment_ready(api, namespace, name, good_version)
        assert recovered.resolved_at is not None and recovered.first_action_at is not None
        mttr = (recovered.resolved_at - fault_wall).total_seconds()
        first_received = min(i.first_received_at for i in incidents if i.first_received_at)
        print(f"\nMTTR under GitOps (fault injected -> alert resolved; rollback committed to git and applied by Flux, "
              f"interval {FLUX_INTERVAL:g}s): {mttr:.1f}s; alert delivered -> first action "
              f"{(recovered.first_action_at - first_received).total_seconds():.2f}s "
              f"(the non-GitOps figure: test_incident_remediation.py, same run)")
    finally:
        if fault_id:
            clear_fault(api_client=api, fault_id=fault_id)
        if monitoring is not None:
            monitoring.stop()


async def test_a_bounded_suspend_keeps_flux_off_one_deployment_until_it_ends(
    sandbox_monitoring: Any, flux_gitops: Any, temporal_client: Client, pitstop_settings: Settings, task_queue: str,
) -> None:
    sm = sandbox_monitoring
    region, service = flux_gitops.regions[0], flux_gitops.services[0]
    kube = KubeJson(sm.api_clients[region], field_manager="someone-by-hand")
    path = f"/apis/apps/v1/namespaces/{service.team}/deployments/{service.name}"
    in_git = kube.get(path)["spec"]["replicas"]
    settings = _settings(sm, flux_gitops, pitstop_settings).model_copy(
        update={"temporal": pitstop_settings.temporal.model_copy(update={"task_queue": task_queue})})
    clients = impersonate(build_activity_clients(settings, temporal=temporal_client, require_clusters=True), WORKER_SA)
    async with product_workers(temporal_client, settings, clients, ALL_WORKFLOWS):
        handle = await start_runbook(temporal_client, task_queue, "gitops-suspend", {
            "service": service.name, "namespace": service.team, "region": region,
            "reason": "INC-42: hand-tuned replicas while we debug", "timeout_seconds": 600})
        await _wait_for(lambda: suspension_of(kube.get(path)).suspended, "the suspension", 30)
        suspension = suspension_of(kube.get(path))
        assert suspension.by_pitstop and suspension.reason.startswith("INC-42") and handle.id in suspension.by
        # a change by hand sticks through a full reconcile of git
        kube.patch(path, {"spec": {"replicas": in_git + 2}}, patch_type="merge")
        force_reconcile(flux_gitops.home_api, region)
        assert kube.get(path)["spec"]["replicas"] == in_git + 2, "Flux corrected a suspended Deployment"
        # cancelling the run compensates: the suspension is lifted, and Flux corrects the change again
        await handle.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.result(), 60)
        assert not suspension_of(kube.get(path)).suspended
        force_reconcile(flux_gitops.home_api, region)
        took = await _wait_for(lambda: kube.get(path)["spec"]["replicas"] == in_git, "Flux's correction after resume", WAIT)
        print(f"\ngitops-suspend: a hand-made scale survived a forced reconcile while suspended; {took:.1f}s after "
              f"the resume Flux had put git's {in_git} replicas back")
        # the sweep lifts a pitstop suspension past its end, never one made by hand
        past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        kube.patch(path, {"metadata": {"annotations": {FLUX_RECONCILE_ANNOTATION: "disabled",
                                                       SUSPENDED_UNTIL_ANNOTATION: past}}}, patch_type="merge")
        sweep = await start_runbook(temporal_client, task_queue, "gitops-resume-expired", {"regions": [region]})
        outcome = await asyncio.wait_for(sweep.result(), 60)
        assert isinstance(outcome, RunbookOutcome) and outcome.status == "succeeded", outcome
        assert f"{service.team}/{service.name}" in str(outcome.model_dump()), outcome
        assert not suspension_of(kube.get(path)).suspended
        kube.patch(path, {"metadata": {"annotations": {FLUX_RECONCILE_ANNOTATION: "disabled"}}}, patch_type="merge")
        try:
            sweep = await start_runbook(temporal_client, task_queue, "gitops-resume-expired", {"regions": [region]})
            await asyncio.wait_for(sweep.result(), 60)
            assert suspension_of(kube.get(path)).suspended, "the sweep lifted a suspension made by hand"
        finally:
            kube.patch(path, {"metadata": {"annotations": {FLUX_RECONCILE_ANNOTATION: None}}}, patch_type="merge")


async def test_a_rightsizing_rollout_of_a_git_managed_service_lands_in_git_and_flux_keeps_it(
    sandbox_monitoring: Any, flux_gitops: Any, temporal_client: Client, pitstop_settings: Settings, task_queue: str,
) -> None:
    """`RightsizingLoop` (as `pitstop capacity apply --apply` starts it) on a git-managed Deployment: the promotion
    commits the new requests and limits to git and waits for Flux, so a full reconcile afterwards keeps them."""
    sm = sandbox_monitoring
    region, service = flux_gitops.regions[0], flux_gitops.services[0]
    kube = KubeJson(sm.api_clients[region])
    path = f"/apis/apps/v1/namespaces/{service.team}/deployments/{service.name}"
    container = kube.get(path)["spec"]["template"]["spec"]["containers"][0]
    bigger = {container["name"]: ContainerResources(requests={"cpu": "300m", "memory": "320Mi"},
                                                    limits={"cpu": "600m", "memory": "640Mi"})}
    for each in sm.clusters.contexts:
        apply_deploy_rbac(sm.clusters, each)
    _bind_gitops_engine_role(sm, region)
    settings = _settings(sm, flux_gitops, pitstop_settings, prometheus={"url": sm.monitoring.prometheus_url,
                                                                        "timeout_seconds": 2}).model_copy(
        update={"temporal": pitstop_settings.temporal.model_copy(update={"task_queue": task_queue})})
    clients = impersonate(build_activity_clients(settings, temporal=temporal_client, require_clusters=True), WORKER_SA)
    loop = LoopInput(service=service.name, namespace=service.team, region=region, team=service.team, resources=bigger,
                     settings=LoopSettings.model_validate({
                         "enabled": True, "window_seconds": 10, "interval_seconds": 2, "steps": [50], "rate_window": "5s",
                         "progress_deadline_seconds": 120, "latency_p95_max_ms": 1000, "max_latency_ratio": None}))
    started = time.monotonic()
    async with product_workers(temporal_client, settings, clients, ALL_WORKFLOWS):
        outcome = await temporal_client.execute_workflow(
            LOOP_WORKFLOW, loop, id=f"gitops-rightsizing-{secrets.token_hex(3)}", task_queue=task_queue,
            result_type=LoopOutcome, execution_timeout=timedelta(minutes=5))
    took = time.monotonic() - started
    assert outcome.result == "rolled_out", outcome
    wanted = {"requests": {"cpu": "300m", "memory": "320Mi"}, "limits": {"cpu": "600m", "memory": "640Mi"}}
    workspace = flux_gitops.workspace(region)
    head = workspace.sync()
    assert head is not None
    manifest = next(d for d in yaml.safe_load_all(workspace.read(f"{service.team}/{service.name}.yaml") or "")
                    if d and d["kind"] == "Deployment")
    assert manifest["spec"]["template"]["spec"]["containers"][0]["resources"] == wanted, manifest
    assert "Signed-off-by: pitstop run " in workspace._git("log", "-1", "--format=%B").stdout
    assert (applied_revision(flux_gitops.home_api, region) or "").endswith(head)
    force_reconcile(flux_gitops.home_api, region)
    assert kube.get(path)["spec"]["template"]["spec"]["containers"][0]["resources"] == wanted
    print(f"\nrightsizing under Flux: {service.name} {outcome.summary} in {took:.1f}s; the new resources are in git "
          f"({head[:10]}, applied by Flux) and survive a forced reconcile")
