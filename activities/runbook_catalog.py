"""Activities of the runbook engine itself: loading runbooks from disk, and the lease handshake with Temporal.

- `RunbookCatalog(runbooks_dir)`: `runbook.load` reads + validates a runbook by name (workflows cannot do
  file I/O) and resolves the run's inputs. Invalid runbooks and inputs are non-retryable domain errors.
- `LeaseActivities(client, check_seconds=30)`: `lease.request` signal-with-starts a target's lease workflow;
  `lease.holder_open` tells the lease workflow whether its holder is still running.
"""

from __future__ import annotations

from pathlib import Path

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from pitstop.runbook.leases import LEASE_WORKFLOW, HolderCheck, LeaseRequest, LeaseState
from pitstop.runbook.request import LoadedRunbook, LoadRunbookRequest
from pitstop.runbook.validation import RunbookInvalid, load_runbook_file, resolve_inputs


class RunbookCatalog:
    def __init__(self, runbooks_dir: Path) -> None:
        self.runbooks_dir = Path(runbooks_dir)

    def find(self, name: str) -> Path:
        for suffix in (".yaml", ".yml"):
            path = self.runbooks_dir / f"{name}{suffix}"
            if path.is_file():
                return path
        known = sorted(p.stem for p in self.runbooks_dir.glob("*.y*ml"))
        raise ApplicationError(
            f"no runbook named {name!r} in {self.runbooks_dir} (known: {', '.join(known) or 'none'})",
            type="UnknownRunbook",
            non_retryable=True,
        )

    @activity.defn(name="runbook.load")
    def load(self, request: LoadRunbookRequest) -> LoadedRunbook:
        path = self.find(request.runbook)
        try:
            runbook = load_runbook_file(path)
            inputs = resolve_inputs(runbook, request.inputs, str(path))
        except RunbookInvalid as exc:
            raise ApplicationError(f"invalid runbook run:\n{exc}", type="RunbookInvalid", non_retryable=True) from exc
        if runbook.name != request.runbook:
            raise ApplicationError(
                f"{path}: the file declares name {runbook.name!r}; rename the file or the runbook",
                type="RunbookInvalid",
                non_retryable=True,
            )
        return LoadedRunbook(runbook=runbook, inputs=inputs, file=str(path))

    def activities(self) -> list:
        return [self.load]


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

    def activities(self) -> list:
        return [self.request, self.holder_open]
