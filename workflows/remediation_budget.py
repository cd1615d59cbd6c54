"""`RemediationBudget`: one workflow per service (id from `incident.reserve_action`), the circuit breaker's memory.

It remembers the remediation actions of the last hour (`BudgetState`) and answers the `reserve` update (sent by
the `incident.reserve_action` activity, update-with-start) with the pure rule of `pitstop.remediation_budget`
(dedup, coalescing with another incident's recent action, the hourly limit). It ends after an idle hour with
nothing left to remember, and continues-as-new after many reservations.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pitstop.incidents import BUDGET_WORKFLOW, BudgetState, ReserveAction, ReserveResult
    from pitstop.remediation_budget import prune_actions, reserve_action

RESERVATIONS_BEFORE_CONTINUE_AS_NEW = 500
BUDGET_IDLE = timedelta(hours=1)


@workflow.defn(name=BUDGET_WORKFLOW)
class RemediationBudget:
    """The circuit breaker of one service: how many remediation actions it had in the last hour."""

    @workflow.init
    def __init__(self, state: BudgetState) -> None:
        self._state = state  # set before the first `reserve` update (delivered with the start) runs
        self._reservations = 0
        self._touched = False

    @workflow.update
    def reserve(self, request: ReserveAction) -> ReserveResult:
        self._touched = True
        self._reservations += 1
        reservation = reserve_action(self._state.actions, request, now=workflow.now())
        self._state.actions = reservation.actions
        return reservation.result

    @workflow.query
    def state(self) -> BudgetState:
        return self._state

    @workflow.run
    async def run(self, state: BudgetState) -> None:
        while True:
            self._touched = False
            try:
                await workflow.wait_condition(lambda: self._touched, timeout=BUDGET_IDLE)
            except asyncio.TimeoutError:
                self._state.actions = prune_actions(self._state.actions, now=workflow.now())
                if not self._state.actions:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    if not self._touched:
                        return
            if self._reservations >= RESERVATIONS_BEFORE_CONTINUE_AS_NEW or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)
