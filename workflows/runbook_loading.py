"""Loading a run's runbook from the interpreter workflow: the `runbook.load` activity (workflows do no file I/O).

A runbook that does not validate, or inputs that do not fit it, fail the run at once with the activity's
message as the run's own failure (the message `pitstop run` prints before starting anything), so a run started
from the Web UI's form says what is wrong where the operator looks, not just "Activity task failed".
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook.request import LoadedRunbook, LoadRunbookRequest, RunbookRequest

from .activity_policies import ACTIVITY_TIMEOUT


async def load_runbook(request: RunbookRequest) -> LoadedRunbook:
    """The validated runbook with the run's inputs resolved; ApplicationError (non-retryable) when refused."""
    try:
        return await workflow.execute_activity(
            "runbook.load", LoadRunbookRequest(runbook=request.runbook, inputs=request.inputs),
            result_type=LoadedRunbook, activity_id="load", start_to_close_timeout=ACTIVITY_TIMEOUT,
            summary=f"load {request.runbook}",
        )
    except ActivityError as exc:
        refused = exc.cause
        if isinstance(refused, ApplicationError) and refused.non_retryable:
            raise ApplicationError(refused.message, type=refused.type, non_retryable=True) from None
        raise
