"""Backup-drill step types: export a namespace's objects from a region (`backup.export`, regional, read-only),
restore them into a restore target (`backup.restore`, a scratch cluster named in `backup.restore_targets`, never a
region) and verify the restore against the export's checksums (`backup.verify`, read-only).

What a backup holds and how objects are compared: `pitstop.backup`. Executed by `activities.backup`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pitstop.runbook.step_types import StepArgs, StepResult, StepType, register_step_type

from .common import KubeLabelName, RegionalArgs

MAX_BACKUP_BYTES = 512 * 1024
"""A backup travels in the run's history (it is the drill's audit record); a namespace above this is refused."""


class ExportArgs(RegionalArgs):
    namespace: KubeLabelName = Field(description="the namespace whose objects are exported")


class Backup(StepResult):
    region: str
    namespace: str
    objects: list[dict[str, Any]] = Field(default_factory=list, description="normalised objects, in restore order")
    checksums: dict[str, str] = Field(default_factory=dict, description="Kind/name -> SHA-256 of the normalised object")
    counts: dict[str, int] = Field(default_factory=dict, description="objects per kind")
    size_bytes: int = 0
    not_exported: list[str] = Field(default_factory=list, description="kinds a backup never holds (Secrets, Pods, ...)")


class TargetArgs(StepArgs):
    target: KubeLabelName = Field(description="a restore target configured on the worker (`backup.restore_targets`)")


class RestoreArgs(TargetArgs):
    backup: Backup = Field(description="the output of `backup.export`")


class RestoreResult(StepResult):
    target: str
    namespace: str
    applied: list[str] = Field(default_factory=list, description="Kind/name of every object applied")


class VerifyArgs(TargetArgs):
    backup: Backup = Field(description="the output of `backup.export`")


class VerifyResult(StepResult):
    target: str
    namespace: str
    verified: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    mismatched: list[str] = Field(default_factory=list, description="restored, but its checksum differs from the backup's")
    ok: bool = False


@register_step_type
class BackupExport(StepType):
    name = "backup.export"
    description = ("Read-only: export a namespace's workload objects (Deployments, Services, ConfigMaps, quotas, PDBs, "
                   "HPAs, Istio routes; never Secrets) from a region, normalised, with a checksum per object.")
    args_model = ExportArgs
    result_model = Backup
    activity = "backup.export"
    regional = True
    default_timeout_seconds = 120.0


@register_step_type
class BackupRestore(StepType):
    name = "backup.restore"
    description = ("Restore a `backup.export` into a restore target (a scratch cluster named in the worker's "
                   "`backup.restore_targets`; never a fleet region) by server-side apply.")
    args_model = RestoreArgs
    result_model = RestoreResult
    activity = "backup.restore"
    mutating = True
    default_timeout_seconds = 120.0


@register_step_type
class BackupVerify(StepType):
    name = "backup.verify"
    description = ("Read-only: read the restored objects back from the restore target and compare their checksums "
                   "with the backup's; fails naming every missing or changed object.")
    args_model = VerifyArgs
    result_model = VerifyResult
    activity = "backup.verify"
    default_timeout_seconds = 120.0
