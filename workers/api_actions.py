"""What each operator action of the pitstop API asks the policy and then does in Temporal (workers/api.py serves
them). Every call is made as pitstop (the API's own Temporal client) and carries the VERIFIED identity's subject
as the `identity` of the update/signal, so the run's history records who really asked.

`access_request` derives the policy question (action, runbook, target) from Temporal's own record of the run —
search attributes of a runbook run (or of the run a release belongs to), an incident's target, a schedule's
declared runbook — never from what the caller says about it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from pitstop.access import AccessRequest, Action, Identity, Target
from pitstop.config import Settings
from pitstop.delivery.models import ApproveRequest, ReleaseStatus, RollbackRequest
from pitstop.delivery.spec import WAVES_WORKFLOW
from pitstop.incidents import ApprovalDecision as IncidentDecision
from pitstop.identity.start_claims import STARTED_BY_MEMO, run_target, sign_claim
from pitstop.incidents import IncidentStatus
from pitstop.runbook.reach import AuthorReach
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookRequest
from pitstop.runbook.run_state import ApprovalDecision, ControlRequest
from pitstop.runbook.validation import RunbookInvalid, load_runbook_file, refusal_message, resolve_inputs

API_TRIGGER = "api"


class ActionFailed(Exception):
    """The action was allowed but could not be done (HTTP status and a message for the caller)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StartBody(BaseModel):
    runbook: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False
    id: str | None = None


class ApproveBody(BaseModel):
    step: str = ""
    approved: bool = True
    comment: str = ""


class ReasonBody(BaseModel):
    reason: str = ""
    comment: str = ""


@dataclass(frozen=True)
class Operation:
    """One routed request: what kind of object, which one (None for a start), what to do."""

    kind: str  # runs | releases | incidents | schedules | chaos | rightsizing
    object_id: str | None
    op: str  # start | apply | approve | pause | resume | abort | promote | rollback | trigger | unpause | delete


ACTIONS: dict[tuple[str, str], Action] = {
    ("runs", "start"): Action.START, ("runs", "approve"): Action.APPROVE, ("runs", "pause"): Action.PAUSE,
    ("runs", "resume"): Action.RESUME, ("runs", "abort"): Action.ABORT,
    ("releases", "promote"): Action.RELEASE_PROMOTE, ("releases", "rollback"): Action.RELEASE_ROLLBACK,
    ("releases", "abort"): Action.ABORT, ("incidents", "approve"): Action.INCIDENT_APPROVE,
    **{("schedules", op): Action.SCHEDULE_CHANGE for op in ("pause", "unpause", "trigger", "delete", "apply")},
    ("chaos", "start"): Action.START, ("chaos", "abort"): Action.ABORT, ("rightsizing", "start"): Action.START,
}
# what `POST /api/v1/<kind>` (no object id) does
COLLECTION_OPS = {"runs": "start", "chaos": "start", "rightsizing": "start", "schedules": "apply"}


def body_model(operation: Operation) -> type[BaseModel]:
    from pitstop.capacity.closed_loop import LoopInput

    from .api_workflow_actions import ChaosStartBody, SchedulesApplyBody

    if operation.object_id is None:
        bodies: dict[str, type[BaseModel]] = {"runs": StartBody, "chaos": ChaosStartBody, "rightsizing": LoopInput,
                                              "schedules": SchedulesApplyBody}
        return bodies[operation.kind]
    return ApproveBody if operation.op == "approve" else ReasonBody


def target_from(values: dict[str, Any]) -> Target:
    """The policy's target from a run's inputs or a status' fields (`namespace`, `service`, `region`)."""
    return Target(**{k: (str(values[k]) if values.get(k) else None) for k in ("namespace", "service", "region")})


class ApiActions:
    """The API's Temporal side: resolve the access question, then perform the allowed action."""

    def __init__(self, *, client: Client, settings: Settings, start_claim_key: bytes) -> None:
        """`start_claim_key` signs who started a run (pitstop/identity/start_claims.py; the workers verify it)."""
        self.client = client
        self.settings = settings
        self.start_claim_key = start_claim_key

    async def access_requests(self, identity: Identity, operation: Operation, body: BaseModel) -> list[AccessRequest]:
        """The policy questions the action raises (every one must be allowed)."""
        from . import api_workflow_actions as more

        if operation.kind == "chaos" and operation.object_id is None:
            return more.chaos_start_requests(identity, body)  # type: ignore[arg-type]
        if operation.kind == "chaos":
            return await more.chaos_abort_requests(self.client, identity, str(operation.object_id))
        if operation.kind == "rightsizing":
            return more.loop_start_requests(identity, body)  # type: ignore[arg-type]
        if operation.kind == "schedules" and operation.object_id is None:
            return await more.schedules_apply_requests(self.client, self.settings, identity, body)  # type: ignore[arg-type]
        return [await self.access_request(identity, operation, body)]

    async def access_request(self, identity: Identity, operation: Operation, body: BaseModel) -> AccessRequest:
        action = ACTIONS[(operation.kind, operation.op)]
        if operation.op == "start":
            assert isinstance(body, StartBody)
            runbook, target = body.runbook, self._checked_start(body)[1]
        elif operation.kind == "runs":
            runbook, target = await self._run_target(str(operation.object_id))
        elif operation.kind == "releases":
            _, target = await self._run_target(str(operation.object_id).split("/")[0])
            runbook = "release"
        elif operation.kind == "incidents":
            runbook, target = "incident", await self._incident_target(str(operation.object_id))
        else:
            runbook, target = await self._schedule_target(str(operation.object_id))
        return AccessRequest(identity=identity, action=action, runbook=runbook, target=target)

    async def perform(self, identity: Identity, operation: Operation, body: BaseModel) -> dict[str, Any]:
        handlers: dict[str, Callable[[Identity, Operation, Any], Awaitable[dict[str, Any]]]] = {
            "runs": self._run_action, "releases": self._release_action, "incidents": self._incident_action,
            "schedules": self._schedule_action, "chaos": self._workflow_action, "rightsizing": self._workflow_action,
        }
        try:
            return await handlers[operation.kind](identity, operation, body)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            raise ActionFailed(409, f"{operation.op} refused: {getattr(cause, 'message', None) or cause}") from None
        except RPCError as exc:
            raise _rpc_failure(exc, operation) from None

    # ------------------------------------------------------------------ runbook runs

    def _checked_start(self, body: StartBody) -> tuple[RunbookRequest, Target]:
        name = body.runbook
        path = None if "/" in name or "\\" in name or name.startswith(".") else next(
            (p for p in (self.settings.runbooks_dir / f"{name}{s}" for s in (".yaml", ".yml")) if p.exists()), None)
        if path is None:
            raise ActionFailed(404, f"no runbook named {body.runbook!r} in {self.settings.runbooks_dir}")
        try:
            parsed = load_runbook_file(path, reach=AuthorReach.from_settings(self.settings))
            inputs = resolve_inputs(parsed, body.inputs, str(path))
        except RunbookInvalid as exc:
            raise ActionFailed(422, refusal_message(body.runbook, exc)) from None
        request = RunbookRequest(runbook=parsed.name, inputs=body.inputs, dry_run=body.dry_run, trigger=API_TRIGGER)
        return request, run_target(parsed.target.model_dump() if parsed.target else {}, inputs)

    async def _run_action(self, identity: Identity, operation: Operation, body: Any) -> dict[str, Any]:
        if operation.op == "start":
            return await self._start(identity, body)
        handle = self.client.get_workflow_handle(str(operation.object_id))
        if operation.op == "approve":
            decision = ApprovalDecision(step=body.step, identity=identity.subject, approved=body.approved,
                                        comment=body.comment, groups=sorted(identity.groups))
            return {"result": await handle.execute_update("approve", decision)}
        request = ControlRequest(identity=identity.subject, reason=body.reason, groups=sorted(identity.groups))
        return {"result": await handle.execute_update(operation.op, request)}

    async def _start(self, identity: Identity, body: StartBody) -> dict[str, Any]:
        import secrets
        from datetime import datetime, timezone

        request, _ = self._checked_start(body)
        request = request.model_copy(update={"started_by": identity.subject})
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        workflow_id = body.id or f"{request.runbook}-{stamp}-{secrets.token_hex(3)}"
        claim = sign_claim(self.start_claim_key, workflow_id=workflow_id, runbook=request.runbook, identity=identity)
        await self.client.start_workflow(
            RUNBOOK_WORKFLOW, request, id=workflow_id, task_queue=self.settings.temporal.task_queue,
            memo={STARTED_BY_MEMO: claim},
            static_summary=f"{request.runbook} {json.dumps(request.inputs, sort_keys=True)}"[:200],
            static_details=f"started by {identity.subject} ({identity.method}) through the pitstop API"
                           + (" (dry run)" if body.dry_run else ""),
        )
        return {"workflow_id": workflow_id, "started_by": identity.subject}

    async def _run_target(self, workflow_id: str) -> tuple[str, Target]:
        try:
            desc = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            raise _rpc_failure(exc, Operation("runs", workflow_id, "describe")) from None
        attributes = desc.search_attributes or {}

        def first(name: str) -> str | None:
            values = attributes.get(name) or []
            return str(values[0]) if values else None

        runbook = first("RunbookName") or desc.workflow_type
        return runbook, Target(namespace=first("TargetNamespace"), service=first("TargetService"),
                               region=first("TargetRegion"))

    # ------------------------------------------------------------------ releases, incidents, schedules

    async def _release_action(self, identity: Identity, operation: Operation, body: Any) -> dict[str, Any]:
        from .cli_delivery import render_release, resolve_release
        from .errors import CliError

        try:
            release_id, kind = await resolve_release(self.client, str(operation.object_id))
        except CliError as exc:
            raise ActionFailed(404, exc.message) from None
        handle = self.client.get_workflow_handle(release_id)
        if operation.op == "promote":
            await handle.execute_update("promote", ApproveRequest(identity=identity.subject, comment=body.comment,
                                                                  groups=sorted(identity.groups)))
            return {"result": f"promote: accepted for {release_id}"}
        reason = body.reason or ("manual rollback" if operation.op == "rollback" else "aborted")
        if operation.op == "abort" or kind == WAVES_WORKFLOW:
            await handle.signal("abort", f"{reason} by {identity.subject}")
            return {"result": f"{operation.op}: requested for {release_id}"}
        done = await handle.execute_update(
            "rollback", RollbackRequest(reason=reason, identity=identity.subject, groups=sorted(identity.groups)),
            result_type=ReleaseStatus)
        return {"result": render_release(done)}

    async def _incident_target(self, incident_id: str) -> Target:
        try:
            status = await self.client.get_workflow_handle(incident_id).query("status", result_type=IncidentStatus)
        except RPCError as exc:
            raise _rpc_failure(exc, Operation("incidents", incident_id, "status")) from None
        return target_from(status.target.model_dump()) if status.target else Target()

    async def _incident_action(self, identity: Identity, operation: Operation, body: Any) -> dict[str, Any]:
        decision = IncidentDecision(approved=body.approved, identity=identity.subject, comment=body.comment,
                                    groups=sorted(identity.groups))
        verdict = await self.client.get_workflow_handle(str(operation.object_id)).execute_update(
            "approve", decision, result_type=str)
        return {"result": verdict}

    async def _schedule_target(self, schedule_id: str) -> tuple[str, Target]:
        from .schedules import declared_on, describe

        description = await describe(self.client, schedule_id)
        if description is None:
            raise ActionFailed(404, f"no schedule with id {schedule_id!r}")
        declared = declared_on(self.client, description) or {}
        inputs = declared.get("inputs") if isinstance(declared.get("inputs"), dict) else {}
        return str(declared.get("runbook") or schedule_id), target_from(inputs or {})

    async def _workflow_action(self, identity: Identity, operation: Operation, body: Any) -> dict[str, Any]:
        from . import api_workflow_actions as more

        if operation.kind == "rightsizing":
            return await more.start_loop(self.client, self.settings, identity, body)
        if operation.object_id is None:
            return await more.start_chaos(self.client, self.settings, identity, body)
        return await more.abort_chaos(self.client, identity, operation.object_id, body.reason)

    async def _schedule_action(self, identity: Identity, operation: Operation, body: Any) -> dict[str, Any]:
        from .errors import CliError
        from .schedules import managed_handle

        if operation.object_id is None:
            from .api_workflow_actions import apply_schedules

            return await apply_schedules(self.client, self.settings, identity, body)
        try:
            handle = await managed_handle(self.client, str(operation.object_id))
        except CliError as exc:
            raise ActionFailed(404 if "no schedule" in exc.message else 409, exc.message) from None
        note = f"{operation.op}d by {identity.subject}: {body.reason}" if operation.op.endswith("pause") else ""
        if operation.op == "pause":
            await handle.pause(note=note)
        elif operation.op == "unpause":
            await handle.unpause(note=note)
        elif operation.op == "trigger":
            await handle.trigger()
        else:
            await handle.delete()
        return {"result": note or f"{operation.op}: done for {operation.object_id} by {identity.subject}"}


def _rpc_failure(exc: RPCError, operation: Operation) -> ActionFailed:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return ActionFailed(404, f"no {operation.kind[:-1]} with id {operation.object_id!r}")
    return ActionFailed(502, f"Temporal refused the request for {operation.object_id!r}: {exc.message}")
