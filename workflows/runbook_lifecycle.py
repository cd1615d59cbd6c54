"""Before and after a runbook's steps: the SLO error-budget check a schedule asked for (refused: the run ends before
its first step; a scheduled run `skipped` with the reason), taking the target's lease (mutating runbooks only,
unless a parent run holds it; a scheduled run asks with policy `refuse`), and finishing — compensations in reverse order on failure
or abort, the final phase (`skipped` for a scheduled run whose target was busy), the lease released. Passed
through the workflow sandbox (no module state).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pitstop.delivery.budget import budget_scope
    from pitstop.runbook.leases import LeaseHolder, lease_id
    from pitstop.runbook.model import Runbook
    from pitstop.runbook.run_state import Phase, StepState
    from pitstop.schedules.skips import BUDGET_REFUSED, lease_policy

from .error_budget import error_budget_decision
from .runbook_state import RunState
from .step_calls import STEP_TYPES, StepCalls

ERROR_BUDGET_PATCH = "scheduled-run-checks-error-budget"  # a run with `error_budget` measures it before any step


def is_mutating(runbook: Runbook) -> bool:
    """Declared, or else true when any step type it uses (or compensates with) changes something."""
    return runbook.mutates({name for name, kind in STEP_TYPES.items() if kind.mutating})


async def check_error_budget(state: RunState) -> None:
    """Raises `ApplicationError(type=ErrorBudgetRefused)` with the reason when the run's error budget refuses it."""
    check = state.request.error_budget
    if check is None or not workflow.patched(ERROR_BUDGET_PATCH):
        return
    scope = budget_scope(check, state.target)
    if not scope.service or not scope.namespace:
        reason = "error budget unknown: no service to measure (the runbook has no target; set error_budget.service and namespace)"
    else:
        decision = await error_budget_decision(check, service=scope.service, namespace=scope.namespace,
                                               region=scope.region, region_label=check.region_label)
        workflow.logger.info("%s/%s: %s", scope.namespace, scope.service, decision.reason)
        if decision.allowed:
            return
        reason = decision.reason
    raise ApplicationError(f"{scope.namespace}/{scope.service}: {reason}", type=BUDGET_REFUSED, non_retryable=True)


async def acquire_lease(state: RunState) -> None:
    runbook, request, target = state.runbook, state.request, state.target
    if runbook is None or request.dry_run or not target.get("service") or not is_mutating(runbook):
        return
    lease = lease_id(cluster=target["cluster"], namespace=target["namespace"], service=target["service"])
    if lease in request.held_leases:
        return  # a parent run holds this target for us
    state.set_phase(Phase.WAITING_FOR_LEASE)
    info = workflow.info()
    policy = lease_policy(trigger=request.trigger, declared=runbook.lease.policy)
    holder = LeaseHolder(workflow_id=info.workflow_id, run_id=info.run_id, runbook=runbook.name, policy=policy)
    await state.lease.acquire(
        lease=lease, holder=holder, wait_timeout=runbook.lease.wait_timeout, stop=lambda: state.abort is not None
    )


async def finish(state: RunState, calls: StepCalls) -> None:
    """The final phase (compensating first on failure or abort), then the lease released."""
    if state.skipped:
        state.set_phase(Phase.SKIPPED)
    elif state.phase not in (Phase.SUCCEEDED,):
        failed = bool(state.error) or state.failed()
        if state.abort is not None or failed:
            _stop_split_fan_outs(state)
            if not state.request.dry_run and state.saga.entries:
                state.set_phase(Phase.COMPENSATING)
                await state.saga.compensate(calls, state.context, state.steps)
                state.error = state.saga.annotate(state.error)
            state.set_phase(Phase.ABORTED if state.abort is not None else Phase.FAILED)
            if state.abort is not None and not state.error:
                who, why = state.abort.identity or "unknown", state.abort.reason or "no reason given"
                state.error = f"aborted by {who}: {why}"
        else:
            state.set_phase(Phase.SUCCEEDED)
    await state.lease.release()


def _stop_split_fan_outs(state: RunState) -> None:
    """The run ends failed or aborted: a for_each stopped part-way will not go on (its finished items are
    compensated like any others)."""
    for sid, partial in state.fan_outs.items():
        status = state.steps[sid]
        if status.state in (StepState.RUNNING, StepState.WAITING_FOR_APPROVAL):
            status.state, status.ended_at = StepState.CANCELLED, workflow.now()
            status.error = status.error or (
                f"stopped after {status.items_done}/{partial.items_total} items: the run "
                f"{'was aborted' if state.abort is not None else 'failed'}"
            )
