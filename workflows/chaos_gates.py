"""The gates of a chaos run, before anything runs: chaoslib's validation (and the worker's allowlists), the blast
radius (share of each target's pods; never two targets on one call path), each target's lease (policy `refuse`:
no chaos while a release, runbook or incident holds the service) and the SLO error budget (the release gate and
its measurement, shared in `workflows/error_budget.py`).
A refusal raises a non-retryable `ApplicationError` naming what refused."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pitstop.chaos.blast import call_path_conflicts, pod_actions, pod_share_refusals
    from pitstop.chaos.model import ChaosOutcome, PhaseInput, PhaseName, PhaseResult
    from pitstop.chaos.phases import Phase
    from pitstop.dependency_graph import ServiceRef
    from pitstop.runbook.leases import LeaseHolder, lease_id
    from pitstop.steps.graph import DiscoverArgs, GraphDiscovery
    from pitstop.config import regional_task_queue

from .activity_policies import ACTIVITY_TIMEOUT, QUICK, SLOW_ACTIVITY_TIMEOUT
from .chaos_context import ChaosContext
from .error_budget import error_budget_decision
from .lease import LeaseHolderSide


SKIPPABLE = ("LeaseRefused", "ErrorBudget", "BlastRadius")  # refusals a nightly run skips (`skip_refused`)


def skipped(ctx: ChaosContext, reason: str) -> ChaosOutcome:
    """The outcome of a run a gate refused with `skip_refused`: nothing ran."""
    ctx.phase = Phase.DONE
    return ChaosOutcome(title=ctx.title, targets=ctx.request.targets, skipped=True, reason=reason,
                        summary=f"{ctx.title!r} skipped: {reason}")


def refuse(message: str, kind: str = "ChaosRefused") -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


async def validate(ctx: ChaosContext) -> None:
    ctx.phase = Phase.VALIDATING
    request = ctx.request
    if not request.run_region():
        raise refuse("a chaos run needs a region: give --target REGION/NAMESPACE/SERVICE or region")
    result = await workflow.execute_activity(
        "chaos.phase",
        PhaseInput(run_id=workflow.info().workflow_id, phase=PhaseName.VALIDATE, experiment=request.experiment,
                   experiment_file=request.experiment_file),
        result_type=PhaseResult, task_queue=ctx.task_queue(), start_to_close_timeout=SLOW_ACTIVITY_TIMEOUT,
        retry_policy=QUICK, activity_id="validate", summary="validate the experiment",
    )
    ctx.note_versions(result)
    if result.error:
        raise refuse(f"invalid experiment: {result.error}", "InvalidExperiment")
    ctx.experiment = result.experiment or {}


async def check_blast_radius(ctx: ChaosContext) -> None:
    request = ctx.request
    for target in request.targets if pod_actions(ctx.experiment) else []:
        pods = await workflow.execute_activity(
            "chaos.target_pods", target, result_type=int, task_queue=regional_task_queue(
                workflow.info().task_queue, target.region),
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=QUICK, summary=f"pods of {target}",
        )
        refusals = pod_share_refusals(ctx.experiment, pods=pods, max_share=request.max_pod_share, target=str(target))
        if refusals:
            raise refuse("blast radius: " + "; ".join(refusals), "BlastRadius")
    if len(request.targets) > 1:
        discovery = await workflow.execute_activity(
            "graph.discover", DiscoverArgs(), result_type=GraphDiscovery, start_to_close_timeout=SLOW_ACTIVITY_TIMEOUT,
            retry_policy=QUICK, summary="dependency graph",
        )
        services = [ServiceRef(namespace=t.namespace, workload=t.service) for t in request.targets]
        conflicts = call_path_conflicts(discovery.graph, services)
        if conflicts:
            pairs = ", ".join(f"{a} and {b}" for a, b in conflicts)
            raise refuse(f"blast radius: never two services on one call path at once ({pairs})", "BlastRadius")


async def acquire_leases(ctx: ChaosContext) -> None:
    ctx.phase = Phase.WAITING_FOR_LEASE
    info = workflow.info()
    for target in ctx.request.targets:
        side = LeaseHolderSide()
        ctx.leases.append(side)
        await side.acquire(
            lease=lease_id(cluster=target.region, namespace=target.namespace, service=target.service),
            holder=LeaseHolder(workflow_id=info.workflow_id, run_id=info.run_id, runbook=f"chaos {ctx.title}",
                               policy="refuse"),
            wait_timeout=None, stop=lambda: ctx.abort_reason is not None,
        )
        if ctx.abort_reason is not None:
            raise refuse(f"aborted before anything ran: {ctx.abort_reason}", "ChaosAborted")


async def release_leases(ctx: ChaosContext) -> None:
    for side in ctx.leases:
        await side.release()


async def check_error_budget(ctx: ChaosContext) -> None:
    gate = ctx.request.error_budget
    if gate is None:
        return
    ctx.phase = Phase.CHECKING_BUDGET
    region_label = ctx.request.guard.region_label if ctx.request.guard else "region"
    for target in ctx.request.targets:
        decision = await error_budget_decision(gate, service=target.service, namespace=target.namespace,
                                               region=target.region, region_label=region_label)
        if not decision.allowed:
            raise refuse(f"{target}: {decision.reason}", "ErrorBudget")
