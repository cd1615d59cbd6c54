"""The `Incident` workflow: one per firing episode of an alert.

Incident: alert received (signal `alert_notification`, signal-with-start by the webhook) -> plan from the
remediation catalog (activity) -> climb the ladder: for each rung that applies, [approval] -> the service's
lease (wait or escalate, by policy) -> circuit breaker -> the rung's runbook as a child workflow of the
runbook interpreter -> verify recovery (the alert resolves, or a PromQL condition holds) within a deadline.
Ladder exhausted -> escalate with the evidence, then wait for the alert to resolve. A `resolved`
notification cancels every action not yet taken. `status` (query) is the live timeline.

Where the parts live: this class holds the message handlers (signals, the `approve` update, the `status`
query) and the main line; the shared state is `IncidentContext` (`incident_context.py`); the phases are
`incident_ladder.py` (the ladder and its gates), `incident_action.py` (a rung's action and verification),
`incident_escalation.py` (evidence, metric snapshots, escalation) and `incident_resolution.py` (waiting for
the alert to resolve). The circuit breaker: the `incident.reserve_action` activity asks the service's
`RemediationBudget` (`workflows/remediation_budget.py`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pitstop.alerts import AlertNotification
    from pitstop.incidents import (
        ALERT_SIGNAL,
        INCIDENT_WORKFLOW,
        ApprovalDecision,
        IncidentPhase,
        IncidentStart,
        IncidentStatus,
        PlanRequest,
        PlanResult,
        first_notification_summary,
    )
    from pitstop.failures import failure_line
    from pitstop.access import Action, Target
    from pitstop.policy.guard import AccessDenial
    from pitstop.runbook.leases import LeaseGrant
    from pitstop.workflows.access_checks import may_approve, require

from .activity_policies import ACTIVITY_TIMEOUT, QUICK
from .incident_context import IncidentContext
from .incident_escalation import escalate, gather_evidence, snapshot_metrics
from .incident_ladder import climb_ladder
from .incident_resolution import wait_resolved, wait_resolved_or_gone


@workflow.defn(name=INCIDENT_WORKFLOW)
class IncidentWorkflow:
    @workflow.init
    def __init__(self, start: IncidentStart) -> None:
        self._ctx = IncidentContext(start)

    # ------------------------------------------------------------ messages

    @workflow.signal(name=ALERT_SIGNAL)
    def alert_notification(self, note: AlertNotification) -> None:
        ctx, s = self._ctx, self._ctx.status
        s.notifications += note.count
        if s.alert is None:
            s.alert = note.alert
            s.first_received_at = note.received_at
            ctx.log("alert", f"alert received: {first_notification_summary(note)}", at=note.received_at,
                    data={"labels": note.alert.labels, "startsAt": note.alert.starts_at.isoformat(),
                          "receiver": note.receiver})
        if note.alert.status == "resolved" and s.resolved_at is None:
            s.resolved_at = note.alert.resolved_at or note.received_at
            ctx.log("resolved", f"alert resolved (notification #{s.notifications}); actions not yet taken are cancelled",
                    at=note.received_at)

    @workflow.signal
    def lease_granted(self, grant: LeaseGrant) -> None:
        self._ctx.lease.granted(grant)

    @workflow.signal
    def lease_refused(self, grant: LeaseGrant) -> None:
        self._ctx.lease.refused(grant)

    @workflow.update
    def approve(self, decision: ApprovalDecision) -> str:
        self._ctx.approval = decision
        verb = "approved" if decision.approved else "rejected"
        self._ctx.log("approval", f"{verb} by {decision.identity or 'unknown'}"
                      + (f": {decision.comment}" if decision.comment else ""))
        return verb

    @approve.validator
    def _approve_allowed(self, decision: ApprovalDecision) -> None:
        s = self._ctx.status
        target = Target(namespace=s.target.namespace, service=s.target.service, region=s.target.region or None) \
            if s.target else Target()
        require(identity=decision.identity, groups=decision.groups, action=Action.INCIDENT_APPROVE,
                runbook="incident", target=target)
        if s.phase != IncidentPhase.WAITING_FOR_APPROVAL:
            raise ValueError(f"incident {s.incident_id} is not waiting for an approval (phase {s.phase.value})")
        if not decision.identity:
            raise ValueError("an approval needs the approver's identity")
        approvers = s.plan.policy.approvers if s.plan else []
        if not may_approve(approvers, identity=decision.identity, groups=decision.groups):
            raise ValueError(f"{decision.identity!r} may not decide for incident {s.incident_id}; "
                             f"allowed: {', '.join(approvers)}")

    @workflow.signal(name="access_denied")
    def access_denied(self, denial: AccessDenial) -> None:
        """A refused update, signalled by the worker: the audit record in this incident's history and timeline."""
        self._ctx.log("access-denied", denial.reason, data={"identity": denial.identity, "action": denial.action})

    @workflow.query
    def status(self) -> IncidentStatus:
        return self._ctx.status

    # ------------------------------------------------------------ main line

    @workflow.run
    async def run(self, start: IncidentStart) -> IncidentStatus:
        ctx, s = self._ctx, self._ctx.status
        await workflow.wait_condition(lambda: s.alert is not None)
        if ctx.resolved:
            s.outcome = "resolved before any action"
            return await self._close(IncidentPhase.RESOLVED)
        planned = await self._plan()
        ctx.alert_check_seconds = planned.alert_check_seconds
        open_until = workflow.now() + timedelta(seconds=planned.max_open_seconds)
        if planned.plan is None:
            ctx.set_phase(IncidentPhase.ESCALATED)
            ctx.log("decision", f"no remediation: {planned.reason}; left to the on-call team")
            s.outcome = "no remediation rule" if not planned.reason.startswith("could not plan") else planned.reason
            return await self._await_resolution(open_until)
        plan = planned.plan
        s.plan, s.rule, s.target = plan, plan.rule, plan.target
        if planned.gather_evidence:
            ctx.background.append(asyncio.create_task(gather_evidence(ctx, "at alert")))
        ctx.background.append(asyncio.create_task(snapshot_metrics(ctx, "at alert")))
        try:
            recovered = await climb_ladder(ctx, plan)
        except ActivityError as exc:  # retries of a budget or lease call ran out: hand over, never fail silently
            recovered = False
            await escalate(ctx, plan, f"automation failed: {failure_line(exc)}")
        finally:
            await ctx.release_lease()
        if recovered:
            s.outcome = "recovered by automation"
            if not ctx.resolved:
                ctx.log("verification", "waiting for the alert to resolve")
                await wait_resolved(ctx, open_until)
            return await self._close(IncidentPhase.RECOVERED if ctx.resolved else IncidentPhase.CLOSED)
        if ctx.resolved and not any(a.status == "succeeded" and not a.dry_run for a in s.actions):
            s.outcome = "resolved before any action" if not s.actions else "resolved"
            return await self._close(IncidentPhase.RESOLVED)
        if ctx.resolved:
            s.outcome = "recovered by automation"
            return await self._close(IncidentPhase.RECOVERED)
        await escalate(ctx, plan, "the remediation ladder is exhausted" if not s.escalated else "")
        return await self._await_resolution(open_until)

    async def _plan(self) -> PlanResult:
        ctx = self._ctx
        ctx.set_phase(IncidentPhase.PLANNING)
        try:
            planned = await workflow.execute_activity(
                "incident.plan", PlanRequest(alert=ctx.alert), result_type=PlanResult,
                start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=QUICK,
            )
        except ActivityError as exc:  # e.g. an invalid catalog: the incident stays open for the on-call team
            return PlanResult(reason=f"could not plan a remediation: {failure_line(exc)}")
        if planned.plan is not None:
            plan = planned.plan
            ctx.log("plan", f"rule {plan.rule}: target {plan.target.key}, ladder "
                    + " -> ".join(r.name for r in plan.rungs)
                    + (" (dry run)" if plan.policy.dry_run else "")
                    + (" (approval required)" if plan.requires_approval else ""),
                    data={"policy": plan.policy.model_dump(mode="json")})
        return planned

    async def _await_resolution(self, until: datetime) -> IncidentStatus:
        if workflow.patched("alert-vanished-check"):
            await wait_resolved_or_gone(self._ctx, until)
        else:
            await wait_resolved(self._ctx, until)
        if self._ctx.resolved:
            return await self._close(IncidentPhase.RESOLVED)
        self._ctx.log("closed", "the alert did not resolve before the incident's maximum duration")
        return await self._close(IncidentPhase.CLOSED)

    async def _close(self, phase: IncidentPhase) -> IncidentStatus:
        ctx, s = self._ctx, self._ctx.status
        if ctx.background:
            await asyncio.gather(*ctx.background, return_exceptions=True)
        if ctx.resolved and s.target is not None:
            await snapshot_metrics(ctx, "at resolution")
        ctx.set_phase(phase)
        mttr = s.mttr_seconds
        ctx.log("closed", f"incident {phase.value}: {s.outcome or phase.value}"
                + (f"; MTTR {mttr:.0f}s" if mttr is not None else ""))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return s
