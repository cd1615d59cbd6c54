"""The policy as the workflows' update validators see it: the one the worker process installed.

The worker loads the policy file at start (`security.policy_file`; `pitstop up` uses the shipped
`runbooks/policy.yaml`) and calls `install`. Workflow code imports this module through
`workflow.unsafe.imports_passed_through()`, so every run's sandbox sees the same installed policy, and the update
validators call `check` synchronously, in memory. Why that is safe for replay (docs/policy.md, "Where the
validators get the policy"): Temporal runs an update's validator only when the update first arrives, never
when a history is replayed (the SDK's `DoUpdate.run_validator` is false for updates already in the history),
and a rejected update adds nothing to the history. The handlers and the main line never read the policy.

A rejected update leaves no event in the history, so a denial is reported to the installed `denial_sink`
(the worker signals `access_denied` to the run: a `WorkflowExecutionSignaled` event naming who, what and why)
as well as raised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, Field

from pitstop.access import AccessDecision, Action, Target

from .evaluate import Policy, describe_target

ACCESS_DENIED = "AccessDenied"  # the ApplicationError type of a validator's refusal
ACCESS_DENIED_SIGNAL = "access_denied"  # the signal that records a refusal in the run's history


class AccessDenial(BaseModel):
    """The audit record of one refused update: who, what, why (the `access_denied` signal's argument)."""

    workflow_id: str
    identity: str = Field(description="the subject the update named ('' = none)")
    groups: list[str] = Field(default_factory=list)
    action: str
    runbook: str
    target: Target = Target()
    reason: str
    rule: str | None = None

    def line(self) -> str:
        return f"access denied: {self.reason} [run {self.workflow_id}]"


class AccessRefused(ValueError):
    """Raised by `check`; the validator turns it into an `ApplicationError` of type `AccessDenied`."""

    def __init__(self, denial: AccessDenial) -> None:
        super().__init__(denial.reason)
        self.denial = denial


_installed: Policy | None = None
_denial_sink: Callable[[AccessDenial], None] | None = None


def install(policy: Policy | None, *, denial_sink: Callable[[AccessDenial], None] | None = None) -> None:
    """Make `policy` the one the validators check (None = no policy: only the runbooks' `approvers` lists)."""
    global _installed, _denial_sink
    _installed, _denial_sink = policy, denial_sink


def installed() -> Policy | None:
    return _installed


def check(*, workflow_id: str, identity: str, groups: Iterable[str], action: Action, runbook: str,
          target: Target) -> AccessDecision | None:
    """The installed policy's decision (None when no policy is installed); raises `AccessRefused` on a denial."""
    policy = _installed
    if policy is None:
        return None
    group_list = sorted(set(groups))
    if not identity.strip():
        decision = AccessDecision(allowed=False, reason=f"an update without an identity may not {action.value} on "
                                                        f"runbook {runbook!r}{describe_target(target)}")
    else:
        decision = policy.decide_for(subject=identity, groups=group_list, action=action, runbook=runbook,
                                     target=target)
    if decision.allowed:
        return decision
    denial = AccessDenial(workflow_id=workflow_id, identity=identity, groups=group_list, action=action.value,
                          runbook=runbook, target=target, reason=decision.reason, rule=decision.rule)
    sink = _denial_sink
    if sink is not None:
        try:
            sink(denial)
        except Exception:  # noqa: BLE001 - the refusal stands even if recording it failed; the worker logs it
            pass
    raise AccessRefused(denial)


def approver_allowed(approvers: Iterable[str], *, identity: str, groups: Iterable[str]) -> bool:
    """An approval step's / catalog's `approvers` entry names `user:NAME`, `group:NAME` or a bare user name;
    group membership includes the installed policy's `members`. An empty list allows anyone."""
    entries = list(approvers)
    if not entries:
        return True
    policy = _installed
    effective = policy.groups_of(identity, groups) if policy is not None else frozenset(groups)
    for entry in entries:
        kind, _, name = entry.partition(":")
        if (kind == "group" and name in effective) or (kind == "user" and name == identity) or entry == identity:
            return True
    return False


def target_of(values: dict[str, Any]) -> Target:
    """A `Target` from a run's target mapping (empty strings = not named)."""
    return Target(**{k: (str(values[k]) or None) if values.get(k) is not None else None
                     for k in ("namespace", "service", "region")})
