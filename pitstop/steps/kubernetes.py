"""Kubernetes step types: Deployment reads and rollouts, node cordon/drain, incident evidence, the fleet inventory.

All are regional (they run on task queue `pitstop-<region>`); executed by `activities.kubernetes`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from pitstop.hygiene.inventory import SYSTEM_NAMESPACES, RegionInventory
from pitstop.runbook.step_types import StepResult, StepType, register_step_type

from .common import KubeLabelName, KubeObjectName, NamespacedArgs, RegionalArgs

# ---------------------------------------------------------------- arguments


class DeploymentArgs(NamespacedArgs):
    """A Deployment in one region: `region`, `namespace`, `name`."""


class ScaleArgs(DeploymentArgs):
    replicas: int = Field(ge=0, le=10_000, description="absolute replica count")


class SetImageArgs(DeploymentArgs):
    container: KubeLabelName = Field(description="container name in the pod template")
    image: str = Field(min_length=1, max_length=512, pattern=r"^\S+$")


class RolloutUndoArgs(DeploymentArgs):
    to_revision: int | None = Field(
        None, ge=1, description="revision to return to; default the one before the current revision"
    )


PatchKind = Literal["Deployment", "StatefulSet", "DaemonSet"]


class PatchArgs(NamespacedArgs):
    kind: PatchKind = "Deployment"
    patch: dict[str, Any] = Field(description="the patch document")
    patch_type: Literal["strategic", "merge"] = Field("strategic", description="strategic merge or JSON merge patch")


class WaitForRolloutArgs(DeploymentArgs):
    timeout_seconds: float = Field(600.0, gt=0, le=3300, description="give up (retryable) after this long")
    poll_interval_seconds: float = Field(2.0, gt=0, le=60)


class NodeArgs(RegionalArgs):
    node: KubeObjectName


class DrainArgs(NodeArgs):
    timeout_seconds: float = Field(600.0, gt=0, le=3300, description="how long to wait for evictions")
    poll_interval_seconds: float = Field(2.0, gt=0, le=60)
    force: bool = Field(False, description="also evict pods no controller will recreate")


class ServiceEvidenceArgs(DeploymentArgs):
    max_events: int = Field(50, ge=1, le=500)


class NodeEvidenceArgs(NodeArgs):
    max_events: int = Field(50, ge=1, le=500)


class InventoryArgs(RegionalArgs):
    exclude_namespaces: list[KubeLabelName] = Field(
        default_factory=lambda: list(SYSTEM_NAMESPACES), description="namespaces left out (default: kube-system & co.)"
    )


# ---------------------------------------------------------------- results


class ConditionSummary(BaseModel):
    type: str
    status: str
    reason: str = ""
    message: str = ""


class DeploymentStatus(StepResult):
    region: str
    namespace: str
    name: str
    generation: int = 0
    observed_generation: int = 0
    replicas: int = Field(0, description="spec.replicas (desired)")
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    unavailable_replicas: int = 0
    revision: int | None = Field(None, description="deployment.kubernetes.io/revision")
    images: dict[str, str] = Field(default_factory=dict, description="container -> image")
    paused: bool = False
    conditions: list[ConditionSummary] = Field(default_factory=list)
    rollout_complete: bool = False
    rollout_message: str = ""


class GitCommitted(StepResult):
    git_commit: str | None = Field(
        None, description="for a git-managed Deployment (docs/gitops.md): the commit holding the change, applied by "
                          "the GitOps engine before the step ended")


class ScaleResult(GitCommitted):
    previous_replicas: int
    replicas: int


class SetImageResult(GitCommitted):
    container: str
    previous_image: str
    image: str


class RolloutRestartResult(StepResult):
    restarted_at: str = Field(description="value of kubectl.kubernetes.io/restartedAt in the pod template")
    restart_key: str = Field(description="run/step key that makes the restart idempotent")


class RolloutUndoResult(GitCommitted):
    from_revision: int | None
    to_revision: int
    images: dict[str, str] = Field(default_factory=dict, description="container -> image after the undo")


class PatchResult(StepResult):
    kind: str
    changed_fields: list[str] = Field(default_factory=list, description="top-level paths the patch changes")


class WaitForRolloutResult(DeploymentStatus):
    waited_seconds: float = 0.0


class NodeResult(StepResult):
    node: str
    unschedulable: bool


class DrainResult(StepResult):
    node: str
    evicted: list[str] = Field(default_factory=list, description="namespace/name of pods evicted (or to evict)")
    skipped: list[str] = Field(default_factory=list, description="DaemonSet and mirror pods left in place")


class PodSummary(BaseModel):
    name: str
    phase: str = ""
    ready: bool = False
    restarts: int = 0
    node: str = ""
    reason: str = Field("", description="waiting/terminated reason of the least healthy container")
    image: str = ""


class EventSummary(BaseModel):
    type: str = ""
    reason: str = ""
    object: str = ""
    message: str = ""
    count: int = 1
    last_seen: datetime | None = None


class ServiceEvidenceResult(StepResult):
    pods: list[PodSummary] = Field(default_factory=list)
    events: list[EventSummary] = Field(default_factory=list)


class NodeEvidenceResult(StepResult):
    node: str
    unschedulable: bool = False
    conditions: list[ConditionSummary] = Field(default_factory=list)
    taints: list[str] = Field(default_factory=list, description="key=value:effect")
    pods: list[PodSummary] = Field(default_factory=list, description="pods bound to the node")
    events: list[EventSummary] = Field(default_factory=list)


class LastRolloutResult(StepResult):
    revision: int | None = None
    replica_set: str | None = None
    rolled_out_at: datetime | None = Field(None, description="creation time of the current revision's ReplicaSet")
    progressing_updated_at: datetime | None = Field(None, description="lastUpdateTime of the Progressing condition")


# ---------------------------------------------------------------- step types


GIT_STEP_TIMEOUT_SECONDS = 3600.0
"""scale, set_image and rollout_undo of a git-managed Deployment wait for the engine (gitops engine apply timeout)"""


class _Kube(StepType):
    regional = True
    default_timeout_seconds = 60.0


@register_step_type
class KubernetesGetDeployment(_Kube):
    name = "kubernetes.get_deployment"
    description = "Read a Deployment's status: replicas, images, revision, conditions, rollout state."
    args_model = DeploymentArgs
    result_model = DeploymentStatus
    activity = "kubernetes.get_deployment"


@register_step_type
class KubernetesScale(_Kube):
    name = "kubernetes.scale"
    description = "Set a Deployment's replica count (absolute)."
    args_model = ScaleArgs
    result_model = ScaleResult
    activity = "kubernetes.scale"
    mutating = True
    default_timeout_seconds = GIT_STEP_TIMEOUT_SECONDS  # a git-managed Deployment: commit, then the engine's apply
    heartbeat_seconds = 30.0


@register_step_type
class KubernetesSetImage(_Kube):
    name = "kubernetes.set_image"
    description = "Set one container's image in a Deployment's pod template."
    args_model = SetImageArgs
    result_model = SetImageResult
    activity = "kubernetes.set_image"
    mutating = True
    default_timeout_seconds = GIT_STEP_TIMEOUT_SECONDS  # a git-managed Deployment: commit, then the engine's apply
    heartbeat_seconds = 30.0


@register_step_type
class KubernetesRolloutRestart(_Kube):
    name = "kubernetes.rollout_restart"
    description = "Restart a Deployment's pods (kubectl rollout restart), once per run step."
    args_model = DeploymentArgs
    result_model = RolloutRestartResult
    activity = "kubernetes.rollout_restart"
    mutating = True


@register_step_type
class KubernetesRolloutUndo(_Kube):
    name = "kubernetes.rollout_undo"
    description = "Return a Deployment to its previous revision (kubectl rollout undo)."
    args_model = RolloutUndoArgs
    result_model = RolloutUndoResult
    activity = "kubernetes.rollout_undo"
    mutating = True
    default_timeout_seconds = GIT_STEP_TIMEOUT_SECONDS  # a git-managed Deployment: commit, then the engine's apply
    heartbeat_seconds = 30.0


@register_step_type
class KubernetesPatch(_Kube):
    name = "kubernetes.patch"
    description = "Strategic-merge or JSON-merge patch of a Deployment, StatefulSet or DaemonSet."
    args_model = PatchArgs
    result_model = PatchResult
    activity = "kubernetes.patch"
    mutating = True


@register_step_type
class KubernetesWaitForRollout(_Kube):
    name = "kubernetes.wait_for_rollout"
    description = "Wait until a Deployment's rollout completes; a progress deadline exceeded fails the step."
    args_model = WaitForRolloutArgs
    result_model = WaitForRolloutResult
    activity = "kubernetes.wait_for_rollout"
    default_timeout_seconds = 3600.0
    heartbeat_seconds = 30.0


@register_step_type
class KubernetesCordon(_Kube):
    name = "kubernetes.cordon"
    description = "Mark a node unschedulable."
    args_model = NodeArgs
    result_model = NodeResult
    activity = "kubernetes.cordon"
    mutating = True


@register_step_type
class KubernetesUncordon(_Kube):
    name = "kubernetes.uncordon"
    description = "Mark a node schedulable again."
    args_model = NodeArgs
    result_model = NodeResult
    activity = "kubernetes.uncordon"
    mutating = True


@register_step_type
class KubernetesDrain(_Kube):
    name = "kubernetes.drain"
    description = "Cordon a node and evict its pods through the Eviction API (PodDisruptionBudgets respected)."
    args_model = DrainArgs
    result_model = DrainResult
    activity = "kubernetes.drain"
    mutating = True
    default_timeout_seconds = 3600.0
    heartbeat_seconds = 30.0


@register_step_type
class KubernetesServiceEvidence(_Kube):
    name = "kubernetes.service_evidence"
    description = "Pod status and recent events of a Deployment, its ReplicaSets and pods (incident evidence)."
    args_model = ServiceEvidenceArgs
    result_model = ServiceEvidenceResult
    activity = "kubernetes.service_evidence"


@register_step_type
class KubernetesNodeEvidence(_Kube):
    name = "kubernetes.node_evidence"
    description = "A node's conditions, taints, schedulability, pods and recent events (incident evidence)."
    args_model = NodeEvidenceArgs
    result_model = NodeEvidenceResult
    activity = "kubernetes.node_evidence"


@register_step_type
class KubernetesLastRollout(_Kube):
    name = "kubernetes.last_rollout"
    description = "When the Deployment's current revision was rolled out."
    args_model = DeploymentArgs
    result_model = LastRolloutResult
    activity = "kubernetes.last_rollout"


@register_step_type
class KubernetesInventory(_Kube):
    name = "kubernetes.inventory"
    description = ("Read-only: the region's Deployments, PodDisruptionBudgets, VirtualServices and DestinationRules in every"
                   " namespace, as the compact facts the fleet-hygiene checks use (`hygiene.report`).")
    args_model = InventoryArgs
    result_model = RegionInventory
    activity = "kubernetes.inventory"
    default_timeout_seconds = 300.0
