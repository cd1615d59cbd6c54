"""What a release hands from one run to the next when it continues-as-new (`ReleaseInput.carried`).

`ProgressiveRelease` continues-as-new only between two analysis runs (no activity in flight, no update
handler running), so the state is small and complete: where to resume (analysis loop, hold for the waves
parent, warm window), the snapshot taken before the first change (rollback writes back exactly these routes),
the analysis state and counters, the latest measurement records, the live status, signals already received
(approval, finalize, abort) and the lease (held by workflow id, so the next run of the chain still holds it).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from pitstop.analysis import Verdict
from pitstop.runbook.leases import LeaseGrant

from .decisions import AnalysisPolicy, AnalysisState
from .models import ApproveRequest, MeasurementRecord, ReleaseSnapshot, ReleaseStatus

MAX_CARRIED_RECORDS = 200  # the `measurements` query keeps the latest ones; `status.measurements_dropped` counts the rest


class ResumeAt(StrEnum):
    ANALYSIS = "analysis"  # the progressing loop: weights shift on passing runs
    HOLD = "hold"  # promoted; old version warm until the waves parent signals `finalize`
    WARM_WINDOW = "warm_window"  # promoted; old version warm until `warm_deadline`


class CarriedAnalysis(BaseModel):
    """`workflows.delivery_analysis.AnalysisLoop` between two runs."""

    policy: AnalysisPolicy = Field(description="after promotion: the watch policy (no deadline, threshold only)")
    state: AnalysisState
    records: list[MeasurementRecord] = Field(default_factory=list, description="the latest records, oldest first")
    dropped_records: int = Field(0, description="older records not kept")
    last: list[MeasurementRecord] = Field(default_factory=list)
    last_verdict: Verdict | None = None
    total_runs: int = 0
    total_failed_runs: int = 0
    failed_checks: int = 0


class CarriedRelease(BaseModel):
    """Everything the next run of a release needs; taken at a safe point between analysis runs."""

    resume_at: ResumeAt
    warm_deadline: float | None = Field(None, description="WARM_WINDOW: end of the warm window (workflow clock, s)")
    status: ReleaseStatus
    snapshot: ReleaseSnapshot = Field(description="routes, subsets and scale before the first change")
    analysis: CarriedAnalysis
    approved: ApproveRequest | None = None
    finalize: bool = Field(False, description="the waves parent's `finalize` signal already arrived")
    rollback_reason: str | None = None
    lease_id: str = ""
    lease_requested: bool = False
    lease_grant: LeaseGrant | None = None
    earlier_runs: list[str] = Field(default_factory=list, description="run ids of the earlier runs, oldest first")
    earlier_events: int = Field(0, description="history events of the earlier runs together")
