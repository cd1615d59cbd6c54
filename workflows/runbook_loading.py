"""Loading a run's runbook from the interpreter workflow: the `runbook.load` activity (workflows do no file I/O).

Who started a top-level run is re-checked there against the access policy (pitstop/identity/start_claims.py):
a refused start fails the run at once with the reason, like an invalid runbook.

A runbook that does not validate, or inputs that do not fit it, fail the run at once with the activity's
message as the run's own failure (the message `pitstop run` prints before starting anything), so a run started
from the Web UI's form says what is wrong where the operator looks, not just "Activity task failed".
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from pitstop.identity.start_claims import STARTED_BY_MEMO
    from pitstop.runbook.request import LoadedRunbook, LoadRunbookRequest, RunbookRequest, StartCheck

from .activity_policies import ACTIVITY_TIMEOUT


SCHEDULED_BY = SearchAttributeKey.for_keyword("TemporalScheduledById")  # set by Temporal on a schedule's runs


def start_check() -> StartCheck | None:
    """A top-level run started by a person (the pitstop API, the Web UI, any Temporal client) is checked against
    the access policy when it loads; a child run (its parent was checked) and a schedule's run (the schedule
    is a change the policy already governs) are not."""
    info = workflow.info()
    if info.parent is not None or info.typed_search_attributes.get(SCHEDULED_BY) is not None:
        return None
    claim = workflow.memo_value(STARTED_BY_MEMO, None)
    return StartCheck(workflow_id=info.workflow_id, claim=claim if isinstance(claim, dict) else None)


async def load_runbook(request: RunbookRequest) -> LoadedRunbook:
    """The validated runbook with the run's inputs resolved; ApplicationError (non-retryable) when refused."""
    try:
        return await workflow.execute_activity(
            "runbook.load", LoadRunbookRequest(runbook=request.runbook, inputs=request.inputs,
                                               start_check=start_check()),
            result_type=LoadedRunbook, activity_id="load", start_to_close_timeout=ACTIVITY_TIMEOUT,
            summary=f"load {request.runbook}",
        )
    except ActivityError as exc:
        refused = exc.cause
        if isinstance(refused, ApplicationError) and refused.non_retryable:
            raise ApplicationError(refused.message, type=refused.type, non_retryable=True) from None
        raise
