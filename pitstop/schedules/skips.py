"""Runs started by a schedule never queue behind a busy target: they ask for the lease with policy `refuse`,
and a refusal ends the run as `skipped`, with the reason, instead of failed (the next scheduled run is
unaffected). The same holds for a schedule's `error_budget:` that refuses the run (budget exhausted or unknown).
Pure rules used by the interpreter workflow.
"""

from __future__ import annotations

from typing import Literal

SCHEDULE_TRIGGER = "schedule"
BUDGET_REFUSED = "ErrorBudgetRefused"  # the run's error budget is exhausted or cannot be measured
SKIPPING_FAILURES = ("LeaseRefused", BUDGET_REFUSED)  # ApplicationError types that skip a scheduled run


def lease_policy(*, trigger: str, declared: Literal["wait", "refuse"]) -> Literal["wait", "refuse"]:
    """The lease policy a run uses: `refuse` when a schedule started it, else the runbook's own."""
    return "refuse" if trigger == SCHEDULE_TRIGGER else declared


def skips_run(*, trigger: str, failure_type: str | None) -> bool:
    """A scheduled run that could not start its work for this reason is skipped, not failed."""
    return trigger == SCHEDULE_TRIGGER and failure_type in SKIPPING_FAILURES
