"""Chaos runs against the sandbox's real kube-apiserver + kwok (and its real Prometheus for the budget gate):

- an experiment written for chaostoolkit-kubernetes (terminate pods by label, then probe the Deployment's readiness)
  runs unchanged through pitstop, really deletes a pod, and its journal has the shape `chaos run` writes for it;
- a real `pitstop worker` process (every Kubernetes request its service account's, deploy/rbac.yaml applied) is
  killed -9 mid-method and again mid-rollback: a completed rollback runs exactly once, the interrupted one is started
  again, and the orphaned child processes are killed;
- the dead-man switch aborts on an SLO breached in Prometheus, and the rollback runs;
- the nightly runbook skips a leased service and runs the next;
- an exhausted error budget refuses the experiment before anything runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.client import Client, WorkflowFailureError

from pitstop.activities.clients import ActivityClients
from pitstop.activities.kube_api import KubeJson
from pitstop.chaos.model import ChaosRequest, ChaosStatus, ChaosTarget, SloGuard
from pitstop.config import SHIPPED_RUNBOOKS_DIR
from pitstop.delivery.spec import ErrorBudgetGate
from pitstop.sandbox.clusters import SandboxClusters
from pitstop.sandbox.kill_trials import WorkerProcess, prepare_clusters, worker_config
from tests.fixtures.monitoring import SandboxMonitoring
from tests.integration.chaos_harness import TEST_CHAOS_MODULES, call, calls, chaos_engine, chaos_settings, start_chaos
from tests.integration.runbook_harness import start

from .step_library_support import (
    NAMESPACE, REGION, closed_after, create_deployment, deployment_manifest, eventually,
    sandbox_activity_clients, unique,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clients(kube_sandbox: SandboxClusters) -> Iterator[ActivityClients]:
    yield from closed_after(sandbox_activity_clients(kube_sandbox))


def pod_names(clients: ActivityClients, name: str) -> set[str]:
    pods = KubeJson(clients.kube[REGION]).get(f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=f"app={name}")
    return {p["metadata"]["name"] for p in pods["items"] if not p["metadata"].get("deletionTimestamp")}


def four_pods(clients: ActivityClients, name: str) -> set[str] | None:
    names = pod_names(clients, name)
    return names if len(names) == 4 else None


def k8s_experiment(name: str) -> dict[str, Any]:
    """Written for chaostoolkit-kubernetes, nothing pitstop-specific in it."""
    ready = {"type": "probe", "name": "deployment-ready", "tolerance": True, "provider": {
        "type": "python", "module": "chaosk8s.deployment.probes", "func": "deployment_available_and_healthy",
        "arguments": {"name": name, "ns": NAMESPACE}}}
    return {
        "version": "1.0.0", "title": f"{name} survives losing a pod", "description": "terminate one pod by label",
        "steady-state-hypothesis": {"title": "the deployment is ready", "probes": [ready]},
        "method": [
            {"type": "action", "name": "terminate-one-pod", "provider": {
                "type": "python", "module": "chaosk8s.pod.actions", "func": "terminate_pods",
                "arguments": {"label_selector": f"app={name}", "ns": NAMESPACE, "qty": 1, "rand": True}},
             "pauses": {"after": 8}},
            {**ready, "name": "deployment-ready-after-kill"},
        ],
        "rollbacks": [],
    }


def chaos_run_journal(exp: dict[str, Any], work: Path, clusters: SandboxClusters) -> dict[str, Any]:
    (work / "experiment.json").write_text(json.dumps(exp))
    env = {**os.environ, "KUBECONFIG": str(clusters.kubeconfig), "KUBERNETES_CONTEXT": clusters.contexts[REGION]}
    subprocess.run([str(Path(sys.executable).parent / "chaos"), "run", "experiment.json", "--journal-path", "journal.json"],
                   cwd=work, env=env, check=False, capture_output=True, timeout=180)
    return json.loads((work / "journal.json").read_text())


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if k not in ("experiment", "output")}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None if value is None else type(value).__name__


async def test_a_chaostoolkit_kubernetes_experiment_runs_unchanged(
    temporal_client: Client, task_queue: str, kube_sandbox: SandboxClusters, clients: ActivityClients, tmp_path: Path
) -> None:
    name = unique("chaos-k8s")
    create_deployment(clients.kube[REGION], deployment_manifest(name, "registry.example/chaos:1.0", replicas=4))
    before = eventually("4 pods", lambda: four_pods(clients, name))
    exp = k8s_experiment(name)
    worker_clients = ActivityClients(settings=chaos_settings(clients.settings), kube=clients.kube, temporal=temporal_client,
                                     clusters=clients.clusters)
    async with chaos_engine(temporal_client, task_queue, worker_clients):
        handle = await start_chaos(temporal_client, task_queue, ChaosRequest(
            experiment=exp, targets=[ChaosTarget(region=REGION, namespace=NAMESPACE, service=name)]))
        outcome = await asyncio.wait_for(handle.result(), timeout=120)
    assert (outcome.status, outcome.deviated, outcome.failed_activities) == (ChaosStatus.COMPLETED, False, [])
    assert outcome.journal["experiment"] == exp
    assert len(before - pod_names(clients, name)) == 1, "one of the original pods was deleted and replaced"
    assert outcome.score == 1.0, "the steady-state probe after the method passed"
    reference = chaos_run_journal(exp, tmp_path, kube_sandbox)
    assert reference["status"] == "completed" and not reference["deviated"]
    assert shape(outcome.journal) == shape(reference)


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a killed orphan stays a zombie until its new parent reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def heartbeat_reported(handle: Any, timeout: float = 60) -> None:
    """Until the method's activity has heartbeated a finished run (its details: the runs finished so far)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        pending = (await handle.describe()).raw_description.pending_activities
        for p in pending:
            if p.activity_id == "method" and p.heartbeat_details.payloads and json.loads(p.heartbeat_details.payloads[0].data):
                return
        await asyncio.sleep(0.2)
    pytest.fail(f"the method's activity reported no heartbeat within {timeout}s")


def pid_of(log: Path, label: str, call_number: int = 1) -> int:
    return int([line for line in log.read_text().splitlines() if line.split()[0] == label][call_number - 1].split()[1])


@pytest.fixture
def chaos_role_bound(clients: ActivityClients) -> Iterator[None]:
    """ClusterRole pitstop-chaos bound in NAMESPACE for this test only: deploy/rbac.yaml does not bind it (deleting
    pods is granted per namespace where chaos runs), and later tests check the worker cannot delete pods."""
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/rolebindings/pitstop-chaos"
    KubeJson(clients.kube[REGION]).apply(path, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "pitstop-chaos", "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pitstop-chaos"},
        "subjects": [{"kind": "ServiceAccount", "name": "pitstop-worker", "namespace": "pitstop"}]})
    yield
    KubeJson(clients.kube[REGION]).request("DELETE", path)


async def test_a_worker_killed_mid_method_rolls_back_once_on_the_restarted_worker(
    temporal_client: Client, task_queue: str, kube_sandbox: SandboxClusters, clients: ActivityClients, tmp_path: Path,
    chaos_role_bound: None,
) -> None:
    """Killed -9 during the method, then again during the second rollback: the first rollback runs exactly once,
    the interrupted one is started again, and each orphaned child process is killed by the next attempt."""
    name = unique("chaos-kill")
    create_deployment(clients.kube[REGION], deployment_manifest(name, "registry.example/chaos:1.0", replicas=4))
    prepare_clusters(clusters=kube_sandbox, admin=clients.kube)  # deploy/rbac.yaml in every region
    config = worker_config(clusters=kube_sandbox, admin=clients.kube, task_queue=task_queue,
                           temporal_address=temporal_client.service_client.config.target_host, state_dir=tmp_path / "state")
    data = yaml.safe_load(config.read_text())
    data.update(security={"chaos_provider_modules": TEST_CHAOS_MODULES}, chaos={"heartbeat_seconds": 0.5})
    config.write_text(yaml.safe_dump(data))
    log = tmp_path / "calls.log"
    exp = k8s_experiment(name)
    exp["method"] = [exp["method"][0] | {"pauses": {}},
                     {"type": "action", "name": "hold", "provider": call("record_and_sleep", path=str(log), label="method", seconds=300)}]
    exp["rollbacks"] = [
        {"type": "action", "name": "restore", "provider": call("record", path=str(log), label="rollback")},
        {"type": "action", "name": "slow-restore", "provider": call("sleep_on_first_call", path=str(log), label="slow", seconds=300)},
    ]
    worker = WorkerProcess(config_file=config, log=tmp_path / "worker.log")
    worker.start()
    try:
        await worker.ready()
        handle = await start_chaos(temporal_client, task_queue, ChaosRequest(
            experiment=exp, targets=[ChaosTarget(region=REGION, namespace=NAMESPACE, service=name)],
            heartbeat_timeout_seconds=4))
        await asyncio.to_thread(eventually, "the method's long action", lambda: calls(log, "method"), 120)
        await heartbeat_reported(handle)
        worker.kill()
        assert alive(pid_of(log, "method")), "the method's child outlived its worker (it runs in its own process group)"
        worker.start()
        await asyncio.to_thread(eventually, "the second rollback's first attempt", lambda: calls(log, "slow"), 120)
        worker.kill()
        assert alive(pid_of(log, "slow")), "the interrupted rollback's child outlived its worker"
        worker.start()
        outcome = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        worker.kill()
    assert outcome.status is ChaosStatus.ABORTED and "worker was lost" in outcome.reason
    assert [r["activity"]["name"] for r in outcome.journal["run"]] == ["terminate-one-pod"], "from the last heartbeat"
    assert (calls(log, "rollback"), calls(log, "slow")) == (1, 2), "the completed rollback once; the interrupted one again"
    assert [r["status"] for r in outcome.journal["rollbacks"]] == ["succeeded", "succeeded"] and not outcome.rollback_failures
    assert not alive(pid_of(log, "method")) and not alive(pid_of(log, "slow")), "orphaned children were killed"


async def test_an_exhausted_error_budget_refuses_the_experiment(
    temporal_client: Client, task_queue: str, sandbox_monitoring: SandboxMonitoring, clients: ActivityClients,
    tmp_path: Path
) -> None:
    name = unique("chaos-budget")
    create_deployment(clients.kube[REGION], deployment_manifest(name, "registry.example/chaos:1.0", replicas=2))
    settings = chaos_settings(clients.settings, prometheus=clients.settings.prometheus.model_copy(
        update={"url": sandbox_monitoring.monitoring.prometheus_url}))
    worker_clients = ActivityClients(settings=settings, kube=clients.kube, temporal=temporal_client, clusters=clients.clusters)
    log = tmp_path / "calls.log"
    exp = k8s_experiment(name)
    exp["method"] = [{"type": "action", "name": "never", "provider": call("record", path=str(log), label="method")}]
    # every request failed over the window: the error ratio is 1, nothing of the budget is left
    gate = ErrorBudgetGate(slo_percent=99.9, window="5m", query="vector(1)")
    async with chaos_engine(temporal_client, task_queue, worker_clients):
        handle = await start_chaos(temporal_client, task_queue, ChaosRequest(
            experiment=exp, targets=[ChaosTarget(region=REGION, namespace=NAMESPACE, service=name)], error_budget=gate))
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), timeout=120)
    assert "error budget exhausted" in str(failure.value.cause)
    assert not log.exists(), "nothing ran"


async def test_nightly_chaos_skips_a_leased_service_and_runs_the_next(
    temporal_client: Client, task_queue: str, sandbox_monitoring: SandboxMonitoring, clients: ActivityClients,
    tmp_path: Path
) -> None:
    first, second = (ChaosTarget(region=REGION, namespace=s.team, service=s.name) for s in sandbox_monitoring.services[:2])
    log = tmp_path / "calls.log"
    quick = {"title": "quick", "description": "records one call", "method": [
        {"type": "action", "name": "quick", "provider": call("record", path=str(log), label="quick")}]}
    (tmp_path / "quick.json").write_text(json.dumps(quick))
    hold = {**quick, "title": "hold", "method": [
        {"type": "action", "name": "hold", "provider": call("record_and_sleep", path=str(log), label="hold", seconds=300)}]}
    settings = chaos_settings(clients.settings, prometheus=clients.settings.prometheus.model_copy(
        update={"url": sandbox_monitoring.monitoring.prometheus_url}))
    settings = settings.model_copy(update={"chaos": settings.chaos.model_copy(update={"experiments_dir": tmp_path})})
    worker_clients = ActivityClients(settings=settings, kube=clients.kube, temporal=temporal_client, clusters=clients.clusters)
    async with chaos_engine(temporal_client, task_queue, worker_clients, runbooks_dir=SHIPPED_RUNBOOKS_DIR):
        holder = await start_chaos(temporal_client, task_queue, ChaosRequest(experiment=hold, targets=[first]))
        await asyncio.to_thread(eventually, "the holder's method", lambda: calls(log, "hold"), 120)
        entries = [{"experiment_file": "quick.json", "targets": [t.model_dump()]} for t in (first, second)]
        nightly = await start(temporal_client, task_queue, "nightly-chaos", experiments=entries, slo_percent=50)
        outcome = await asyncio.wait_for(nightly.result(), timeout=180)
        await holder.signal("abort", "test done")
        held = await asyncio.wait_for(holder.result(), timeout=60)
    assert outcome.status == "succeeded", outcome.error
    skipped, ran = outcome.outputs["experiments"]
    assert skipped["skipped"] and "refused by lease policy" in skipped["reason"], skipped
    assert not ran["skipped"] and ran["status"] == "completed", ran
    assert calls(log, "quick") == 1, "only the service nobody held was disturbed"
    assert held.status is ChaosStatus.ABORTED


async def test_the_dead_man_switch_aborts_on_a_breached_slo_and_rolls_back(
    temporal_client: Client, task_queue: str, sandbox_monitoring: SandboxMonitoring, clients: ActivityClients,
    tmp_path: Path
) -> None:
    service = sandbox_monitoring.services[0]
    target = ChaosTarget(region=REGION, namespace=service.team, service=service.name)
    settings = chaos_settings(clients.settings, prometheus=clients.settings.prometheus.model_copy(
        update={"url": sandbox_monitoring.monitoring.prometheus_url}))
    worker_clients = ActivityClients(settings=settings, kube=clients.kube, temporal=temporal_client, clusters=clients.clusters)
    log = tmp_path / "calls.log"
    exp = {"title": "slow dependency", "description": "holds the fault until stopped",
           "method": [{"type": "action", "name": "hold", "provider": call("record_and_sleep", path=str(log), label="method", seconds=300)}],
           "rollbacks": [{"type": "action", "name": "restore", "provider": call("record", path=str(log), label="rollback")}]}
    # the service's real p95 (its traffic in the sandbox's Prometheus) is above 0.001 ms: the check fails at once
    guard = SloGuard(interval=1, window="1m", latency_p95_max_ms=0.001)
    async with chaos_engine(temporal_client, task_queue, worker_clients):
        handle = await start_chaos(temporal_client, task_queue, ChaosRequest(experiment=exp, targets=[target], guard=guard))
        outcome = await asyncio.wait_for(handle.result(), timeout=120)
    assert outcome.status is ChaosStatus.ABORTED and outcome.reason.startswith("dead-man switch:"), outcome.reason
    assert "p95 latency" in outcome.reason and calls(log, "rollback") == 1
    assert outcome.checks and outcome.checks[-1].severity == "warning" and not outcome.checks[-1].passed
    assert outcome.score == 0.0


async def test_an_istio_delay_trips_the_dead_man_switch_and_the_route_is_restored(
    temporal_client: Client, task_queue: str, sandbox_monitoring: SandboxMonitoring, clients: ActivityClients,
) -> None:
    """The catalog's dependency-latency experiment, unchanged, through pitstop: its Istio delay (chaos.istio) raises
    geo-service's p95 in the sandbox's Prometheus, the dead-man switch (p95 above 600 ms) aborts the method, and the
    rollback restores the VirtualService exactly as it was."""
    from pitstop.sandbox.kube_objects import get_object

    experiment = json.loads((ROOT / "chaos" / "experiments" / "dependency-latency.json").read_text())
    namespace = "team-telematics"
    api = sandbox_monitoring.api_clients[REGION]

    def route() -> Any:
        found = get_object(api, kind="VirtualService", name="geo-service", namespace=namespace)
        assert found is not None
        return found["spec"], (found["metadata"].get("annotations") or {})

    before = route()
    p95 = ('histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",'
           f'region="{REGION}",destination_service_name="geo-service"}}[10s])))')

    def baseline() -> bool:
        answer = httpx.get(f"{sandbox_monitoring.monitoring.prometheus_url}/api/v1/query", params={"query": p95}, timeout=5)
        result = answer.json()["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) < 250
    await eventually_async(baseline, timeout=60, what="geo-service p95 under 250 ms before the experiment")
    environ = {"PROMETHEUS_URL": sandbox_monitoring.monitoring.prometheus_url, "CHAOS_REGION": REGION, "CHAOS_SLO_WINDOW": "10s"}
    base = chaos_settings(clients.settings, prometheus=clients.settings.prometheus.model_copy(
        update={"url": sandbox_monitoring.monitoring.prometheus_url}))
    settings = base.model_copy(update={"security": base.security.model_copy(
        update={"env_allowlist": [*base.security.env_allowlist, *environ]})})
    worker_clients = ActivityClients(settings=settings, kube=clients.kube, temporal=temporal_client,
                                     clusters=clients.clusters, environ=environ)
    target = ChaosTarget(region=REGION, namespace=namespace, service="geo-service")
    guard = SloGuard(interval=1, window="10s", latency_p95_max_ms=600)
    async with chaos_engine(temporal_client, task_queue, worker_clients):
        handle = await start_chaos(temporal_client, task_queue,
                                   ChaosRequest(experiment=experiment, targets=[target], guard=guard))
        outcome = await asyncio.wait_for(handle.result(), timeout=180)
    assert outcome.status is ChaosStatus.ABORTED and outcome.reason.startswith("dead-man switch:"), (
        outcome.status, outcome.reason, json.dumps(outcome.journal.get("steady_states"), default=str)[:1500])
    assert "p95 latency" in outcome.reason, outcome.reason
    assert not outcome.rollback_failures and route() == before, "the rollback restores the route exactly"


async def eventually_async(check: Any, *, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(1)


async def test_a_chaostoolkit_prometheus_probe_runs_unchanged(
    temporal_client: Client, task_queue: str, sandbox_monitoring: SandboxMonitoring, clients: ActivityClients,
) -> None:
    """An experiment written for chaostoolkit-prometheus (its `query` probe, `prometheus_base_url` from the
    experiment's own configuration block) runs through pitstop unchanged and reads the sandbox's real Prometheus."""
    experiment = {
        "version": "1.0.0", "title": "Prometheus answers", "description": "chaostoolkit-prometheus' query probe",
        "configuration": {"prometheus_base_url": {"type": "env", "key": "PROMETHEUS_URL"}},
        "method": [{"type": "probe", "name": "istio-requests", "provider": {
            "type": "python", "module": "chaosprometheus.probes", "func": "query",
            "arguments": {"query": 'count(istio_requests_total) or vector(0)'}}}],
        "rollbacks": [],
    }
    environ = {"PROMETHEUS_URL": sandbox_monitoring.monitoring.prometheus_url}
    base = chaos_settings(clients.settings)
    settings = base.model_copy(update={"security": base.security.model_copy(
        update={"env_allowlist": [*base.security.env_allowlist, *environ]})})
    worker_clients = ActivityClients(settings=settings, kube=clients.kube, temporal=temporal_client,
                                     clusters=clients.clusters, environ=environ)
    target = ChaosTarget(region=REGION, namespace=NAMESPACE, service="prometheus-reader")
    async with chaos_engine(temporal_client, task_queue, worker_clients):
        handle = await start_chaos(temporal_client, task_queue, ChaosRequest(experiment=experiment, targets=[target]))
        outcome = await asyncio.wait_for(handle.result(), timeout=120)
    assert outcome.status is ChaosStatus.COMPLETED, (outcome.status, outcome.reason)
    (probe,) = outcome.journal["run"]
    assert probe["status"] == "succeeded", probe
    assert probe["output"]["status"] == "success" and probe["output"]["data"]["result"], probe["output"]
