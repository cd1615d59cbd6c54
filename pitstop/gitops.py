"""GitOps coexistence rules (pure): which objects of a git-managed service are git's and which are pitstop's,
where a git-managed Deployment's manifest lives, and the edit a promotion makes to it.

Ownership (docs/gitops.md): a service's Deployment, Service and PodDisruptionBudget are git's (the engine corrects
drift on them); its VirtualService and DestinationRule are pitstop's after the engine first creates them (Flux's
per-object `kustomize.toolkit.fluxcd.io/ssa: IfNotPresent`), and the candidate `<name>-canary` Deployment is
never in git. A promotion changes the stable Deployment's pod template (image, version label): for a git-managed
Deployment it commits that change to git before writing it to the cluster, so the engine's next apply agrees; a
remediation's rollback or scale and a rightsizing promotion are commits too (`DeploymentEdit`). `flux_report` reads
a Flux Kustomization's status: which commit it applied last, and whether it is Ready.
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


class DeploymentEdit(BaseModel):
    """What pitstop changes in a git-managed Deployment's manifest: a promotion (images, resources, version
    label), a rollback (images, labels of the revision rolled back to), a scale (replicas). Unset parts stay."""

    images: dict[str, str] = {}
    """container name -> image"""
    resources: dict[str, JsonObject] = {}
    """container name -> its `resources` (requests/limits), replaced whole"""
    template_labels: dict[str, str] = {}
    replicas: int | None = None

    def describe(self) -> str:
        parts = [f"{c}={i}" for c, i in sorted(self.images.items())]
        parts += [f"{c} resources" for c in sorted(self.resources)]
        parts += [f"{k}={v}" for k, v in sorted(self.template_labels.items())]
        if self.replicas is not None:
            parts.append(f"replicas={self.replicas}")
        return ", ".join(parts) or "nothing"


def edit_deployment_in_manifests(text: str, *, name: str, edit: DeploymentEdit) -> str:
    """`text` (multi-document YAML) with `edit` made to Deployment `name`. Only what `edit` names changes.

    Raises ValueError naming what is missing (the Deployment, a container)."""
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    deployments = [d for d in documents if d.get("kind") == "Deployment" and (d.get("metadata") or {}).get("name") == name]
    if not deployments:
        raise ValueError(f"no Deployment {name} in the git manifest")
    for doc in deployments:
        spec = doc.setdefault("spec", {})
        if edit.replicas is not None:
            spec["replicas"] = edit.replicas
        template = spec.setdefault("template", {})
        if edit.template_labels:
            template.setdefault("metadata", {}).setdefault("labels", {}).update(edit.template_labels)
        containers = {c.get("name"): c for c in (template.get("spec") or {}).get("containers") or []}
        for container in sorted(set(edit.images) | set(edit.resources)):
            if container not in containers:
                raise ValueError(f"Deployment {name} has no container {container} in its git manifest "
                                 f"(containers: {sorted(c for c in containers if c)})")
            if container in edit.images:
                containers[container]["image"] = edit.images[container]
            if container in edit.resources:
                containers[container]["resources"] = edit.resources[container]
    return yaml.safe_dump_all(documents, sort_keys=False)


def promotion_edit(candidate_template: JsonObject, *, version_label: str) -> DeploymentEdit:
    """A promotion's edit: every container's image and resources and the version label, from the candidate's pod
    template (a rightsizing candidate differs by its resources only; a release candidate by its image)."""
    containers = (candidate_template.get("spec") or {}).get("containers") or []
    version = ((candidate_template.get("metadata") or {}).get("labels") or {}).get(version_label)
    return DeploymentEdit(
        images={c["name"]: c["image"] for c in containers if c.get("name") and c.get("image")},
        resources={c["name"]: c["resources"] for c in containers if c.get("name") and c.get("resources")},
        template_labels={version_label: version} if version else {},
    )


def revision_sha(revision: str | None) -> str | None:
    """The commit of a Flux revision (`main@sha1:<sha>`, `sha1:<sha>` or a bare sha)."""
    if not revision:
        return None
    return revision.rsplit(":", 1)[-1].rsplit("@", 1)[-1] or None


class EngineReport(BaseModel):
    """What a Flux Kustomization says about its last apply."""

    ready: bool
    applied_sha: str | None
    message: str = ""


def flux_report(kustomization: JsonObject) -> EngineReport:
    status = kustomization.get("status") or {}
    ready: JsonObject = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return EngineReport(ready=ready.get("status") == "True", applied_sha=revision_sha(status.get("lastAppliedRevision")),
                        message=str(ready.get("message") or ""))


# ---------------------------------------------------------------- a bounded suspend of the engine for one object

FLUX_RECONCILE_ANNOTATION = "kustomize.toolkit.fluxcd.io/reconcile"
"""set to `disabled` on the in-cluster object, kustomize-controller neither applies nor prunes it"""
FLUX_RECONCILE_DISABLED = "disabled"
SUSPENDED_UNTIL_ANNOTATION = "pitstop.dev/gitops-suspended-until"
SUSPEND_REASON_ANNOTATION = "pitstop.dev/gitops-suspend-reason"
SUSPENDED_BY_ANNOTATION = "pitstop.dev/gitops-suspended-by"
SUSPEND_ANNOTATIONS = (FLUX_RECONCILE_ANNOTATION, SUSPENDED_UNTIL_ANNOTATION, SUSPEND_REASON_ANNOTATION, SUSPENDED_BY_ANNOTATION)


class Suspension(BaseModel):
    """The engine's reconciliation of one object, as its annotations say."""

    suspended: bool
    by_pitstop: bool
    """pitstop made this suspension (it has an end): pitstop may lift it; a suspension made by hand it never lifts"""
    until: str | None = None
    by: str = ""
    reason: str = ""


def suspension_of(obj: JsonObject) -> Suspension:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    until = annotations.get(SUSPENDED_UNTIL_ANNOTATION)
    return Suspension(suspended=annotations.get(FLUX_RECONCILE_ANNOTATION) == FLUX_RECONCILE_DISABLED,
                      by_pitstop=until is not None, until=until, by=annotations.get(SUSPENDED_BY_ANNOTATION, ""),
                      reason=annotations.get(SUSPEND_REASON_ANNOTATION, ""))


def suspend_annotations(*, until: str, reason: str, by: str) -> dict[str, str]:
    return {FLUX_RECONCILE_ANNOTATION: FLUX_RECONCILE_DISABLED, SUSPENDED_UNTIL_ANNOTATION: until,
            SUSPEND_REASON_ANNOTATION: reason, SUSPENDED_BY_ANNOTATION: by}


def resume_annotations() -> dict[str, None]:
    """A merge patch's annotations removing every suspend annotation."""
    return {key: None for key in SUSPEND_ANNOTATIONS}


def suspension_expired(suspension: Suspension, now_rfc3339: str) -> bool:
    """A pitstop suspension past its end (RFC 3339 UTC strings of one format compare as text)."""
    return suspension.by_pitstop and suspension.until is not None and suspension.until <= now_rfc3339
