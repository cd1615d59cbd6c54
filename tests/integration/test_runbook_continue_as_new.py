"""Continue-as-new of long runs on the real Temporal dev server: a long linear runbook with a low history
limit continues-as-new between steps and completes with every step run exactly once; compensations recorded
before a continue-as-new still run in reverse order; status, the lease and the history timeline follow the chain.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory

from pitstop.workers.run_history import render, timeline

from .runbook_harness import engine, start, status

pytestmark = pytest.mark.integration


async def chain(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of a continue-as-new chain, oldest first (what `pitstop history` reads)."""
    from pitstop.workers.run_history import fetch_chain

    return await fetch_chain(client, workflow_id)


def completed_calls(histories: list[WorkflowHistory]) -> Counter[str]:
    done: Counter[str] = Counter()
    for history in histories:
        scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_id
                     for e in history.events if e.HasField("activity_task_scheduled_event_attributes")}
        for e in history.events:
            if e.HasField("activity_task_completed_event_attributes"):
                done[scheduled[e.activity_task_completed_event_attributes.scheduled_event_id]] += 1
    return done


def debug_change_args(histories: list[WorkflowHistory]) -> list[tuple[str, Any]]:
    data = timeline(histories)
    return [(e["call"], e["args"]) for e in data["timeline"] if e["kind"] == "step" and e["type"] == "runbook.debug_change"]


async def test_long_linear_runbook_continues_as_new_and_completes(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "linear", history_limit=120)
        outcome = await handle.result()
        final = await status(handle)
        histories = await chain(temporal_client, handle.id)
    assert outcome.status == "succeeded"
    assert len(histories) >= 3, f"expected at least two continue-as-new, got {len(histories)} run(s)"
    for history in histories[:-1]:
        assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        assert len(history.events) < 120 + 20, "a run outgrew its limit by more than one step"
    assert set(outcome.steps.values()) == {"succeeded"} and len(outcome.steps) == 60
    assert outcome.outputs["s01"]["message"] == "step 1"
    assert outcome.outputs["s60"]["message"] == "last; first said step 1, s30 said step 30"
    calls = completed_calls(histories)
    assert set(calls) == {"load"} | {f"s{i:02d}" for i in range(1, 61)}
    assert all(n == 1 for n in calls.values()), f"a step ran more than once: {calls}"
    assert final.run_number == len(histories)
    assert final.started_at is not None
    first_start, second_start = (h.events[0].event_time.ToDatetime(final.started_at.tzinfo) for h in histories[:2])
    assert first_start <= final.started_at < second_start, "status must show when the first run of the chain started"

    data = timeline(histories)
    assert data["run"]["runbook"] == "linear" and data["run"]["status"] == "succeeded"
    assert [e["call"] for e in data["timeline"] if e["kind"] == "step"] == ["load"] + [f"s{i:02d}" for i in range(1, 61)]
    continued = [e for e in data["timeline"] if e["kind"] == "continued"]
    assert len(continued) == len(histories) - 1
    text = render(data)
    assert "continued as new" in text and "s60" in text


async def test_compensations_after_continue_as_new_run_in_reverse(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "long-saga", history_limit=80, service="saga-reverse")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        final = await status(handle)
        histories = await chain(temporal_client, handle.id)
    assert len(histories) >= 2, "the run never continued-as-new; the test proves nothing"
    message = str(info.value.cause)
    order = ", ".join(f"c{i:02d}" for i in range(25, 0, -1))
    assert f"compensated (in order): {order}" in message, message
    assert final.phase.value == "failed"
    assert all(s.state.value == "compensated" for s in final.steps if s.id != "boom")
    undo = [(call, args["what"]) for call, args in debug_change_args(histories) if call.startswith("compensate:")]
    assert undo == [(f"compensate:c{i:02d}", f"undo did change {i}") for i in range(25, 0, -1)]
    assert all(n == 1 for n in completed_calls(histories).values())


async def test_pause_carried_across_continue_as_new_and_updates_follow_the_chain(
    temporal_client: Client, task_queue: str
) -> None:
    from pitstop.runbook.run_state import ControlRequest

    from .runbook_harness import step_state, wait_until

    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "long-saga", history_limit=60, fail=False, service="saga-pause")
        # paused after the first step (a run continues-as-new only once a step finished in it): waiting for the
        # third left a loaded machine time to finish all 25 before the update landed
        await wait_until(handle, lambda s: step_state(s, "c01") == "succeeded")
        await handle.execute_update("pause", ControlRequest(identity="ops"))
        first = await wait_until(handle, lambda s: s.phase.value == "paused")
        for _ in range(40):  # every update adds history events: the paused run reaches its limit and continues
            current = await status(handle)
            if current.run_number > first.run_number:
                break
            await handle.execute_update("pause", ControlRequest(identity="ops", reason="again"))
        after = await wait_until(handle, lambda s: s.run_number > first.run_number, timeout=10)
        assert after.paused and after.phase.value == "paused"
        done = sum(1 for s in after.steps if s.state.value == "succeeded")
        await asyncio.sleep(1.0)
        assert sum(1 for s in (await status(handle)).steps if s.state.value == "succeeded") == done, "a step started while paused"
        await handle.execute_update("resume", ControlRequest(identity="ops"))
        outcome = await handle.result()
        histories = await chain(temporal_client, handle.id)
    assert outcome.status == "succeeded" and outcome.steps["boom"] == "skipped"
    assert all(n == 1 for n in completed_calls(histories).values())


async def test_lease_stays_held_across_continue_as_new(temporal_client: Client, task_queue: str) -> None:
    """The lease checks its holder every second (test setting); a holder that continued-as-new still holds it."""
    from pitstop.runbook.run_state import ControlRequest

    from .runbook_harness import step_state, wait_until

    async with engine(temporal_client, task_queue):
        holder = await start(temporal_client, task_queue, "long-saga", history_limit=60, fail=False, service="cas-lease")
        continued = await wait_until(holder, lambda s: s.run_number >= 2 and s.lease_id != "", timeout=30)
        await holder.execute_update("pause", ControlRequest(identity="test", reason="let the lease check its holder"))
        waiter = await start(temporal_client, task_queue, "long", seconds=0.1, service="cas-lease")
        await wait_until(waiter, lambda s: s.phase.value == "waiting_for_lease")
        await asyncio.sleep(3.0)  # several holder checks
        assert (await status(waiter)).phase.value == "waiting_for_lease", "the lease was freed after continue-as-new"
        assert step_state(await status(waiter), "prepare") == "pending"
        await holder.execute_update("resume", ControlRequest(identity="test"))
        assert (await holder.result()).status == "succeeded"
        assert (await asyncio.wait_for(waiter.result(), timeout=30)).status == "succeeded"
    assert continued.lease_id == "lease/eu-central/shop/cas-lease"
