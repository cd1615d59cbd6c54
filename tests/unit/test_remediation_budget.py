"""The remediation budget's reservation rule (`pitstop.remediation_budget`): pruning, dedup, coalescing, breaker."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pitstop.incidents import BudgetAction, ReserveAction
from pitstop.remediation_budget import coalescing_action, prune_actions, reserve_action

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)


def action(minutes_ago: float, key: str) -> BudgetAction:
    return BudgetAction(at=T0 - timedelta(minutes=minutes_ago), key=key)


def ask(key: str, *, max_per_hour: int = 3, coalesce_seconds: float = 0.0) -> ReserveAction:
    return ReserveAction(target_key="eu/payments/checkout", action_key=key, max_per_hour=max_per_hour,
                         coalesce_seconds=coalesce_seconds)


def test_pruning_keeps_the_last_hour_in_the_order_taken() -> None:
    actions = [action(90, "inc-a/restart"), action(61, "inc-a/rollback"), action(40, "inc-b/restart"),
               action(5, "inc-c/restart")]
    kept = prune_actions(actions, now=T0)
    assert [a.key for a in kept] == ["inc-b/restart", "inc-c/restart"]
    assert prune_actions([action(60, "inc-a/restart")], now=T0) == []  # exactly an hour old: outside the window


def test_an_allowed_reservation_is_remembered_and_old_actions_are_dropped() -> None:
    reservation = reserve_action([action(70, "inc-a/restart"), action(30, "inc-b/restart")], ask("inc-c/restart"),
                                 now=T0)
    assert reservation.result.allowed and reservation.result.actions_last_hour == 1
    assert [(a.key, a.at) for a in reservation.actions] == [("inc-b/restart", T0 - timedelta(minutes=30)),
                                                            ("inc-c/restart", T0)]


def test_a_retried_reservation_is_granted_again_without_counting_twice() -> None:
    actions = [action(20, "inc-a/restart"), action(10, "inc-b/restart"), action(2, "inc-c/restart")]
    reservation = reserve_action(actions, ask("inc-b/restart", max_per_hour=3), now=T0)
    assert reservation.result.allowed and reservation.result.reason == "already reserved"
    assert reservation.result.actions_last_hour == 3
    assert reservation.actions == actions


def test_another_incidents_recent_action_is_coalesced_not_stacked() -> None:
    actions = [action(10, "inc-a/restart"), action(3, "inc-b/rollback")]
    reservation = reserve_action(actions, ask("inc-c/restart", coalesce_seconds=300), now=T0)
    result = reservation.result
    assert not result.allowed
    assert result.coalesced_with == "inc-b/rollback" and result.coalesced_at == T0 - timedelta(minutes=3)
    assert "inc-b/rollback acted on this service at 09:57:00Z" in result.reason
    assert reservation.actions == actions  # nothing reserved


def test_the_same_incidents_own_recent_action_does_not_coalesce() -> None:
    """An incident climbing its ladder may take its next rung right after its previous one."""
    actions = [action(1, "inc-a/restart")]
    assert coalescing_action(actions, ask("inc-a/rollback", coalesce_seconds=300), now=T0) is None
    reservation = reserve_action(actions, ask("inc-a/rollback", coalesce_seconds=300), now=T0)
    assert reservation.result.allowed and [a.key for a in reservation.actions] == ["inc-a/restart", "inc-a/rollback"]


def test_an_action_older_than_the_coalescing_window_does_not_coalesce() -> None:
    assert coalescing_action([action(6, "inc-b/restart")], ask("inc-a/restart", coalesce_seconds=300), now=T0) is None


def test_the_breaker_refuses_over_the_hourly_limit_and_reserves_nothing() -> None:
    actions = [action(50, "inc-a/restart"), action(30, "inc-b/restart"), action(10, "inc-c/restart")]
    reservation = reserve_action(actions, ask("inc-d/restart", max_per_hour=3), now=T0)
    result = reservation.result
    assert not result.allowed and result.actions_last_hour == 3
    assert "circuit open" in result.reason and result.retry_after_seconds == 600.0
    assert not result.coalesced_with
    assert reservation.actions == actions
