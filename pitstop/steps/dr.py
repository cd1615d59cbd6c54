"""DR drill step types: `dr.region_leases` (is any service of the region held by a release, incident or runbook?),
`dr.mark` (the worker's clock, recorded in the history) and `dr.record` (the drill's figures, `pitstop.dr`).
All run on the shared task queue and change nothing. Executed by `activities.dr` and `activities.leases`.
"""

from __future__ import annotations

from pydantic import Field

from pitstop.dr import DrillRecord
from pitstop.runbook.step_types import StepArgs, StepResult, StepType, register_step_type

from .common import KubeLabelName


class RegionLeasesArgs(StepArgs):
    region: KubeLabelName
    ignore_namespaces: list[str] = Field(default_factory=lambda: ["global-traffic"],
                                         description="leases of these namespaces do not count (the drill's own)")


class RegionLeases(StepResult):
    region: str
    held: list[str] = Field(default_factory=list, description="lease ids (`lease/<region>/<namespace>/<service>`) in use")
    busy: bool = False


class MarkArgs(StepArgs):
    label: str = ""


class Mark(StepResult):
    at: str = Field(description="the worker's UTC clock, ISO 8601")


class RecordArgs(StepArgs):
    region: KubeLabelName
    started_at: str = ""
    restored_at: str = ""
    finished_at: str = ""
    rpo_values: list[float | None] = Field(default_factory=list, description="the data hook's RPO per survivor")
    skipped_reason: str = ""


class RecordResult(StepResult):
    record: DrillRecord


@register_step_type
class DrRegionLeases(StepType):
    name = "dr.region_leases"
    description = "Read-only: the leases held on services of a region (a drill refuses while any is in use)."
    args_model = RegionLeasesArgs
    result_model = RegionLeases
    activity = "dr.region_leases"
    default_timeout_seconds = 30.0


@register_step_type
class DrMark(StepType):
    name = "dr.mark"
    description = "The worker's clock, recorded in the run's history (drill timings)."
    args_model = MarkArgs
    result_model = Mark
    activity = "dr.mark"
    default_timeout_seconds = 10.0


@register_step_type
class DrRecord(StepType):
    name = "dr.record"
    description = "The drill's figures: RTO, RPO, failback time, or why it was skipped (shown by `pitstop dr report`)."
    args_model = RecordArgs
    result_model = RecordResult
    activity = "dr.record"
    default_timeout_seconds = 10.0
