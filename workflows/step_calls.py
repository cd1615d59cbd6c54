"""Executing one call of a step type from the interpreter: an activity (with the step's retry, timeout and
regional task queue) or a native step (durable sleep, approval, child runbook).

`StepCalls.call(...)` renders nothing itself: it receives rendered arguments and returns the result as plain
data. Failures surface as `StepFailed` with a human message.

A Kubernetes API that is unavailable (429/5xx/unreachable: `KubernetesApiUnavailable`, whose retry delay the
activity sets from Retry-After or a jittered backoff) is ridden out for the step's `retry.api_outage`: when
the step's attempts end on that error, the activity is run again after the error's delay (a durable timer)
until the API has been unavailable for longer than `api_outage`. The step's own `attempts` are thus kept for
its own failures (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError, ApplicationError, CancelledError, ChildWorkflowError, FailureError, TimeoutError as TemporalTimeout,
)

with workflow.unsafe.imports_passed_through():
    from pitstop.api_backoff import API_UNAVAILABLE_ERROR
    from pitstop.config import regional_task_queue
    from pitstop.runbook.model import RetrySpec
    from pitstop.runbook.native_steps import (
        ApprovalArgs, ApprovalResult, ChildRunbookArgs, ChildRunbookResult, SleepArgs, SleepResult,
    )
    from pitstop.runbook.registry import load_step_types
    from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
    from pitstop.runbook.run_state import ApprovalRequestInfo
    from pitstop.runbook.step_types import StepInvocation, StepType

    STEP_TYPES = load_step_types()

DEFAULT_RETRY = RetrySpec(attempts=3, backoff=1.0)
NOTIFY_RETRY = RetrySpec(attempts=3, backoff=1.0)
API_OUTAGE_PATCH = "ride-out-kubernetes-api-outage"


class StepFailed(Exception):
    """A step (or one fan-out item) failed for good; the message is for humans."""


def api_unavailable_delay(exc: ActivityError) -> timedelta | None:
    """The retry delay the activity asked for when it ended on an unavailable Kubernetes API, else None."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.type == API_UNAVAILABLE_ERROR:
        return cause.next_retry_delay or timedelta(seconds=1)
    return None


def failure_text(exc: BaseException) -> str:
    """The innermost useful message of a Temporal failure chain."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, TemporalTimeout):
            parts.append(f"timed out ({current.type.name.lower() if current.type else 'timeout'})")
        elif isinstance(current, FailureError) and not isinstance(current, (ActivityError, ChildWorkflowError)):
            parts.append(current.message)
        current = current.__cause__
    return "; ".join(p for p in parts if p) or str(exc) or type(exc).__name__


class StepCalls:
    def __init__(
        self, *, run_id: str, dry_run: bool, approvals: Any, default_approvers: list[str],
        child_request: Callable[[str, dict[str, Any]], RunbookRequest],
        on_waiting: Callable[[str, bool], None], runbook: str = "",
    ) -> None:
        self.run_id = run_id
        self.runbook = runbook
        self.dry_run = dry_run
        self.approvals = approvals
        self.default_approvers = default_approvers
        self.child_request = child_request
        self.on_waiting = on_waiting

    async def call(
        self, *, key: str, uses: str, args: dict[str, Any], timeout: float | None, retry: RetrySpec | None,
        activity_id: str,
    ) -> dict[str, Any]:
        step_type = STEP_TYPES.get(uses)
        if step_type is None:
            raise StepFailed(f"unknown step type {uses!r} (is the worker's step library up to date?)")
        try:
            typed_args = step_type.args_model.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise StepFailed(f"invalid arguments after evaluating expressions: {problems}") from exc
        if step_type.child_workflow:
            result = await self._child_workflow_step(step_type, key, typed_args, timeout)
        elif step_type.native:
            natives: dict[str, Callable[[str, Any, float | None], Awaitable[BaseModel]]] = {
                "sleep": self._sleep, "approval": self._approval, "runbook": self._child,
            }
            native = natives[uses]
            result = await native(key, typed_args, timeout)
        else:
            result = await self._activity(step_type, key, typed_args, timeout, retry, activity_id)
        return result.model_dump(mode="json")

    async def _activity(
        self, step_type: type[StepType], key: str, args: Any, timeout: float | None, retry: RetrySpec | None,
        activity_id: str,
    ) -> Any:
        retry = retry or DEFAULT_RETRY
        task_queue = None
        if step_type.regional:
            task_queue = regional_task_queue(workflow.info().task_queue, getattr(args, "region"))
        invocation = StepInvocation[step_type.args_model](  # type: ignore[name-defined]
            args=args, dry_run=self.dry_run, run_id=self.run_id, step_id=key
        )
        outage_since: datetime | None = None
        while True:
            try:
                return await self._execute_activity(step_type, key, invocation, timeout, retry, task_queue, activity_id)
            except ActivityError as exc:
                if isinstance(exc.cause, CancelledError):
                    raise asyncio.CancelledError() from exc  # the step was cancelled (abort), not failed
                delay = api_unavailable_delay(exc)
                if delay is None or not workflow.patched(API_OUTAGE_PATCH):
                    raise StepFailed(failure_text(exc)) from exc
                now = workflow.now()
                outage_since = outage_since or now
                if now - outage_since >= timedelta(seconds=retry.api_outage):
                    raise StepFailed(
                        f"{failure_text(exc)} (Kubernetes API unavailable for {(now - outage_since).total_seconds():.0f}s "
                        f"after the step's {retry.attempts} attempts; retry.api_outage is {retry.api_outage:g}s)"
                    ) from exc
                workflow.logger.warning("step %s: Kubernetes API unavailable, running again in %s", key, delay)
                await workflow.sleep(delay, summary=f"{key}: Kubernetes API unavailable")

    async def _execute_activity(
        self, step_type: type[StepType], key: str, invocation: Any, timeout: float | None, retry: RetrySpec,
        task_queue: str | None, activity_id: str,
    ) -> Any:
        return await workflow.execute_activity(
            step_type.activity,
            invocation,
            result_type=step_type.result_model,
            activity_id=activity_id,
            task_queue=task_queue,
            start_to_close_timeout=timedelta(seconds=timeout or step_type.default_timeout_seconds),
            heartbeat_timeout=timedelta(seconds=step_type.heartbeat_seconds) if step_type.heartbeat_seconds else None,
            retry_policy=RetryPolicy(
                maximum_attempts=retry.attempts,
                initial_interval=timedelta(seconds=max(retry.backoff, 0.001)),
                backoff_coefficient=retry.backoff_coefficient,
                maximum_interval=timedelta(seconds=retry.max_backoff) if retry.max_backoff else None,
            ),
            summary=f"{key} ({step_type.name})",
        )

    async def _sleep(self, key: str, args: SleepArgs, timeout: float | None) -> SleepResult:
        if self.dry_run:
            return SleepResult(seconds=args.duration, summary=f"would sleep {args.duration:g}s")
        await workflow.sleep(timedelta(seconds=args.duration), summary=key)
        return SleepResult(seconds=args.duration, summary=f"slept {args.duration:g}s")

    async def _approval(self, key: str, args: ApprovalArgs, timeout: float | None) -> ApprovalResult:
        approvers = args.approvers or self.default_approvers
        if self.dry_run:
            who = ", ".join(approvers) or "anyone"
            return ApprovalResult(approved=True, by_default=True, summary=f"would wait for approval by {who}")
        self.on_waiting(key, True)
        try:
            result = await self.approvals.wait(
                key, args, self.default_approvers, notify=lambda info: self._notify_escalation(key, args, info)
            )
        except asyncio.CancelledError:
            self.on_waiting(key, False)
            raise
        self.on_waiting(key, False)
        if not result.approved:
            raise StepFailed(f"approval {key!r} not granted: {result.summary}")
        return result

    async def _notify_escalation(self, key: str, args: ApprovalArgs, info: ApprovalRequestInfo) -> str:
        """Announce an escalated approval with the `notify.webhook` / `notify.slack` activity; a failed
        notification is reported in the step's output and status, it does not decide the approval."""
        spec = args.notify
        if spec is None:
            return ""
        step_type = STEP_TYPES.get(f"notify.{spec.kind}")
        if step_type is None:
            return f"not notified: step type notify.{spec.kind} is not installed on the worker"
        approvers = ", ".join(info.approvers) or "anyone"
        command = f"pitstop approve {self.run_id} --step {key} --as <identity>"
        target: dict[str, Any] = {"url_env": spec.url_env, "token_env": spec.token_env}
        if spec.kind == "slack":
            target["text"] = (
                f"Approval escalated: run {self.run_id} ({self.runbook}), step {key}: {args.message or 'approval needed'}\n"
                f"Approvers now: {approvers}\nDecide with: {command}"
            )
        else:
            target["payload"] = {
                "event": "approval_escalated", "run_id": self.run_id, "runbook": self.runbook, "step": key,
                "message": args.message, "approvers": info.approvers, "escalated_to": list(args.escalate_to),
                "escalation_timeout_seconds": args.escalation_timeout, "approve_command": command,
            }
        try:
            typed = step_type.args_model.model_validate(target)
            result = await self._activity(
                step_type, f"{key}:escalation", typed, None, NOTIFY_RETRY, activity_id=f"escalate:{key}"
            )
        except (StepFailed, ValidationError) as exc:
            workflow.logger.warning("approval %s: escalation notification failed: %s", key, exc)
            return f"notification failed: {exc}"
        return str(getattr(result, "summary", "") or "notified")

    async def _child_workflow_step(
        self, step_type: type[StepType], key: str, args: Any, timeout: float | None
    ) -> Any:
        """A native step type backed by its own workflow (e.g. a progressive release): run it as a child."""
        child_id = f"{self.run_id}/{key}"
        if self.dry_run:
            return step_type.result_model.model_construct(
                changed=False, summary=f"would run {step_type.child_workflow} as {child_id}"
            )
        try:
            return await workflow.execute_child_workflow(
                step_type.child_workflow,
                args,
                id=child_id,
                result_type=step_type.result_model,
                execution_timeout=timedelta(seconds=timeout or step_type.default_timeout_seconds),
                static_summary=f"{step_type.name} (child of {self.run_id}, step {key})",
            )
        except ChildWorkflowError as exc:
            raise StepFailed(f"{step_type.name} ({child_id}) failed: {failure_text(exc)}") from exc

    async def _child(self, key: str, args: ChildRunbookArgs, timeout: float | None) -> ChildRunbookResult:
        child_id = f"{self.run_id}/{key}"
        try:
            outcome = await workflow.execute_child_workflow(
                RUNBOOK_WORKFLOW,
                self.child_request(args.name, args.inputs),
                id=child_id,
                result_type=RunbookOutcome,
                execution_timeout=timedelta(seconds=timeout) if timeout else None,
                static_summary=f"{args.name} (child of {self.run_id}, step {key})",
            )
        except ChildWorkflowError as exc:
            raise StepFailed(f"child runbook {args.name!r} ({child_id}) failed: {failure_text(exc)}") from exc
        if outcome.status != "succeeded":
            raise StepFailed(f"child runbook {args.name!r} ({child_id}) ended {outcome.status}")
        return ChildRunbookResult(
            workflow_id=child_id, phase=outcome.status, outputs=outcome.outputs,
            summary=f"{args.name} {outcome.status}",
        )


Runner = Callable[..., Awaitable[dict[str, Any]]]
