"""Releases from git (issue 18 item 3, docs/gitops.md): the cluster and git side, regional.

- `gitops.pending_releases` (the `GitReleaseWatch` workflow's poll): lists the region's opted-in Deployments
  (label `pitstop.dev/release-from-git=true`) and their ReplicaSets, pauses those rolled out and not paused yet, and
  returns the releases waiting to start (a paused Deployment holding a template from git its pods do not run), each
  with its `ReleaseSpec` built from the worker's `gitops.releases.release` defaults. Read-only but for the pause.
- `delivery.revert_in_git` (a rolled-back release from git, after `delivery.restore` put traffic and the template
  back): the revert of the rejected template committed to git — on the engine's branch (`direct`, then the engine's
  apply awaited, bounded) or on a branch of its own (`branch`), per `gitops.releases.revert`.
- `running_view` / `roll_out_paused`: what `delivery.snapshot` and `delivery.finalize_stable` do differently for an
  opted-in Deployment (snapshot the template its pods run; unpause for the promotion, then pause again).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.delivery.models import GitRevert, RestoreInput
from pitstop.delivery.spec import ReleaseSpec
from pitstop.git_releases import (
    RELEASE_FROM_GIT_LABEL,
    Decision,
    PendingReleases,
    PendingReleasesInput,
    StartableRelease,
    decide,
    pending_release,
    release_values,
    released_from_git,
    revert_branch,
    revert_edit,
    running_template,
    template_hash,
)
from pitstop.gitops import DeploymentEdit, GitSource, git_source

from .clients import ActivityClients
from .git_access import GitAccessError
from .gitops import commit_edit, manifest_edit, repository_lock, run_id, wait_applied_or_note, workspace_for
from .kube_api import KubeJson, deployment_path
from .kube_errors import kube_errors

JsonObject = dict[str, Any]


def replica_sets(api: KubeJson, namespace: str) -> list[JsonObject]:
    return api.items(f"/apis/apps/v1/namespaces/{namespace}/replicasets")


def running_view(api: KubeJson, dep: JsonObject) -> tuple[JsonObject, str]:
    """`dep` as a release sees its stable side: for an opted-in, paused Deployment holding a template from git its
    pods do not run, a copy with the running template and the new template's hash; else `dep` itself and ""."""
    if not released_from_git(dep) or not (dep.get("spec") or {}).get("paused"):
        return dep, ""
    template = (dep.get("spec") or {}).get("template") or {}
    running = running_template(dep, replica_sets(api, dep["metadata"]["namespace"]))
    if running is None or running == template:
        return dep, ""
    view = copy.deepcopy(dep)
    view["spec"]["template"] = running
    return view, template_hash(template)


def roll_out_paused(write_paused: Callable[[bool], bool], wait: Callable[[], float]) -> float:
    """A promotion of an opted-in Deployment: unpause (the controller rolls the template out), wait until ready, pause
    again so the next template from git waits for its release. A retry after any of these repeats none of them."""
    write_paused(False)
    waited = wait()
    write_paused(True)
    return waited


class GitReleaseActivities:
    """One region's releases from git."""

    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    def _api(self, region: str) -> KubeJson:
        return KubeJson(self._clients.kube_client(region))

    @activity.defn(name="gitops.pending_releases")
    def pending_releases(self, request: PendingReleasesInput) -> PendingReleases:
        api, region = self._api(request.region), request.region
        defaults = self._clients.settings.gitops.releases.release
        version_label = str(defaults.get("version_label", "version"))
        with kube_errors("deployments released from git", region):
            deployments = api.items("/apis/apps/v1/deployments", labelSelector=f"{RELEASE_FROM_GIT_LABEL}=true")
        found = PendingReleases()
        by_namespace: dict[str, list[JsonObject]] = {}
        for dep in deployments:
            by_namespace.setdefault(dep["metadata"]["namespace"], []).append(dep)
        for namespace, deps in sorted(by_namespace.items()):
            activity.heartbeat(f"{namespace}: {len(deps)} Deployments")
            with kube_errors(f"replicasets in {namespace}", region):
                sets = replica_sets(api, namespace)
            for dep in deps:
                self._consider(api, dep, sets, found, region=region, defaults=defaults, version_label=version_label)
        return found

    def _consider(self, api: KubeJson, dep: JsonObject, sets: list[JsonObject], found: PendingReleases, *,
                  region: str, defaults: JsonObject, version_label: str) -> None:
        meta = dep["metadata"]
        name = f"{meta['namespace']}/{meta['name']}"
        running = running_template(dep, sets)
        decision = decide(dep, running)
        if decision is Decision.PAUSE:
            # only the version read: if the engine applied a new template since, the pause waits for the next poll
            body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "spec": {"paused": True}}
            with kube_errors(f"deployment {name}", region):
                try:
                    api.patch(deployment_path(meta["namespace"], meta["name"]), body, patch_type="merge")
                    found.paused.append(name)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
        elif decision is Decision.REJECTED:
            found.rejected.append(name)
        elif decision is Decision.RELEASE and running is not None:
            try:
                pending = pending_release(dep, running, region=region, version_label=version_label)
                spec = ReleaseSpec.model_validate(release_values(pending, defaults))
            except (ValueError, ValidationError) as exc:
                found.problems.append(f"{name}: no release: {exc}"[:500])
                return
            found.releases.append(StartableRelease(workflow_id=pending.workflow_id, release=spec, pending=pending))

    @activity.defn(name="delivery.revert_in_git")
    def revert_in_git(self, request: RestoreInput) -> GitRevert:
        """The revert of a rolled-back release from git (see the module docstring). Idempotent: a retry finds its
        commit (direct) or its branch (branch) and makes no second one."""
        t, snap = request.target, request.snapshot
        if not snap.stable.pending_template:
            raise ApplicationError(f"the release of {t.lease_key} did not come from git: nothing to revert",
                                   type="Invalid", non_retryable=True)
        api = self._api(t.region)
        with kube_errors(f"deployment {t.namespace}/{t.deployment_name}", t.region):
            stable = api.get(deployment_path(t.namespace, t.deployment_name))
        source = git_source(stable)
        if source is None:
            raise ApplicationError(f"deployment {t.namespace}/{t.deployment_name} no longer names its git source: "
                                   "nothing to revert", type="GitManifestMissing", non_retryable=True)
        edit = revert_edit(snap.stable.template, version_label=t.version_label)
        message = (f"revert {t.namespace}/{t.deployment_name} in {t.region} to {snap.stable.version or snap.stable.image}: "
                   f"its release was rolled back ({edit.describe()})")
        policy = self._clients.settings.gitops.releases.revert
        if policy == "branch":
            return self._propose(source.repository, source.path, t.deployment_name, snap.stable.pending_template, edit, message)
        change = commit_edit(self._clients, source, name=t.deployment_name, edit=edit, message=message)
        branch = self._clients.settings.gitops.repositories[change.repository].branch
        revert = GitRevert(repository=change.repository, commit=change.commit, branch=branch, created=change.created, policy=policy)
        revert.engine_apply_seconds, revert.note = wait_applied_or_note(self._clients, change)
        return revert

    def _propose(self, repository: str, path: str, name: str, digest: str, edit: DeploymentEdit, message: str) -> GitRevert:
        workspace = workspace_for(self._clients, repository)
        branch = revert_branch(name, digest)
        compute = manifest_edit(GitSource(repository=repository, path=path), name=name, edit=edit)
        with repository_lock(repository):
            try:
                made = workspace.propose(compute, branch=branch, message=message, sign_off=f"pitstop run {run_id()}")
            except GitAccessError as exc:
                raise ApplicationError(str(exc), type="GitAccess") from None
        if made is None:
            raise ApplicationError(f"{repository}:{path} already has {edit.describe()}: nothing to revert",
                                   type="GitRevertEmpty", non_retryable=True)
        return GitRevert(repository=repository, commit=made[0], branch=branch, created=made[1], policy="branch")

