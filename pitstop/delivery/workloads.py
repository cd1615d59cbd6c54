"""Deployments of a release, derived from the stable Deployment's JSON (pure).

- `candidate_deployment(stable, target, image=, version=, replicas=)`: the new version as a Deployment next
  to the stable one (`<name>-canary`): same pod template but the new image and version label, and a
  selector that cannot overlap the stable one (role label set to `canary`, or the version label added);
  `resources=` (a rightsizing release) merges new requests/limits into the named containers.
- `promoted_template(stable, candidate)`: the stable Deployment's new pod template at finalization — the
  candidate's template with the stable Deployment's own selector labels, so the selector stays valid.
"""

from __future__ import annotations

import copy
from typing import Any

from .spec import ReleaseTarget

JsonObject = dict[str, Any]
CANARY_ROLE = "canary"
RELEASE_ANNOTATION = "pitstop.dev/release"
_DROP_METADATA = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "ownerReferences",
                  "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")
_DROP_ANNOTATIONS = ("deployment.kubernetes.io/revision", "kubectl.kubernetes.io/last-applied-configuration",
                     # the candidate is pitstop's, never git's (docs/gitops.md)
                     "pitstop.dev/gitops-repository", "pitstop.dev/gitops-path", "pitstop.dev/rejected-templates")
_DROP_LABEL_PREFIXES = ("kustomize.toolkit.fluxcd.io/", "pitstop.dev/release-from-git")


def container_index(template: JsonObject, container: str | None) -> int:
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        raise ValueError("the Deployment's pod template has no containers")
    if container is None:
        return 0
    for index, entry in enumerate(containers):
        if entry.get("name") == container:
            return index
    raise ValueError(f"no container {container!r} in the pod template (containers: {[c.get('name') for c in containers]})")


def image_of(deployment: JsonObject, container: str | None) -> str:
    template = (deployment.get("spec") or {}).get("template") or {}
    return str(template["spec"]["containers"][container_index(template, container)].get("image", ""))


def version_of(deployment: JsonObject, version_label: str) -> str:
    labels = (((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    return str(labels.get(version_label, ""))


def with_resources(template: JsonObject, resources: dict[str, JsonObject]) -> None:
    """Merge `container -> {requests, limits}` into the pod template's containers (in place); a name that is not
    a container is a ValueError."""
    for name, wanted in resources.items():
        container = template["spec"]["containers"][container_index(template, name)]
        merged = copy.deepcopy(container.get("resources") or {})
        for kind in ("requests", "limits"):
            if wanted.get(kind):
                merged[kind] = {**(merged.get(kind) or {}), **wanted[kind]}
        container["resources"] = merged


def candidate_deployment(
    stable: JsonObject, target: ReleaseTarget, *, image: str, version: str, replicas: int, release_id: str = "",
    resources: dict[str, JsonObject] | None = None,
) -> JsonObject:
    meta = copy.deepcopy(stable.get("metadata") or {})
    for key in _DROP_METADATA:
        meta.pop(key, None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROP_ANNOTATIONS}
    if release_id:
        annotations[RELEASE_ANNOTATION] = release_id
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if not k.startswith(_DROP_LABEL_PREFIXES)}
    spec = copy.deepcopy(stable.get("spec") or {})
    spec.pop("paused", None)
    template = spec.setdefault("template", {})
    pod_labels = dict((template.get("metadata") or {}).get("labels") or {})
    selector = dict((spec.get("selector") or {}).get("matchLabels") or {})
    pod_labels[target.version_label] = version
    if target.version_label in labels:
        labels[target.version_label] = version
    if target.role_label and target.role_label in selector:
        selector[target.role_label] = CANARY_ROLE
        pod_labels[target.role_label] = CANARY_ROLE
        if target.role_label in labels:
            labels[target.role_label] = CANARY_ROLE
    else:
        selector[target.version_label] = version
    template.setdefault("metadata", {})["labels"] = pod_labels
    containers = template["spec"]["containers"]
    containers[container_index(template, target.container)]["image"] = image
    if resources:
        with_resources(template, resources)
    spec["selector"] = {"matchLabels": selector}
    spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": target.candidate_name, "namespace": target.namespace, "labels": labels,
                     "annotations": annotations},
        "spec": spec,
    }


def promoted_template(stable: JsonObject, candidate: JsonObject) -> JsonObject:
    """The candidate's pod template, relabelled to match the stable Deployment's selector."""
    template = copy.deepcopy((candidate.get("spec") or {}).get("template") or {})
    selector = ((stable.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.update(selector)
    return template
