"""The phases of a chaos run, as `chaos run` plays them (`pitstop.chaos.phases`): steady state before, method
(watched by the dead-man switch and the deadline), steady state after, rollbacks; then the journal and the score.

Each phase is one `chaos.phase` activity (a child process, heartbeating) on the region's task queue; each rollback is
its own activity (id `rollback-N`), so a completed rollback is never played again, and one interrupted by a dead
worker is started again (Temporal retries it after the heartbeat timeout) until `rollback_attempts`; a rollback
failing every attempt is reported in the outcome, never dropped. The method is not retried: a worker lost while it
runs ends it `aborted` with the runs its last heartbeat reported, and the rollbacks run.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError as TemporalTimeout
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pitstop.analysis import Verdict, evaluate, explain
    from pitstop.chaos.guard import guard_checks
    from pitstop.chaos.journal import assemble_journal, journal_summary
    from pitstop.chaos.model import ChaosOutcome, PhaseInput, PhaseName, PhaseResult, SloCheckResult
    from pitstop.chaos.phases import (
        Phase, failed_runs, hypothesis_met, runs_after_hypothesis, should_roll_back, status_after_method,
        status_when_not_met,
    )
    from pitstop.chaos.score import hypothesis_checks, resilience_score
    from pitstop.delivery.models import MeasureInput, MeasureResult
    from pitstop.failures import failure_text

from .activity_policies import ACTIVITY_TIMEOUT, MEASURE_RETRY
from .chaos_context import ChaosContext

NO_RETRY = RetryPolicy(maximum_attempts=1)
PHASE_MARGIN = 60.0  # seconds a phase's activity may run beyond the run's deadline before Temporal times it out


def _phase_input(ctx: ChaosContext, phase: PhaseName, index: int = 0) -> PhaseInput:
    return PhaseInput(run_id=workflow.info().workflow_id, phase=phase, experiment=ctx.experiment, index=index,
                      dry_run=ctx.request.dry_run)


def _start_phase(ctx: ChaosContext, phase: PhaseName, activity_id: str, retry: RetryPolicy, index: int = 0) -> Any:
    return workflow.start_activity(
        "chaos.phase", _phase_input(ctx, phase, index), result_type=PhaseResult, task_queue=ctx.task_queue(),
        activity_id=activity_id, start_to_close_timeout=timedelta(seconds=ctx.request.deadline_seconds + PHASE_MARGIN),
        heartbeat_timeout=ctx.heartbeat_timeout(), retry_policy=retry,
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED, summary=activity_id,
    )


async def steady_state(ctx: ChaosContext, activity_id: str) -> dict[str, Any] | None:
    result: PhaseResult = await _start_phase(ctx, PhaseName.STEADY_STATE, activity_id, NO_RETRY)
    ctx.note_versions(result)
    return result.steady_state


async def run_experiment(ctx: ChaosContext) -> None:
    """Hypothesis before, method, hypothesis after (each only when Chaos Toolkit would run it), rollbacks."""
    try:
        ctx.phase = Phase.STEADY_STATE_BEFORE
        ctx.before = await steady_state(ctx, "steady-state-before")
        if not hypothesis_met(ctx.before):
            ctx.status = status_when_not_met(ctx.before or {})
            return
        await run_method(ctx)
        if runs_after_hypothesis(ctx.status):
            ctx.phase = Phase.STEADY_STATE_AFTER
            ctx.after = await steady_state(ctx, "steady-state-after")
            if not hypothesis_met(ctx.after):
                ctx.deviated = True
                ctx.status = status_when_not_met(ctx.after or {})
    except ActivityError as exc:  # a hypothesis' child process or worker failed: no verdict, so aborted
        ctx.abort(f"{ctx.phase.value} could not run: {failure_text(exc)}")
        ctx.status = status_after_method(aborted=True, interrupted=False)
    finally:
        await run_rollbacks(ctx)


async def run_method(ctx: ChaosContext) -> None:
    ctx.phase = Phase.METHOD
    if ctx.abort_reason is not None:
        ctx.status = status_after_method(aborted=True, interrupted=False)
        return
    handle = _start_phase(ctx, PhaseName.METHOD, "method", NO_RETRY)
    guard = asyncio.create_task(dead_man_switch(ctx))
    try:
        await workflow.wait_condition(lambda: handle.done() or ctx.abort_reason is not None,
                                      timeout=timedelta(seconds=ctx.request.deadline_seconds))
    except asyncio.TimeoutError:
        ctx.abort(f"dead-man switch: the experiment's deadline ({ctx.request.deadline_seconds:g}s) passed")
    except asyncio.CancelledError:  # the run itself was cancelled (Temporal cancel): an abort, so the rollbacks run
        ctx.abort("the run was cancelled")
    guard.cancel()
    if not handle.done():
        handle.cancel()
    interrupted = False
    try:
        result: PhaseResult = await handle
        ctx.runs, interrupted = result.runs, result.interrupted
        if result.error and not interrupted:
            ctx.abort(f"the method stopped on an unexpected error: {result.error}")
    except ActivityError as exc:
        ctx.runs = _runs_from(exc)
        ctx.abort(f"the method's worker was lost ({failure_text(exc)})")
    await asyncio.gather(guard, return_exceptions=True)
    ctx.status = status_after_method(aborted=ctx.abort_reason is not None, interrupted=interrupted)


def _runs_from(exc: ActivityError) -> list[dict[str, Any]]:
    """The runs a stopped method reported: in its cancellation error, else in its last heartbeat."""
    cause = exc.cause
    details: Any = ()
    if isinstance(cause, ApplicationError):
        details = cause.details
    elif isinstance(cause, TemporalTimeout):
        details = cause.last_heartbeat_details
    runs = details[0] if details else []
    return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


async def dead_man_switch(ctx: ChaosContext) -> None:
    """Measure the targets' SLO checks every `guard.interval` while the method runs; abort on a failed check."""
    guard = ctx.request.guard
    checks = [c for t in ctx.request.targets for c in guard_checks(guard, t)] if guard else []
    if guard is None or not checks:
        return
    while ctx.abort_reason is None:
        await workflow.sleep(timedelta(seconds=guard.interval), summary="dead-man switch")
        result = await workflow.execute_activity(
            "delivery.measure", MeasureInput(checks=[c.check for c in checks]), result_type=MeasureResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=MEASURE_RETRY, summary="dead-man switch: SLO probes",
        )
        for check, measurement in zip(checks, result.measurements):
            verdict = evaluate(measurement, check.check.threshold)
            detail = explain(measurement, check.check.threshold, verdict)
            ctx.checks.append(SloCheckResult(name=check.check.name, severity=check.severity,
                                             passed=verdict is Verdict.PASS, detail=detail))
            if verdict is Verdict.FAIL:
                ctx.abort(f"dead-man switch: {check.check.name}: {detail}")


async def run_rollbacks(ctx: ChaosContext) -> None:
    if not should_roll_back(ctx.request.rollback_strategy, status=ctx.status, deviated=ctx.deviated):
        return
    ctx.phase, ctx.rollbacks_played = Phase.ROLLBACKS, True
    retry = RetryPolicy(maximum_attempts=ctx.request.rollback_attempts, initial_interval=timedelta(seconds=1),
                        maximum_interval=timedelta(seconds=10))
    for index, rollback in enumerate(ctx.experiment.get("rollbacks") or []):
        try:
            result: PhaseResult = await _start_phase(ctx, PhaseName.ROLLBACK, f"rollback-{index}", retry, index)
            ctx.rollbacks.extend(result.runs)
        except ActivityError as exc:
            ctx.rollbacks.extend(_runs_from(exc))
            ctx.rollback_failures.append(
                f"rollback {index} ({rollback.get('name', '?')}) failed after {ctx.request.rollback_attempts} "
                f"attempt(s): {failure_text(exc)}"
            )


def outcome(ctx: ChaosContext) -> ChaosOutcome:
    ctx.phase = Phase.DONE
    journal = assemble_journal(
        experiment=ctx.experiment, started=ctx.started, ended=workflow.now(), status=ctx.status, deviated=ctx.deviated,
        before=ctx.before, after=ctx.after, runs=ctx.runs, rollbacks=ctx.rollbacks, versions=ctx.versions,
    )
    checks = [*ctx.checks, *hypothesis_checks(ctx.after)]
    score = resilience_score(checks)
    return ChaosOutcome(
        title=ctx.title, status=ctx.status, deviated=ctx.deviated, targets=ctx.request.targets,
        reason=ctx.abort_reason or "", rollbacks_played=ctx.rollbacks_played,
        rollback_failures=ctx.rollback_failures, failed_activities=failed_runs(ctx.runs), checks=checks, score=score,
        summary=journal_summary(journal, score=score, rollback_failures=len(ctx.rollback_failures)), journal=journal,
    )
