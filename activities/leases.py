"""The lease activities: the side effects of the per-target lease protocol (`workflows/lease.py`).

`LeaseActivities(client, check_seconds=30)`: `lease.request` signal-with-starts a target's lease workflow
(`TargetLease`) for a holder (runbook, release or incident); `lease.holder_open` tells the lease workflow
whether its holder is still running; `dr.region_leases` lists the leases in use on a region's services. They need a Temporal client (`clients.temporal`).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from pitstop.runbook.leases import LEASE_WORKFLOW, HolderCheck, LeaseRequest, LeaseState
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.dr import RegionLeases, RegionLeasesArgs


class LeaseActivities:
    def __init__(self, client: Client, *, check_seconds: float = 30.0) -> None:
        self.client = client
        self.check_seconds = check_seconds

    @activity.defn(name="lease.request")
    async def request(self, request: LeaseRequest) -> None:
        """Ask for the lease: starts the target's lease workflow if none runs, then signals it (atomically)."""
        await self.client.start_workflow(
            LEASE_WORKFLOW,
            LeaseState(lease_id=request.lease_id, check_seconds=self.check_seconds),
            id=request.lease_id,
            task_queue=activity.info().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="request",
            start_signal_args=[request.holder],
        )

    @activity.defn(name="lease.holder_open")
    async def holder_open(self, check: HolderCheck) -> bool:
        """Whether the holder's run is still running (a terminated holder never releases by itself).

        A holder that continued-as-new still holds the lease: then the latest run of its chain is checked."""
        try:
            handle = self.client.get_workflow_handle(check.workflow_id, run_id=check.run_id or None)
            description = await handle.describe()
            if description.status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
                description = await self.client.get_workflow_handle(check.workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING

    @activity.defn(name="dr.region_leases")
    async def region_leases(self, invocation: StepInvocation[RegionLeasesArgs]) -> RegionLeases:
        """Lease workflows of the region's services that are running (a lease ends once nobody holds or waits)."""
        args = invocation.args
        prefix = f"lease/{args.region}/"
        held = []
        async for execution in self.client.list_workflows(f"WorkflowType = '{LEASE_WORKFLOW}' AND ExecutionStatus = 'Running'"):
            if execution.id.startswith(prefix) and execution.id.split("/")[2] not in args.ignore_namespaces:
                held.append(execution.id)
        busy = bool(held)
        summary = (f"{args.region}: {len(held)} service lease(s) in use: {', '.join(sorted(held)[:10])}" if busy
                   else f"{args.region}: no service lease in use")
        return RegionLeases(region=args.region, held=sorted(held), busy=busy, summary=summary)

    def activities(self) -> list:
        return [self.request, self.holder_open, self.region_leases]
