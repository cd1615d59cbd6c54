"""The fleet-hygiene report step: `hygiene.report` turns every region's inventory (`kubernetes.inventory`, one per
region) into one report per team, Markdown and JSON. Models only: the checks and the report are pure functions
in `pitstop.hygiene`; the step runs on the shared task queue (`activities.hygiene`). Read-only.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from pitstop.hygiene.inventory import RegionInventory
from pitstop.runbook.step_types import StepArgs, StepResult, StepType, register_step_type


class ReportArgs(StepArgs):
    inventories: list[RegionInventory] = Field(
        min_length=1, description="outputs of `kubernetes.inventory`, one per region (a for_each step's outputs)"
    )


class Check(StrEnum):
    """The fleet-hygiene checks; `pitstop.hygiene.checks` defines each rule."""

    MISSING_RESOURCES = "missing_resources"
    MISSING_READINESS_PROBE = "missing_readiness_probe"
    LATEST_TAG = "latest_tag"
    SINGLE_REPLICA_WITHOUT_PDB = "single_replica_without_pdb"
    PDB_BLOCKS_EVICTIONS = "pdb_blocks_evictions"
    IMAGE_DRIFT = "image_drift"
    UNDEFINED_SUBSET = "undefined_subset"


class Finding(BaseModel):
    check: Check
    team: str
    namespace: str
    kind: str = Field(description="Deployment, PodDisruptionBudget or VirtualService")
    name: str
    regions: list[str]
    detail: str

    def sort_key(self) -> tuple[str, str, str, str, str, str]:
        return self.team, self.check.value, self.namespace, self.kind, self.name, self.detail


class TeamReport(BaseModel):
    team: str
    deployments: int = Field(0, description="Deployments of this team checked, counted once per region")
    counts: dict[str, int] = Field(default_factory=dict, description="check -> findings")
    findings: list[Finding] = Field(default_factory=list)
    markdown: str = ""


class HygieneReport(StepResult):
    regions: list[str] = Field(default_factory=list)
    deployments: int = Field(0, description="Deployments checked, counted once per region")
    findings_total: int = 0
    teams: list[TeamReport] = Field(default_factory=list, description="one per team, sorted by name")
    notification: str = Field("", description="a short Markdown message: findings per team")

    def team(self, name: str) -> TeamReport | None:
        return next((t for t in self.teams if t.team == name), None)


@register_step_type
class HygieneReportStep(StepType):
    name = "hygiene.report"
    description = "Fleet-hygiene findings across regions, as one report per team (Markdown and JSON)."
    args_model = ReportArgs
    result_model = HygieneReport
    activity = "hygiene.report"
    default_timeout_seconds = 60.0
