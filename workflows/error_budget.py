"""Measuring a service's SLO error budget from workflow code, for every workflow that gates on it: a
`ProgressiveRelease` before its first change (`delivery_gates`) and a scheduled runbook run before its first step
(`runbook_lifecycle`). One query (`pitstop.delivery.promql.error_ratio_query`), one activity (`delivery.measure`,
served on the shared task queue: one Prometheus per installation), one decision (`pitstop.delivery.budget.budget_gate`).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pitstop.analysis import Measurement
    from pitstop.delivery.budget import BudgetDecision, budget_gate
    from pitstop.delivery.models import MeasureInput, MeasureResult
    from pitstop.delivery.promql import CheckQuery, error_ratio_query
    from pitstop.delivery.spec import ErrorBudgetGate
    from pitstop.failures import failure_text

from .activity_policies import RELEASE_ACTIVITY_RETRY, SLOW_ACTIVITY_TIMEOUT


async def measure_error_budget(
    gate: ErrorBudgetGate, *, service: str, namespace: str, region: str, region_label: str | None,
) -> BudgetDecision:
    """How much of the service's budget is left and whether work may start (refused when it cannot be measured)."""
    query = error_ratio_query(gate, service=service, namespace=namespace, region=region, region_label=region_label)
    check = CheckQuery.model_validate({"name": "error-budget", "query": query, "threshold": {"min": 0}})
    result = await workflow.execute_activity(
        "delivery.measure", MeasureInput(checks=[check]),
        result_type=MeasureResult, start_to_close_timeout=SLOW_ACTIVITY_TIMEOUT, retry_policy=RELEASE_ACTIVITY_RETRY,
    )
    return budget_gate(result.measurements[0], gate)


async def error_budget_decision(
    gate: ErrorBudgetGate, *, service: str, namespace: str, region: str, region_label: str | None,
) -> BudgetDecision:
    """`measure_error_budget`, with a measurement that failed for good (bad query, no worker) as a refusal."""
    try:
        return await measure_error_budget(gate, service=service, namespace=namespace, region=region,
                                          region_label=region_label)
    except ActivityError as exc:
        return budget_gate(Measurement(error=failure_text(exc)), gate)
