"""State of one `ChaosExperimentWorkflow` run (`ChaosContext`) and its live view; the phases and gates
(`chaos_phases.py`, `chaos_gates.py`) are functions over it. Passed through the workflow sandbox."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pitstop.chaos.model import ChaosRequest, ChaosStatus, PhaseResult, SloCheckResult
    from pitstop.chaos.phases import ChaosView, Phase
    from pitstop.config import regional_task_queue

from .lease import LeaseHolderSide


class ChaosContext:
    def __init__(self, request: ChaosRequest) -> None:
        self.request = request
        self.phase = Phase.PENDING
        self.experiment: dict[str, Any] = request.experiment or {}
        self.abort_reason: str | None = None
        self.leases: list[LeaseHolderSide] = []
        self.started: datetime = workflow.now()
        self.status = ChaosStatus.COMPLETED
        self.deviated = False
        self.before: dict[str, Any] | None = None
        self.after: dict[str, Any] | None = None
        self.runs: list[dict[str, Any]] = []
        self.rollbacks: list[dict[str, Any]] = []
        self.rollbacks_played = False
        self.rollback_failures: list[str] = []
        self.checks: list[SloCheckResult] = []
        self.versions: dict[str, str] = {}

    @property
    def title(self) -> str:
        return str(self.experiment.get("title", ""))

    def abort(self, reason: str) -> None:
        if self.abort_reason is None:
            self.abort_reason = reason or "aborted"

    def task_queue(self) -> str:
        return regional_task_queue(workflow.info().task_queue, self.request.run_region())

    def heartbeat_timeout(self) -> timedelta:
        return timedelta(seconds=self.request.heartbeat_timeout_seconds)

    def note_versions(self, result: PhaseResult) -> None:
        if result.chaoslib_version:
            self.versions = {"chaoslib_version": result.chaoslib_version, "platform": result.platform, "node": result.node}

    def view(self) -> ChaosView:
        return ChaosView(
            phase=self.phase, title=self.title, status=self.status, abort_reason=self.abort_reason or "",
            runs=len(self.runs), rollbacks=len(self.rollbacks), rollback_failures=list(self.rollback_failures),
            checks=list(self.checks),
        )
