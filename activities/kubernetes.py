"""Kubernetes activities: Deployment reads and rollouts, node cordon/drain, incident evidence, the fleet inventory.

Execution model: these are **synchronous** activities (`def`, not `async def`). The kubernetes Python client
is synchronous, so the worker runs them in its activity thread pool executor (`Worker(activity_executor=
ThreadPoolExecutor(...))`, see `workers/worker.py`); concurrency per cluster is bounded by the regional
worker's `max_concurrent_activities`. Long activities heartbeat and sleep with
`activity.wait_for_cancelled_sync`, so a cancellation interrupts the wait.

Rules every activity follows: absolute target state, read before write (`changed=False` when already
there), `dry_run` reads and reports what would change without writing, domain errors (unknown object,
forbidden, invalid) raise non-retryable `ApplicationError`s naming the object, transient errors raise and
Temporal retries them. Objects are handled as the API's plain JSON through `KubeJson`.

Steps whose output feeds a compensation (`scale` -> `previous_replicas`, `set_image` -> `previous_image`,
`rollout_undo` -> `from_revision`) record that value on the Deployment in the same patch as the change
(`pitstop.undo_values`), so a retry after the write went through returns the original value, not the new one.
`patch` returns no previous values (its compensation is a patch the runbook spells out), so it records none.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.gitops import DeploymentEdit, git_source
from pitstop.hygiene.inventory import RegionInventory, region_inventory
from pitstop.rollout import (
    container_images,
    previous_revision,
    revision_of,
    rollback_patch,
    rollout_progress,
    same_template,
)
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.kubernetes import (
    ConditionSummary,
    DeploymentArgs,
    DeploymentStatus,
    DrainArgs,
    DrainResult,
    EventSummary,
    InventoryArgs,
    LastRolloutResult,
    NodeArgs,
    NodeEvidenceArgs,
    NodeEvidenceResult,
    NodeResult,
    PatchArgs,
    PatchResult,
    PodSummary,
    RolloutRestartResult,
    RolloutUndoArgs,
    RolloutUndoResult,
    ScaleArgs,
    ScaleResult,
    ServiceEvidenceArgs,
    ServiceEvidenceResult,
    SetImageArgs,
    SetImageResult,
    WaitForRolloutArgs,
    WaitForRolloutResult,
)
from pitstop.undo_values import EARLIER_ATTEMPT, UNDO_VALUES_ANNOTATION, recorded_previous, with_previous

from .clients import ActivityClients
from .gitops import commit_and_wait
from .idempotency import idempotency_key, undo_key
from .kube_api import WORKLOAD_PATHS, KubeJson, deployment_path, label_selector
from .kube_errors import api_error_detail, kube_errors, retry_on_conflict
from .sync_sleep import sleep_or_cancel
from .traffic import ISTIO_GROUP_VERSION

MAX_NODE_EVIDENCE_PODS = 50
INVENTORY_PATHS = {  # what `kubernetes.inventory` lists, in every namespace
    "deployments": "/apis/apps/v1/deployments",
    "disruption_budgets": "/apis/policy/v1/poddisruptionbudgets",
    "virtual_services": f"/apis/{ISTIO_GROUP_VERSION}/virtualservices",
    "destination_rules": f"/apis/{ISTIO_GROUP_VERSION}/destinationrules",
}
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
RESTART_KEY_ANNOTATION = "pitstop.io/restart-key"
UNDO_KEY_ANNOTATION = "pitstop.io/undo-key"


# ---------------------------------------------------------------- summaries


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return _meta(obj).get("annotations") or {}


def _undo_metadata(obj: dict[str, Any], key: str, previous: Any) -> dict[str, Any]:
    """The `metadata` of a patch that records `previous` under `key` (`pitstop.undo_values`), pinned to the
    object's resourceVersion: the record is read-modify-write, so a concurrent change answers 409 (re-read)."""
    return {
        "resourceVersion": _meta(obj)["resourceVersion"],
        "annotations": {UNDO_VALUES_ANNOTATION: with_previous(_annotations(obj), key, previous)},
    }


def _via_git(dep: dict[str, Any]) -> str:
    source = git_source(dep)
    return "" if source is None else f" through git ({source.repository}:{source.path})"


def git_record_key(record_key: str) -> str:
    """Where `rollout_undo` of a git-managed Deployment records its edit (beside the revisions, same annotation)."""
    return f"{record_key}#git"


def rollback_edit(template: dict[str, Any]) -> DeploymentEdit:
    """The git edit of a rollback to a ReplicaSet's pod `template`: its images and its labels (version), not the
    hash label the ReplicaSet controller adds."""
    labels = {k: v for k, v in (_meta(template).get("labels") or {}).items() if k != "pod-template-hash"}
    return DeploymentEdit(images=container_images(template), template_labels=labels)


def summarize_deployment(dep: dict[str, Any], region: str) -> DeploymentStatus:
    meta, spec, status = _meta(dep), dep.get("spec") or {}, dep.get("status") or {}
    progress = rollout_progress(dep)
    return DeploymentStatus(
        region=region,
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        generation=meta.get("generation", 0),
        observed_generation=status.get("observedGeneration", 0),
        replicas=spec.get("replicas", 1),
        updated_replicas=status.get("updatedReplicas", 0),
        ready_replicas=status.get("readyReplicas", 0),
        available_replicas=status.get("availableReplicas", 0),
        unavailable_replicas=status.get("unavailableReplicas", 0),
        revision=revision_of(dep),
        images=container_images(spec.get("template") or {}),
        paused=bool(spec.get("paused")),
        conditions=[
            ConditionSummary(
                type=c.get("type", ""), status=c.get("status", ""), reason=c.get("reason", ""), message=c.get("message", "")
            )
            for c in status.get("conditions") or []
        ],
        rollout_complete=progress.done,
        rollout_message=progress.message,
        summary=f"deployment {meta.get('namespace')}/{meta.get('name')} in {region}: "
        f"{status.get('availableReplicas', 0)}/{spec.get('replicas', 1)} available, {progress.message}",
    )


def _controller(obj: dict[str, Any]) -> dict[str, Any] | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def _pod_summary(pod: dict[str, Any]) -> PodSummary:
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    statuses = status.get("containerStatuses") or []
    reason = status.get("reason", "")
    for cs in statuses:
        state = cs.get("state") or {}
        for key in ("waiting", "terminated"):
            if key in state and (state[key] or {}).get("reason"):
                reason = state[key]["reason"]
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    containers = spec.get("containers") or []
    return PodSummary(
        name=_meta(pod).get("name", ""),
        phase=status.get("phase", ""),
        ready=ready,
        restarts=sum(cs.get("restartCount", 0) for cs in statuses),
        node=spec.get("nodeName", ""),
        reason=reason or "",
        image=containers[0].get("image", "") if containers else "",
    )


def _node_and_pods(api: KubeJson, node: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A node and the pods bound to it."""
    return api.get(f"/api/v1/nodes/{node}"), api.items("/api/v1/pods", fieldSelector=f"spec.nodeName={node}")


def _event_summary(event: dict[str, Any]) -> EventSummary:
    involved = event.get("involvedObject") or {}
    last = event.get("lastTimestamp") or event.get("eventTime") or _meta(event).get("creationTimestamp")
    return EventSummary(
        type=event.get("type", ""),
        reason=event.get("reason", ""),
        object=f"{involved.get('kind', '')}/{involved.get('name', '')}",
        message=event.get("message", ""),
        count=event.get("count") or 1,
        last_seen=last,
    )


def _changed_fields(before: dict[str, Any], after: dict[str, Any], patch: dict[str, Any]) -> list[str]:
    """Paths the patch touches (two levels deep: `spec.replicas`, `metadata.labels.tier`) whose value differs.

    Only touched paths are compared, so concurrent changes by controllers (status, revision annotations)
    are not mistaken for the patch's effect."""
    changed: list[str] = []
    touched_meta = patch.get("metadata") or {}
    sections = {
        "spec": (before.get("spec") or {}, after.get("spec") or {}, patch.get("spec") or {}),
        "metadata.labels": (_meta(before).get("labels") or {}, _meta(after).get("labels") or {}, touched_meta.get("labels") or {}),
        "metadata.annotations": (
            _meta(before).get("annotations") or {}, _meta(after).get("annotations") or {}, touched_meta.get("annotations") or {}
        ),
    }
    for prefix, (old, new, touched) in sections.items():
        for key in touched if isinstance(touched, dict) else ():
            if old.get(key) != new.get(key):
                changed.append(f"{prefix}.{key}")
    return changed


# ---------------------------------------------------------------- activities


def _undone_earlier(dep: dict[str, Any], record_key: str, *, what: str, region: str) -> RolloutUndoResult:
    """`rollout_undo` retried after its patch went through: answer what the first attempt did."""
    images = container_images((dep.get("spec") or {}).get("template") or {})
    recorded = recorded_previous(_annotations(dep), record_key, dict[str, int | None])
    if recorded is None:
        return RolloutUndoResult(
            from_revision=None, to_revision=revision_of(dep) or 0, images=images,
            summary=f"{what} was already rolled back by this step",
        )
    from_revision, to_revision = recorded.value.get("from_revision"), recorded.value.get("to_revision") or 0
    return RolloutUndoResult(
        changed=True, from_revision=from_revision, to_revision=to_revision, images=images,
        summary=f"rolled {what} in {region} back from revision {from_revision} to {to_revision}{EARLIER_ATTEMPT}",
    )


def _undo_target(api: KubeJson, dep: dict[str, Any], args: RolloutUndoArgs, *, what: str) -> tuple[int, dict[str, Any]]:
    """The revision to roll back to (`to_revision`, else the previous one) and its ReplicaSet; non-retryable
    `NoRolloutHistory` when there is none."""
    meta, spec = _meta(dep), dep.get("spec") or {}
    replica_sets = [
        rs
        for rs in api.items(
            f"/apis/apps/v1/namespaces/{args.namespace}/replicasets",
            labelSelector=label_selector(spec.get("selector") or {}),
        )
        if (_controller(rs) or {}).get("uid") == meta.get("uid")
    ]
    target_revision = args.to_revision or previous_revision(replica_sets)
    if not target_revision:
        raise ApplicationError(
            f"{what} in region {args.region} has no previous revision to roll back to",
            type="NoRolloutHistory", non_retryable=True,
        )
    target = next((rs for rs in replica_sets if revision_of(rs) == target_revision), None)
    if target is None:
        known = sorted(r for r in (revision_of(rs) for rs in replica_sets) if r)
        raise ApplicationError(
            f"{what} in region {args.region} has no revision {target_revision} (revisions: {known})",
            type="NoRolloutHistory", non_retryable=True,
        )
    return target_revision, target


class KubernetesActivities:
    """Activities against the Kubernetes API of the regions in `clients.kube`."""

    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    def _api(self, region: str) -> KubeJson:
        return KubeJson(self._clients.kube_client(region))

    def _read_deployment(self, api: KubeJson, args: DeploymentArgs) -> dict[str, Any]:
        return api.get(deployment_path(args.namespace, args.name))

    @staticmethod
    def _what(args: DeploymentArgs) -> str:
        return f"deployment {args.namespace}/{args.name}"

    def _in_git(self, dep: dict[str, Any], args: DeploymentArgs, edit: DeploymentEdit, action: str) -> tuple[str, str]:
        """Commit `edit` of git-managed `dep` and wait for the engine's apply; (commit, summary suffix)."""
        message = f"{action} {args.namespace}/{args.name} in {args.region}: {edit.describe()}"
        done = commit_and_wait(self._clients, dep, name=args.name, edit=edit, message=message)
        assert done is not None, "only called for a git-managed Deployment"
        change, seconds = done
        applied = "not awaited: no engine configured" if seconds is None else f"applied by the engine in {seconds:.1f}s"
        return change.commit, f" through git ({change.repository} {change.commit[:12]}, {applied})"

    @activity.defn(name="kubernetes.get_deployment")
    def get_deployment(self, invocation: StepInvocation[DeploymentArgs]) -> DeploymentStatus:
        args = invocation.args
        with kube_errors(self._what(args), args.region):
            return summarize_deployment(self._read_deployment(self._api(args.region), args), args.region)

    @activity.defn(name="kubernetes.scale")
    def scale(self, invocation: StepInvocation[ScaleArgs]) -> ScaleResult:
        """Set spec.replicas. The count found is recorded on the Deployment in the same patch (`pitstop.undo_values`),
        so a retry after the patch went through still answers the original `previous_replicas`."""
        args, what = invocation.args, self._what(invocation.args)
        api = self._api(args.region)
        key = undo_key(invocation)
        path = deployment_path(args.namespace, args.name)

        def attempt() -> ScaleResult:
            dep = api.get(path)
            current = (dep.get("spec") or {}).get("replicas", 1)
            recorded = recorded_previous(_annotations(dep), key, int)
            if current == args.replicas and recorded is None:
                return ScaleResult(previous_replicas=current, replicas=current, summary=f"{what} already has {current} replicas")
            previous = current if recorded is None else recorded.value
            result = ScaleResult(changed=True, previous_replicas=previous, replicas=args.replicas)
            if current == args.replicas:
                result.summary = f"scaled {what} in {args.region} from {previous} to {args.replicas} replicas{EARLIER_ATTEMPT}"
            elif invocation.dry_run:
                result.summary = f"would scale {what} from {current} to {args.replicas} replicas{_via_git(dep)}"
            elif git_source(dep) is not None:
                if recorded is None:
                    api.patch(path, {"metadata": _undo_metadata(dep, key, previous)}, patch_type="merge")
                result.git_commit, via = self._in_git(dep, args, DeploymentEdit(replicas=args.replicas), "scale")
                result.summary = f"scaled {what} in {args.region} from {previous} to {args.replicas} replicas{via}"
            else:
                api.patch(path, {"metadata": _undo_metadata(dep, key, previous), "spec": {"replicas": args.replicas}}, patch_type="merge")
                result.summary = f"scaled {what} in {args.region} from {previous} to {args.replicas} replicas"
            return result

        with kube_errors(what, args.region):
            return retry_on_conflict(attempt)

    @activity.defn(name="kubernetes.set_image")
    def set_image(self, invocation: StepInvocation[SetImageArgs]) -> SetImageResult:
        """Set one container's image. The image found is recorded on the Deployment in the same patch
        (`pitstop.undo_values`), so a retry after the patch went through still answers the original `previous_image`."""
        args, what = invocation.args, self._what(invocation.args)
        api = self._api(args.region)
        key = undo_key(invocation)
        path = deployment_path(args.namespace, args.name)

        def attempt() -> SetImageResult:
            dep = api.get(path)
            images = container_images((dep.get("spec") or {}).get("template") or {})
            if args.container not in images:
                raise ApplicationError(
                    f"{what} in region {args.region} has no container {args.container!r} (containers: {sorted(images)})",
                    type="Invalid", non_retryable=True,
                )
            current = images[args.container]
            recorded = recorded_previous(_annotations(dep), key, str)
            if current == args.image and recorded is None:
                return SetImageResult(
                    container=args.container, previous_image=current, image=args.image,
                    summary=f"{what} container {args.container} already runs {args.image}",
                )
            previous = current if recorded is None else recorded.value
            result = SetImageResult(changed=True, container=args.container, previous_image=previous, image=args.image)
            if current == args.image:
                result.summary = f"set {what} container {args.container} image {previous} -> {args.image}{EARLIER_ATTEMPT}"
            elif invocation.dry_run:
                result.summary = f"would set {what} container {args.container} image {current} -> {args.image}{_via_git(dep)}"
            elif git_source(dep) is not None:
                if recorded is None:
                    api.patch(path, {"metadata": _undo_metadata(dep, key, previous)}, patch_type="merge")
                result.git_commit, via = self._in_git(dep, args, DeploymentEdit(images={args.container: args.image}), "set image")
                result.summary = f"set {what} container {args.container} image {previous} -> {args.image}{via}"
            else:
                patch = {
                    "metadata": _undo_metadata(dep, key, previous),
                    "spec": {"template": {"spec": {"containers": [{"name": args.container, "image": args.image}]}}},
                }
                api.patch(path, patch, patch_type="strategic")
                result.summary = f"set {what} container {args.container} image {previous} -> {args.image}"
            return result

        with kube_errors(what, args.region):
            return retry_on_conflict(attempt)

    @activity.defn(name="kubernetes.rollout_restart")
    def rollout_restart(self, invocation: StepInvocation[DeploymentArgs]) -> RolloutRestartResult:
        """kubectl rollout restart, once per run step: the pod template carries the step's key; a retry that
        finds its own key does nothing. `restartedAt` is the activity's (first) scheduled time, so two
        overlapping attempts write the same template and cause one rollout."""
        args, what = invocation.args, self._what(invocation.args)
        api = self._api(args.region)
        key = idempotency_key(invocation)
        with kube_errors(what, args.region):
            dep = self._read_deployment(api, args)
            spec = dep.get("spec") or {}
            annotations = _meta(spec.get("template") or {}).get("annotations") or {}
            if annotations.get(RESTART_KEY_ANNOTATION) == key:
                return RolloutRestartResult(
                    restarted_at=annotations.get(RESTARTED_AT_ANNOTATION, ""), restart_key=key,
                    summary=f"{what} was already restarted by this step",
                )
            if spec.get("paused"):
                raise ApplicationError(
                    f"{what} in region {args.region} is paused; resume it before restarting", type="Invalid", non_retryable=True
                )
            scheduled = activity.info().scheduled_time
            restarted_at = scheduled.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if invocation.dry_run:
                return RolloutRestartResult(
                    changed=True, restarted_at=restarted_at, restart_key=key, summary=f"would restart {what}"
                )
            patch = {
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: restarted_at, RESTART_KEY_ANNOTATION: key}}}}
            }
            api.patch(deployment_path(args.namespace, args.name), patch, patch_type="strategic")
        return RolloutRestartResult(
            changed=True, restarted_at=restarted_at, restart_key=key, summary=f"restarted {what} in {args.region}"
        )

    @activity.defn(name="kubernetes.rollout_undo")
    def rollout_undo(self, invocation: StepInvocation[RolloutUndoArgs]) -> RolloutUndoResult:
        """kubectl rollout undo: copy a previous ReplicaSet's pod template back into the Deployment.

        Idempotent per run step: the Deployment is annotated with the step's key, so a retry after a
        successful undo does not undo again (which would flip back to the bad revision). The same patch records
        the revisions (`pitstop.undo_values`), so that retry still answers the original `from_revision`."""
        args, what = invocation.args, self._what(invocation.args)
        api = self._api(args.region)
        key = idempotency_key(invocation)
        record_key = undo_key(invocation)
        path = deployment_path(args.namespace, args.name)

        def attempt() -> RolloutUndoResult:
            dep = api.get(path)
            spec = dep.get("spec") or {}
            current_revision = revision_of(dep)
            if _annotations(dep).get(UNDO_KEY_ANNOTATION) == key:
                earlier = _undone_earlier(dep, record_key, what=what, region=args.region)
                recorded_edit = recorded_previous(_annotations(dep), git_record_key(record_key), dict[str, Any])
                if recorded_edit is not None:  # git-managed: make sure the commit is made and applied
                    edit = DeploymentEdit.model_validate(recorded_edit.value)
                    earlier.git_commit, _ = self._in_git(dep, args, edit, "rollback")
                return earlier
            target_revision, target = _undo_target(api, dep, args, what=what)
            template = (target.get("spec") or {}).get("template") or {}
            result = RolloutUndoResult(
                from_revision=current_revision, to_revision=target_revision, images=container_images(template)
            )
            if same_template(template, spec.get("template") or {}):
                result.summary = f"{what} already runs the template of revision {target_revision}"
                return result
            result.changed = True
            if invocation.dry_run:
                result.summary = (f"would roll {what} back from revision {current_revision} to {target_revision} "
                                  f"({result.images}){_via_git(dep)}")
                return result
            revisions = {"from_revision": current_revision, "to_revision": target_revision}
            record = with_previous(_annotations(dep), record_key, revisions)
            result.summary = f"rolled {what} in {args.region} back from revision {current_revision} to {target_revision}"
            if git_source(dep) is None:
                annotations = {UNDO_KEY_ANNOTATION: key, UNDO_VALUES_ANNOTATION: record}
                api.patch(path, rollback_patch(dep, target, extra_annotations=annotations), patch_type="json")
                return result
            # git-managed: record the key, the revisions and the edit first; then the commit and the engine's apply
            edit = rollback_edit(template)
            record = with_previous({UNDO_VALUES_ANNOTATION: record}, git_record_key(record_key), edit.model_dump())
            api.patch(path, {"metadata": {"resourceVersion": _meta(dep)["resourceVersion"],
                                          "annotations": {UNDO_KEY_ANNOTATION: key, UNDO_VALUES_ANNOTATION: record}}},
                      patch_type="merge")
            result.git_commit, via = self._in_git(dep, args, edit, "rollback")
            result.summary += via
            return result

        with kube_errors(what, args.region):
            return retry_on_conflict(attempt)

    @activity.defn(name="kubernetes.patch")
    def patch(self, invocation: StepInvocation[PatchArgs]) -> PatchResult:
        """Patch an allowed workload kind. A server-side dry run first tells whether anything would change.
        `changed_fields` covers the metadata labels/annotations and spec fields the patch names."""
        args = invocation.args
        what = f"{args.kind.lower()} {args.namespace}/{args.name}"
        api = self._api(args.region)
        path = WORKLOAD_PATHS[args.kind].format(namespace=args.namespace, name=args.name)
        with kube_errors(what, args.region):
            current = api.get(path)
            preview = api.patch(path, args.patch, patch_type=args.patch_type, dry_run=True)
            fields = _changed_fields(current, preview, args.patch)
            result = PatchResult(kind=args.kind, changed_fields=fields, changed=bool(fields))
            if not fields:
                result.summary = f"{what} already matches the patch"
            elif invocation.dry_run:
                result.summary = f"would patch {what}: {', '.join(fields)}"
            else:
                api.patch(path, args.patch, patch_type=args.patch_type)
                result.summary = f"patched {what} in {args.region}: {', '.join(fields)}"
        return result

    @activity.defn(name="kubernetes.wait_for_rollout")
    def wait_for_rollout(self, invocation: StepInvocation[WaitForRolloutArgs]) -> WaitForRolloutResult:
        """Poll until `kubectl rollout status` would say done; progress deadline exceeded fails for good."""
        args, what = invocation.args, self._what(invocation.args)
        api = self._api(args.region)
        started = time.monotonic()
        deadline = started + args.timeout_seconds
        while True:
            with kube_errors(what, args.region):
                dep = self._read_deployment(api, args)
            progress = rollout_progress(dep)
            activity.heartbeat(progress.message)
            if progress.failed:
                raise ApplicationError(
                    f"rollout of {what} in region {args.region} failed: {progress.message}",
                    type="ProgressDeadlineExceeded", non_retryable=True,
                )
            if progress.done:
                status = summarize_deployment(dep, args.region)
                return WaitForRolloutResult(
                    **status.model_dump(exclude={"summary"}), waited_seconds=round(time.monotonic() - started, 3),
                    summary=f"rollout of {what} in {args.region} complete ({status.available_replicas} available)",
                )
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"rollout of {what} in region {args.region} not complete after {args.timeout_seconds:g}s: {progress.message}",
                    type="RolloutTimeout", non_retryable=True,
                )
            sleep_or_cancel(min(args.poll_interval_seconds, max(0.0, deadline - time.monotonic())))

    def _set_unschedulable(self, invocation: StepInvocation[NodeArgs], unschedulable: bool) -> NodeResult:
        args = invocation.args
        what = f"node {args.node}"
        api = self._api(args.region)
        verb = "cordon" if unschedulable else "uncordon"
        with kube_errors(what, args.region):
            node = api.get(f"/api/v1/nodes/{args.node}")
            current = bool((node.get("spec") or {}).get("unschedulable"))
            if current == unschedulable:
                return NodeResult(node=args.node, unschedulable=current, summary=f"{what} already {verb}ed")
            if invocation.dry_run:
                return NodeResult(changed=True, node=args.node, unschedulable=unschedulable, summary=f"would {verb} {what}")
            api.patch(f"/api/v1/nodes/{args.node}", {"spec": {"unschedulable": True if unschedulable else None}}, patch_type="merge")
        return NodeResult(changed=True, node=args.node, unschedulable=unschedulable, summary=f"{verb}ed {what} in {args.region}")

    @activity.defn(name="kubernetes.cordon")
    def cordon(self, invocation: StepInvocation[NodeArgs]) -> NodeResult:
        return self._set_unschedulable(invocation, True)

    @activity.defn(name="kubernetes.uncordon")
    def uncordon(self, invocation: StepInvocation[NodeArgs]) -> NodeResult:
        return self._set_unschedulable(invocation, False)

    @activity.defn(name="kubernetes.drain")
    def drain(self, invocation: StepInvocation[DrainArgs]) -> DrainResult:
        """kubectl drain: cordon, then evict every pod through the Eviction API (PodDisruptionBudgets answer
        429 and are waited out), skipping DaemonSet and mirror pods; waits until the evicted pods are gone."""
        args = invocation.args
        what = f"node {args.node}"
        api = self._api(args.region)
        with kube_errors(what, args.region):
            node, pods = _node_and_pods(api, args.node)
        to_evict: dict[str, dict[str, Any]] = {}
        skipped: list[str] = []
        unmanaged: list[str] = []
        for pod in pods:
            meta = _meta(pod)
            ref = f"{meta.get('namespace')}/{meta.get('name')}"
            owner = _controller(pod)
            if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}) or (owner or {}).get("kind") == "DaemonSet":
                skipped.append(ref)
                continue
            if owner is None and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                unmanaged.append(ref)
            to_evict[ref] = pod
        if unmanaged and not args.force:
            raise ApplicationError(
                f"cannot drain {what} in region {args.region}: pods without a controller would be lost: "
                f"{sorted(unmanaged)} (set force: true to evict them anyway)",
                type="Invalid", non_retryable=True,
            )
        cordoned = bool((node.get("spec") or {}).get("unschedulable"))
        result = DrainResult(node=args.node, evicted=sorted(to_evict), skipped=sorted(skipped))
        result.changed = not cordoned or bool(to_evict)
        if invocation.dry_run:
            result.summary = f"would {'cordon and ' if not cordoned else ''}evict {len(to_evict)} pods from {what}"
            return result
        if not cordoned:
            self._set_unschedulable(StepInvocation[NodeArgs](args=NodeArgs(region=args.region, node=args.node)), True)
        self._evict_all(api, args, to_evict)
        result.summary = f"drained {what} in {args.region}: evicted {len(to_evict)} pods, skipped {len(skipped)}"
        return result

    def _evict_all(self, api: KubeJson, args: DrainArgs, pods: dict[str, dict[str, Any]]) -> None:
        pending = {ref: _meta(pod).get("uid") for ref, pod in pods.items()}
        deadline = time.monotonic() + args.timeout_seconds
        blocked: dict[str, str] = {}
        while pending:
            for ref, uid in list(pending.items()):
                namespace, name = ref.split("/", 1)
                with kube_errors(f"pod {ref}", args.region):
                    pod = api.get_optional(f"/api/v1/namespaces/{namespace}/pods/{name}")
                    if pod is None or _meta(pod).get("uid") != uid:
                        pending.pop(ref)
                        blocked.pop(ref, None)
                        continue
                    if _meta(pod).get("deletionTimestamp"):
                        continue  # evicted, terminating
                    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
                    try:
                        api.post(f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", eviction)
                        blocked.pop(ref, None)
                    except ApiException as exc:
                        if exc.status == 404:
                            pending.pop(ref)
                        elif exc.status == 429:  # a PodDisruptionBudget forbids it for now
                            blocked[ref] = api_error_detail(exc)
                        else:
                            raise
            activity.heartbeat({"pending": len(pending), "blocked": len(blocked)})
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"drain of node {args.node} in region {args.region} did not finish within {args.timeout_seconds:g}s; "
                    f"pods left: {sorted(pending)}; blocked by disruption budgets: {blocked or 'none'}",
                    type="DrainTimeout", non_retryable=True,
                )
            sleep_or_cancel(min(args.poll_interval_seconds, max(0.0, deadline - time.monotonic())))

    @activity.defn(name="kubernetes.service_evidence")
    def service_evidence(self, invocation: StepInvocation[ServiceEvidenceArgs]) -> ServiceEvidenceResult:
        args, what = invocation.args, self._what(invocation.args)
        api = self._api(args.region)
        with kube_errors(what, args.region):
            dep = self._read_deployment(api, args)
            selector = label_selector((dep.get("spec") or {}).get("selector") or {})
            pods = api.items(f"/api/v1/namespaces/{args.namespace}/pods", labelSelector=selector)
            replica_sets = api.items(f"/apis/apps/v1/namespaces/{args.namespace}/replicasets", labelSelector=selector)
            events = api.items(f"/api/v1/namespaces/{args.namespace}/events")
        names = {args.name} | {_meta(o).get("name") for o in pods + replica_sets}
        relevant = [_event_summary(e) for e in events if (e.get("involvedObject") or {}).get("name") in names]
        epoch = datetime.min.replace(tzinfo=UTC)
        relevant.sort(key=lambda e: e.last_seen or epoch, reverse=True)
        summaries = sorted((_pod_summary(p) for p in pods), key=lambda p: p.name)
        ready = sum(p.ready for p in summaries)
        warnings = sum(e.type == "Warning" for e in relevant)
        return ServiceEvidenceResult(
            pods=summaries,
            events=relevant[: args.max_events],
            summary=f"{what} in {args.region}: {ready}/{len(summaries)} pods ready, {len(relevant)} events ({warnings} warnings)",
        )

    @activity.defn(name="kubernetes.node_evidence")  # pods: the least healthy first, at most MAX_NODE_EVIDENCE_PODS
    def node_evidence(self, invocation: StepInvocation[NodeEvidenceArgs]) -> NodeEvidenceResult:
        args = invocation.args
        what = f"node {args.node}"
        api = self._api(args.region)
        with kube_errors(what, args.region):
            node, pods = _node_and_pods(api, args.node)
            events = api.items("/api/v1/events", fieldSelector=f"involvedObject.kind=Node,involvedObject.name={args.node}")
        spec, status = node.get("spec") or {}, node.get("status") or {}
        conditions = [ConditionSummary(type=c.get("type", ""), status=c.get("status", ""), reason=c.get("reason", ""),
                                       message=c.get("message", "")) for c in status.get("conditions") or []]
        taints = [f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for t in spec.get("taints") or []]
        relevant = [_event_summary(e) for e in events]
        epoch = datetime.min.replace(tzinfo=UTC)
        relevant.sort(key=lambda e: e.last_seen or epoch, reverse=True)
        ready = next((c.status for c in conditions if c.type == "Ready"), "Unknown")
        unschedulable = bool(spec.get("unschedulable"))
        return NodeEvidenceResult(
            node=args.node, unschedulable=unschedulable, conditions=conditions, taints=taints,
            pods=sorted((_pod_summary(p) for p in pods), key=lambda p: (p.ready, p.name))[:MAX_NODE_EVIDENCE_PODS],
            events=relevant[: args.max_events],
            summary=f"{what} in {args.region}: Ready={ready}{', cordoned' if unschedulable else ''}, "
                    f"{len(pods)} pods, {len(relevant)} events",
        )

    @activity.defn(name="kubernetes.last_rollout")
    def last_rollout(self, invocation: StepInvocation[DeploymentArgs]) -> LastRolloutResult:
        args, what = invocation.args, self._what(invocation.args)
        api = self._api(args.region)
        with kube_errors(what, args.region):
            dep = self._read_deployment(api, args)
            replica_sets = api.items(
                f"/apis/apps/v1/namespaces/{args.namespace}/replicasets",
                labelSelector=label_selector((dep.get("spec") or {}).get("selector") or {}),
            )
        uid = _meta(dep).get("uid")
        owned = [rs for rs in replica_sets if (_controller(rs) or {}).get("uid") == uid]
        revision = revision_of(dep)
        template = (dep.get("spec") or {}).get("template") or {}
        current = next((rs for rs in owned if revision is not None and revision_of(rs) == revision), None) or next(
            (rs for rs in owned if same_template((rs.get("spec") or {}).get("template") or {}, template)), None
        )
        progressing: dict[str, Any] = next(
            (c for c in (dep.get("status") or {}).get("conditions") or [] if c.get("type") == "Progressing"), {}
        )
        rolled_out_at = _meta(current).get("creationTimestamp") if current else None
        return LastRolloutResult(
            revision=revision,
            replica_set=_meta(current).get("name") if current else None,
            rolled_out_at=rolled_out_at,
            progressing_updated_at=progressing.get("lastUpdateTime"),
            summary=f"{what} in {args.region}: revision {revision} rolled out at {rolled_out_at or 'unknown'}",
        )

    @activity.defn(name="kubernetes.inventory")
    def inventory(self, invocation: StepInvocation[InventoryArgs]) -> RegionInventory:
        """Read-only: list (paged) the kinds the fleet-hygiene checks need, all namespaces; only their relevant
        fields are returned. A cluster without Istio's CRDs (404) has no VirtualServices or DestinationRules."""
        args = invocation.args
        api = self._api(args.region)
        listed: dict[str, list[dict[str, Any]]] = {}
        with kube_errors("the fleet inventory", args.region):
            for kind, path in INVENTORY_PATHS.items():
                try:
                    listed[kind] = api.items(path)
                except ApiException as exc:
                    if exc.status != 404 or kind in ("deployments", "disruption_budgets"):
                        raise
                    listed[kind] = []
        return region_inventory(region=args.region, exclude_namespaces=args.exclude_namespaces, **listed)
