"""The rightsizing closed loop's cluster side (regional, read-only): `capacity.loop_plan` and `capacity.canary_pods`.

`loop_plan` reads the stable Deployment and answers what applying the recommended resources would change (the
lines `pitstop capacity apply` prints, and the image/version the rightsizing release keeps). `canary_pods` reads
the candidate Deployment's pods and counts restarts and OOM kills from their container statuses
(`lastState.terminated.reason`), where a real cluster reports them. RBAC: `pitstop-workloads` (get Deployments,
list pods), nothing new. The changes themselves go through the release activities (`activities.delivery`).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.capacity.closed_loop import (
    CanaryPodsInput, LoopPlan, LoopPlanInput, PodSignals, candidate_version, current_resources, pod_signals,
    resource_changes,
)
from pitstop.delivery.workloads import image_of, version_of

from .clients import ActivityClients
from .kube_api import KubeJson, deployment_path, label_selector
from .kube_errors import kube_errors


def loop_plan(api: KubeJson, request: LoopPlanInput, *, version_label: str = "version") -> LoopPlan:
    """What applying `request.resources` to the stable Deployment changes (ValueError for an unknown container)."""
    with kube_errors(f"deployment {request.namespace}/{request.deployment}", request.region):
        dep = api.get(deployment_path(request.namespace, request.deployment))
    template = (dep.get("spec") or {}).get("template") or {}
    current = current_resources(template)
    changes = resource_changes(current, request.resources)
    version = version_of(dep, version_label)
    return LoopPlan(deployment=request.deployment, image=image_of(dep, None), version=version,
                    candidate_version=candidate_version(version, request.resources), current=current, changes=changes)


class CapacityLoopActivities:
    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    def _api(self, region: str) -> KubeJson:
        return KubeJson(self._clients.kube_client(region))

    @activity.defn(name="capacity.loop_plan")
    def plan(self, request: LoopPlanInput) -> LoopPlan:
        try:
            return loop_plan(self._api(request.region), request)
        except ValueError as exc:
            raise ApplicationError(f"deployment {request.namespace}/{request.deployment}: {exc}", type="Invalid",
                                   non_retryable=True) from None

    @activity.defn(name="capacity.canary_pods")
    def canary_pods(self, request: CanaryPodsInput) -> PodSignals:
        api = self._api(request.region)
        with kube_errors(f"deployment {request.namespace}/{request.candidate}", request.region):
            candidate = api.get_optional(deployment_path(request.namespace, request.candidate))
            if candidate is None:
                return PodSignals()
            selector = ((candidate.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            pods = api.items(f"/api/v1/namespaces/{request.namespace}/pods", labelSelector=label_selector(
                {"matchLabels": selector}))
        return pod_signals(pods)
