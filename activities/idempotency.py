"""Idempotency keys for side effects: one key per step of a run, the same on every attempt."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from pitstop.runbook.step_types import StepInvocation


def idempotency_key(invocation: StepInvocation[Any]) -> str:
    """`<run_id>/<step_id>` (falls back to the workflow and activity ids when called outside a runbook)."""
    if invocation.run_id:
        return f"{invocation.run_id}/{invocation.step_id}"
    info = activity.info()
    return f"{info.workflow_id}/{info.activity_id}"


def undo_key(invocation: StepInvocation[Any]) -> str:
    """The key of a step's durable undo value (`pitstop.undo_values`): the idempotency key within this workflow
    execution. Every attempt of one activity shares it; a later run that reuses the workflow id does not,
    so it never takes an earlier run's previous value for its own."""
    return f"{idempotency_key(invocation)}@{activity.info().workflow_run_id}"
