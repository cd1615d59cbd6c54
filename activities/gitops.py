"""Changes to git-managed Deployments go through git, and pitstop waits for the engine (issue 18, docs/gitops.md).

A Deployment is git-managed when it names its git source (`pitstop.dev/gitops-repository` / `-path`). Every change
pitstop wants to keep on such a Deployment — a promotion (`delivery.finalize_stable`), a remediation's rollback or
scale (`kubernetes.rollout_undo`, `kubernetes.scale`), a rightsizing promotion — is committed to that file
(signed off with the run id) with `commit_edit`, and `wait_applied` then waits, bounded, until the repository's
engine (a Flux Kustomization named in the worker's `gitops.repositories.<name>.engine`) reports that commit or a
later one applied and Ready. Only then does pitstop verify (or, for a promotion, write the template itself, which
then changes nothing): the engine never re-applies an older revision over pitstop's change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.delivery.models import GitPromotion
from pitstop.delivery.spec import ReleaseTarget
from pitstop.gitops import (
    DeploymentEdit,
    GitSource,
    edit_deployment_in_manifests,
    flux_report,
    git_source,
    promotion_edit,
)

from .clients import ActivityClients
from .git_access import GitAccessError, GitRemote, GitWorkspace, Reader
from .kube_api import KubeJson, ResourceKind
from .sync_sleep import sleep_or_cancel

FLUX_KUSTOMIZATION = ResourceKind("kustomize.toolkit.fluxcd.io/v1", "kustomizations")
APPLY_POLL_SECONDS = 1.0

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def repository_lock(name: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(name, threading.Lock())


class GitChange(BaseModel):
    """A change in git: the repository, the branch head holding it, whether this call made the commit."""

    repository: str
    path: str
    commit: str
    created: bool


def workspace_for(clients: ActivityClients, repository: str) -> GitWorkspace:
    """The worker's clone of a configured repository; an unknown name is a non-retryable domain error."""
    settings = clients.settings
    configured = settings.gitops.repositories.get(repository)
    if configured is None:
        known = ", ".join(sorted(settings.gitops.repositories)) or "none (set gitops.repositories)"
        raise ApplicationError(f"git repository {repository!r} is not configured on this worker: known [{known}]",
                               type="UnknownGitRepository", non_retryable=True)
    try:
        remote = GitRemote.from_settings(configured.url, branch=configured.branch, token_env=configured.token_env,
                                         environ=clients.environ)
    except GitAccessError as exc:
        raise ApplicationError(str(exc), type="GitAccess", non_retryable=True) from None
    root = settings.gitops.work_dir or settings.state_dir / "gitops"
    return GitWorkspace(remote, Path(root) / repository)


def run_id() -> str:
    info = activity.info()
    return f"{info.workflow_id}/{info.workflow_run_id}"


def manifest_edit(source: GitSource, *, name: str, edit: DeploymentEdit) -> Callable[[Reader], dict[str, str]]:
    """What a commit (or a proposed branch) writes: `edit` made to Deployment `name` in the file `source` names. A
    missing file or Deployment/container is a non-retryable error naming the repository and the file."""

    def compute(read: Reader) -> dict[str, str]:
        text = read(source.path)
        if text is None:
            raise ApplicationError(f"{source.path} is missing from git repository {source.repository}",
                                   type="GitManifestMissing", non_retryable=True)
        try:
            return {source.path: edit_deployment_in_manifests(text, name=name, edit=edit)}
        except ValueError as exc:
            raise ApplicationError(f"{source.repository}:{source.path}: {exc}", type="GitManifestInvalid", non_retryable=True) from None

    return compute


def commit_edit(clients: ActivityClients, source: GitSource, *, name: str, edit: DeploymentEdit, message: str) -> GitChange:
    """Commit `edit` to Deployment `name` in its git manifest. Idempotent: a retry finds its change already on the
    branch and makes no second commit (`created=False`, `commit` = the head holding it). Git failures are retryable."""
    workspace = workspace_for(clients, source.repository)
    with repository_lock(source.repository):
        try:
            made = workspace.commit(manifest_edit(source, name=name, edit=edit), message=message,
                                    sign_off=f"pitstop run {run_id()}")
            return GitChange(repository=source.repository, path=source.path, commit=made or workspace.head(), created=made is not None)
        except GitAccessError as exc:
            raise ApplicationError(str(exc), type="GitAccess") from None


def wait_applied(clients: ActivityClients, change: GitChange) -> float | None:
    """Seconds until the repository's engine reported `change.commit` (or a later commit) applied and Ready;
    None when the repository names no engine (nothing to wait for). Heartbeats while it waits; past the engine's
    `apply_timeout_seconds` a non-retryable `GitOpsApplyTimeout` names the Kustomization and what it last said."""
    engine = clients.settings.gitops.repositories[change.repository].engine
    if engine is None:
        return None
    api = KubeJson(clients.kube_client(engine.region))
    path = FLUX_KUSTOMIZATION.object_path(name=engine.kustomization, namespace=engine.namespace)
    workspace = workspace_for(clients, change.repository)
    started = time.monotonic()
    while True:
        report = flux_report(api.get(path))
        if report.ready and report.applied_sha:
            with repository_lock(change.repository):
                if workspace.contains(change.commit, report.applied_sha):
                    return round(time.monotonic() - started, 2)
        waited = time.monotonic() - started
        if waited > engine.apply_timeout_seconds:
            raise ApplicationError(
                f"Flux Kustomization {engine.namespace}/{engine.kustomization} (region {engine.region}) did not apply "
                f"{change.commit[:12]} of {change.repository} within {engine.apply_timeout_seconds:g}s: last applied "
                f"{(report.applied_sha or 'nothing')[:12]}, Ready={report.ready}: {report.message[:300]}",
                type="GitOpsApplyTimeout", non_retryable=True)
        activity.heartbeat(f"waiting for {engine.kustomization} to apply {change.commit[:12]} ({waited:.0f}s)")
        sleep_or_cancel(APPLY_POLL_SECONDS)


def wait_applied_or_note(clients: ActivityClients, change: GitChange) -> tuple[float | None, str]:
    """`wait_applied`, with an engine that does not apply in time noted instead of failing: (seconds, note). For a
    change that is already in git and that pitstop also writes (a promotion) or that keeps (a revert)."""
    try:
        return wait_applied(clients, change), ""
    except ApplicationError as exc:
        if exc.type != "GitOpsApplyTimeout":
            raise
        activity.logger.warning("%s:%s: %s", change.repository, change.path, exc)
        return None, str(exc)


def commit_and_wait(clients: ActivityClients, dep: dict[str, Any], *, name: str, edit: DeploymentEdit, message: str) -> tuple[GitChange, float | None] | None:
    """For a git-managed Deployment `dep`: commit `edit` and wait for the engine (see `wait_applied`); None when
    `dep` is not git-managed (the caller changes the cluster directly)."""
    source = git_source(dep)
    if source is None:
        return None
    change = commit_edit(clients, source, name=name, edit=edit, message=message)
    return change, wait_applied(clients, change)


def promote_in_git(clients: ActivityClients, stable: dict[str, Any], candidate: dict[str, Any], t: ReleaseTarget) -> GitPromotion | None:
    """A promotion of git-managed `stable`: the candidate's images, resources and version committed to its manifest
    (no second commit when git already holds them), then the engine's apply awaited. None when `stable` is not
    git-managed. An engine that does not apply within its timeout is noted, not fatal: the commit is in git, the
    caller writes the same template, and the engine's next apply agrees."""
    source = git_source(stable)
    if source is None:
        return None
    template = (candidate.get("spec") or {}).get("template") or {}
    edit = promotion_edit(template, version_label=t.version_label)
    message = (f"release {t.namespace}/{t.deployment_name} in {t.region}: promote "
               f"{edit.template_labels.get(t.version_label, '')} ({edit.describe()})")
    change = commit_edit(clients, source, name=t.deployment_name, edit=edit, message=message)
    seconds, note = wait_applied_or_note(clients, change)
    return GitPromotion(repository=change.repository, commit=change.commit, created=change.created,
                        engine_apply_seconds=seconds, note=note)
