"""Promotions of git-managed Deployments go through git (issue 18, docs/gitops.md).

`commit_promotion` is called by `delivery.finalize_stable` before it writes the promoted pod template: when the
stable Deployment names its git source (`pitstop.dev/gitops-repository` / `-path`), the same image and version are
committed to that file first (signed off with the run id), so the engine's next apply agrees with the cluster and
never reverts the promotion. A Deployment without those annotations is not touched here.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.delivery.spec import ReleaseTarget
from pitstop.gitops import git_source, promote_in_manifests

from .clients import ActivityClients
from .git_access import GitAccessError, GitRemote, GitWorkspace

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(name: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(name, threading.Lock())


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


def commit_promotion(clients: ActivityClients, stable: dict[str, Any], t: ReleaseTarget, *, image: str, version: str) -> str | None:
    """Commit the promoted image/version of a git-managed stable Deployment; the commit (None: already in git or
    not git-managed). Git failures are retryable (the activity's retry policy applies)."""
    source = git_source(stable)
    if source is None:
        return None
    workspace = workspace_for(clients, source.repository)

    def compute(read: Any) -> dict[str, str]:
        text = read(source.path)
        if text is None:
            raise ApplicationError(f"{source.path} is missing from git repository {source.repository}",
                                   type="GitManifestMissing", non_retryable=True)
        try:
            return {source.path: promote_in_manifests(text, name=t.deployment_name, container=t.container, image=image,
                                                      version_label=t.version_label, version=version)}
        except ValueError as exc:
            raise ApplicationError(f"{source.repository}:{source.path}: {exc}", type="GitManifestInvalid", non_retryable=True) from None

    message = f"release {t.namespace}/{t.deployment_name} {version} in {t.region}: promote {image}"
    with _lock(source.repository):
        try:
            return workspace.commit(compute, message=message, sign_off=f"pitstop run {run_id()}")
        except GitAccessError as exc:
            raise ApplicationError(str(exc), type="GitAccess") from None
