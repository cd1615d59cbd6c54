"""The interpreter on the real Temporal dev server: parallelism, conditions, retries + compensation,
abort, pause/resume, approvals, child runbooks, dry run."""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from pitstop.runbook.run_state import ApprovalDecision, ControlRequest

from .runbook_harness import engine, start, status, step_state, wait_until

pytestmark = pytest.mark.integration


async def test_hello_runs(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "hello", name="fleet")
        outcome = await handle.result()
    assert outcome.status == "succeeded"
    assert outcome.outputs["greet"]["message"] == "hello, fleet"
    assert outcome.steps["loud"] == "skipped"
    assert outcome.outputs["done"]["message"] == "done (loud step: skipped)"


async def test_parallel_branches_condition_and_fan_out(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "parallel")
        outcome = await handle.result()
        final = await status(handle)
    assert outcome.status == "succeeded"
    left, right = (next(s for s in final.steps if s.id == i) for i in ("left", "right"))
    assert left.started_at and right.started_at and left.ended_at and right.ended_at
    assert left.started_at < right.ended_at and right.started_at < left.ended_at, "branches did not overlap"
    assert outcome.steps["optional"] == "skipped"
    assert [o["message"] for o in outcome.outputs["fan"]] == ["region eu-central", "region us-east", "region ap-south"]
    assert outcome.outputs["end"]["message"].startswith("optional was skipped; fan said [")


async def test_failing_step_retried_then_compensations_in_reverse(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "saga")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        final = await status(handle)
        history = await handle.fetch_history()
    message = str(info.value.cause)
    assert "failed at step 'flaky'" in message and "attempt 3" in message, message
    assert "compensated (in order): c, b, a" in message
    assert final.phase.value == "failed"
    assert [step_state(final, s) for s in ("a", "b", "c", "flaky")] == ["compensated"] * 3 + ["failed"]
    attempts = [e.activity_task_started_event_attributes.attempt for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert 3 in attempts


async def test_retry_then_success_runs_no_compensation(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        outcome = await (await start(temporal_client, task_queue, "saga", fail_attempts=2)).result()
    assert outcome.status == "succeeded"
    assert outcome.outputs["flaky"]["attempts"] == 3


async def test_abort_mid_run_runs_compensations(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "long", seconds=60)
        await wait_until(handle, lambda s: step_state(s, "work") == "running")
        await handle.execute_update("abort", ControlRequest(identity="alice", reason="wrong service"))
        outcome = await handle.result()
    assert outcome.status == "aborted"
    assert outcome.steps == {"prepare": "compensated", "work": "cancelled", "after": "pending"}
    assert "aborted by alice: wrong service" in outcome.error or "compensated (in order): prepare" in outcome.error


async def test_pause_and_resume(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "long", seconds=1.5)
        await wait_until(handle, lambda s: step_state(s, "work") == "running")
        await handle.execute_update("pause", ControlRequest(identity="bob"))
        paused = await wait_until(handle, lambda s: step_state(s, "work") == "succeeded", timeout=20)
        assert paused.paused and paused.phase.value == "paused"
        import asyncio

        await asyncio.sleep(1.0)
        assert step_state(await status(handle), "after") == "pending", "a step started while paused"
        await handle.execute_update("resume", ControlRequest(identity="bob"))
        outcome = await handle.result()
    assert outcome.status == "succeeded"


async def test_approval_allowed_and_refused(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "gated")
        waiting = await wait_until(handle, lambda s: s.phase.value == "waiting_for_approval")
        assert waiting.approvals[0].approvers == ["alice", "bob"]
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("approve", ApprovalDecision(step="ok", identity="mallory"))
        assert "'mallory' may not approve step 'ok'" in str(refused.value.cause)
        await handle.execute_update("approve", ApprovalDecision(step="ok", identity="bob", comment="lgtm"))
        outcome = await handle.result()
    assert outcome.status == "succeeded"
    assert outcome.outputs["ok"]["approver"] == "bob"
    assert outcome.outputs["change"]["summary"] == "did the change approved by bob"


async def test_approval_rejected_fails_the_run(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "gated")
        await wait_until(handle, lambda s: s.phase.value == "waiting_for_approval")
        await handle.execute_update("approve", ApprovalDecision(step="ok", identity="alice", approved=False, comment="not now"))
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    assert "rejected by alice: not now" in str(info.value.cause)


async def test_child_runbook(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        outcome = await (await start(temporal_client, task_queue, "parent")).result()
    assert outcome.status == "succeeded"
    assert outcome.outputs["after"]["message"] == "child said hello, child"


async def test_dry_run_changes_nothing(temporal_client: Client, task_queue: str) -> None:
    from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest

    async with engine(temporal_client, task_queue):
        outcome = await temporal_client.execute_workflow(
            RUNBOOK_WORKFLOW, RunbookRequest(runbook="gated", dry_run=True), id=f"dry-{task_queue}",
            task_queue=task_queue, result_type=RunbookOutcome,
        )
    assert outcome.status == "succeeded" and outcome.dry_run
    assert outcome.summaries["ok"] == "would wait for approval by alice, bob"
    assert outcome.summaries["change"] == "would the change approved by "


async def test_invalid_inputs_fail_before_anything_runs(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "saga", fail_attempts="many")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    refused = info.value.cause  # the run's own failure (not "Activity task failed"): the CLI's message
    assert isinstance(refused, ApplicationError) and refused.type == "RunbookInvalid"
    assert "input 'fail_attempts': type mismatch: expected integer, got string" in refused.message
