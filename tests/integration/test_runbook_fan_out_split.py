"""A single `for_each` step split across continue-as-new runs, on the real Temporal dev server: with a small
history limit a 60-item fan-out (parallelism 5) continues-as-new part-way several times; every item runs exactly
once (history and the activity's own record file), the outputs come back complete and in item order, status shows
the items done across runs; a failure after a split compensates every finished item exactly once; pause and abort
during a split fan-out behave as in one run.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory

from pitstop.runbook.run_state import ControlRequest, RunStatus

from .runbook_harness import TEST_RUNBOOKS, engine, start, status, wait_until
from .test_runbook_continue_as_new import chain, completed_calls, debug_change_args

pytestmark = pytest.mark.integration

ITEMS = [round(0.01 + i / 1000, 3) for i in range(60)]  # each item waits a distinct time, echoed in its output


def fan_state(current: RunStatus) -> tuple[int, str, int, int]:
    fan = next(s for s in current.steps if s.id == "fan")
    return current.run_number, fan.state.value, fan.items_done, fan.items_total


async def watch(handle: WorkflowHandle[Any, Any], seen: list[tuple[int, str, int, int]]) -> None:
    """Poll the status query while the chain runs (a query may miss a run that has not had a task yet)."""
    while True:
        try:
            seen.append(fan_state(await status(handle)))
        except Exception:
            pass
        await asyncio.sleep(0.05)


def recorded(path: Path) -> Counter[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(line.split()[1] for line in lines)  # "<workflow id> <step key> attempt=N"


def continued_runs(histories: list[WorkflowHistory]) -> None:
    for history in histories[:-1]:
        assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW


async def test_for_each_splits_across_runs_each_item_once_outputs_in_order(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    record = tmp_path / "fan.txt"
    seen: list[tuple[int, str, int, int]] = []
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "fanout", history_limit=120, items=ITEMS, record_to=str(record))
        watcher = asyncio.create_task(watch(handle, seen))
        try:
            outcome = await asyncio.wait_for(handle.result(), timeout=120)
        finally:
            watcher.cancel()
        final = await status(handle)
        histories = await chain(temporal_client, handle.id)
        env = dict(os.environ, PITSTOP_TEMPORAL__ADDRESS=temporal_client.service_client.config.target_host,
                   PITSTOP_TEMPORAL__TASK_QUEUE=task_queue, PITSTOP_RUNBOOKS_DIR=str(TEST_RUNBOOKS),
                   PITSTOP_CONFIG=str(tmp_path / "absent.yaml"), PITSTOP_STATE_DIR=str(tmp_path))
        shown = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "pitstop.workers.cli", "status", handle.id],
            env=env, capture_output=True, text=True, timeout=60,
        )
    assert outcome.status == "succeeded", outcome.error
    assert len(histories) >= 3, f"expected the fan-out split at least twice, got {len(histories)} run(s)"
    continued_runs(histories)
    for history in histories[:-1]:
        assert len(history.events) < 120 + 5 * 8, "a run outgrew its limit by more than the items in flight"
    # every item exactly once: the activity's own record, and the completed activities of the whole chain
    assert recorded(record) == Counter({f"fan[{i}]": 1 for i in range(60)})
    assert all(line.endswith("attempt=1") for line in record.read_text().splitlines())
    calls = completed_calls(histories)
    assert set(calls) == {"load"} | {f"fan[{i}]" for i in range(60)} and set(calls.values()) == {1}, calls
    per_run = [sum(1 for k in completed_calls([h]) if k.startswith("fan[")) for h in histories]
    assert all(n > 0 for n in per_run), f"a run of the chain finished no item: {per_run}"
    # outputs: complete, in item order, as if never split
    outputs = outcome.outputs["fan"]
    assert isinstance(outputs, list) and [o["seconds"] for o in outputs] == ITEMS
    assert outcome.steps == {"fan": "succeeded"}
    assert final.run_number == len(histories)
    assert fan_state(final) == (len(histories), "succeeded", 60, 60)
    # progress across runs: items_done only grows, and later runs report the items the earlier ones finished
    assert seen, "the status query never answered"
    done_seen = [done for _, _, done, _ in seen]
    assert done_seen == sorted(done_seen), f"items_done went backwards: {seen}"
    later = [(run, done) for run, state, done, total in seen if run >= 2 and state == "running"]
    assert later and all(0 < done < 60 for _, done in later), seen
    assert all(total == 60 for _, _, _, total in seen if total)
    assert shown.returncode == 0, shown.stderr
    assert "60/60" in shown.stdout and "continued-as-new" in shown.stdout, shown.stdout


async def test_item_failure_after_split_compensates_finished_items_once(temporal_client: Client, task_queue: str) -> None:
    items = [{"n": i, "fail": -1 if i == 45 else 0} for i in range(50)]
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "fanout-saga", history_limit=100, items=items)
        with pytest.raises(WorkflowFailureError) as info:
            await asyncio.wait_for(handle.result(), timeout=120)
        final = await status(handle)
        histories = await chain(temporal_client, handle.id)
    assert len(histories) >= 2, "the fan-out never split; the test proves nothing"
    continued_runs(histories)
    message = str(info.value.cause)
    assert "item 45 failed" in message, message
    calls = completed_calls(histories)
    finished = [k for h in histories for k in completed_calls([h]) if k.startswith("fan[")]
    assert {f"fan[{i}]" for i in range(45)} <= set(finished) and "fan[45]" not in finished
    assert all(n == 1 for n in calls.values()), calls
    # every finished item compensated exactly once, in reverse completion order (across the runs), then `before`
    undo = [(call, args["what"]) for call, args in debug_change_args(histories) if call.startswith("compensate:")]
    expected = [(f"compensate:{key}", f"undo item {key[4:-1]}") for key in reversed(finished)]
    assert undo == expected + [("compensate:before", "undo before")], undo
    states = {s.id: s.state.value for s in final.steps}
    assert states == {"before": "compensated", "fan": "compensated", "after": "pending"}, states
    assert final.phase.value == "failed" and final.run_number == len(histories) >= 2


async def test_pause_and_abort_during_a_split_fan_out(temporal_client: Client, task_queue: str, tmp_path: Path) -> None:
    record = tmp_path / "fan.txt"
    slow = [0.2] * 60
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "fanout", history_limit=80, items=slow, record_to=str(record))
        await wait_until(handle, lambda s: s.run_number >= 2 and fan_state(s)[2] > 0, timeout=60)
        await handle.execute_update("pause", ControlRequest(identity="ops"))
        await wait_until(handle, lambda s: s.phase.value == "paused", timeout=30)
        await asyncio.sleep(0.8)  # the items in flight finish (the paused fan-out may continue-as-new meanwhile)
        paused = await status(handle)
        await asyncio.sleep(1.0)
        still = await status(handle)
        assert still.paused and still.phase.value == "paused"
        assert fan_state(still)[2] == fan_state(paused)[2], "an item started while paused"
        await handle.execute_update("resume", ControlRequest(identity="ops"))
        before = fan_state(still)[2]
        await wait_until(handle, lambda s: fan_state(s)[2] > before, timeout=30)
        await handle.execute_update("abort", ControlRequest(identity="ops", reason="split fan-out test"))
        outcome = await asyncio.wait_for(handle.result(), timeout=60)
        final = await status(handle)
        histories = await chain(temporal_client, handle.id)
    assert outcome.status == "aborted" and outcome.error.startswith("compensated (in order): "), outcome.error
    assert len(histories) >= 2
    _, state, done, total = fan_state(final)
    assert state == "compensated" and total == 60 and 0 < done < 60
    # items the interpreter counted = items compensated, each once, in reverse completion order; an item in
    # flight at the abort may still have completed after its cancellation was requested (not counted, not undone)
    completed = [k for h in histories for k in completed_calls([h]) if k.startswith("fan[")]
    assert len(completed) == len(set(completed))
    undo = [call.removeprefix("compensate:") for call, _ in debug_change_args(histories) if call.startswith("compensate:")]
    assert len(undo) == len(set(undo)) == done
    assert undo == [k for k in reversed(completed) if k in set(undo)]
    assert set(recorded(record).values()) == {1}, "an item ran twice"
    assert set(undo) <= set(recorded(record)) and set(recorded(record)) <= set(completed)
