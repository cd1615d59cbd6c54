"""Temporal Schedules from the schedules file: the one module that talks to Temporal's Schedule API.

A schedule created by pitstop carries the schedule memo `managed-by: pitstop` (set at creation; Temporal
cannot change a schedule's memo afterwards, so it marks exactly the schedules pitstop created). Its action
starts the `Runbook` workflow with `trigger=schedule` and `started_by="schedule <id>"`, search attributes
`RunbookName` and `Trigger=schedule` (Temporal adds `TemporalScheduledById`), and the action memo
`pitstop-schedule`: the declaration pitstop applied, which the next apply compares with the file
(`pitstop.schedules.reconcile`). Schedules without the memo are never updated, paused or deleted by `apply`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import (
    Client, Schedule, ScheduleActionExecutionStartWorkflow, ScheduleActionStartWorkflow, ScheduleDescription, ScheduleHandle,
    ScheduleIntervalSpec, ScheduleOverlapPolicy, SchedulePolicy, ScheduleSpec, ScheduleState, ScheduleUpdate,
    ScheduleUpdateInput, WorkflowExecutionStatus,
)
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.schedules.model import ScheduleEntry
from pitstop.schedules.reconcile import ExistingSchedule, ScheduleChange, plan_changes
from pitstop.schedules.skips import SCHEDULE_TRIGGER

from .errors import EXIT_NOT_FOUND, EXIT_USAGE, CliError

MANAGED_MEMO_KEY = "managed-by"
MANAGED_BY = "pitstop"
DECLARED_MEMO_KEY = "pitstop-schedule"


def started_by(schedule_id: str) -> str:
    return f"schedule {schedule_id}"


def schedule_for(entry: ScheduleEntry, *, task_queue: str, applied_by: str = "") -> Schedule:
    """The Temporal Schedule a file entry declares (`applied_by`: the verified subject who applied the file, kept
    in the runs' details)."""
    request = RunbookRequest(
        runbook=entry.runbook, inputs=entry.inputs, dry_run=entry.dry_run, trigger=SCHEDULE_TRIGGER,
        started_by=started_by(entry.id), error_budget=entry.error_budget,
    )
    action = ScheduleActionStartWorkflow(
        RUNBOOK_WORKFLOW, request, id=entry.id, task_queue=task_queue,
        memo={DECLARED_MEMO_KEY: entry.declared(task_queue=task_queue)},
        typed_search_attributes=TypedSearchAttributes([
            SearchAttributePair(SearchAttributeKey.for_keyword("RunbookName"), entry.runbook),
            SearchAttributePair(SearchAttributeKey.for_keyword("Trigger"), SCHEDULE_TRIGGER),
        ]),
        static_summary=f"{entry.runbook} (schedule {entry.id})"[:200],
        static_details=f"started by schedule {entry.id} ({entry.timing()}), owner {entry.owner}"
        + (" (dry run)" if entry.dry_run else "")
        + (f"; skipped while the {entry.error_budget.slo_percent:g}% SLO's error budget over "
           f"{entry.error_budget.window} is spent" if entry.error_budget is not None else "")
        + (f"; schedule applied by {applied_by}" if applied_by else ""),
    )
    spec = ScheduleSpec(
        cron_expressions=[entry.cron] if entry.cron is not None else [],
        intervals=[ScheduleIntervalSpec(every=timedelta(seconds=entry.every))] if entry.every is not None else [],
        time_zone_name=entry.time_zone,
        jitter=timedelta(seconds=entry.jitter) if entry.jitter else None,
    )
    policy = SchedulePolicy(
        overlap=ScheduleOverlapPolicy[entry.overlap.upper()], catchup_window=timedelta(seconds=entry.catchup_window)
    )
    return Schedule(action=action, spec=spec, policy=policy, state=ScheduleState(paused=entry.paused, note=entry.note))


# ---------------------------------------------------------------- reading what Temporal has


async def describe(client: Client, schedule_id: str) -> ScheduleDescription | None:
    try:
        return await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def is_managed(description: ScheduleDescription) -> bool:
    return bool(await description.memo_value(MANAGED_MEMO_KEY, None) == MANAGED_BY)


def declared_on(client: Client, description: ScheduleDescription) -> dict[str, Any] | None:
    """The declaration pitstop recorded on the schedule's action (None on foreign schedules)."""
    action = description.schedule.action
    memo = getattr(action, "memo", None) or {}
    payload = memo.get(DECLARED_MEMO_KEY)
    if payload is None:
        return None
    value = client.data_converter.payload_converter.from_payload(payload) if not isinstance(payload, dict) else payload
    return value if isinstance(value, dict) else None


async def existing(client: Client, description: ScheduleDescription) -> ExistingSchedule:
    state = description.schedule.state
    return ExistingSchedule(
        id=description.id, managed=await is_managed(description), declared=declared_on(client, description),
        paused=state.paused, note=state.note or "",
    )


async def managed_ids(client: Client) -> list[str]:
    """Ids of the schedules pitstop created (from the visibility list: eventually consistent)."""
    ids = []
    async for listed in await client.list_schedules():
        if await listed.memo_value(MANAGED_MEMO_KEY, None) == MANAGED_BY:
            ids.append(listed.id)
    return ids


async def current_schedules(client: Client, desired_ids: Iterable[str]) -> list[ExistingSchedule]:
    """The file's ids (described directly: strongly consistent) plus every schedule pitstop created."""
    found = []
    for schedule_id in sorted(set(desired_ids) | set(await managed_ids(client))):
        description = await describe(client, schedule_id)
        if description is not None:
            found.append(await existing(client, description))
    return found


# ---------------------------------------------------------------- diff and apply


async def plan(client: Client, entries: list[ScheduleEntry], *, task_queue: str) -> list[ScheduleChange]:
    desired = {e.id: e.declared(task_queue=task_queue) for e in entries}
    return plan_changes(desired, await current_schedules(client, desired))


async def apply(client: Client, entries: list[ScheduleEntry], *, task_queue: str,
                applied_by: str = "") -> list[ScheduleChange]:
    """Make Temporal match the file; returns what was done (conflicts are reported, never touched)."""
    changes = await plan(client, entries, task_queue=task_queue)
    by_id = {e.id: e for e in entries}
    for change in changes:
        if change.kind == "create":
            await client.create_schedule(
                change.id, schedule_for(by_id[change.id], task_queue=task_queue, applied_by=applied_by),
                memo={MANAGED_MEMO_KEY: MANAGED_BY},
            )
        elif change.kind == "update":
            await _replace(client, change.id, schedule_for(by_id[change.id], task_queue=task_queue, applied_by=applied_by))
        elif change.kind == "delete":
            await client.get_schedule_handle(change.id).delete()
    return changes


async def _replace(client: Client, schedule_id: str, schedule: Schedule) -> None:
    def updater(current: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(schedule_id).update(updater)


# ---------------------------------------------------------------- list, trigger, pause, delete


class LastRun(BaseModel):
    workflow_id: str
    started_at: datetime
    outcome: str = Field(description="running | succeeded | failed | aborted | skipped | terminated | ...")
    reason: str = ""


class ScheduleRow(BaseModel):
    id: str
    managed: bool
    runbook: str = ""
    timing: str = ""
    owner: str = ""
    overlap: str = ""
    paused: bool = False
    note: str = ""
    next_runs: list[datetime] = Field(default_factory=list)
    last_run: LastRun | None = None
    actions: int = 0
    skipped_overlap: int = 0


async def rows(client: Client, *, include_foreign: bool = False) -> list[ScheduleRow]:
    ids = []
    async for listed in await client.list_schedules():
        ids.append(listed.id)
    result = []
    for schedule_id in sorted(ids):
        description = await describe(client, schedule_id)
        if description is None:
            continue
        managed = await is_managed(description)
        if managed or include_foreign:
            result.append(await _row(client, description, managed))
    return result


async def _row(client: Client, description: ScheduleDescription, managed: bool) -> ScheduleRow:
    declared = declared_on(client, description) or {}
    state, info = description.schedule.state, description.info
    row = ScheduleRow(
        id=description.id, managed=managed,
        runbook=str(declared.get("runbook") or getattr(description.schedule.action, "workflow", "")),
        owner=str(declared.get("owner", "")), overlap=description.schedule.policy.overlap.name.lower(),
        paused=state.paused, note=state.note or "", next_runs=list(info.next_action_times[:3]),
        actions=info.num_actions, skipped_overlap=info.num_actions_skipped_overlap,
    )
    if declared:
        row.timing = ScheduleEntry.model_validate({k: v for k, v in declared.items() if k != "task_queue"}).timing()
    if info.recent_actions:
        latest = info.recent_actions[-1]
        if isinstance(latest.action, ScheduleActionExecutionStartWorkflow):
            row.last_run = await last_run(client, latest.action, latest.started_at)
    return row


async def last_run(client: Client, action: ScheduleActionExecutionStartWorkflow, started_at: datetime) -> LastRun:
    """A scheduled run's outcome: the runbook's final phase (skipped with its reason), or Temporal's status."""
    handle = client.get_workflow_handle(
        action.workflow_id, run_id=action.first_execution_run_id, result_type=RunbookOutcome
    )
    run = LastRun(workflow_id=action.workflow_id, started_at=started_at, outcome="unknown")
    try:
        desc = await handle.describe()
    except RPCError:
        return run
    status = desc.status
    phase = (desc.search_attributes.get("Phase") or [""])[0]
    if status == WorkflowExecutionStatus.RUNNING:
        run.outcome = "running" + (f" ({phase})" if phase else "")
    elif status == WorkflowExecutionStatus.COMPLETED:
        outcome = await handle.result()  # follows a continue-as-new chain to its end
        run.outcome, run.reason = outcome.status, outcome.error
    else:
        run.outcome = str(phase or (status.name.lower() if status else "unknown"))
    return run


async def managed_handle(client: Client, schedule_id: str) -> ScheduleHandle:
    """The handle of a schedule pitstop created; CliError when it does not exist or is someone else's."""
    description = await describe(client, schedule_id)
    if description is None:
        raise CliError(f"no schedule with id {schedule_id!r}", exit_code=EXIT_NOT_FOUND)
    if not await is_managed(description):
        raise CliError(
            f"schedule {schedule_id!r} was not created by pitstop; pitstop leaves it alone (use the Temporal UI or CLI)",
            exit_code=EXIT_USAGE,
        )
    return client.get_schedule_handle(schedule_id)
