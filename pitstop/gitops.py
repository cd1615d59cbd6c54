"""GitOps coexistence rules (pure): which objects of a git-managed service are git's and which are pitstop's,
where a git-managed Deployment's manifest lives, and the edit a promotion makes to it.

Ownership (docs/gitops.md): a service's Deployment, Service and PodDisruptionBudget are git's (the engine corrects
drift on them); its VirtualService and DestinationRule are pitstop's after the engine first creates them (Flux's
per-object `kustomize.toolkit.fluxcd.io/ssa: IfNotPresent`), and the candidate `<name>-canary` Deployment is
never in git. A promotion changes the stable Deployment's pod template (image, version label): for a git-managed
Deployment it commits that change to git before writing it to the cluster, so the engine's next apply agrees.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

REPOSITORY_ANNOTATION = "pitstop.dev/gitops-repository"
PATH_ANNOTATION = "pitstop.dev/gitops-path"
FLUX_SSA_ANNOTATION = "kustomize.toolkit.fluxcd.io/ssa"
FLUX_IF_NOT_PRESENT = "IfNotPresent"
PITSTOP_OWNED_KINDS = ("VirtualService", "DestinationRule")
"""created from git once, then pitstop's: route weights, mirrors and subsets change during every release"""

JsonObject = dict[str, Any]


class GitSource(BaseModel):
    """Where a git-managed object's manifest lives: a configured repository and a file in it."""

    repository: str
    path: str


def git_source(obj: JsonObject) -> GitSource | None:
    """The object's git source from its annotations, or None when it is not git-managed."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    repository, path = annotations.get(REPOSITORY_ANNOTATION), annotations.get(PATH_ANNOTATION)
    if not repository or not path:
        return None
    return GitSource(repository=repository, path=path)


def carve_out(obj: JsonObject) -> JsonObject:
    """The manifest as it goes into git: pitstop-owned kinds get Flux's `ssa: IfNotPresent` (created, never corrected)."""
    if obj.get("kind") in PITSTOP_OWNED_KINDS:
        annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[FLUX_SSA_ANNOTATION] = FLUX_IF_NOT_PRESENT
    return obj


def promote_in_manifests(text: str, *, name: str, container: str | None, image: str, version_label: str, version: str) -> str:
    """`text` (multi-document YAML) with Deployment `name`'s pod template on `image` and `version`.

    Raises ValueError naming what is missing (the Deployment, its container)."""
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    found = False
    for doc in documents:
        if doc.get("kind") != "Deployment" or (doc.get("metadata") or {}).get("name") != name:
            continue
        found = True
        template = doc.setdefault("spec", {}).setdefault("template", {})
        template.setdefault("metadata", {}).setdefault("labels", {})[version_label] = version
        containers = (template.get("spec") or {}).get("containers") or []
        chosen = [c for c in containers if container is None or c.get("name") == container][:1]
        if not chosen:
            raise ValueError(f"Deployment {name} has no container {container or '(any)'} in its git manifest")
        chosen[0]["image"] = image
    if not found:
        raise ValueError(f"no Deployment {name} in the git manifest")
    return yaml.safe_dump_all(documents, sort_keys=False)
