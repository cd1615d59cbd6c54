"""The policy re-check in update validators, and the record of a refusal in the run's history.

`require(...)` asks the policy the worker installed (`pitstop.policy.guard`) whether the update's identity may
do this action on this run's runbook and target; a refusal raises `ApplicationError(type="AccessDenied")` whose
message says who, what and why (the caller sees it) and whose details carry the `AccessDenial` record. Temporal
records nothing for a rejected update, so the worker also signals `access_denied` to the run, and the handler
(`record_denial`) keeps it: the history then holds a `WorkflowExecutionSignaled` event with the record.
Validators run only when an update first arrives, never on replay (docs/policy.md), and the handler adds no
command, so old histories replay unchanged.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pitstop.access import Action, Target
    from pitstop.policy import guard
    from pitstop.policy.guard import ACCESS_DENIED, AccessDenial, AccessRefused

MAX_DENIALS_KEPT = 20  # a run keeps the newest refusals in its state (all of them are in its history)


def require(*, identity: str, groups: list[str], action: Action, runbook: str, target: Target) -> None:
    """Raise (rejecting the update) unless the installed policy allows it; no policy installed = no check."""
    try:
        guard.check(workflow_id=workflow.info().workflow_id, identity=identity, groups=groups, action=action,
                    runbook=runbook, target=target)
    except AccessRefused as exc:
        workflow.logger.warning(exc.denial.line())
        raise ApplicationError(str(exc), exc.denial.model_dump(mode="json"), type=ACCESS_DENIED,
                               non_retryable=True) from None


def may_approve(approvers: list[str], *, identity: str, groups: list[str]) -> bool:
    """Whether an approval's `approvers` list (users, `user:NAME`, `group:NAME`) includes this caller."""
    return guard.approver_allowed(approvers, identity=identity, groups=groups)


def record_denial(kept: list[AccessDenial], denial: AccessDenial) -> None:
    """The `access_denied` signal's handler body: keep the newest refusals (state only, no command)."""
    kept.append(denial)
    del kept[:-MAX_DENIALS_KEPT]
