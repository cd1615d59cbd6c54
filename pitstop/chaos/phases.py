"""Chaos Toolkit's run semantics as pure decisions, so the durable workflow behaves as `chaos run` does.

Order: steady-state hypothesis before -> method -> steady-state hypothesis after -> rollbacks.
- Not met before: no method, no hypothesis after; status `completed`, or `failed` when a probe itself failed.
- Method: an unexpected fatal error, pitstop's abort (CLI, dead-man switch, deadline) or a worker lost while the
  method ran end it `aborted`; the experiment interrupting itself (`InterruptExecution`) ends it `interrupted`.
  An action whose run failed does not fail the experiment (as in Chaos Toolkit); the outcome lists it.
- Not met after: `deviated`, status `completed` (or `failed` when a probe itself failed).
- Rollbacks by strategy: `always`, `never`, `deviated` (only when deviated), `default` (unless failed/interrupted).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from .model import ChaosStatus, RollbackStrategy, SloCheckResult


class Phase(StrEnum):
    PENDING = "pending"
    VALIDATING = "validating"
    WAITING_FOR_LEASE = "waiting_for_lease"
    CHECKING_BUDGET = "checking_budget"
    STEADY_STATE_BEFORE = "steady_state_before"
    METHOD = "method"
    STEADY_STATE_AFTER = "steady_state_after"
    ROLLBACKS = "rollbacks"
    DONE = "done"


def hypothesis_met(state: dict[str, Any] | None) -> bool:
    """No hypothesis (None) counts as met, as in Chaos Toolkit."""
    return state is None or bool(state.get("steady_state_met"))


def status_when_not_met(state: dict[str, Any]) -> ChaosStatus:
    """A hypothesis that is not met: `failed` when one of its probes failed to run, else `completed`."""
    failed = any(p.get("status") != "succeeded" for p in state.get("probes") or [])
    return ChaosStatus.FAILED if failed else ChaosStatus.COMPLETED


def status_after_method(*, aborted: bool, interrupted: bool) -> ChaosStatus:
    if interrupted:
        return ChaosStatus.INTERRUPTED
    return ChaosStatus.ABORTED if aborted else ChaosStatus.COMPLETED


def runs_after_hypothesis(status: ChaosStatus) -> bool:
    """Chaos Toolkit skips the hypothesis after an aborted or interrupted method."""
    return status not in (ChaosStatus.ABORTED, ChaosStatus.INTERRUPTED)


def should_roll_back(strategy: RollbackStrategy, *, status: ChaosStatus, deviated: bool) -> bool:
    if strategy == "always":
        return True
    if strategy == "never":
        return False
    if strategy == "deviated":
        return deviated
    return status not in (ChaosStatus.FAILED, ChaosStatus.INTERRUPTED)


def failed_runs(runs: list[dict[str, Any]]) -> list[str]:
    """Names of the runs (activities) that did not succeed: shown, since they do not fail the experiment."""
    return [str((r.get("activity") or {}).get("name", "?")) for r in runs if r.get("status") != "succeeded"]


class ChaosView(BaseModel):
    """The `status` query: where the run is."""

    phase: Phase
    title: str = ""
    status: ChaosStatus = ChaosStatus.COMPLETED
    abort_reason: str = ""
    runs: int = 0
    rollbacks: int = 0
    rollback_failures: list[str] = Field(default_factory=list)
    checks: list[SloCheckResult] = Field(default_factory=list)
