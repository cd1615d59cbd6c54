"""The shipped `backup-drill` runbook end to end: a team namespace of the sandbox fleet is exported from a region's
real API server as the worker's service account (ClusterRole `pitstop-backup-reader` bound in that namespace only,
as docs/permissions.md says), restored into a real scratch cluster (`sandbox.scratch_cluster`, configured as restore
target `scratch` the way a worker is) and verified object by object. Then a restored object is changed behind the
drill's back and `backup.verify` fails naming it; an unknown restore target and an unbound namespace are refused.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.config import new_client_from_config
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from pitstop.activities.backup import BackupExportActivities, BackupRestoreActivities
from pitstop.activities.clients import ActivityClients
from pitstop.activities.kube_api import KubeJson
from pitstop.backup import object_ref
from pitstop.config import Settings
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.backup import Backup, ExportArgs, VerifyArgs, VerifyResult
from pitstop.sandbox.binaries import KubeBinaries
from pitstop.sandbox.clusters import SandboxClusters
from pitstop.sandbox.fleet import SANDBOX_NAMESPACE, apply_fleet, expand_fleet, load_fleet_spec
from pitstop.sandbox.kube_objects import get_object
from pitstop.sandbox.orphans import owned_cluster_prefix
from pitstop.sandbox.scratch_cluster import SCRATCH, create_scratch_cluster, delete_scratch_cluster, scratch_kubeconfig
from tests.fixtures.monitoring import SANDBOX_TEST_SERVICES
from pitstop.workflows import ALL_WORKFLOWS

from .step_library_support import REGION, WORKER_SA, apply_deploy_rbac, impersonate, product_workers, sandbox_activity_clients

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]


@pytest.fixture(scope="module")
def scratch(kube_binaries: KubeBinaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real scratch cluster, named like the session's clusters so a killed session's is reaped; deleted after."""
    arguments = dict(state_dir=tmp_path_factory.mktemp("scratch-state"), bin_dir=kube_binaries.bin_dir,
                     cluster_prefix=f"{owned_cluster_prefix()}{uuid.uuid4().hex[:6]}")
    try:
        create_scratch_cluster(**arguments)  # type: ignore[arg-type]
        yield scratch_kubeconfig(arguments["state_dir"])  # type: ignore[arg-type]
    finally:
        delete_scratch_cluster(**arguments)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def source_namespace(kube_sandbox: SandboxClusters) -> str:
    """A team namespace of the session's fleet in REGION (applied here only if no one applied it yet), with the
    backup role bound to the worker's service account in it — and nowhere else."""
    admin = new_client_from_config(config_file=str(kube_sandbox.kubeconfig), context=kube_sandbox.contexts[REGION])
    services = expand_fleet(load_fleet_spec(), services=SANDBOX_TEST_SERVICES)
    try:
        if get_object(admin, kind="Namespace", name=SANDBOX_NAMESPACE, namespace=None) is None:
            apply_fleet(api_client=admin, region=REGION, services=services)
    finally:
        admin.close()
    apply_deploy_rbac(kube_sandbox, REGION)
    namespace = services[0].team
    bound = subprocess.run(
        ["/usr/bin/kubectl", "--kubeconfig", str(kube_sandbox.kubeconfig), "--context", kube_sandbox.contexts[REGION],
         "-n", namespace, "create", "rolebinding", "pitstop-backup-reader", "--clusterrole", "pitstop-backup-reader",
         "--serviceaccount", "pitstop:pitstop-worker", "--dry-run=client", "-o", "yaml"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    applied = subprocess.run(
        ["/usr/bin/kubectl", "--kubeconfig", str(kube_sandbox.kubeconfig), "--context", kube_sandbox.contexts[REGION],
         "apply", "-f", "-"], input=bound, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    return namespace


@pytest.fixture(scope="module")
def as_worker(kube_sandbox: SandboxClusters, scratch: Path) -> Iterator[ActivityClients]:
    """The worker's clients: fleet regions as its service account, the scratch cluster as restore target."""
    clients = sandbox_activity_clients(kube_sandbox, backup={"restore_targets": {SCRATCH: {"kubeconfig": scratch, "context": SCRATCH}}})
    impersonate(clients, WORKER_SA)  # fleet regions only: the restore target keeps its own credentials
    yield clients
    for api_client in [*clients.kube.values(), *clients.restore_targets.values()]:
        api_client.close()


async def run_drill(client: Client, task_queue: str, namespace: str) -> RunbookOutcome:
    outcome: RunbookOutcome = await client.execute_workflow(
        RUNBOOK_WORKFLOW,
        RunbookRequest(runbook="backup-drill", inputs={"region": REGION, "namespace": namespace}, trigger="cli", started_by="test"),
        id=f"backup-drill-{uuid.uuid4().hex[:8]}", task_queue=task_queue, result_type=RunbookOutcome,
    )
    return outcome


async def test_backup_drill_restores_a_team_namespace_into_the_scratch_cluster_and_verifies_it(
    temporal_client: Client, task_queue: str, source_namespace: str, as_worker: ActivityClients, scratch: Path,
) -> None:
    settings = Settings(temporal={"task_queue": task_queue}, kubernetes=as_worker.settings.kubernetes)
    async with product_workers(temporal_client, settings, as_worker, ALL_WORKFLOWS):
        outcome = await run_drill(temporal_client, task_queue, source_namespace)
    assert outcome.status == "succeeded", outcome
    backup = Backup.model_validate(outcome.outputs["export"])
    verified = VerifyResult.model_validate(outcome.outputs["verify"])
    assert backup.counts.get("Deployment", 0) >= 1 and backup.counts.get("Service", 0) >= 1, backup.counts
    assert not any(obj["kind"] == "Secret" for obj in backup.objects)
    assert sorted(verified.verified) == sorted(backup.checksums) and verified.ok, verified

    # the restored Deployment is the source's, in the scratch cluster (its own controllers reconcile it there)
    scratch_api = new_client_from_config(config_file=str(scratch), context=SCRATCH)
    try:
        name = next(obj["metadata"]["name"] for obj in backup.objects if obj["kind"] == "Deployment")
        path = f"/apis/apps/v1/namespaces/{source_namespace}/deployments/{name}"
        restored = KubeJson(scratch_api).get(path)
        source = next(obj for obj in backup.objects if object_ref(obj) == f"Deployment/{name}")
        assert restored["spec"]["template"] == source["spec"]["template"]

        # changed behind the drill's back: verify fails and names exactly that object
        KubeJson(scratch_api).patch(path, {"spec": {"replicas": restored["spec"]["replicas"] + 3}}, patch_type="merge")
        verify = BackupRestoreActivities(as_worker).verify
        with pytest.raises(ApplicationError) as failed:
            ActivityEnvironment().run(verify, StepInvocation(args=VerifyArgs(target=SCRATCH, backup=backup)))
        assert failed.value.type == "RestoreMismatch" and f"Deployment/{name}" in str(failed.value), failed.value
        assert "changed ['Deployment/" in str(failed.value)
    finally:
        scratch_api.close()

    # a target the worker is not configured with is refused (a runbook cannot point the worker at any cluster)
    with pytest.raises(ApplicationError, match="unknown restore target 'prod-eu'"):
        ActivityEnvironment().run(verify, StepInvocation(args=VerifyArgs(target="prod-eu", backup=backup)))


def test_export_is_forbidden_where_the_backup_role_is_not_bound(kube_sandbox: SandboxClusters, as_worker: ActivityClients,
                                                                 source_namespace: str) -> None:
    """Least privilege: the worker may read ConfigMaps only where a RoleBinding grants `pitstop-backup-reader`."""
    other = next(ns for ns in ("team-identity", "team-platform", "team-telematics") if ns != source_namespace)
    export = BackupExportActivities(as_worker.for_region(REGION)).export
    with pytest.raises(ApplicationError) as refused:
        ActivityEnvironment().run(export, StepInvocation(args=ExportArgs(region=REGION, namespace=other)))
    assert refused.value.type == "Forbidden", refused.value
