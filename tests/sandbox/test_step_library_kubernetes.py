"""Kubernetes step activities against the real sandbox API servers (kube-apiserver + controller-manager +
scheduler + kwok), called through `ActivityEnvironment` with clients built by `workers.clients`."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from pitstop.activities.clients import ActivityClients
from pitstop.activities.kube_api import KubeJson, deployment_path
from pitstop.activities.kubernetes import RESTART_KEY_ANNOTATION, RESTARTED_AT_ANNOTATION, KubernetesActivities
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.kubernetes import (
    DeploymentArgs,
    DrainArgs,
    NodeArgs,
    NodeEvidenceArgs,
    PatchArgs,
    RolloutUndoArgs,
    ScaleArgs,
    ServiceEvidenceArgs,
    SetImageArgs,
    WaitForRolloutArgs,
)
from pitstop.undo_values import UNDO_VALUES_ANNOTATION
from pitstop.sandbox.clusters import SandboxClusters

from .step_library_support import (
    NAMESPACE,
    REGION,
    WORKER_SA,
    Recorder,
    apply_deploy_rbac,
    closed_after,
    create_deployment,
    deployment_manifest,
    eventually,
    impersonating,
    sandbox_activity_clients,
    tainted_node,
    unique,
)

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def clients(kube_sandbox: SandboxClusters) -> Iterator[ActivityClients]:
    yield from closed_after(sandbox_activity_clients(kube_sandbox))


@pytest.fixture
def kube(clients: ActivityClients) -> KubernetesActivities:
    return KubernetesActivities(clients)


@pytest.fixture
def api(clients: ActivityClients) -> KubeJson:
    return KubeJson(clients.kube[REGION])


def call(args: Any, *, dry_run: bool = False, run_id: str = "run-1", step_id: str = "step-1") -> StepInvocation[Any]:
    return StepInvocation[type(args)](args=args, dry_run=dry_run, run_id=run_id, step_id=step_id)  # type: ignore[misc]


def wait_rollout(kube: KubernetesActivities, name: str, recorder: Recorder | None = None) -> Any:
    recorder = recorder or Recorder()
    args = WaitForRolloutArgs(region=REGION, namespace=NAMESPACE, name=name, timeout_seconds=120, poll_interval_seconds=0.5)
    return recorder.run(kube.wait_for_rollout, call(args))


def test_scale_is_absolute_idempotent_and_honours_dry_run(kube: KubernetesActivities, api: KubeJson) -> None:
    name = unique("scale")
    create_deployment(api.api_client, deployment_manifest(name, "registry.example/scale:1.0", replicas=2))
    env = Recorder()
    scale = lambda n, **kw: env.run(kube.scale, call(ScaleArgs(region=REGION, namespace=NAMESPACE, name=name, replicas=n), **kw))  # noqa: E731

    first = scale(4)
    assert (first.changed, first.previous_replicas, first.replicas) == (True, 2, 4)
    done = wait_rollout(kube, name)
    assert done.available_replicas == 4 and done.rollout_complete

    retry = scale(4)  # what a Temporal retry of the same step finds after its patch went through
    assert (retry.changed, retry.previous_replicas, retry.replicas) == (True, 2, 4)
    again = scale(4, step_id="step-2")
    assert again.changed is False and "already has 4 replicas" in again.summary

    generation = api.get(deployment_path(NAMESPACE, name))["metadata"]["generation"]
    preview = scale(1, dry_run=True)
    assert preview.changed is True and preview.summary.startswith("would scale")
    after = api.get(deployment_path(NAMESPACE, name))
    assert after["spec"]["replicas"] == 4 and after["metadata"]["generation"] == generation  # nothing written


def test_set_image_wait_for_rollout_then_undo_returns_to_previous_image(kube: KubernetesActivities, api: KubeJson) -> None:
    name = unique("undo")
    create_deployment(api.api_client, deployment_manifest(name, "registry.example/undo:1.0", replicas=3))
    wait_rollout(kube, name)
    env = Recorder()
    set_image = SetImageArgs(region=REGION, namespace=NAMESPACE, name=name, container="app", image="registry.example/undo:2.0")

    preview = env.run(kube.set_image, call(set_image, dry_run=True))
    assert preview.changed and preview.previous_image == "registry.example/undo:1.0"
    assert api.get(deployment_path(NAMESPACE, name))["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.0")

    result = env.run(kube.set_image, call(set_image))
    assert (result.changed, result.previous_image, result.image) == (True, "registry.example/undo:1.0", "registry.example/undo:2.0")
    retry = env.run(kube.set_image, call(set_image))  # a retry of the same step: the image it replaced
    assert (retry.changed, retry.previous_image, retry.image) == (True, "registry.example/undo:1.0", "registry.example/undo:2.0")
    assert env.run(kube.set_image, call(set_image, step_id="step-2")).changed is False

    recorder = Recorder()
    rolled = wait_rollout(kube, name, recorder)
    assert rolled.images == {"app": "registry.example/undo:2.0"} and rolled.revision == 2 and rolled.updated_replicas == 3
    assert recorder.heartbeats, "wait_for_rollout must heartbeat"

    undo = RolloutUndoArgs(region=REGION, namespace=NAMESPACE, name=name)
    preview_undo = env.run(kube.rollout_undo, call(undo, dry_run=True, step_id="undo"))
    assert preview_undo.changed and preview_undo.to_revision == 1
    undone = env.run(kube.rollout_undo, call(undo, step_id="undo"))
    assert (undone.changed, undone.from_revision, undone.to_revision) == (True, 2, 1)
    assert undone.images == {"app": "registry.example/undo:1.0"}
    back = wait_rollout(kube, name)
    assert back.images == {"app": "registry.example/undo:1.0"} and back.revision == 3  # kubectl semantics: rev 1 becomes 3

    retried = env.run(kube.rollout_undo, call(undo, step_id="undo"))  # a retry of the same step does not flip back
    assert (retried.changed, retried.from_revision, retried.to_revision) == (True, 2, 1)
    assert wait_rollout(kube, name).images == {"app": "registry.example/undo:1.0"}

    last = env.run(kube.last_rollout, call(DeploymentArgs(region=REGION, namespace=NAMESPACE, name=name)))
    assert last.revision == 3 and last.replica_set and last.rolled_out_at is not None

    evidence = env.run(kube.service_evidence, call(ServiceEvidenceArgs(region=REGION, namespace=NAMESPACE, name=name)))
    assert len(evidence.pods) == 3 and all(p.ready and p.image.endswith(":1.0") for p in evidence.pods)
    assert any(e.reason == "ScalingReplicaSet" for e in evidence.events)


def test_a_retry_after_the_write_reports_the_original_previous_values(kube: KubernetesActivities, api: KubeJson) -> None:
    """What a Temporal retry does after a worker died between the PATCH and the recorded result: the same
    invocation again. It must answer the values found before the change, or a compensation restores nothing."""
    name = unique("retry")
    path = deployment_path(NAMESPACE, name)
    create_deployment(api.api_client, deployment_manifest(name, "registry.example/retry:1.0", replicas=2))
    env = Recorder()
    scale = call(ScaleArgs(region=REGION, namespace=NAMESPACE, name=name, replicas=5), run_id="run-r", step_id="scale")
    image = call(SetImageArgs(region=REGION, namespace=NAMESPACE, name=name, container="app", image="registry.example/retry:2.0"),
                 run_id="run-r", step_id="image")

    assert env.run(kube.scale, scale).previous_replicas == 2
    assert env.run(kube.set_image, image).previous_image == "registry.example/retry:1.0"
    api.patch(path, {"spec": {"replicas": 3}}, patch_type="merge")  # another writer between the attempts (an HPA)
    retried_scale = env.run(kube.scale, scale)
    retried_image = env.run(kube.set_image, image)
    assert (retried_scale.changed, retried_scale.previous_replicas, retried_scale.replicas) == (True, 2, 5)
    assert (retried_image.changed, retried_image.previous_image) == (True, "registry.example/retry:1.0")
    dep = api.get(path)
    assert dep["spec"]["replicas"] == 5, "the retry still sets the absolute count"
    record = json.loads(dep["metadata"]["annotations"][UNDO_VALUES_ANNOTATION])
    assert sorted(record.values(), key=str) == [2, "registry.example/retry:1.0"]

    # a later run reusing the workflow id is another execution: it never takes this run's values for its own
    env.env.info = dataclasses.replace(env.env.info, workflow_run_id="another-execution")
    reused = env.run(kube.scale, scale)
    assert (reused.changed, reused.previous_replicas) == (False, 5)
    assert env.run(kube.set_image, image).previous_image == "registry.example/retry:2.0"


def test_rollout_restart_happens_once_per_step(kube: KubernetesActivities, api: KubeJson) -> None:
    name = unique("restart")
    create_deployment(api.api_client, deployment_manifest(name, "registry.example/restart:1.0"))
    wait_rollout(kube, name)
    env = Recorder()
    args = DeploymentArgs(region=REGION, namespace=NAMESPACE, name=name)

    first = env.run(kube.rollout_restart, call(args, run_id="run-7", step_id="restart"))
    assert first.changed and first.restart_key == "run-7/restart"
    generation = api.get(deployment_path(NAMESPACE, name))["metadata"]["generation"]
    retry = env.run(kube.rollout_restart, call(args, run_id="run-7", step_id="restart"))
    assert retry.changed is False and retry.restarted_at == first.restarted_at
    dep = api.get(deployment_path(NAMESPACE, name))
    assert dep["metadata"]["generation"] == generation
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations[RESTART_KEY_ANNOTATION] == "run-7/restart" and annotations[RESTARTED_AT_ANNOTATION]
    assert wait_rollout(kube, name).revision == 2

    other_step = env.run(kube.rollout_restart, call(args, run_id="run-7", step_id="restart-again"))
    assert other_step.changed


def test_unknown_deployment_is_a_non_retryable_error_naming_it(kube: KubernetesActivities) -> None:
    env = Recorder()
    for fn, args in [
        (kube.get_deployment, DeploymentArgs(region=REGION, namespace=NAMESPACE, name="no-such-service")),
        (kube.scale, ScaleArgs(region=REGION, namespace=NAMESPACE, name="no-such-service", replicas=2)),
        (kube.rollout_undo, RolloutUndoArgs(region=REGION, namespace=NAMESPACE, name="no-such-service")),
    ]:
        with pytest.raises(ApplicationError) as info:
            env.run(fn, call(args))
        assert info.value.non_retryable and info.value.type == "NotFound"
        assert "deployment team-platform/no-such-service not found in region eu-central" in str(info.value)
    with pytest.raises(ApplicationError, match="unknown region 'mars'") as info:
        env.run(kube.get_deployment, call(DeploymentArgs(region="mars", name="x")))
    assert info.value.non_retryable


def test_set_image_of_unknown_container_and_undo_without_history_are_domain_errors(kube: KubernetesActivities, api: KubeJson) -> None:
    name = unique("domain")
    create_deployment(api.api_client, deployment_manifest(name, "registry.example/domain:1.0"))
    env = Recorder()
    with pytest.raises(ApplicationError, match="has no container 'sidecar'") as info:
        env.run(kube.set_image, call(SetImageArgs(region=REGION, namespace=NAMESPACE, name=name, container="sidecar", image="x:1")))
    assert info.value.non_retryable
    eventually("first revision", lambda: api.get(deployment_path(NAMESPACE, name))["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision"))
    with pytest.raises(ApplicationError, match="no previous revision") as info:
        env.run(kube.rollout_undo, call(RolloutUndoArgs(region=REGION, namespace=NAMESPACE, name=name)))
    assert info.value.non_retryable


def test_progress_deadline_exceeded_fails_the_wait_for_good(kube: KubernetesActivities, api: KubeJson) -> None:
    name = unique("stuck")
    manifest = deployment_manifest(name, "registry.example/stuck:1.0", nodeSelector={"pitstop.test/no-such-node": "true"})
    manifest["spec"]["progressDeadlineSeconds"] = 2
    create_deployment(api.api_client, manifest)
    with pytest.raises(ApplicationError) as info:
        wait_rollout(kube, name)
    assert info.value.type == "ProgressDeadlineExceeded" and info.value.non_retryable
    assert name in str(info.value)


def test_patch_previews_with_a_server_dry_run_and_is_idempotent(kube: KubernetesActivities, api: KubeJson) -> None:
    name = unique("patch")
    create_deployment(api.api_client, deployment_manifest(name, "registry.example/patch:1.0"))
    env = Recorder()
    patch = {"metadata": {"labels": {"tier": "gold"}}, "spec": {"minReadySeconds": 5}}
    args = PatchArgs(region=REGION, namespace=NAMESPACE, name=name, patch=patch, patch_type="merge")

    preview = env.run(kube.patch, call(args, dry_run=True))
    assert preview.changed and preview.changed_fields == ["spec.minReadySeconds", "metadata.labels.tier"]
    assert "tier" not in api.get(deployment_path(NAMESPACE, name))["metadata"]["labels"]

    applied = env.run(kube.patch, call(args))
    assert applied.changed and api.get(deployment_path(NAMESPACE, name))["metadata"]["labels"]["tier"] == "gold"
    assert env.run(kube.patch, call(args)).changed is False

    with pytest.raises(ApplicationError, match="invalid change to deployment") as info:
        env.run(kube.patch, call(PatchArgs(region=REGION, namespace=NAMESPACE, name=name, patch={"spec": {"replicas": -3}})))
    assert info.value.non_retryable


@pytest.fixture
def drain_node(api: KubeJson) -> Iterator[str]:
    """A dedicated kwok node (tainted, so only this test's pods land on it)."""
    with tainted_node(api, "drain-node") as name:
        yield name


def test_cordon_and_drain_evict_through_the_eviction_api_respecting_pdbs(
    kube: KubernetesActivities, api: KubeJson, drain_node: str
) -> None:
    name = unique("drained")
    create_deployment(
        api.api_client,
        deployment_manifest(
            name, "registry.example/drained:1.0", replicas=2,
            nodeSelector={"kubernetes.io/hostname": drain_node},
            tolerations=[{"key": "pitstop.test/drain", "operator": "Exists", "effect": "NoSchedule"}],
        ),
    )
    wait_rollout(kube, name)
    pdb = {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": name}}},
    }
    api.post(f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets", pdb)
    eventually("PDB status", lambda: (api.get(f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets/{name}").get("status") or {}).get("observedGeneration"))
    pods_before = {p["metadata"]["uid"] for p in api.items(f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=f"app={name}")}
    env = Recorder()
    node_args = NodeArgs(region=REGION, node=drain_node)

    preview = env.run(kube.drain, call(DrainArgs(region=REGION, node=drain_node), dry_run=True))
    assert preview.changed and len(preview.evicted) == 2 and preview.summary.startswith("would cordon and evict 2 pods")
    assert not api.get(f"/api/v1/nodes/{drain_node}")["spec"].get("unschedulable")

    with pytest.raises(ApplicationError) as info:  # the PDB forbids any disruption: 429 until the deadline
        env.run(kube.drain, call(DrainArgs(region=REGION, node=drain_node, timeout_seconds=3, poll_interval_seconds=0.5)))
    assert info.value.type == "DrainTimeout" and "disruption budgets" in str(info.value)
    assert api.get(f"/api/v1/nodes/{drain_node}")["spec"]["unschedulable"] is True  # cordoned first
    assert env.run(kube.cordon, call(node_args)).changed is False

    api.request("DELETE", f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets/{name}")
    recorder = Recorder()
    drained = recorder.run(kube.drain, call(DrainArgs(region=REGION, node=drain_node, timeout_seconds=60, poll_interval_seconds=0.5)))
    assert drained.changed and len(drained.evicted) == 2 and all(ref.startswith(f"{NAMESPACE}/{name}-") for ref in drained.evicted)
    assert recorder.heartbeats
    remaining = {p["metadata"]["uid"] for p in api.items("/api/v1/pods", fieldSelector=f"spec.nodeName={drain_node}")}
    assert not remaining & pods_before, "the evicted pods are gone from the node"

    uncordoned = env.run(kube.uncordon, call(node_args))
    assert uncordoned.changed and uncordoned.unschedulable is False
    assert not api.get(f"/api/v1/nodes/{drain_node}")["spec"].get("unschedulable")


def test_deploy_rbac_grants_exactly_what_the_steps_need(kube_sandbox: SandboxClusters, api: KubeJson, drain_node: str) -> None:
    """deploy/rbac.yaml applied to the real API server; the steps run as the worker's service account."""
    apply_deploy_rbac(kube_sandbox)
    name = unique("rbac")
    create_deployment(
        api.api_client,
        deployment_manifest(
            name, "registry.example/rbac:1.0", replicas=1, nodeSelector={"kubernetes.io/hostname": drain_node},
            tolerations=[{"key": "pitstop.test/drain", "operator": "Exists", "effect": "NoSchedule"}],
        ),
    )
    as_worker = impersonating(kube_sandbox, WORKER_SA)
    kube, env = KubernetesActivities(as_worker), Recorder()
    try:
        wait_rollout(kube, name)
        dep = DeploymentArgs(region=REGION, namespace=NAMESPACE, name=name)
        assert env.run(kube.scale, call(ScaleArgs(region=REGION, namespace=NAMESPACE, name=name, replicas=2))).changed
        image = SetImageArgs(region=REGION, namespace=NAMESPACE, name=name, container="app", image="registry.example/rbac:2.0")
        assert env.run(kube.set_image, call(image)).changed
        wait_rollout(kube, name)
        assert env.run(kube.rollout_undo, call(RolloutUndoArgs(region=REGION, namespace=NAMESPACE, name=name))).changed
        assert env.run(kube.rollout_restart, call(dep)).changed
        patch = PatchArgs(region=REGION, namespace=NAMESPACE, name=name, patch={"metadata": {"labels": {"rbac": "ok"}}})
        assert env.run(kube.patch, call(patch)).changed
        assert env.run(kube.service_evidence, call(ServiceEvidenceArgs(region=REGION, namespace=NAMESPACE, name=name))).pods
        assert env.run(kube.last_rollout, call(dep)).revision
        evidence = env.run(kube.node_evidence, call(NodeEvidenceArgs(region=REGION, node=drain_node)))
        assert any(c.type == "Ready" for c in evidence.conditions) and evidence.pods, evidence
        drained = env.run(kube.drain, call(DrainArgs(region=REGION, node=drain_node, timeout_seconds=60, poll_interval_seconds=0.5)))
        assert drained.evicted
        assert env.run(kube.uncordon, call(NodeArgs(region=REGION, node=drain_node))).changed

        # and nothing more: pods are evicted, never deleted (releases' Deployment deletes: tests/sandbox/test_rbac_worker.py),
        # and an unauthorized caller gets a non-retryable "forbidden"
        pod = api.items(f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=f"app={name}")[0]["metadata"]["name"]
        with pytest.raises(ApiException) as denied:
            KubeJson(as_worker.kube[REGION]).request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}")
        assert denied.value.status == 403
        nobody = impersonating(kube_sandbox, "system:serviceaccount:pitstop:nobody")
        with pytest.raises(ApplicationError, match="forbidden: deployment") as info:
            Recorder().run(KubernetesActivities(nobody).get_deployment, call(dep))
        assert info.value.non_retryable and info.value.type == "Forbidden"
    finally:
        for api_client in as_worker.kube.values():
            api_client.close()


def test_wait_for_rollout_stops_promptly_when_cancelled(kube: KubernetesActivities, api: KubeJson) -> None:
    name = unique("pending")
    create_deployment(api.api_client, deployment_manifest(name, "registry.example/pending:1.0", nodeSelector={"pitstop.test/no-such-node": "true"}))
    env = ActivityEnvironment()
    args = WaitForRolloutArgs(region=REGION, namespace=NAMESPACE, name=name, timeout_seconds=600, poll_interval_seconds=30)
    outcome: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            env.run(kube.wait_for_rollout, call(args))
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    started = time.monotonic()
    thread.start()
    time.sleep(1.0)
    env.cancel()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the wait did not notice the cancellation"
    assert isinstance(outcome["error"], CancelledError) and time.monotonic() - started < 10
