"""The `Incident` workflow: one per firing episode of an alert.

Incident: alert received (signal `alert_notification`, signal-with-start by the webhook) -> plan from the
remediation catalog (activity) -> climb the ladder: for each rung that applies, [approval] -> the service's
lease (wait or escalate, by policy) -> circuit breaker -> the rung's runbook as a child workflow of the
runbook interpreter -> verify recovery (the alert resolves, or a PromQL condition holds) within a deadline.
Ladder exhausted -> escalate with the evidence, then wait for the alert to resolve. A `resolved`
notification cancels every action not yet taken. `status` (query) is the live timeline.

The circuit breaker: the `incident.reserve_action` activity asks the service's `RemediationBudget`
(`workflows/remediation_budget.py`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from pitstop.alerts import Alert, AlertNotification
    from pitstop.config import regional_task_queue
    from pitstop.incidents import (
        ALERT_SIGNAL,
        INCIDENT_WORKFLOW,
        AlertActiveRequest,
        AlertPresence,
        ActionRecord,
        ApprovalDecision,
        IncidentPhase,
        IncidentStart,
        IncidentStatus,
        MetricSnapshot,
        MetricSnapshotRequest,
        PlanRequest,
        PlanResult,
        RecoveryCheck,
        RecoveryCheckRequest,
        ReserveAction,
        ReserveResult,
        TimelineEntry,
        alert_expression,
        first_notification_summary,
    )
    from pitstop.remediation import RemediationPlan, RungPlan, rung_applies
    from pitstop.runbook.leases import LeaseGrant, LeaseHolder, lease_id
    from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
    from pitstop.runbook.step_types import StepInvocation
    from pitstop.runbook.step_types import StepArgs, StepResult
    from pitstop.steps.istio import RouteArgs, RoutesResult
    from pitstop.steps.kubernetes import (
        DeploymentArgs, LastRolloutResult, NodeEvidenceArgs, NodeEvidenceResult, ServiceEvidenceArgs,
        ServiceEvidenceResult,
    )
    from pitstop.steps.notify import NotifyResult, WebhookArgs
    from workflows.lease import LeaseHolderSide, LeaseOutcome

QUICK = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=5)
BEST_EFFORT = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)


@workflow.defn(name=INCIDENT_WORKFLOW)
class IncidentWorkflow:
    @workflow.init
    def __init__(self, start: IncidentStart) -> None:
        self._s = IncidentStatus(incident_id=start.incident_id)
        self._task_queue = start.task_queue
        self._lease = LeaseHolderSide()
        self._approval: ApprovalDecision | None = None
        self._background: list[asyncio.Task[None]] = []
        self._alert_check_seconds = 0.0

    # ------------------------------------------------------------ messages

    @workflow.signal(name=ALERT_SIGNAL)
    def alert_notification(self, note: AlertNotification) -> None:
        s = self._s
        s.notifications += note.count
        if s.alert is None:
            s.alert = note.alert
            s.first_received_at = note.received_at
            self._log("alert", f"alert received: {first_notification_summary(note)}", at=note.received_at,
                      data={"labels": note.alert.labels, "startsAt": note.alert.starts_at.isoformat(),
                            "receiver": note.receiver})
        if note.alert.status == "resolved" and s.resolved_at is None:
            s.resolved_at = note.alert.resolved_at or note.received_at
            self._log("resolved", f"alert resolved (notification #{s.notifications}); actions not yet taken are cancelled",
                      at=note.received_at)

    @workflow.signal
    def lease_granted(self, grant: LeaseGrant) -> None:
        self._lease.granted(grant)

    @workflow.signal
    def lease_refused(self, grant: LeaseGrant) -> None:
        self._lease.refused(grant)

    @workflow.update
    def approve(self, decision: ApprovalDecision) -> str:
        self._approval = decision
        verb = "approved" if decision.approved else "rejected"
        self._log("approval", f"{verb} by {decision.identity or 'unknown'}" + (f": {decision.comment}" if decision.comment else ""))
        return verb

    @approve.validator
    def _approve_allowed(self, decision: ApprovalDecision) -> None:
        if self._s.phase != IncidentPhase.WAITING_FOR_APPROVAL:
            raise ValueError(f"incident {self._s.incident_id} is not waiting for an approval (phase {self._s.phase.value})")
        if not decision.identity:
            raise ValueError("an approval needs the approver's identity")
        approvers = self._s.plan.policy.approvers if self._s.plan else []
        if approvers and decision.identity not in approvers:
            raise ValueError(f"{decision.identity!r} may not decide for incident {self._s.incident_id}; "
                             f"allowed: {', '.join(approvers)}")

    @workflow.query
    def status(self) -> IncidentStatus:
        return self._s

    # ------------------------------------------------------------ main line

    @workflow.run
    async def run(self, start: IncidentStart) -> IncidentStatus:
        s = self._s
        await workflow.wait_condition(lambda: s.alert is not None)
        if self._resolved:
            s.outcome = "resolved before any action"
            return await self._close(IncidentPhase.RESOLVED)
        planned = await self._plan()
        self._alert_check_seconds = planned.alert_check_seconds
        open_until = workflow.now() + timedelta(seconds=planned.max_open_seconds)
        if planned.plan is None:
            self._set_phase(IncidentPhase.ESCALATED)
            self._log("decision", f"no remediation: {planned.reason}; left to the on-call team")
            s.outcome = "no remediation rule" if not planned.reason.startswith("could not plan") else planned.reason
            return await self._await_resolution(open_until)
        plan = planned.plan
        s.plan, s.rule, s.target = plan, plan.rule, plan.target
        if planned.gather_evidence:
            self._background.append(asyncio.create_task(self._gather_evidence("at alert")))
        self._background.append(asyncio.create_task(self._snapshot_metrics("at alert")))
        try:
            recovered = await self._climb_ladder(plan)
        except ActivityError as exc:  # retries of a budget or lease call ran out: hand over, never fail silently
            recovered = False
            await self._escalate(plan, f"automation failed: {_failure_text(exc)}")
        finally:
            await self._release_lease()
        if recovered:
            s.outcome = "recovered by automation"
            if not self._resolved:
                self._log("verification", "waiting for the alert to resolve")
                await self._wait_resolved(open_until)
            return await self._close(IncidentPhase.RECOVERED if self._resolved else IncidentPhase.CLOSED)
        if self._resolved and not any(a.status == "succeeded" and not a.dry_run for a in s.actions):
            s.outcome = "resolved before any action" if not s.actions else "resolved"
            return await self._close(IncidentPhase.RESOLVED)
        if self._resolved:
            s.outcome = "recovered by automation"
            return await self._close(IncidentPhase.RECOVERED)
        await self._escalate(plan, "the remediation ladder is exhausted" if not s.escalated else "")
        return await self._await_resolution(open_until)

    @property
    def _resolved(self) -> bool:
        return self._s.resolved_at is not None

    @property
    def _alert(self) -> Alert:
        """The first notification's alert; `run` waits for it before anything reads it."""
        if self._s.alert is None:
            raise RuntimeError(f"incident {self._s.incident_id} has no alert yet")  # a bug: fails the task, not the run
        return self._s.alert

    async def _plan(self) -> PlanResult:
        self._set_phase(IncidentPhase.PLANNING)
        try:
            planned = await workflow.execute_activity(
                "incident.plan", PlanRequest(alert=self._alert), result_type=PlanResult,
                start_to_close_timeout=timedelta(seconds=30), retry_policy=QUICK,
            )
        except ActivityError as exc:  # e.g. an invalid catalog: the incident stays open for the on-call team
            return PlanResult(reason=f"could not plan a remediation: {_failure_text(exc)}")
        if planned.plan is not None:
            plan = planned.plan
            self._log("plan", f"rule {plan.rule}: target {plan.target.key}, ladder "
                      + " -> ".join(r.name for r in plan.rungs)
                      + (" (dry run)" if plan.policy.dry_run else "")
                      + (" (approval required)" if plan.requires_approval else ""),
                      data={"policy": plan.policy.model_dump(mode="json")})
        return planned

    async def _climb_ladder(self, plan: RemediationPlan) -> bool:
        """True when a rung recovered the service. Stops (False) when resolved, refused, or escalated."""
        s = self._s
        last_rollout: list[datetime | None] = []
        for rung in plan.rungs:
            if self._resolved:
                self._log("decision", f"skip rung {rung.name}: the alert already resolved")
                return False
            if rung.when == "alert_after_rollout":
                if not last_rollout:
                    last_rollout.append(await self._last_rollout(plan))
                verdict = rung_applies(rung, alert_started_at=self._alert.starts_at, last_rollout_at=last_rollout[0])
                self._log("decision", f"rung {rung.name} {'applies' if verdict.applies else 'skipped'}: {verdict.reason}")
                if not verdict.applies:
                    continue
            if plan.requires_approval and not plan.policy.dry_run:
                if not await self._await_approval(plan, rung):
                    return False
            if not plan.policy.dry_run and not self._lease.held:
                outcome = await self._acquire_lease(plan)
                if outcome is LeaseOutcome.STOPPED:
                    return False
                if outcome is not LeaseOutcome.GRANTED:
                    await self._escalate(plan, f"the service's lease {self._lease.lease_id} is busy ({outcome.value})")
                    return False
            if self._resolved:
                self._log("decision", f"skip rung {rung.name}: the alert resolved before the action ran")
                return False
            if not plan.policy.dry_run:
                budget = await self._reserve(plan, rung)
                if budget.coalesced_with:
                    self._log("decision", f"rung {rung.name} not taken: {budget.reason}; verifying instead")
                    if await self._verify_other(plan, rung, budget):
                        return False
                    continue
                if not budget.allowed:
                    self._log("decision", f"rung {rung.name} not taken: {budget.reason}",
                              data={"retry_after_seconds": budget.retry_after_seconds})
                    await self._escalate(plan, budget.reason)
                    return False
            action = await self._act(plan, rung)
            if plan.policy.dry_run or action.status != "succeeded":
                continue
            if await self._verify(plan, rung, action):
                return True
        return False

    # ------------------------------------------------------------ steps of a rung

    async def _await_approval(self, plan: RemediationPlan, rung: RungPlan) -> bool:
        self._approval = None
        self._set_phase(IncidentPhase.WAITING_FOR_APPROVAL)
        self._log("approval", f"approval required before {rung.name} ({rung.runbook}); "
                  f"`pitstop incident approve {self._s.incident_id}` within {plan.policy.approval_timeout:.0f}s")
        try:
            await workflow.wait_condition(lambda: self._approval is not None or self._resolved,
                                          timeout=timedelta(seconds=plan.policy.approval_timeout))
        except asyncio.TimeoutError:
            await self._escalate(plan, "no approval before the deadline")
            return False
        if self._resolved:
            return False
        if self._approval is not None and not self._approval.approved:
            await self._escalate(plan, f"action {rung.name} rejected by {self._approval.identity or 'unknown'}")
            return False
        return True

    async def _acquire_lease(self, plan: RemediationPlan) -> LeaseOutcome:
        """Wait for the service's lease (policy `on_lease_busy`: wait up to `lease_wait_timeout`, or `escalate` =
        refuse at once); stops waiting when the alert resolves, and leaves the line then or on a timeout."""
        target = plan.target
        lease = lease_id(cluster=target.region, namespace=target.namespace, service=target.service)
        info = workflow.info()
        policy: Literal["wait", "refuse"] = "refuse" if plan.policy.on_lease_busy == "escalate" else "wait"
        self._set_phase(IncidentPhase.WAITING_FOR_LEASE)
        outcome = await self._lease.wait_for_lease(
            lease=lease,
            holder=LeaseHolder(workflow_id=info.workflow_id, run_id=info.run_id, runbook=f"incident:{plan.rule}",
                               policy=policy),
            timeout=timedelta(seconds=plan.policy.lease_wait_timeout),
            stop=lambda: self._resolved,
            activity_id=None,  # recorded incident histories carry the default (sequence number) activity id
            retry_policy=QUICK,
        )
        if outcome is LeaseOutcome.GRANTED:
            self._log("lease", f"holding {lease}")
        elif outcome is LeaseOutcome.REFUSED:
            self._log("lease", f"refused: {self._lease.grant.message if self._lease.grant else ''}")
        elif outcome is LeaseOutcome.TIMED_OUT:
            self._log("lease", f"still waiting for {lease} after {plan.policy.lease_wait_timeout:.0f}s")
            await self._lease.leave()
        else:
            self._log("lease", f"stopped waiting for {lease}: the alert resolved")
            await self._lease.leave()
        return outcome

    async def _release_lease(self) -> None:
        if await self._lease.leave():
            self._log("lease", f"released {self._lease.lease_id}")

    async def _reserve(self, plan: RemediationPlan, rung: RungPlan) -> ReserveResult:
        return await workflow.execute_activity(
            "incident.reserve_action",
            ReserveAction(target_key=plan.target.key, action_key=f"{self._s.incident_id}/{rung.name}",
                          max_per_hour=plan.policy.max_actions_per_hour,
                          coalesce_seconds=rung.recovery_deadline_seconds),
            result_type=ReserveResult, start_to_close_timeout=timedelta(seconds=30), retry_policy=QUICK,
        )

    async def _act(self, plan: RemediationPlan, rung: RungPlan) -> ActionRecord:
        s = self._s
        self._set_phase(IncidentPhase.ACTING)
        child_id = f"{s.incident_id}-{rung.name}"
        now = workflow.now()
        action = ActionRecord(rung=rung.name, runbook=rung.runbook, workflow_id=child_id, started_at=now,
                              dry_run=plan.policy.dry_run)
        s.actions.append(action)
        if s.first_action_at is None and not plan.policy.dry_run:
            s.first_action_at = now
        self._log("action", f"{'dry run of' if plan.policy.dry_run else 'running'} {rung.name}: runbook {rung.runbook}",
                  data={"workflow_id": child_id, "inputs": rung.inputs})
        request = RunbookRequest(
            runbook=rung.runbook, inputs=rung.inputs, dry_run=plan.policy.dry_run, trigger="alert",
            started_by=s.incident_id, held_leases=[self._lease.lease_id] if self._lease.held else [],
        )
        try:
            outcome = await workflow.execute_child_workflow(
                RUNBOOK_WORKFLOW, request, id=child_id, task_queue=self._task_queue, result_type=RunbookOutcome,
            )
            action.status = outcome.status
            action.summary = "; ".join(v for v in outcome.summaries.values() if v)[:2000]
        except ChildWorkflowError as exc:
            action.status = "failed"
            cause = exc.cause
            action.summary = (getattr(cause, "message", None) or str(cause or exc))[:2000]
        action.ended_at = workflow.now()
        self._log("action", f"{rung.name} {action.status}" + (f": {action.summary}" if action.summary else ""))
        return action

    async def _verify(self, plan: RemediationPlan, rung: RungPlan, action: ActionRecord) -> bool:
        self._set_phase(IncidentPhase.VERIFYING)
        deadline = workflow.now() + timedelta(seconds=rung.recovery_deadline_seconds)
        promql = rung.recovered_when  # None once its check failed: then only the alert's resolution counts
        how = "the alert resolves" + (f" or `{promql}` > 0" if promql else "")
        self._log("verification", f"waiting up to {rung.recovery_deadline_seconds:.0f}s for recovery ({how})")
        while True:
            if self._resolved:
                action.recovered = True
                self._log("recovered", f"recovered after {rung.name}: the alert resolved")
                return True
            remaining = (deadline - workflow.now()).total_seconds()
            if remaining <= 0:
                action.recovered = False
                self._log("verification", f"not recovered {rung.recovery_deadline_seconds:.0f}s after {rung.name}")
                return False
            wait = min(remaining, plan.poll_interval_seconds) if promql else remaining
            try:
                await workflow.wait_condition(lambda: self._resolved, timeout=timedelta(seconds=wait))
            except asyncio.TimeoutError:
                pass
            if promql and not self._resolved:
                try:
                    check = await workflow.execute_activity(
                        "incident.check_recovery", RecoveryCheckRequest(promql=promql),
                        result_type=RecoveryCheck, start_to_close_timeout=timedelta(seconds=30),
                        retry_policy=BEST_EFFORT,
                    )
                except ActivityError as exc:  # e.g. a query Prometheus rejects: inconclusive, never a pass or a crash
                    promql = None
                    self._log("verification", f"recovery check failed: {_failure_text(exc)}; "
                              "waiting for the alert to resolve instead")
                    continue
                if check.recovered:
                    action.recovered = True
                    self._log("recovered", f"recovered after {rung.name}: {check.detail}")
                    return True

    async def _verify_other(self, plan: RemediationPlan, rung: RungPlan, budget: ReserveResult) -> bool:
        """Another incident just acted on the same service: wait for recovery from its action, not ours."""
        self._set_phase(IncidentPhase.VERIFYING)
        since = budget.coalesced_at or workflow.now()
        remaining = rung.recovery_deadline_seconds - (workflow.now() - since).total_seconds()
        if remaining > 0 and not self._resolved:
            try:
                await workflow.wait_condition(lambda: self._resolved, timeout=timedelta(seconds=remaining))
            except asyncio.TimeoutError:
                pass
        if self._resolved:
            self._log("decision", f"the alert resolved after {budget.coalesced_with}")
        return self._resolved

    async def _last_rollout(self, plan: RemediationPlan) -> datetime | None:
        target = plan.target
        try:
            result = await workflow.execute_activity(
                "kubernetes.last_rollout",
                StepInvocation(args=DeploymentArgs(region=target.region, namespace=target.namespace, name=target.service),
                               run_id=self._s.incident_id, step_id="last-rollout"),
                result_type=LastRolloutResult, task_queue=regional_task_queue(self._task_queue, target.region),
                schedule_to_close_timeout=timedelta(seconds=60), retry_policy=BEST_EFFORT,
            )
        except ActivityError as exc:
            self._log("evidence", f"last rollout unknown: {_failure_text(exc)}")
            return None
        self._log("evidence", result.summary or f"last rollout at {result.rolled_out_at}")
        return result.rolled_out_at

    # ------------------------------------------------------------ evidence, escalation, closing

    async def _gather_evidence(self, label: str) -> None:
        """What the cluster shows about the target, by its kind: a Deployment's pods and events; a node's
        conditions, pods and events; a VirtualService's routes. Best effort: a failure is logged, never fatal."""
        target = self._s.target
        if target is None:
            return
        activity_name: str
        args: StepArgs
        result_type: type[StepResult]
        if target.kind == "Node":
            activity_name, result_type = "kubernetes.node_evidence", NodeEvidenceResult
            args = NodeEvidenceArgs(region=target.region, node=target.service, max_events=20)
        elif target.kind == "VirtualService":
            activity_name, result_type = "istio.get_routes", RoutesResult
            args = RouteArgs(region=target.region, namespace=target.namespace, name=target.service)
        else:
            activity_name, result_type = "kubernetes.service_evidence", ServiceEvidenceResult
            args = ServiceEvidenceArgs(region=target.region, namespace=target.namespace, name=target.service,
                                       max_events=20)
        try:
            result = await workflow.execute_activity(
                activity_name, StepInvocation(args=args, run_id=self._s.incident_id, step_id=f"evidence-{label}"),
                result_type=result_type, task_queue=regional_task_queue(self._task_queue, target.region),
                schedule_to_close_timeout=timedelta(seconds=60), retry_policy=BEST_EFFORT,
            )
        except ActivityError as exc:
            self._log("evidence", f"evidence {label} unavailable: {_failure_text(exc)}")
            return
        self._s.evidence = {"label": label, "kind": target.kind,
                            **result.model_dump(mode="json", exclude={"changed"})}
        self._log("evidence", f"evidence {label}: {result.summary}")

    async def _snapshot_metrics(self, label: str) -> None:
        alert = self._s.alert
        promql = alert_expression(alert.generator_url) if alert else None
        if not promql:
            return
        try:
            snap = await workflow.execute_activity(
                "incident.metric_snapshot", MetricSnapshotRequest(promql=promql, label=label),
                result_type=MetricSnapshot, start_to_close_timeout=timedelta(seconds=30), retry_policy=BEST_EFFORT,
            )
        except ActivityError as exc:
            self._log("metrics", f"metric snapshot {label} failed: {_failure_text(exc)}")
            return
        self._s.metrics.append(snap.model_dump(mode="json"))
        values = ", ".join(f"{x['value']:g}" for x in snap.series[:5]) or snap.error or "no data"
        self._log("metrics", f"snapshot {label}: {values}")

    async def _escalate(self, plan: RemediationPlan, reason: str) -> None:
        s = self._s
        if s.escalated:
            return
        s.escalated = True
        self._set_phase(IncidentPhase.ESCALATED)
        s.outcome = f"escalated: {reason}"
        await self._release_lease()
        if plan.rungs and s.target is not None:
            await self._gather_evidence("at escalation")
        self._log("escalation", f"escalating to the on-call team: {reason}")
        escalation = plan.escalation
        if escalation is None or (escalation.url is None and escalation.url_env is None):
            self._log("escalation", "no escalation webhook configured (catalog `escalation`)")
            return
        payload: dict[str, Any] = {
            "incident": s.incident_id,
            "reason": reason,
            "alert": s.alert.model_dump(mode="json", by_alias=True) if s.alert else None,
            "target": s.target.model_dump() if s.target else None,
            "actions": [a.model_dump(mode="json") for a in s.actions],
            "evidence": s.evidence,
            "timeline": [e.model_dump(mode="json") for e in s.timeline[-50:]],
        }
        args = WebhookArgs(url=escalation.url, url_env=escalation.url_env, token_env=escalation.token_env, payload=payload)
        try:
            result = await workflow.execute_activity(
                "notify.webhook", StepInvocation(args=args, run_id=s.incident_id, step_id="escalate"),
                result_type=NotifyResult, start_to_close_timeout=timedelta(seconds=30), retry_policy=QUICK,
            )
            self._log("escalation", result.summary or "escalated")
        except ActivityError as exc:
            self._log("escalation", f"escalation webhook failed: {_failure_text(exc)}")

    async def _wait_resolved_or_gone(self, until: datetime) -> None:
        """Wait for the `resolved` notification; every `alert_check_seconds` also ask Alertmanager whether the alert
        is still there. Gone in two checks in a row (its resolution was lost: an Alertmanager restart, a failed
        delivery) counts as resolved; an Alertmanager that cannot be asked changes nothing."""
        interval, absent = self._alert_check_seconds, 0
        if interval <= 0:
            await self._wait_resolved(until)
            return
        while not self._resolved:
            remaining = (until - workflow.now()).total_seconds()
            if remaining <= 0:
                return
            try:
                await workflow.wait_condition(lambda: self._resolved, timeout=timedelta(seconds=min(interval, remaining)))
                return
            except asyncio.TimeoutError:
                pass
            alert = self._alert
            try:
                presence = await workflow.execute_activity(
                    "incident.alert_active", AlertActiveRequest(alertname=alert.name, fingerprint=alert.fingerprint),
                    result_type=AlertPresence, start_to_close_timeout=timedelta(seconds=30), retry_policy=BEST_EFFORT,
                )
            except ActivityError:
                continue
            absent = absent + 1 if presence.active is False else 0
            if absent >= 2 and not self._resolved:
                self._s.resolved_at = workflow.now()
                self._log("resolved", f"{presence.detail}: no `resolved` notification arrived; treated as resolved")
                return

    async def _wait_resolved(self, until: datetime) -> None:
        remaining = (until - workflow.now()).total_seconds()
        if remaining > 0 and not self._resolved:
            try:
                await workflow.wait_condition(lambda: self._resolved, timeout=timedelta(seconds=remaining))
            except asyncio.TimeoutError:
                pass

    async def _await_resolution(self, until: datetime) -> IncidentStatus:
        if workflow.patched("alert-vanished-check"):
            await self._wait_resolved_or_gone(until)
        else:
            await self._wait_resolved(until)
        if self._resolved:
            return await self._close(IncidentPhase.RESOLVED)
        self._log("closed", "the alert did not resolve before the incident's maximum duration")
        return await self._close(IncidentPhase.CLOSED)

    async def _close(self, phase: IncidentPhase) -> IncidentStatus:
        s = self._s
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._resolved and s.target is not None:
            await self._snapshot_metrics("at resolution")
        self._set_phase(phase)
        mttr = s.mttr_seconds
        self._log("closed", f"incident {phase.value}: {s.outcome or phase.value}"
                  + (f"; MTTR {mttr:.0f}s" if mttr is not None else ""))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return s

    def _set_phase(self, phase: IncidentPhase) -> None:
        self._s.phase = phase

    def _log(self, kind: str, message: str, *, at: datetime | None = None, data: dict[str, Any] | None = None) -> None:
        self._s.timeline.append(TimelineEntry(at=at or workflow.now(), kind=kind, message=message, data=data or {}))


def _failure_text(exc: BaseException) -> str:
    cause = exc.__cause__ or getattr(exc, "cause", None)
    text = getattr(cause, "message", None) or str(cause or exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__
