"""Release activities (`delivery.*`): the cluster side of `ProgressiveRelease`, and analysis measurements.

`ReleaseClusterActivities` (regional, synchronous, thread pool) works on one region's VirtualService,
DestinationRule and Deployments as plain JSON through `KubeJson`; the VirtualService's routes are read and
written through the traffic router (`activities.traffic`, Istio implementation), the interface the traffic
steps use. Every activity writes absolute state
computed by the workflow (from `pitstop.delivery`), reads before writing, re-reads on 409 Conflict, and
answers `changed=False` when the object already is as requested — so a retry or a replay after a worker
crash never repeats a change. Waits heartbeat and honour cancellation.

`ReleaseAnalysisActivities` (shared, async) runs the analysis queries through the `MetricsProvider`:
no data and an unreachable Prometheus are values (inconclusive), never errors and never passes.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from kubernetes.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.delivery.models import (
    CandidateStatus,
    DeployCandidateInput,
    DeploymentSnapshot,
    FinalizeInput,
    FinalizeResult,
    MeasureInput,
    MeasureResult,
    ReleaseSnapshot,
    RestoreInput,
    RestoreResult,
    RetireInput,
    RoutesInput,
    RoutesResult,
    ScaleCandidateInput,
    SubsetsInput,
    TargetInput,
)
from pitstop.delivery.spec import ReleaseTarget
from pitstop.delivery.workloads import candidate_deployment, image_of, promoted_template, version_of
from pitstop.git_releases import REJECTED_ANNOTATION, released_from_git, with_rejected
from pitstop.rollout import rollout_progress
from pitstop.traffic_routes import service_route_weights

from .clients import ActivityClients
from .git_releases import roll_out_paused, running_view
from .gitops import promote_in_git
from .kube_api import KubeJson, deployment_path
from .kube_errors import kube_errors, retry_on_conflict
from .prometheus import measure
from .sync_sleep import sleep_or_cancel
from .traffic import ISTIO_GROUP_VERSION, RouteTarget, TrafficRouter, router_for

JsonObject = dict[str, Any]


def _dr_path(t: ReleaseTarget) -> str:
    return f"/apis/{ISTIO_GROUP_VERSION}/namespaces/{t.namespace}/destinationrules/{t.destination_rule_name}"


def _snapshot_deployment(dep: JsonObject, t: ReleaseTarget, pending_template: str = "") -> DeploymentSnapshot:
    spec = dep.get("spec") or {}
    return DeploymentSnapshot(
        pending_template=pending_template,
        name=dep["metadata"]["name"],
        replicas=int(spec.get("replicas", 1)),
        template=copy.deepcopy(spec.get("template") or {}),
        selector=copy.deepcopy(spec.get("selector") or {}),
        version=version_of(dep, t.version_label),
        image=image_of(dep, t.container),
    )


def _ready(dep: JsonObject, replicas: int) -> bool:
    status = dep.get("status") or {}
    meta = dep.get("metadata") or {}
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return False
    if replicas == 0:
        return True
    return rollout_progress(dep).done and int(status.get("availableReplicas") or 0) >= replicas


class ReleaseClusterActivities:
    """One region's cluster objects of a release."""

    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    def _api(self, region: str) -> KubeJson:
        return KubeJson(self._clients.kube_client(region))

    def _router(self, api: KubeJson, t: ReleaseTarget) -> tuple[TrafficRouter, RouteTarget]:
        """The Istio router (a release needs a mesh: weights between subsets) and the release's VirtualService."""
        router = router_for(settings=self._clients.settings, api=api, namespace=t.namespace, service=t.service, provider="istio")
        return router, RouteTarget(region=t.region, namespace=t.namespace, virtual_service=t.virtual_service_name, route=t.route)

    def _write_routes(self, api: KubeJson, t: ReleaseTarget, http: list[JsonObject]) -> bool:
        """Make the VirtualService's HTTP routes exactly `http` (read, compare, PUT with resourceVersion; 409 -> re-read)."""
        router, target = self._router(api, t)
        with kube_errors(target.what, t.region):
            return router.set_http(target, http, dry_run=False).changed

    # ------------------------------------------------------------ reads

    @activity.defn(name="delivery.snapshot")
    def snapshot(self, request: TargetInput) -> ReleaseSnapshot:
        """Routes, subsets and scale as they are now: what a rollback will write back.

        Read-only, so no durable undo value is needed (`pitstop.undo_values`): the release takes it under its
        lease before its first change and schedules nothing else until it has the result, so a retried snapshot
        still sees the state before the release (a retry cannot observe the release's own changes)."""
        t = request.target
        api = self._api(t.region)
        router, route_target = self._router(api, t)
        with kube_errors(route_target.what, t.region):
            http = router.get_http(route_target)
        with kube_errors(f"destinationrule {t.namespace}/{t.destination_rule_name}", t.region):
            dr = api.get(_dr_path(t))
        with kube_errors(f"deployment {t.namespace}/{t.deployment_name}", t.region):
            # released from git: the stable side is the template the paused Deployment's pods run (git's is the candidate)
            stable, pending_template = running_view(api, api.get(deployment_path(t.namespace, t.deployment_name)))
        with kube_errors(f"deployment {t.namespace}/{t.candidate_name}", t.region):
            candidate = api.get_optional(deployment_path(t.namespace, t.candidate_name))
        try:
            weights = service_route_weights(http, t.route)
            snap_stable = _snapshot_deployment(stable, t, pending_template)
        except ValueError as exc:
            raise ApplicationError(f"{t.lease_key}: {exc}", type="Invalid", non_retryable=True) from None
        return ReleaseSnapshot(
            http=http,
            subsets=copy.deepcopy((dr.get("spec") or {}).get("subsets") or []),
            stable=snap_stable,
            candidate=_snapshot_deployment(candidate, t) if candidate else None,
            weights=weights,
        )

    # ------------------------------------------------------------ writes

    def _write_spec_field(self, api: KubeJson, path: str, field: str, value: Any, what: str, region: str) -> bool:
        """Set `spec.<field>` to `value` (read, compare, PUT with resourceVersion; 409 -> re-read)."""

        def attempt() -> bool:
            obj = api.get(path)
            if (obj.get("spec") or {}).get(field) == value:
                return False
            obj.setdefault("spec", {})[field] = copy.deepcopy(value)
            api.put(path, obj)
            return True

        with kube_errors(what, region):
            return retry_on_conflict(attempt)

    @activity.defn(name="delivery.set_routes")
    def set_routes(self, request: RoutesInput) -> RoutesResult:
        t = request.target
        changed = self._write_routes(self._api(t.region), t, request.http)
        return RoutesResult(changed=changed, weights=service_route_weights(request.http, t.route))

    @activity.defn(name="delivery.set_subsets")
    def set_subsets(self, request: SubsetsInput) -> bool:
        t = request.target
        return self._write_spec_field(
            self._api(t.region), _dr_path(t), "subsets", request.subsets, f"destinationrule {t.namespace}/{t.destination_rule_name}", t.region
        )

    def _wait_ready(self, api: KubeJson, t: ReleaseTarget, name: str, replicas: int, deadline_seconds: float, poll: float) -> float:
        started = time.monotonic()
        what = f"deployment {t.namespace}/{name}"
        while True:
            with kube_errors(what, t.region):
                dep = api.get(deployment_path(t.namespace, name))
            progress = rollout_progress(dep)
            activity.heartbeat(progress.message)
            if progress.failed:
                raise ApplicationError(f"{what} in {t.region}: {progress.message}", type="ProgressDeadlineExceeded", non_retryable=True)
            if _ready(dep, replicas):
                return round(time.monotonic() - started, 3)
            if time.monotonic() - started >= deadline_seconds:
                raise ApplicationError(
                    f"{what} in {t.region} not ready within the progress deadline ({deadline_seconds:g}s): {progress.message}",
                    type="ProgressDeadlineExceeded",
                    non_retryable=True,
                )
            sleep_or_cancel(poll)

    @activity.defn(name="delivery.deploy_candidate")
    def deploy_candidate(self, request: DeployCandidateInput) -> CandidateStatus:
        """The new version as `<deployment>-canary` next to the stable one, its subset, and wait until ready."""
        t = request.target
        api = self._api(t.region)
        path = deployment_path(t.namespace, t.candidate_name)
        what = f"deployment {t.namespace}/{t.candidate_name}"
        with kube_errors(f"deployment {t.namespace}/{t.deployment_name}", t.region):
            stable = api.get(deployment_path(t.namespace, t.deployment_name))
        try:
            desired = candidate_deployment(
                stable, t, image=request.image, version=request.version, replicas=request.replicas, release_id=request.release_id,
                resources=request.resources,
            )
        except ValueError as exc:
            raise ApplicationError(f"{what}: {exc}", type="Invalid", non_retryable=True) from None
        created = False

        def attempt() -> None:
            nonlocal created
            current = api.get_optional(path)
            if current is None:
                api.post(f"/apis/apps/v1/namespaces/{t.namespace}/deployments", desired)
                created = True
                return
            if (current.get("spec") or {}).get("selector") != desired["spec"]["selector"]:
                # selectors are immutable: replace the Deployment
                api.request("DELETE", path, query={"propagationPolicy": "Foreground"})
                raise ApiException(status=409, reason="candidate replaced; re-reading")
            spec = current.get("spec") or {}
            if spec.get("template") == desired["spec"]["template"] and spec.get("replicas") == request.replicas:
                return
            updated = copy.deepcopy(current)
            updated["spec"]["template"] = desired["spec"]["template"]
            updated["spec"]["replicas"] = request.replicas
            updated["metadata"]["annotations"] = {**(current["metadata"].get("annotations") or {}), **desired["metadata"]["annotations"]}
            api.put(path, updated)

        with kube_errors(what, t.region):
            retry_on_conflict(attempt, attempts=20)
        self._write_spec_field(api, _dr_path(t), "subsets", request.subsets, f"destinationrule {t.namespace}/{t.destination_rule_name}", t.region)
        waited = self._wait_ready(api, t, t.candidate_name, request.replicas, request.deadline_seconds, request.poll_seconds)
        return CandidateStatus(name=t.candidate_name, replicas=request.replicas, ready_replicas=request.replicas, created=created, waited_seconds=waited)

    @activity.defn(name="delivery.scale_candidate")
    def scale_candidate(self, request: ScaleCandidateInput) -> CandidateStatus:
        t = request.target
        api = self._api(t.region)
        path = deployment_path(t.namespace, t.candidate_name)
        what = f"deployment {t.namespace}/{t.candidate_name}"

        def attempt() -> None:
            dep = api.get(path)
            if (dep.get("spec") or {}).get("replicas") != request.replicas:
                dep["spec"]["replicas"] = request.replicas
                api.put(path, dep)

        with kube_errors(what, t.region):
            retry_on_conflict(attempt)
        waited = self._wait_ready(api, t, t.candidate_name, request.replicas, request.deadline_seconds, request.poll_seconds)
        return CandidateStatus(name=t.candidate_name, replicas=request.replicas, ready_replicas=request.replicas, waited_seconds=waited)

    @activity.defn(name="delivery.restore")
    def restore(self, request: RestoreInput) -> RestoreResult:
        """Rollback: routes first (traffic back on stable in one write), then subsets, candidate and scale."""
        t, snap = request.target, request.snapshot
        api = self._api(t.region)
        routes_changed = self._write_routes(api, t, snap.http)
        self._write_spec_field(api, _dr_path(t), "subsets", snap.subsets, f"destinationrule {t.namespace}/{t.destination_rule_name}", t.region)
        candidate_path = deployment_path(t.namespace, t.candidate_name)
        outcome = "absent"

        def restore_candidate() -> None:
            nonlocal outcome
            current = api.get_optional(candidate_path)
            if snap.candidate is None:
                if current is not None:
                    api.request("DELETE", candidate_path, query={"propagationPolicy": "Background"})
                    outcome = "deleted"
                return
            if current is None:
                return  # it existed before but is gone now: nothing to scale
            spec = current.get("spec") or {}
            if spec.get("template") != snap.candidate.template or spec.get("replicas") != snap.candidate.replicas:
                current["spec"]["template"] = snap.candidate.template
                current["spec"]["replicas"] = snap.candidate.replicas
                api.put(candidate_path, current)
            outcome = "restored"

        def restore_stable() -> None:
            path = deployment_path(t.namespace, t.deployment_name)
            current = api.get(path)
            spec = current.get("spec") or {}
            annotations = current["metadata"].setdefault("annotations", {})
            # released from git: the rejected template is recorded, so the watcher does not release it again
            rejected = with_rejected(current, snap.stable.pending_template) if snap.stable.pending_template else None
            if (spec.get("template") != snap.stable.template or spec.get("replicas") != snap.stable.replicas
                    or (rejected and annotations.get(REJECTED_ANNOTATION) != rejected)):
                current["spec"]["template"] = snap.stable.template
                current["spec"]["replicas"] = snap.stable.replicas
                if rejected:
                    annotations[REJECTED_ANNOTATION] = rejected
                api.put(path, current)

        with kube_errors(f"deployment {t.namespace}/{t.candidate_name}", t.region):
            retry_on_conflict(restore_candidate)
        with kube_errors(f"deployment {t.namespace}/{t.deployment_name}", t.region):
            retry_on_conflict(restore_stable)
        return RestoreResult(routes_changed=routes_changed, weights=service_route_weights(snap.http, t.route), candidate=outcome)

    @activity.defn(name="delivery.finalize_stable")
    def finalize_stable(self, request: FinalizeInput) -> FinalizeResult:
        """The stable Deployment takes the candidate's pod template (new image and version), then waits.

        A git-managed stable Deployment gets the change in git first and the engine's apply is awaited (bounded)
        before the template is written, so no reconcile that fetched git earlier can put the old template back
        (docs/gitops.md). If the engine does not apply in time, the template is written anyway and the result says so.
        A Deployment released from git is paused: it is unpaused to roll the template out, then paused again."""
        t = request.target
        api = self._api(t.region)
        path = deployment_path(t.namespace, t.deployment_name)
        what = f"deployment {t.namespace}/{t.deployment_name}"
        with kube_errors(what, t.region):
            stable, candidate = api.get(path), api.get(deployment_path(t.namespace, t.candidate_name))
        from_git = released_from_git(stable) and stable["spec"].get("template") == promoted_template(stable, candidate)
        # released from git: the Deployment already holds git's template (the candidate's); nothing to commit
        git = None if from_git else promote_in_git(self._clients, stable, candidate, t)

        def attempt() -> JsonObject:
            current = api.get(path)
            template = promoted_template(current, candidate)
            if (current.get("spec") or {}).get("template") != template:
                current["spec"]["template"] = template
                current = api.put(path, current)
            return current

        with kube_errors(what, t.region):
            stable = retry_on_conflict(attempt)
        replicas = int((stable.get("spec") or {}).get("replicas", 1))

        def wait() -> float:
            return self._wait_ready(api, t, t.deployment_name, replicas, request.deadline_seconds, request.poll_seconds)

        if released_from_git(stable):  # paused by pitstop: roll the template out, then pause again
            roll_out_paused(lambda paused: self._write_spec_field(api, path, "paused", paused, what, t.region), wait)
        else:
            wait()
        return FinalizeResult(image=image_of(stable, t.container), version=version_of(stable, t.version_label),
                              ready_replicas=replicas, git=git)

    @activity.defn(name="delivery.retire_candidate")
    def retire_candidate(self, request: RetireInput) -> str:
        """After finalization: delete the candidate Deployment (or scale it to 0 if it existed before)."""
        t = request.target
        api = self._api(t.region)
        path = deployment_path(t.namespace, t.candidate_name)

        def attempt() -> str:
            current = api.get_optional(path)
            if current is None:
                return "absent"
            if request.snapshot.candidate is None:
                api.request("DELETE", path, query={"propagationPolicy": "Background"})
                return "deleted"
            if (current.get("spec") or {}).get("replicas") != 0:
                current["spec"]["replicas"] = 0
                api.put(path, current)
            return "scaled to 0"

        with kube_errors(f"deployment {t.namespace}/{t.candidate_name}", t.region):
            return retry_on_conflict(attempt)


class ReleaseAnalysisActivities:
    """Analysis queries (shared task queue: one Prometheus per installation)."""

    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    @activity.defn(name="delivery.measure")
    async def measure(self, request: MeasureInput) -> MeasureResult:
        provider = self._clients.metrics_provider()
        readings = await asyncio.gather(*(measure(provider, check.query) for check in request.checks))
        return MeasureResult(measurements=list(readings))
