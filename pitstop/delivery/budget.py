"""The error-budget gate: how much of the service's SLO error budget is left, and may a release start.

With an availability objective of 99.9 %, the budget is 0.1 % of requests; an observed error ratio of
0.05 % over the SLO window leaves 50 % of it. No data (no traffic, or Prometheus unreachable) cannot prove
the budget is there, so the gate refuses — "no data" is never a pass.
"""

from __future__ import annotations

from pydantic import BaseModel

from pitstop.analysis import Measurement

from .spec import ErrorBudgetGate


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
