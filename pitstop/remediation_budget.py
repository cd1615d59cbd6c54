"""The remediation budget's reservation rule: pure functions over the actions a service's budget remembers.

One `RemediationBudget` workflow per service (`workflows/remediation_budget.py`) keeps the remediation actions
of the last hour (`pitstop.incidents.BudgetAction`); each `reserve` update asks `reserve_action(...)`, which
decides in this order:
1. prune: only the actions of the last hour count (`prune_actions`);
2. dedup: a retried reservation of the same action key (`<incident>/<rung>`) is granted again, not counted twice;
3. coalescing: another incident acted on the service within `coalesce_seconds` (`coalescing_action`): refused,
   naming that action, so the caller verifies recovery from it instead of stacking a second action;
4. the circuit breaker (`pitstop.remediation.breaker_decision`): at most `max_per_hour` actions per sliding hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from pitstop.incidents import BudgetAction, ReserveAction, ReserveResult
from pitstop.remediation import BREAKER_WINDOW, breaker_decision


class Reservation(BaseModel):
    """A reservation's answer, and the actions the budget keeps after it (pruned, plus the new one if allowed)."""

    result: ReserveResult
    actions: list[BudgetAction]


def prune_actions(actions: list[BudgetAction], *, now: datetime) -> list[BudgetAction]:
    """Only the actions the breaker still needs (those of the last hour), in the order they were taken."""
    return [a for a in actions if a.at > now - BREAKER_WINDOW]


def incident_of(action_key: str) -> str:
    """The incident part of an action key `<incident>/<rung>`."""
    return action_key.rsplit("/", 1)[0]


def coalescing_action(actions: list[BudgetAction], request: ReserveAction, *, now: datetime) -> BudgetAction | None:
    """The latest action of another incident within the request's `coalesce_seconds`, if any."""
    incident = incident_of(request.action_key)
    recent = [a for a in actions if incident_of(a.key) != incident
              and a.at > now - timedelta(seconds=request.coalesce_seconds)]
    return recent[-1] if recent else None


def reserve_action(actions: list[BudgetAction], request: ReserveAction, *, now: datetime) -> Reservation:
    """Decide one reservation (see the module docstring for the order of the rules)."""
    kept = prune_actions(actions, now=now)
    if any(a.key == request.action_key for a in kept):
        return Reservation(result=ReserveResult(allowed=True, actions_last_hour=len(kept), reason="already reserved"),
                           actions=kept)
    other = coalescing_action(kept, request, now=now)
    if other is not None:
        return Reservation(
            result=ReserveResult(
                allowed=False, actions_last_hour=len(kept), coalesced_with=other.key, coalesced_at=other.at,
                reason=f"{other.key} acted on this service at {other.at:%H:%M:%S}Z; not stacking another action",
            ),
            actions=kept,
        )
    decision = breaker_decision([a.at for a in kept], now=now, max_per_hour=request.max_per_hour)
    if decision.allowed:
        kept = [*kept, BudgetAction(at=now, key=request.action_key)]
    return Reservation(result=ReserveResult(**decision.model_dump()), actions=kept)
