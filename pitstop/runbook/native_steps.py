"""Workflow-native step types (`sleep`, `approval`, `runbook`) and the test/debug types (`log`, `debug.*`).

Native steps have no activity: the interpreter executes them with a durable timer, a Temporal update and a
child workflow. `log` and `debug.*` are tiny activities (`activities/runbook_debug.py`) used by tests,
benchmarks and examples.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from .model import Duration
from .step_types import ENV_VAR_NAME, StepArgs, StepResult, StepType, register_step_type

# ---------------------------------------------------------------- sleep


class SleepArgs(StepArgs):
    duration: Duration = Field(description="how long to wait (durable timer)")


class SleepResult(StepResult):
    seconds: float = 0.0


@register_step_type
class Sleep(StepType):
    name = "sleep"
    description = "Wait durably (a Temporal timer; survives worker restarts)."
    args_model = SleepArgs
    result_model = SleepResult
    native = True


# ---------------------------------------------------------------- approval


class EscalationNotify(StepArgs):
    """Where to announce an escalation (sent with the `notify.webhook` / `notify.slack` activities)."""

    url_env: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="env var on the worker holding the webhook URL (a secret)",
        json_schema_extra=ENV_VAR_NAME,
    )
    kind: Literal["webhook", "slack"] = Field(
        "webhook", description="webhook: JSON event with run, step, message, approvers; slack: a `{text}` message"
    )
    token_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="env var holding a bearer token, sent as Authorization",
        json_schema_extra=ENV_VAR_NAME,
    )


class ApprovalArgs(StepArgs):
    message: str = Field("", description="what the approver is asked")
    approvers: list[str] = Field(
        default_factory=list, description="who may decide: `group:NAME` (a group of the access policy), `user:NAME` or a user name; empty = the runbook's `approvers`"
    )
    timeout: Duration | None = Field(None, description="deadline for a decision; none = wait forever")
    on_timeout: Literal["reject", "approve", "escalate"] = Field(
        "reject", description="at the deadline: decide by default, or escalate to `escalate_to`"
    )
    escalate_to: list[str] = Field(default_factory=list, description="approvers added at the deadline (`group:NAME` (a group of the access policy), `user:NAME` or a user name)")
    escalation_timeout: Duration | None = Field(None, description="second deadline after escalating (then reject)")
    notify: EscalationNotify | None = Field(
        None, description="on escalation, notify this webhook / Slack endpoint (run id, step, message, approvers)"
    )

    @model_validator(mode="after")
    def _notify_needs_escalation(self) -> ApprovalArgs:
        if self.notify is not None and self.on_timeout != "escalate":
            raise ValueError("`notify` is sent on escalation: set `on_timeout: escalate` (and `timeout`)")
        return self


class ApprovalResult(StepResult):
    approved: bool = False
    approver: str = Field("", description="identity that decided; empty when decided by default")
    comment: str = ""
    escalated: bool = False
    by_default: bool = Field(False, description="decided by the deadline, not by a person")
    notified: str = Field("", description="outcome of the escalation notification")


@register_step_type
class Approval(StepType):
    name = "approval"
    description = "Wait for an allowed identity to approve (Temporal update); rejection fails the runbook."
    args_model = ApprovalArgs
    result_model = ApprovalResult
    native = True


# ---------------------------------------------------------------- runbook (child workflow)


class ChildRunbookArgs(StepArgs):
    name: str = Field(description="runbook to run as a child workflow")
    inputs: dict[str, Any] = Field(default_factory=dict)


class ChildRunbookResult(StepResult):
    workflow_id: str = ""
    phase: str = ""
    outputs: dict[str, Any] = Field(default_factory=dict, description="the child's step outputs by step id")


@register_step_type
class ChildRunbook(StepType):
    name = "runbook"
    description = "Run another runbook as a child workflow and wait for it."
    args_model = ChildRunbookArgs
    result_model = ChildRunbookResult
    native = True
    default_timeout_seconds: ClassVar[float] = 24 * 3600.0


# ---------------------------------------------------------------- log / debug (activities)


class LogArgs(StepArgs):
    message: str = ""


class LogResult(StepResult):
    message: str = ""


@register_step_type
class Log(StepType):
    name = "log"
    description = "Record a message (a no-op activity); handy for tests and notes in the timeline."
    args_model = LogArgs
    result_model = LogResult
    activity = "runbook.log"


class StopArgs(StepArgs):
    message: str = Field(min_length=1, description="why the run stops; shown as the run's failure")


class StopResult(StepResult):
    pass


@register_step_type
class Stop(StepType):
    name = "fail"
    description = ("Stop the run as failed with `message` (never retried, also in a dry run): a precondition "
                   "that does not hold, e.g. `if: ${{ steps.current.outputs.replicas >= inputs.max_replicas }}`.")
    args_model = StopArgs
    result_model = StopResult
    activity = "runbook.fail"
    default_timeout_seconds = 10.0


class FailArgs(StepArgs):
    fail_attempts: int = Field(-1, description="fail this many attempts then succeed; -1 = always fail")
    message: str = "injected failure"
    non_retryable: bool = False


class FailResult(StepResult):
    attempts: int = 0


@register_step_type
class DebugFail(StepType):
    name = "debug.fail"
    debug = True
    description = "Fail the first N attempts (tests retries and compensation)."
    args_model = FailArgs
    result_model = FailResult
    activity = "runbook.debug_fail"
    default_timeout_seconds = 10.0


class WaitArgs(StepArgs):
    seconds: float = Field(ge=0, le=3600)
    record_to: str = Field(
        "", description="append one line per completion to this file (tests): a file under the worker's "
                        "`worker.debug_record_dir`")


class WaitResult(StepResult):
    seconds: float = 0.0
    attempt: int = 1


@register_step_type
class DebugWait(StepType):
    name = "debug.wait"
    debug = True
    description = "An activity that works for a while, heartbeating (tests worker kills and cancellation)."
    args_model = WaitArgs
    result_model = WaitResult
    activity = "runbook.debug_wait"
    default_timeout_seconds = 3600.0
    heartbeat_seconds = 2.0


class ChangeArgs(StepArgs):
    what: str = Field(description="the change this step stands for")


class ChangeResult(StepResult):
    would_change: str = ""


@register_step_type
class DebugChange(StepType):
    name = "debug.change"
    debug = True
    description = "A mutating no-op: reports the change it makes (or would make in a dry run)."
    args_model = ChangeArgs
    result_model = ChangeResult
    activity = "runbook.debug_change"
    mutating = True
