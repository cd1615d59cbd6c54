"""Releases from git (issue 18 item 3, docs/gitops.md), the pure rules: which Deployment a commit released, and what
pitstop does about it.

A git-managed Deployment opts in with the label `pitstop.dev/release-from-git: "true"` in its manifest. pitstop keeps
it paused (`spec.paused`, written by pitstop's field manager; git's manifest does not set it, so the engine's
server-side apply leaves it alone): when the engine applies a commit that changes the pod template, the Deployment
controller makes no new ReplicaSet and the stable pods keep the version they run. The template the engine applied
and the template the pods run (the Deployment's newest ReplicaSet) then differ: that difference is a release waiting
to start (`decide`). Its candidate is the new template, its rollback writes the running template back, and a
rejected template is recorded on the Deployment (`pitstop.dev/rejected-templates`) so it is not released twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from pitstop.delivery.spec import ReleaseSpec
from pitstop.gitops import DeploymentEdit, git_source
from pitstop.rollout import rollout_progress

GIT_RELEASE_WATCH_WORKFLOW = "GitReleaseWatch"
RELEASE_FROM_GIT_LABEL = "pitstop.dev/release-from-git"
REJECTED_ANNOTATION = "pitstop.dev/rejected-templates"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
REJECTED_KEPT = 8
"""rejected template hashes kept on a Deployment (newest last)"""

JsonObject = dict[str, Any]


def released_from_git(dep: JsonObject) -> bool:
    """Whether `dep` opted in: the label set to "true" and a git source named (a candidate never has one)."""
    labels = (dep.get("metadata") or {}).get("labels") or {}
    return labels.get(RELEASE_FROM_GIT_LABEL) == "true" and git_source(dep) is not None


def template_hash(template: JsonObject) -> str:
    """A short, stable digest of a pod template (its canonical JSON)."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def without_hash_label(template: JsonObject) -> JsonObject:
    """A ReplicaSet's pod template as its Deployment had it: without the controller's `pod-template-hash` label."""
    result = copy.deepcopy(template)
    labels = (result.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return result


def _revision(rs: JsonObject) -> int:
    value = ((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, "0")
    return int(value) if str(value).isdigit() else 0


def running_template(dep: JsonObject, replica_sets: list[JsonObject]) -> JsonObject | None:
    """The pod template `dep`'s pods run: its newest ReplicaSet's (owner by uid), or None when it has none."""
    uid = (dep.get("metadata") or {}).get("uid")
    owned = [rs for rs in replica_sets
             if any(o.get("uid") == uid for o in (rs.get("metadata") or {}).get("ownerReferences") or [])]
    if not owned:
        return None
    newest = max(owned, key=_revision)
    return without_hash_label((newest.get("spec") or {}).get("template") or {})


def rejected_hashes(dep: JsonObject) -> list[str]:
    value = ((dep.get("metadata") or {}).get("annotations") or {}).get(REJECTED_ANNOTATION, "")
    return [h for h in str(value).split(",") if h]


def with_rejected(dep: JsonObject, digest: str) -> str:
    """The annotation's new value: `digest` added (once), the newest `REJECTED_KEPT` kept."""
    kept = [h for h in rejected_hashes(dep) if h != digest] + [digest]
    return ",".join(kept[-REJECTED_KEPT:])


class Decision(StrEnum):
    NOTHING = "nothing"
    PAUSE = "pause"  # opted in, rolled out, not paused yet: pause it so git's next template waits for a release
    RELEASE = "release"  # paused with a new template from git that its pods do not run: start its release
    REJECTED = "rejected"  # the same, but that template was rolled back before: leave it


def decide(dep: JsonObject, running: JsonObject | None) -> Decision:
    """What the watcher does with Deployment `dep` whose pods run `running` (see the module docstring)."""
    if not released_from_git(dep) or running is None:
        return Decision.NOTHING
    spec = dep.get("spec") or {}
    template = spec.get("template") or {}
    if not spec.get("paused"):
        # pause only a finished rollout: one in progress (outside pitstop) goes on and is paused afterwards
        return Decision.PAUSE if template == running and rollout_progress(dep).done else Decision.NOTHING
    if template == running:
        return Decision.NOTHING
    if template_hash(template) in rejected_hashes(dep):
        return Decision.REJECTED
    return Decision.RELEASE


class PendingRelease(BaseModel):
    """A Deployment whose new template from git waits for its release."""

    region: str
    namespace: str
    deployment: str
    template_hash: str
    container: str
    image: str
    version: str | None
    running_image: str

    @property
    def workflow_id(self) -> str:
        """One release per Deployment and template: a watcher restarted or continued never starts it twice."""
        return f"git-release-{self.region}-{self.namespace}-{self.deployment}-{self.template_hash}"


def pending_release(dep: JsonObject, running: JsonObject, *, region: str, version_label: str) -> PendingRelease:
    """The release of `dep`'s new template: the first container whose image differs from the running one (else the
    first container) is the one released; its version is the template's version label (None: the image tag)."""
    meta = dep.get("metadata") or {}
    template = (dep.get("spec") or {}).get("template") or {}
    new = (template.get("spec") or {}).get("containers") or []
    old = {c.get("name"): c.get("image", "") for c in (running.get("spec") or {}).get("containers") or []}
    if not new:
        raise ValueError(f"Deployment {meta.get('name')} has no containers")
    chosen = next((c for c in new if c.get("image") != old.get(c.get("name"))), new[0])
    version = ((template.get("metadata") or {}).get("labels") or {}).get(version_label)
    return PendingRelease(region=region, namespace=str(meta.get("namespace", "default")), deployment=str(meta["name"]),
                          template_hash=template_hash(template), container=str(chosen["name"]),
                          image=str(chosen.get("image", "")), version=str(version) if version else None,
                          running_image=str(old.get(chosen["name"], "")))


def release_values(pending: PendingRelease, defaults: JsonObject) -> JsonObject:
    """The `ReleaseSpec` fields of a git-started release: the worker's defaults (steps, analysis, ...), then what the
    commit decided (service = the Deployment's name, its image, version and container)."""
    values = {**defaults, "service": pending.deployment, "namespace": pending.namespace,
              "deployment": pending.deployment, "container": pending.container, "image": pending.image}
    if pending.version:
        values["version"] = pending.version
    return values


def revert_edit(running: JsonObject, *, version_label: str) -> DeploymentEdit:
    """The revert of a rejected template in git: every container's image and the version label back to what the
    pods run (resources stay: the API canonicalises quantities, so git's spelling is kept)."""
    containers = (running.get("spec") or {}).get("containers") or []
    version = ((running.get("metadata") or {}).get("labels") or {}).get(version_label)
    return DeploymentEdit(images={c["name"]: c["image"] for c in containers if c.get("name") and c.get("image")},
                          template_labels={version_label: str(version)} if version else {})


def revert_branch(deployment: str, digest: str) -> str:
    """The branch a revert is proposed on under the `branch` policy."""
    return f"pitstop/revert-{deployment}-{digest[:8]}"


# ---------------------------------------------------------------- the watcher's messages


class PendingReleasesInput(BaseModel):
    region: str


class StartableRelease(BaseModel):
    workflow_id: str
    release: ReleaseSpec
    pending: PendingRelease


class PendingReleases(BaseModel):
    """One region's poll: releases to start, Deployments just paused or holding a rejected template, problems."""

    releases: list[StartableRelease] = Field(default_factory=list)
    paused: list[str] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


NOTES_KEPT = 50


class WatchStatus(BaseModel):
    """What the watcher did (query `status`), carried across continue-as-new; the newest `NOTES_KEPT` entries."""

    polls: int = 0
    started: list[str] = Field(default_factory=list, description="workflow ids of the releases it started")
    notes: list[str] = Field(default_factory=list)

    def note(self, line: str) -> None:
        self.notes = [*self.notes, line[:500]][-NOTES_KEPT:]

    def record_start(self, workflow_id: str) -> None:
        self.started = [*self.started, workflow_id][-NOTES_KEPT:]


class GitReleaseWatchInput(BaseModel):
    """Input of `GitReleaseWatch`: the regions to watch and how often."""

    regions: list[str] = Field(min_length=1)
    poll_seconds: float = Field(10.0, gt=0, le=3600)
    polls_per_run: int = Field(200, ge=1, le=5000, description="continue-as-new after this many polls")
    task_queue: str = Field("", description="base task queue; the polls run on <base>-<region>; default the workflow's")
    carried: WatchStatus | None = None
