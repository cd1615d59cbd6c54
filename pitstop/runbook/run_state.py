"""Live state of a runbook run, as exposed by the interpreter's `status` query, and its control messages
(pause / resume / abort / approve updates). Plain models: shared by the workflow, the CLI and tests.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field


class Phase(str, Enum):
    LOADING = "loading"
    WAITING_FOR_LEASE = "waiting_for_lease"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    COMPENSATING = "compensating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    SKIPPED = "skipped"  # a scheduled run whose target was busy: nothing ran, not a failure

    @property
    def final(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED, Phase.SKIPPED)


class StepState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"

    @property
    def finished_ok(self) -> bool:
        return self in (StepState.SUCCEEDED, StepState.SKIPPED)


class StepStatus(BaseModel):
    id: str
    uses: str
    state: StepState = StepState.PENDING
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outputs: Any = None
    summary: str = ""
    error: str = ""
    items_total: int = 0
    items_done: int = 0


class ApprovalRequestInfo(BaseModel):
    key: str = Field(description="step id, or `step[i]` inside a for_each")
    message: str = ""
    approvers: list[str] = Field(default_factory=list)
    deadline: datetime | None = None
    escalated: bool = False
    notified: str = Field("", description="outcome of the escalation notification, if one was configured")


class RunStatus(BaseModel):
    workflow_id: str
    runbook: str
    phase: Phase
    paused: bool = False
    dry_run: bool = False
    target: dict[str, str] = Field(default_factory=dict)
    lease_id: str = ""
    started_at: datetime | None = None
    steps: list[StepStatus] = Field(default_factory=list)
    approvals: list[ApprovalRequestInfo] = Field(default_factory=list, description="approvals waiting now")
    error: str = ""
    access_denials: list[str] = Field(default_factory=list, description="updates the access policy refused (who, what, why)")
    run_number: int = Field(1, description="1 + how many times the run continued-as-new (one Temporal run each)")


class ControlRequest(BaseModel):
    """pause / resume / abort: who asks and why (recorded in the history)."""

    identity: str = ""
    reason: str = ""
    groups: list[str] = Field(default_factory=list, description="the caller's verified groups (set by the pitstop API)")


class ApprovalDecision(BaseModel):
    step: str = Field(description="step id (or `step[i]` inside a for_each)")
    identity: str = Field(description="who decides; must be allowed by the runbook")
    approved: bool = True
    comment: str = ""
    groups: list[str] = Field(default_factory=list, description="the caller's verified groups (set by the pitstop API)")
