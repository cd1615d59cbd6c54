"""Incident activities: plan a remediation from the catalog, reserve an action against the service's
circuit breaker, snapshot metrics, check a recovery condition.

Evidence (pods, events, last rollout) and escalation reuse the step library's activities
(`kubernetes.service_evidence`, `kubernetes.last_rollout`, `notify.webhook`); the incident workflow calls
them by name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from pitstop.incidents import (
    BUDGET_WORKFLOW,
    AlertActiveRequest,
    AlertPresence,
    BudgetState,
    MetricSnapshot,
    MetricSnapshotRequest,
    PlanRequest,
    PlanResult,
    RecoveryCheck,
    RecoveryCheckRequest,
    ReserveAction,
    ReserveResult,
)
from pitstop.remediation import CATALOG_FILE, RemediationError, load_catalog, plan_remediation, reach_problems

from .clients import ActivityClients
from .metrics import MetricsQueryError, MetricsUnavailable


def budget_workflow_id(target_key: str) -> str:
    return f"remediation-budget/{target_key}"


class IncidentActivities:
    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    @activity.defn(name="incident.plan")
    def plan(self, request: PlanRequest) -> PlanResult:
        """Match the alert against the catalog (read fresh, so catalog edits apply to the next incident)."""
        path = self._clients.settings.runbooks_dir / CATALOG_FILE
        if not path.exists():
            return PlanResult(reason=f"no remediation catalog at {path}")
        try:
            catalog = load_catalog(path)
        except RemediationError as exc:
            raise ApplicationError(str(exc), type="InvalidCatalog", non_retryable=True) from exc
        refused = reach_problems(catalog, self._clients.reach())
        if refused:
            raise ApplicationError(f"{path}: " + "; ".join(refused), type="InvalidCatalog", non_retryable=True)
        defaults = catalog.defaults
        try:
            plan = plan_remediation(catalog, request.alert)
        except RemediationError as exc:
            return PlanResult(reason=str(exc), max_open_seconds=defaults.max_incident_duration,
                              gather_evidence=defaults.gather_evidence, alert_check_seconds=defaults.alert_check_interval)
        if plan is None:
            return PlanResult(reason=f"no rule of {path.name} matches alert {request.alert.name!r}",
                              max_open_seconds=defaults.max_incident_duration, gather_evidence=False,
                              alert_check_seconds=defaults.alert_check_interval)
        return PlanResult(plan=plan, max_open_seconds=defaults.max_incident_duration,
                          gather_evidence=defaults.gather_evidence, alert_check_seconds=defaults.alert_check_interval)

    @activity.defn(name="incident.alert_active")
    async def alert_active(self, request: AlertActiveRequest) -> AlertPresence:
        """Whether Alertmanager still holds the incident's alert (None: it could not be asked)."""
        return await self._clients.alertmanager_api().alert_presence(
            alertname=request.alertname, fingerprint=request.fingerprint)

    @activity.defn(name="incident.reserve_action")
    async def reserve_action(self, request: ReserveAction) -> ReserveResult:
        """Ask the service's `RemediationBudget` workflow for one action (update-with-start: atomic)."""
        client = activity.client()
        info = activity.info()
        start: WithStartWorkflowOperation[Any, None] = WithStartWorkflowOperation(  # the budget never returns
            BUDGET_WORKFLOW,
            BudgetState(target_key=request.target_key),
            id=budget_workflow_id(request.target_key),
            task_queue=info.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        return await client.execute_update_with_start_workflow(
            "reserve", request, start_workflow_operation=start, result_type=ReserveResult
        )

    @activity.defn(name="incident.metric_snapshot")
    async def metric_snapshot(self, request: MetricSnapshotRequest) -> MetricSnapshot:
        """The series of a PromQL expression now (bounded); an unreachable Prometheus is recorded, not raised."""
        now = datetime.now(UTC)
        try:
            found = await self._clients.metrics_provider().query_series(request.promql)
        except (MetricsUnavailable, MetricsQueryError) as exc:  # evidence is best effort
            return MetricSnapshot(label=request.label, promql=request.promql, at=now, error=str(exc))
        series = [{"metric": s.labels, "value": s.value} for s in found[: request.max_series]]
        return MetricSnapshot(label=request.label, promql=request.promql, at=now, series=series)

    @activity.defn(name="incident.check_recovery")
    async def check_recovery(self, request: RecoveryCheckRequest) -> RecoveryCheck:
        """Recovered when the PromQL returns a value > 0; no data or an unreachable backend is inconclusive."""
        try:
            value = await self._clients.metrics_provider().query(request.promql)
        except MetricsUnavailable as exc:
            return RecoveryCheck(recovered=None, detail=str(exc))
        except MetricsQueryError as exc:
            raise ApplicationError(str(exc), type="InvalidRecoveryQuery", non_retryable=True) from exc
        if value is None:
            return RecoveryCheck(recovered=None, detail="no data")
        return RecoveryCheck(recovered=value > 0, value=value, detail=f"{request.promql} = {value:g}")
