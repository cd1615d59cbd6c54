"""Approval steps: durable waits for a Temporal update carrying the approver's identity.

The interpreter's `approve` update validator calls `ApprovalGate.validate` (rejecting identities the
runbook does not allow and steps not waiting), its handler calls `decide`. A deadline either decides by
default or escalates to more approvers (then rejects at the second deadline); an escalation is announced
through the `notify` callback (the step's `notify:` webhook / Slack endpoint) before the second deadline
starts counting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook.native_steps import ApprovalArgs, ApprovalResult
    from pitstop.runbook.run_state import ApprovalDecision, ApprovalRequestInfo
    from pitstop.workflows.access_checks import may_approve


class ApprovalGate:
    def __init__(self) -> None:
        self.waiting: dict[str, ApprovalRequestInfo] = {}
        self.decisions: dict[str, ApprovalDecision] = {}

    def validate(self, decision: ApprovalDecision) -> None:
        """Raise (rejecting the update, nothing recorded) unless this identity may decide this step now."""
        info = self.waiting.get(decision.step)
        if info is None:
            waiting = ", ".join(sorted(self.waiting)) or "none"
            raise ValueError(f"step {decision.step!r} is not waiting for approval (waiting: {waiting})")
        if not decision.identity.strip():
            raise ValueError("an approval needs the approver's identity")
        if not may_approve(info.approvers, identity=decision.identity, groups=decision.groups):
            raise ValueError(
                f"{decision.identity!r} may not approve step {decision.step!r}; allowed: {', '.join(info.approvers)}"
            )

    def decide(self, decision: ApprovalDecision) -> None:
        self.decisions.setdefault(decision.step, decision)

    async def wait(
        self, key: str, args: ApprovalArgs, default_approvers: list[str],
        notify: Callable[[ApprovalRequestInfo], Awaitable[str]] | None = None,
    ) -> ApprovalResult:
        info = ApprovalRequestInfo(key=key, message=args.message, approvers=list(args.approvers or default_approvers))
        self.waiting[key] = info
        try:
            if await self._wait_decision(key, info, args.timeout):
                return self._result(key, escalated=False)
            if args.on_timeout != "escalate":
                approved = args.on_timeout == "approve"
                verdict = "approved" if approved else "rejected"
                return ApprovalResult(approved=approved, by_default=True, summary=f"no decision by the deadline: {verdict} by default")
            info.approvers = sorted(set(info.approvers) | set(args.escalate_to))
            info.escalated = True
            workflow.logger.info("approval %s escalated to %s", key, ", ".join(args.escalate_to))
            if notify is not None and args.notify is not None:
                info.deadline = None
                info.notified = await notify(info)
            if await self._wait_decision(key, info, args.escalation_timeout):
                return self._result(key, escalated=True, notified=info.notified)
            return ApprovalResult(approved=False, escalated=True, by_default=True, notified=info.notified,
                                  summary="no decision after escalation: rejected by default")
        finally:
            self.waiting.pop(key, None)

    async def _wait_decision(self, key: str, info: ApprovalRequestInfo, timeout: float | None) -> bool:
        info.deadline = workflow.now() + timedelta(seconds=timeout) if timeout else None
        try:
            await workflow.wait_condition(
                lambda: key in self.decisions, timeout=timedelta(seconds=timeout) if timeout else None
            )
        except TimeoutError:
            return False
        return True

    def _result(self, key: str, *, escalated: bool, notified: str = "") -> ApprovalResult:
        decision = self.decisions[key]
        verdict = "approved" if decision.approved else "rejected"
        return ApprovalResult(
            approved=decision.approved, approver=decision.identity, comment=decision.comment, escalated=escalated,
            notified=notified,
            summary=f"{verdict} by {decision.identity}" + (f": {decision.comment}" if decision.comment else ""),
        )
