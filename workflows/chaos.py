"""`ChaosExperimentWorkflow`: one Chaos Toolkit experiment, unchanged, as a durable run (docs/chaos.md).

Phases (`pitstop.chaos.phases.Phase`): validating -> waiting_for_lease -> checking_budget -> steady_state_before ->
method -> steady_state_after -> rollbacks -> done. The gates (`chaos_gates.py`) refuse before anything runs; the
phases (`chaos_phases.py`) play the experiment as `chaos run` would, with the rollbacks guaranteed: after success,
failure, an abort (signal `abort`, the dead-man switch, the deadline) or a worker lost during the method, exactly
once each (per the run's rollback strategy). The result carries the journal in `chaos run`'s shape.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pitstop.chaos.model import CHAOS_WORKFLOW, ChaosOutcome, ChaosRequest
    from pitstop.chaos.phases import ChaosView
    from pitstop.runbook.leases import LeaseGrant

from . import chaos_gates, chaos_phases
from .chaos_context import ChaosContext


@workflow.defn(name=CHAOS_WORKFLOW)
class ChaosExperimentWorkflow:
    def __init__(self) -> None:
        self._ctx: ChaosContext | None = None
        self._early_abort: str | None = None

    @workflow.signal
    def abort(self, reason: str) -> None:
        if self._ctx is None:
            self._early_abort = reason or "aborted"
        else:
            self._ctx.abort(reason)

    @workflow.signal
    def lease_granted(self, grant: LeaseGrant) -> None:
        for side in self._ctx.leases if self._ctx else []:
            side.granted(grant)

    @workflow.signal
    def lease_refused(self, grant: LeaseGrant) -> None:
        for side in self._ctx.leases if self._ctx else []:
            side.refused(grant)

    @workflow.query
    def status(self) -> ChaosView | None:
        return self._ctx.view() if self._ctx else None

    @workflow.run
    async def run(self, request: ChaosRequest) -> ChaosOutcome:
        ctx = self._ctx = ChaosContext(request)
        if self._early_abort is not None:
            ctx.abort(self._early_abort)
        try:
            await chaos_gates.validate(ctx)
            try:
                await chaos_gates.check_blast_radius(ctx)
                await chaos_gates.acquire_leases(ctx)
                await chaos_gates.check_error_budget(ctx)
            except ApplicationError as exc:
                if not (request.skip_refused and exc.type in chaos_gates.SKIPPABLE):
                    raise
                return chaos_gates.skipped(ctx, exc.message)
            if ctx.abort_reason is not None:
                raise chaos_gates.refuse(f"aborted before anything ran: {ctx.abort_reason}", "ChaosAborted")
            await chaos_phases.run_experiment(ctx)
        finally:
            await chaos_gates.release_leases(ctx)
        return chaos_phases.outcome(ctx)
