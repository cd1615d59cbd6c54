"""The error-budget gate: how much of the service's SLO error budget is left, and may a release — or a
scheduled runbook run — start.

With an availability objective of 99.9 %, the budget is 0.1 % of requests; an observed error ratio of
0.05 % over the SLO window leaves 50 % of it. No data (no traffic, or Prometheus unreachable) cannot prove
the budget is there, so the gate refuses — "no data" is never a pass.

A release measures its own service (`ReleaseSpec.error_budget`); a scheduled run carries an
`ErrorBudgetCheck` (the same gate plus where to measure, defaulting to the run's target) from the schedules
file. Both measure with `workflows/error_budget.py` and decide with `budget_gate`.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from pitstop.analysis import Measurement

from .spec import ErrorBudgetGate


class ErrorBudgetCheck(ErrorBudgetGate):
    """The release gate's error budget (same fields, same decision) for a run without a release spec, e.g. a
    scheduled runbook run: which service's budget, by default the run's target (the runbook's `target:`)."""

    service: str = Field("", description="service whose budget is checked; default the runbook's target service")
    namespace: str = Field("", description="its namespace; default the runbook's target namespace")
    region: str = Field("", description="its region; default the runbook's target region ('' = every region)")
    region_label: str | None = Field(
        "region", description="label scoping metrics to the region (as a release's analysis.region_label); None = none"
    )


class BudgetScope(BaseModel):
    """Where an error budget is measured."""

    service: str
    namespace: str
    region: str


def budget_scope(check: ErrorBudgetCheck, target: Mapping[str, str]) -> BudgetScope:
    """The check's own service/namespace/region, else the run's rendered target's."""
    return BudgetScope(
        service=check.service or target.get("service", ""),
        namespace=check.namespace or target.get("namespace", ""),
        region=check.region or target.get("region", ""),
    )


class BudgetDecision(BaseModel):
    allowed: bool
    remaining_percent: float | None
    reason: str


def budget_remaining_percent(*, error_ratio: float, slo_percent: float) -> float:
    """Percent of the error budget left (negative when overspent)."""
    allowed = 1.0 - slo_percent / 100.0
    return (1.0 - error_ratio / allowed) * 100.0


def budget_gate(measurement: Measurement, gate: ErrorBudgetGate) -> BudgetDecision:
    if measurement.error is not None:
        return BudgetDecision(allowed=False, remaining_percent=None,
                              reason=f"error budget unknown: metrics unavailable ({measurement.error}); refusing to start")
    if not measurement.has_value or measurement.value is None:
        return BudgetDecision(allowed=False, remaining_percent=None,
                              reason=f"error budget unknown: no data over {gate.window}; refusing to start")
    remaining = budget_remaining_percent(error_ratio=measurement.value, slo_percent=gate.slo_percent)
    if remaining <= gate.min_remaining_percent:
        return BudgetDecision(
            allowed=False, remaining_percent=remaining,
            reason=(f"error budget exhausted: {remaining:.1f}% left of the {gate.slo_percent:g}% SLO over {gate.window} "
                    f"(error ratio {measurement.value:.4%}); refusing to start"),
        )
    return BudgetDecision(allowed=True, remaining_percent=remaining,
                          reason=f"error budget ok: {remaining:.1f}% left of the {gate.slo_percent:g}% SLO over {gate.window}")
