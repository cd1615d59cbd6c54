"""Rollout decisions over plain Deployment/ReplicaSet data (the API's JSON): pure, unit-tested.

- `rollout_progress(deployment)`: kubectl's `rollout status` logic (done / waiting / progress deadline exceeded).
- `previous_revision(replica_sets, current)`: kubectl's `rollout undo` target selection.
- `rollback_patch(deployment, replica_set)`: the JSON patch kubectl sends to go back to a ReplicaSet's template.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
PROGRESS_DEADLINE_REASON = "ProgressDeadlineExceeded"

# annotations kubectl never copies from a ReplicaSet back onto its Deployment during a rollback
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


@dataclass(frozen=True)
class RolloutProgress:
    done: bool
    failed: bool
    message: str


def revision_of(obj: dict[str, Any]) -> int | None:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def rollout_progress(deployment: dict[str, Any]) -> RolloutProgress:
    """What `kubectl rollout status` would say about this Deployment right now."""
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    name = meta.get("name", "?")
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return RolloutProgress(False, False, "waiting for the deployment spec update to be observed")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == PROGRESS_DEADLINE_REASON:
            return RolloutProgress(False, True, f"deployment {name!r} exceeded its progress deadline: {cond.get('message', '')}")
    desired = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < desired:
        return RolloutProgress(False, False, f"{updated} out of {desired} new replicas have been updated")
    if total > updated:
        return RolloutProgress(False, False, f"{total - updated} old replicas are pending termination")
    if available < updated:
        return RolloutProgress(False, False, f"{available} of {updated} updated replicas are available")
    return RolloutProgress(True, False, f"deployment {name!r} successfully rolled out")


def previous_revision(replica_sets: list[dict[str, Any]]) -> int:
    """The second-highest revision among the ReplicaSets (0 when there is none), as kubectl computes it."""
    current, previous = 0, 0
    for rs in replica_sets:
        revision = revision_of(rs) or 0
        if revision > current:
            current, previous = revision, current
        elif revision > previous:
            previous = revision
    return previous


def template_without_hash(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    labels = (template.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return template


def same_template(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return template_without_hash(a) == template_without_hash(b)


def rollback_patch(deployment: dict[str, Any], replica_set: dict[str, Any], *, extra_annotations: dict[str, str]) -> list[dict[str, Any]]:
    """JSON patch setting the Deployment's template (and annotations) to the ReplicaSet's, as kubectl does.

    It also pins `resourceVersion`, so a concurrent change makes the server answer 409 Conflict.
    """
    template = template_without_hash((replica_set.get("spec") or {}).get("template") or {})
    current = (deployment.get("metadata") or {}).get("annotations") or {}
    annotations = {k: v for k, v in current.items() if k in ANNOTATIONS_TO_SKIP}
    annotations.update(
        {k: v for k, v in ((replica_set.get("metadata") or {}).get("annotations") or {}).items() if k not in ANNOTATIONS_TO_SKIP}
    )
    annotations.update(extra_annotations)
    return [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": deployment["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]


def container_images(template: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c.get("image", "") for c in (template.get("spec") or {}).get("containers") or []}
