"""Backup-drill activities: `backup.export` (regional: reads one region's namespace), `backup.restore` and
`backup.verify` (shared queue: write to / read from a restore target, a scratch cluster the worker is configured
with, never a fleet region). What is exported and compared is pure, in `pitstop.backup`.
"""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.backup import (
    BACKUP_KINDS,
    NEVER_EXPORTED,
    compare_restore,
    exported,
    kind_named,
    normalise,
    object_ref,
    spec_checksum,
)
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.backup import (
    MAX_BACKUP_BYTES,
    Backup,
    ExportArgs,
    RestoreArgs,
    RestoreResult,
    VerifyArgs,
    VerifyResult,
)

from .clients import ActivityClients
from .kube_api import KubeJson
from .kube_errors import kube_errors


class BackupExportActivities:
    """Regional: served on the region's task queue with that region's client only."""

    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    @activity.defn(name="backup.export")
    def export(self, invocation: StepInvocation[ExportArgs]) -> Backup:
        """List every backed-up kind in the namespace (a kind whose CRD the cluster lacks has none)."""
        args = invocation.args
        api = KubeJson(self._clients.kube_client(args.region))
        objects: list[dict[str, object]] = []
        checksums: dict[str, str] = {}
        counts: dict[str, int] = {}
        with kube_errors(f"namespace {args.namespace}", args.region):
            for kind in BACKUP_KINDS:
                for obj in _listed(api, kind.collection_path(args.namespace), optional=kind.optional):
                    if not exported(obj, kind=kind):
                        continue
                    clean = normalise(obj, kind=kind)
                    objects.append(clean)
                    checksums[object_ref(clean)] = spec_checksum(clean)
                    counts[kind.kind] = counts.get(kind.kind, 0) + 1
        if not objects:  # a list in a namespace that does not exist is empty, not a 404
            raise ApplicationError(
                f"namespace {args.namespace} in region {args.region} has nothing to back up (missing or empty)",
                type="NothingToBackUp", non_retryable=True,
            )
        size = len(json.dumps(objects, separators=(",", ":")))
        if size > MAX_BACKUP_BYTES:
            raise ApplicationError(
                f"namespace {args.namespace} in region {args.region}: backup of {len(objects)} objects is {size} bytes, "
                f"above the {MAX_BACKUP_BYTES}-byte limit of a backup drill (it travels in the run's history)",
                type="BackupTooLarge", non_retryable=True,
            )
        return Backup(
            region=args.region, namespace=args.namespace, objects=objects, checksums=checksums, counts=counts,
            size_bytes=size, not_exported=list(NEVER_EXPORTED),
            summary=f"exported {len(objects)} objects of namespace {args.namespace} from {args.region} ({size} bytes)",
        )


class BackupRestoreActivities:
    """Shared queue: restore targets are not regions (no regional worker serves them)."""

    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    @activity.defn(name="backup.restore")
    def restore(self, invocation: StepInvocation[RestoreArgs]) -> RestoreResult:
        """Server-side apply every object (the namespace first); idempotent, so a retry applies the same state.
        Dry run: the API server's dry-run of each apply."""
        args, backup = invocation.args, invocation.args.backup
        api = KubeJson(self._clients.restore_target(args.target))
        applied = []
        with kube_errors(f"restore of namespace {backup.namespace}", f"restore target {args.target}"):
            namespace_path = f"/api/v1/namespaces/{backup.namespace}"
            namespace_exists = api.get_optional(namespace_path) is not None
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": backup.namespace}}
            api.apply(namespace_path, namespace, dry_run=invocation.dry_run)
            for obj in backup.objects:
                if invocation.dry_run and not namespace_exists:  # the server cannot dry-run into a namespace to be
                    applied.append(object_ref(obj))               # created; the namespace's own dry run was checked
                    continue
                kind = kind_named(str(obj["kind"]))
                path = f"{kind.collection_path(backup.namespace)}/{obj['metadata']['name']}"
                api.apply(path, {**obj, "metadata": {**obj["metadata"], "namespace": backup.namespace}},
                          dry_run=invocation.dry_run)
                applied.append(object_ref(obj))
                activity.heartbeat(len(applied))
        verb = "would restore" if invocation.dry_run else "restored"
        return RestoreResult(
            target=args.target, namespace=backup.namespace, applied=applied, changed=not invocation.dry_run,
            summary=f"{verb} {len(applied)} objects of {backup.region}/{backup.namespace} into {args.target}",
        )

    @activity.defn(name="backup.verify")
    def verify(self, invocation: StepInvocation[VerifyArgs]) -> VerifyResult:
        """Read the backed-up kinds back from the target and compare checksums; a difference fails the step,
        naming every missing or changed object (not retried: it is the drill's finding)."""
        args, backup = invocation.args, invocation.args.backup
        api = KubeJson(self._clients.restore_target(args.target))
        found = {}
        with kube_errors(f"restored namespace {backup.namespace}", f"restore target {args.target}"):
            for kind in BACKUP_KINDS:
                for obj in _listed(api, kind.collection_path(backup.namespace), optional=kind.optional):
                    clean = normalise(obj, kind=kind)
                    found[object_ref(clean)] = spec_checksum(clean)
        comparison = compare_restore(expected=backup.checksums, found=found)
        result = VerifyResult(
            target=args.target, namespace=backup.namespace, verified=comparison.verified, missing=comparison.missing,
            mismatched=comparison.changed, ok=comparison.ok,
            summary=f"{len(comparison.verified)}/{len(backup.checksums)} objects verified in {args.target}",
        )
        if not comparison.ok and not invocation.dry_run:
            raise ApplicationError(
                f"restore of {backup.region}/{backup.namespace} into {args.target} does not match the backup: "
                f"missing {comparison.missing or 'none'}, changed {comparison.changed or 'none'}",
                result.model_dump(mode="json"), type="RestoreMismatch", non_retryable=True,
            )
        return result


def _listed(api: KubeJson, path: str, *, optional: bool) -> list[dict[str, object]]:
    try:
        return api.items(path)
    except ApiException as exc:
        if exc.status == 404 and optional:
            return []
        raise
