"""The state every phase of an `Incident` run shares: its live status (the `status` query), the service's lease,
the pending approval, and the helpers to record the timeline. Workflow code: deterministic, no I/O.

`IncidentContext` is created by `IncidentWorkflow.__init__`; the phase modules (`incident_ladder`,
`incident_escalation`, `incident_resolution`) take it as their first argument.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pitstop.alerts import Alert
    from pitstop.incidents import ApprovalDecision, IncidentPhase, IncidentStart, IncidentStatus, TimelineEntry
    from pitstop.workflows.lease import LeaseHolderSide

class IncidentContext:
    """One incident run's state (what the phases read and write)."""

    def __init__(self, start: IncidentStart) -> None:
        self.status = IncidentStatus(incident_id=start.incident_id)
        self.task_queue = start.task_queue  # the runbook interpreter's queue (the rungs' child workflows)
        self.lease = LeaseHolderSide()
        self.approval: ApprovalDecision | None = None
        self.background: list[asyncio.Task[None]] = []  # evidence and metric snapshots taken at the alert
        self.alert_check_seconds = 0.0

    @property
    def resolved(self) -> bool:
        return self.status.resolved_at is not None

    @property
    def alert(self) -> Alert:
        """The first notification's alert; `run` waits for it before anything reads it."""
        if self.status.alert is None:
            raise RuntimeError(f"incident {self.status.incident_id} has no alert yet")  # a bug: fails the task, not the run
        return self.status.alert

    def set_phase(self, phase: IncidentPhase) -> None:
        self.status.phase = phase

    def log(self, kind: str, message: str, *, at: datetime | None = None, data: dict[str, Any] | None = None) -> None:
        self.status.timeline.append(TimelineEntry(at=at or workflow.now(), kind=kind, message=message, data=data or {}))

    async def release_lease(self) -> None:
        """Give the service's lease back (or leave its line); called at every exit, so it may do nothing."""
        if await self.lease.leave():
            self.log("lease", f"released {self.lease.lease_id}")

