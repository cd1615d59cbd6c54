"""The failover's data-layer hook, the sandbox's implementation, against the real API servers of both regions: the
shipped `data-switch-primary` runbook (as failover-region calls it) makes the first survivor the primary in every
survivor's copy of the endpoint record, as the worker's service account (ClusterRole `pitstop-data-endpoint` bound in
the record's namespace only), reports the RPO from the new primary's last replication time and leaves the failing
region's copy alone; a retried switch after its write went through still answers the original primary."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes.config import new_client_from_config
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from pitstop.activities.clients import ActivityClients
from pitstop.activities.data_layer import DataLayerActivities
from pitstop.activities.kube_api import KubeJson
from pitstop.config import Settings
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.data import SwitchPrimaryArgs, SwitchPrimaryResult
from pitstop.sandbox.clusters import SandboxClusters
from pitstop.workflows import ALL_WORKFLOWS

from .step_library_support import WORKER_SA, apply_deploy_rbac, impersonating, product_workers

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

NAMESPACE = "team-platform"
FAILING, SURVIVOR = "eu-central", "us-east"


@pytest.fixture(scope="module")
def record(kube_sandbox: SandboxClusters) -> Iterator[str]:
    """An endpoint record in both regions: primary eu-central, us-east's replica 4 s behind; the role bound in its
    namespace."""
    name = f"db-endpoint-{uuid.uuid4().hex[:5]}"
    replicated = (datetime.now(UTC) - timedelta(seconds=4)).isoformat()
    for region, context in kube_sandbox.contexts.items():
        apply_deploy_rbac(kube_sandbox, region)
        binding = subprocess.run(
            ["/usr/bin/kubectl", "--kubeconfig", str(kube_sandbox.kubeconfig), "--context", context, "-n", NAMESPACE,
             "create", "rolebinding", "pitstop-data-endpoint", "--clusterrole", "pitstop-data-endpoint",
             "--serviceaccount", "pitstop:pitstop-worker", "--dry-run=client", "-o", "yaml"],
            capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
        applied = subprocess.run(["/usr/bin/kubectl", "--kubeconfig", str(kube_sandbox.kubeconfig), "--context", context,
                                  "apply", "-f", "-"], input=binding, capture_output=True, text=True, timeout=60, check=False)
        assert applied.returncode == 0, applied.stderr
        admin = new_client_from_config(config_file=str(kube_sandbox.kubeconfig), context=context)
        try:
            KubeJson(admin).post(f"/api/v1/namespaces/{NAMESPACE}/configmaps", {
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                "data": {"primary": FAILING, f"last_replicated_at.{SURVIVOR}": replicated}})
        finally:
            admin.close()
    yield name


def primary_in(kube_sandbox: SandboxClusters, region: str, name: str) -> str:
    admin = new_client_from_config(config_file=str(kube_sandbox.kubeconfig), context=kube_sandbox.contexts[region])
    try:
        return str(KubeJson(admin).get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/{name}")["data"]["primary"])
    finally:
        admin.close()


@pytest.fixture(scope="module")
def as_worker(kube_sandbox: SandboxClusters) -> Iterator[ActivityClients]:
    clients = impersonating(kube_sandbox, WORKER_SA)
    yield clients
    for api_client in clients.kube.values():
        api_client.close()


async def test_the_shipped_data_hook_switches_the_survivors_and_reports_the_rpo(
    temporal_client: Client, task_queue: str, kube_sandbox: SandboxClusters, record: str, as_worker: ActivityClients,
) -> None:
    settings = Settings(temporal={"task_queue": task_queue}, kubernetes=as_worker.settings.kubernetes)
    async with product_workers(temporal_client, settings, as_worker, ALL_WORKFLOWS):
        outcome = await temporal_client.execute_workflow(
            RUNBOOK_WORKFLOW, RunbookRequest(runbook="data-switch-primary", trigger="cli", started_by="test", inputs={
                "failing_region": FAILING, "survivors": [SURVIVOR], "name": record}),
            id=f"data-{uuid.uuid4().hex[:8]}", task_queue=task_queue, result_type=RunbookOutcome)
    assert outcome.status == "succeeded", outcome
    (switched,) = [SwitchPrimaryResult.model_validate(o) for o in outcome.outputs["switch"]]
    assert switched.previous_primary == FAILING and switched.primary == SURVIVOR and switched.changed
    assert switched.rpo_seconds is not None and 4 <= switched.rpo_seconds < 300, switched
    assert primary_in(kube_sandbox, SURVIVOR, record) == SURVIVOR
    assert primary_in(kube_sandbox, FAILING, record) == FAILING  # the failing region's copy is never touched


def test_a_retried_switch_answers_the_original_primary(kube_sandbox: SandboxClusters, record: str,
                                                       as_worker: ActivityClients) -> None:
    """The worker died after the write, before the result was recorded: the retry finds the undo value."""
    switch = DataLayerActivities(as_worker.for_region(FAILING)).switch_primary
    invocation = StepInvocation(args=SwitchPrimaryArgs(region=FAILING, namespace=NAMESPACE, name=record, primary=SURVIVOR),
                                run_id=f"retry-{uuid.uuid4().hex[:6]}", step_id="switch")
    environment = ActivityEnvironment()
    first = environment.run(switch, invocation)
    again = environment.run(switch, invocation)  # same activity, same workflow run: a Temporal retry
    assert (first.previous_primary, again.previous_primary) == (FAILING, FAILING)
    assert again.changed and "earlier attempt" in again.summary
    restored = environment.run(switch, invocation.model_copy(update={
        "args": invocation.args.model_copy(update={"primary": again.previous_primary}), "step_id": "undo"}))
    assert restored.previous_primary == SURVIVOR and primary_in(kube_sandbox, FAILING, record) == FAILING
