"""The rightsizing closed loop on the sandbox (issue 14 item 7): the `RightsizingLoop` workflow on the real Temporal
server with the product's workers, every Kubernetes request made as the worker's service account (deploy/rbac.yaml
applied), the session's kwok clusters, traffic simulator and Prometheus (tests/fixtures/monitoring.py).

- `pitstop capacity apply --apply --wait` for a team that opted in: a good recommendation (the `simple`
  strategy's, computed from the backfilled history) goes through a canary
  release whose candidate differs from stable by its resources only, is watched, and is rolled out: every pod of
  the Deployment runs with the recommended resources.
- A too-small memory limit: the simulator OOM-kills the canary's container (kwok Stage; the pod's
  `lastState.terminated.reason: OOMKilled`), the loop sees it through the Kubernetes API and reverts: routes and
  subsets as before, candidate gone, the stable Deployment and its pods keep their old resources. Meanwhile a
  second loop on the same service is refused by the lease.
- `pitstop capacity apply` (dry run by default) shows what would change and refuses `--apply` for a team that did
  not opt in; `--patches` writes kustomize patches that the real kustomize (`kubectl kustomize`) builds over the
  live Deployment, and the API server accepts the result (server-side dry-run apply).
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pitstop.activities.capacity import collect_region
from pitstop.activities.kube_api import KubeJson, deployment_path, label_selector
from pitstop.activities.metrics import PrometheusProvider
from pitstop.capacity.closed_loop import LOOP_WORKFLOW, LoopInput, LoopOutcome, LoopSettings, LoopStatus
from pitstop.config import Settings
from pitstop.delivery.spec import ContainerResources
from pitstop.steps.capacity import CollectArgs
from tests.fixtures.monitoring import SandboxMonitoring
from tests.fixtures.pitstop_api import running_api
from pitstop.workers.cli_capacity_apply import wanted_resources
from pitstop.workers.clients import build_activity_clients
from pitstop.workflows.delivery import ProgressiveRelease
from pitstop.workflows.lease import TargetLease
from pitstop.workflows.rightsizing import RightsizingLoop

from .step_library_support import WORKER_SA, apply_deploy_rbac, impersonate, product_workers

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

REGION = "us-east"
STEP = 900  # the fixture's backfill resolution
REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = (RightsizingLoop, ProgressiveRelease, TargetLease)


def fast(**overrides: Any) -> LoopSettings:
    values: dict[str, Any] = {"enabled": True, "window_seconds": 10, "interval_seconds": 2, "steps": [50],
                              "rate_window": "5s", "progress_deadline_seconds": 120, "latency_p95_max_ms": 1000,
                              "max_latency_ratio": None}
    values.update(overrides)
    return LoopSettings.model_validate(values)


@asynccontextmanager
async def worker(client: Client, sandbox: SandboxMonitoring, task_queue: str) -> AsyncIterator[None]:
    apply_deploy_rbac(sandbox.clusters, REGION)
    regions = {r: {"kubeconfig": sandbox.clusters.kubeconfig, "context": c} for r, c in sandbox.clusters.contexts.items()}
    settings = Settings(temporal={"task_queue": task_queue}, kubernetes={"regions": regions},
                        prometheus={"url": sandbox.monitoring.prometheus_url, "timeout_seconds": 2})
    clients = impersonate(build_activity_clients(settings, temporal=client, require_clusters=True), WORKER_SA)
    async with product_workers(client, settings, clients, WORKFLOWS):
        yield


def service_named(sandbox: SandboxMonitoring, name: str) -> Any:
    return next(s for s in sandbox.services if s.name == name)


def stable_state(sandbox: SandboxMonitoring, service: Any) -> dict[str, Any]:
    kube = KubeJson(sandbox.api_clients[REGION])
    ns, name = service.team, service.name
    dep = kube.get(deployment_path(ns, name))
    return {"http": kube.get(f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/{name}")["spec"]["http"],
            "subsets": kube.get(f"/apis/networking.istio.io/v1/namespaces/{ns}/destinationrules/{name}")["spec"]["subsets"],
            "template": dep["spec"]["template"], "replicas": dep["spec"]["replicas"],
            "candidate": kube.get_optional(deployment_path(ns, f"{name}-canary")) is not None}


async def pod_resources(sandbox: SandboxMonitoring, service: Any, *, expected: dict[str, Any] | None = None,
                        timeout: float = 60) -> list[dict[str, Any]]:
    """The resources of every running pod of the stable Deployment; with `expected`, wait (bounded) until every
    pod has them and there are as many as the Deployment's replicas."""
    kube = KubeJson(sandbox.api_clients[REGION])
    dep = kube.get(deployment_path(service.team, service.name))
    selector = label_selector(dep["spec"]["selector"])
    deadline = time.monotonic() + timeout
    while True:
        pods = [p for p in kube.items(f"/api/v1/namespaces/{service.team}/pods", labelSelector=selector)
                if not p["metadata"].get("deletionTimestamp")]
        found = [p["spec"]["containers"][0].get("resources") or {} for p in pods]
        if expected is None or (len(found) == dep["spec"]["replicas"] and all(r == expected for r in found)):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"pods of {service.name} still have {found}, expected {expected}")
        await asyncio.sleep(0.5)


async def recommended(sandbox: SandboxMonitoring, service: Any) -> dict[str, ContainerResources]:
    end = float(int(sandbox.history.end_unix) // STEP * STEP)
    args = CollectArgs(region=REGION, step_seconds=STEP, rate_window_seconds=2 * STEP, end_unix=end,
                       namespaces=[service.team])
    provider = PrometheusProvider(base_url=sandbox.monitoring.prometheus_url, timeout_seconds=60)
    result = await collect_region(KubeJson(sandbox.api_clients[REGION]), provider, args)
    (rec,) = [w for w in result.workloads if w.workload == service.name]
    return wanted_resources(rec)


HISTORIES = REPO / "tests" / "histories"


async def replayed(client: Client, workflow_id: str, record_as: str = "") -> None:
    """Replay the run's history with the current code; with PITSTOP_RECORD_HISTORIES=1 also save it as
    tests/histories/rightsizing-<record_as>.json for tests/replay/test_rightsizing_replay.py."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
    if record_as and os.environ.get("PITSTOP_RECORD_HISTORIES") == "1":
        (HISTORIES / f"rightsizing-{record_as}.json").write_text(history.to_json())


async def test_good_recommendation_is_rolled_out_to_every_pod(
    temporal_client: Client, temporal_server: Any, sandbox_monitoring: SandboxMonitoring, task_queue: str,
    tmp_path: Path, pitstop_settings: Settings,
) -> None:
    """Through the CLI, as an SRE would: `pitstop capacity apply --apply --wait` with the team opted in; the loop
    is started through the pitstop API as the verified test user alice (her name is in the loop's input)."""
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "battery-analytics")
    wanted = await recommended(sandbox, service)
    (container,) = wanted
    current = (await pod_resources(sandbox, service))[0]
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"teams": {service.team: {"closed_loop": fast().model_dump(mode="json")}}}))
    async with worker(temporal_client, sandbox, task_queue), \
            running_api(temporal_client, pitstop_settings, tmp_path / "api") as api:
        started = time.monotonic()
        done = await asyncio.to_thread(cli, sandbox, tmp_path, service.name, "--policy", str(policy), "--apply",
                                       "--wait", temporal=(temporal_server.address, task_queue), env=api.env_for("alice"))
        took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    workflow_id = f"rightsizing/{REGION}/{service.team}/{service.name}"
    assert f"started {workflow_id} as alice" in done.stdout and "rolled out" in done.stdout, done.stdout
    outcome = await temporal_client.get_workflow_handle(workflow_id, result_type=LoopOutcome).result()
    print(f"\nsandbox: {service.name} {outcome.summary} in {took:.1f}s (CLI incl. collection) after {outcome.looks}"
          f" looks; {outcome.changes}")
    assert outcome.result == "rolled_out", outcome
    started = (await temporal_client.get_workflow_handle(workflow_id).fetch_history()).events[0]
    assert b'"started_by":"alice"' in started.workflow_execution_started_event_attributes.input.payloads[0].data
    assert outcome.looks >= 2 and outcome.signals is not None and outcome.signals.pods.oom_kills == 0
    # what the CLI applied: today's resources with the recommendation's values (read at the CLI's own "now",
    # so they may differ from `wanted`, read at the history's end, by the few live samples since)
    expected = copy.deepcopy(current)
    for line in outcome.changes:
        name, change = line.split(": ", 1)
        field, values = change.split(" ", 1)
        kind, key = field.split(".")
        assert name == container and key in getattr(wanted[container], kind), (line, wanted)
        expected.setdefault(kind, {})[key] = values.split(" -> ")[1]
    assert expected != current
    after = stable_state(sandbox, service)
    assert after["template"]["spec"]["containers"][0]["resources"] == expected and after["candidate"] is False
    await pod_resources(sandbox, service, expected=expected)
    await replayed(temporal_client, workflow_id, "rolled-out")
    await replayed(temporal_client, f"{workflow_id}/release")


async def test_too_small_memory_limit_oom_kills_the_canary_and_is_reverted(
    temporal_client: Client, sandbox_monitoring: SandboxMonitoring, task_queue: str
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "token-service")
    before = stable_state(sandbox, service)
    before_pods = await pod_resources(sandbox, service)
    container = before["template"]["spec"]["containers"][0]["name"]
    tiny = {container: ContainerResources(requests={"memory": "16Mi"}, limits={"memory": "16Mi"})}
    request = LoopInput(service=service.name, namespace=service.team, region=REGION, team=service.team,
                        resources=tiny, settings=fast(window_seconds=60))
    workflow_id = f"rightsizing-{uuid.uuid4().hex[:6]}"
    async with worker(temporal_client, sandbox, task_queue):
        handle = await temporal_client.start_workflow(LOOP_WORKFLOW, request, id=workflow_id, task_queue=task_queue,
                                                      result_type=LoopOutcome)
        deadline = time.monotonic() + 90
        while (await handle.query("status", result_type=LoopStatus)).phase != "canary":
            assert time.monotonic() < deadline, "the loop never reached its canary"
            await asyncio.sleep(0.2)
        second = await temporal_client.execute_workflow(
            LOOP_WORKFLOW, request, id=f"{workflow_id}-second", task_queue=task_queue, result_type=LoopOutcome)
        outcome = await handle.result()
    print(f"\nsandbox: {service.name} limit 16Mi: {outcome.summary}; signals {outcome.signals}")
    assert second.result == "refused" and "busy" in second.reason, second
    assert outcome.result == "reverted" and "OOM kill" in outcome.reason, outcome
    assert outcome.signals is not None and outcome.signals.pods.oom_kills >= 1
    assert all(p.startswith(f"{service.name}-canary-") for p in outcome.signals.pods.oom_pods)
    assert stable_state(sandbox, service) == before
    assert await pod_resources(sandbox, service) == before_pods
    await replayed(temporal_client, workflow_id, "reverted")
    await replayed(temporal_client, f"{workflow_id}-second", "refused")


def cli(sandbox: SandboxMonitoring, tmp_path: Path, *args: str, temporal: tuple[str, str] | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`pitstop capacity apply ARGS --region us-east --step 900` against the sandbox (and Temporal: address, queue;
    `env`: the pitstop API's address and a test user's credential, for --apply)."""
    config = tmp_path / "pitstop.yaml"
    regions = {r: {"kubeconfig": str(sandbox.clusters.kubeconfig), "context": c}
               for r, c in sandbox.clusters.contexts.items()}
    values: dict[str, Any] = {"kubernetes": {"regions": regions}, "state_dir": str(tmp_path / "state"),
                              "prometheus": {"url": sandbox.monitoring.prometheus_url}}
    if temporal is not None:
        values["temporal"] = {"address": temporal[0], "task_queue": temporal[1]}
    config.write_text(yaml.safe_dump(values))
    env = {**os.environ, "PITSTOP_CONFIG": str(config), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pitstop.workers.cli", "capacity", "apply", *args, "--region", REGION,
                           "--step", str(STEP)], capture_output=True, text=True, env=env, timeout=300, cwd=REPO)


def test_cli_dry_run_refusal_and_kustomize_patches(sandbox_monitoring: SandboxMonitoring, tmp_path: Path) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "geo-service")
    before = stable_state(sandbox, service)
    shown = cli(sandbox, tmp_path, service.name)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "closed loop not opted in" in shown.stdout and "would change " in shown.stdout, shown.stdout
    assert "dry run: nothing changed" in shown.stdout
    refused = cli(sandbox, tmp_path, service.name, "--apply")
    assert refused.returncode != 0 and f"teams.{service.team}.closed_loop.enabled" in refused.stderr, refused.stderr
    assert stable_state(sandbox, service) == before
    # GitOps: patches over a base holding the live Deployment, built by the real kustomize
    base, overlay = tmp_path / "base", tmp_path / "overlay"
    base.mkdir()
    live = KubeJson(sandbox.api_clients[REGION]).get(deployment_path(service.team, service.name))
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": service.name, "namespace": service.team, "labels": live["metadata"].get("labels", {})},
                "spec": {k: live["spec"][k] for k in ("replicas", "selector", "template")}}
    (base / "deployment.yaml").write_text(yaml.safe_dump(manifest))
    (base / "kustomization.yaml").write_text("resources: [deployment.yaml]\n")
    written = cli(sandbox, tmp_path, service.name, "--patches", str(overlay))
    assert written.returncode == 0, written.stderr[-2000:]
    assert (overlay / "kustomization.yaml").exists() and (overlay / f"{service.team}--{service.name}.yaml").exists()
    built = subprocess.run(["/usr/bin/kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    (doc,) = list(yaml.safe_load_all(built.stdout))
    patch = yaml.safe_load((overlay / f"{service.team}--{service.name}.yaml").read_text())
    (wanted,) = patch["spec"]["template"]["spec"]["containers"]
    (got,) = doc["spec"]["template"]["spec"]["containers"]
    for kind, values in wanted["resources"].items():
        assert {k: got["resources"][kind][k] for k in values} == values
    assert got["image"] == live["spec"]["template"]["spec"]["containers"][0]["image"]
    applied = subprocess.run(
        ["/usr/bin/kubectl", "--kubeconfig", str(sandbox.clusters.kubeconfig), "--context",
         sandbox.clusters.contexts[REGION], "apply", "--server-side", "--dry-run=server", "--force-conflicts",
         "--field-manager", "gitops-test", "-f", "-"], input=built.stdout, capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0 and "serverside-applied (server dry run)" in applied.stdout, applied.stderr
    assert stable_state(sandbox, service) == before
