"""The pitstop API's actions on what is not a runbook run (workers/api_actions.py dispatches here):

    POST /api/v1/chaos                 {"request": ChaosRequest, "id"}   start a `ChaosExperiment` run
    POST /api/v1/chaos/<id>/abort      {"reason"}                        abort it (method stopped, rollbacks run)
    POST /api/v1/rightsizing           LoopInput                         start a `RightsizingLoop`
    POST /api/v1/schedules             {"file", "text"}                  apply a schedules file

The policy question: a chaos or rightsizing start is `start` with the workflow type (`ChaosExperiment`,
`RightsizingLoop`) as the runbook, asked once per target the run will act on (a chaos run's `targets`, else its
region; a loop's region/namespace/service); a chaos abort is `abort` on the targets recorded in the run's own start
input (Temporal's history, not the caller's words); a schedules apply is `schedule.change`, asked once per schedule
it would create, update or leave unchanged (the runbook and inputs of the file's entry, validated against the API's
own runbooks) and once per schedule it would delete (the runbook pitstop recorded on it). The verified subject goes
into the run's input (`started_by`), the abort signal (`"<reason> by <subject>"`), and the applied schedules'
details (`applied by <subject>`).
"""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from pitstop.access import AccessRequest, Action, Identity, Target
from pitstop.capacity.closed_loop import LOOP_WORKFLOW, LoopInput, loop_workflow_id
from pitstop.chaos.model import CHAOS_WORKFLOW, ChaosRequest
from pitstop.config import Settings
from pitstop.schedules.model import DEFAULT_SCHEDULES_FILE, ScheduleEntry

from .api_actions import ActionFailed, target_from

SCHEDULES_APPLY_RUNBOOK = "schedules"  # the runbook asked about for an apply that names no schedule at all


class ChaosStartBody(BaseModel):
    request: ChaosRequest
    id: str | None = Field(None, min_length=1, max_length=200)


class SchedulesApplyBody(BaseModel):
    file: str = Field(DEFAULT_SCHEDULES_FILE, description="the file's name, for the problems' file:line")
    text: str = Field(description="the schedules file's content")
    _deletes: frozenset[str] = PrivateAttr(default=frozenset())  # the deletions the policy was asked about


def _ask(identity: Identity, action: Action, runbook: str, targets: list[Target]) -> list[AccessRequest]:
    return [AccessRequest(identity=identity, action=action, runbook=runbook, target=t) for t in targets or [Target()]]


def chaos_targets(request: ChaosRequest) -> list[Target]:
    if request.targets:
        return [Target(region=t.region, namespace=t.namespace, service=t.service) for t in request.targets]
    return [Target(region=request.run_region() or None)]


# ------------------------------------------------------------------ chaos


def chaos_start_requests(identity: Identity, body: ChaosStartBody) -> list[AccessRequest]:
    return _ask(identity, Action.START, CHAOS_WORKFLOW, chaos_targets(body.request))


async def start_chaos(client: Client, settings: Settings, identity: Identity, body: ChaosStartBody) -> dict[str, Any]:
    request = body.request.model_copy(update={"started_by": identity.subject})
    run_id = body.id or f"chaos-{secrets.token_hex(4)}"
    title = str((request.experiment or {}).get("title") or request.experiment_file or "experiment")
    try:
        await client.start_workflow(
            CHAOS_WORKFLOW, request, id=run_id, task_queue=settings.temporal.task_queue,
            static_summary=f"chaos {title}"[:200],
            static_details=f"started by {identity.subject} ({identity.method}) through the pitstop API")
    except WorkflowAlreadyStartedError:
        raise ActionFailed(409, f"a run with id {run_id!r} already exists") from None
    return {"workflow_id": run_id, "started_by": identity.subject}


async def recorded_chaos_request(client: Client, run_id: str) -> ChaosRequest:
    """The run's start input as Temporal recorded it (404 unless it is a `ChaosExperiment` run)."""
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(run_id)
    try:
        async for event in handle.fetch_history_events():
            started = event.workflow_execution_started_event_attributes
            if not event.HasField("workflow_execution_started_event_attributes") or \
                    started.workflow_type.name != CHAOS_WORKFLOW:
                break
            (request,) = await client.data_converter.decode(started.input.payloads, [ChaosRequest])
            return request  # type: ignore[no-any-return]
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise ActionFailed(502, f"Temporal refused the request for {run_id!r}: {exc.message}") from None
    raise ActionFailed(404, f"no chaos run with id {run_id!r}")


async def chaos_abort_requests(client: Client, identity: Identity, run_id: str) -> list[AccessRequest]:
    return _ask(identity, Action.ABORT, CHAOS_WORKFLOW, chaos_targets(await recorded_chaos_request(client, run_id)))


async def abort_chaos(client: Client, identity: Identity, run_id: str, reason: str) -> dict[str, Any]:
    await client.get_workflow_handle(run_id).signal("abort", f"{reason or 'aborted'} by {identity.subject}")
    return {"result": f"abort: requested for {run_id} by {identity.subject}"}


# ------------------------------------------------------------------ rightsizing loop


def loop_start_requests(identity: Identity, body: LoopInput) -> list[AccessRequest]:
    return _ask(identity, Action.START, LOOP_WORKFLOW,
                [Target(region=body.region, namespace=body.namespace, service=body.service)])


async def start_loop(client: Client, settings: Settings, identity: Identity, body: LoopInput) -> dict[str, Any]:
    request = body.model_copy(update={"started_by": identity.subject})
    workflow_id = loop_workflow_id(request.region, request.namespace, request.service)
    try:
        await client.start_workflow(
            LOOP_WORKFLOW, request, id=workflow_id, task_queue=settings.temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_details=f"started by {identity.subject} ({identity.method}) through the pitstop API")
    except WorkflowAlreadyStartedError:
        raise ActionFailed(409, f"a rightsizing loop for {request.service} in {request.region} is already running "
                                f"({workflow_id})") from None
    return {"workflow_id": workflow_id, "started_by": identity.subject}


# ------------------------------------------------------------------ the schedules file


def checked_schedules(settings: Settings, body: SchedulesApplyBody) -> list[ScheduleEntry]:
    """The file's entries, validated against the API's own runbooks (422 listing every problem)."""
    from pitstop.runbook.reach import AuthorReach
    from pitstop.schedules.validation import SchedulesInvalid, parse_checked

    try:
        return parse_checked(body.text, body.file, settings.runbooks_dir, reach=AuthorReach.from_settings(settings))
    except SchedulesInvalid as exc:
        raise ActionFailed(422, f"{body.file} is not valid; nothing was applied:\n{exc}") from None


async def schedules_apply_requests(client: Client, settings: Settings, identity: Identity,
                                   body: SchedulesApplyBody) -> list[AccessRequest]:
    from .schedules import current_schedules, plan

    entries = checked_schedules(settings, body)
    changes = await plan(client, entries, task_queue=settings.temporal.task_queue)
    deleted = {c.id for c in changes if c.kind == "delete"}
    body._deletes = frozenset(deleted)
    asked = [(e.runbook, target_from(e.inputs)) for e in entries]
    for existing in await current_schedules(client, []):
        if existing.id in deleted:
            declared = existing.declared or {}
            inputs = declared.get("inputs")
            asked.append((str(declared.get("runbook") or existing.id), target_from(inputs if isinstance(inputs, dict) else {})))
    if not asked:
        asked = [(SCHEDULES_APPLY_RUNBOOK, Target())]
    return [AccessRequest(identity=identity, action=Action.SCHEDULE_CHANGE, runbook=runbook, target=target)
            for runbook, target in asked]


async def apply_schedules(client: Client, settings: Settings, identity: Identity,
                          body: SchedulesApplyBody) -> dict[str, Any]:
    from .schedules import apply, plan

    entries = checked_schedules(settings, body)
    unasked = sorted(c.id for c in await plan(client, entries, task_queue=settings.temporal.task_queue)
                     if c.kind == "delete" and c.id not in body._deletes)
    if unasked:  # created by someone else since the policy was asked: it was not asked about deleting them
        raise ActionFailed(409, f"schedules appeared while applying ({', '.join(unasked)}); nothing was applied, "
                                "apply again")
    changes = await apply(client, entries, task_queue=settings.temporal.task_queue, applied_by=identity.subject)
    return {"changes": [c.model_dump(mode="json") for c in changes], "applied_by": identity.subject}

