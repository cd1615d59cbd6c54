"""Leases across runbooks and surviving a worker kill -9, on the real Temporal dev server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError

from .runbook_harness import engine, start, status, step_state, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def test_second_runbook_on_same_target_waits_for_the_lease(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        first = await start(temporal_client, task_queue, "long", seconds=2, service="cart")
        await wait_until(first, lambda s: step_state(s, "work") == "running")
        second = await start(temporal_client, task_queue, "long", seconds=0.2, service="cart")
        waiting = await wait_until(second, lambda s: s.phase.value == "waiting_for_lease")
        assert waiting.lease_id == "lease/eu-central/shop/cart"
        assert step_state(waiting, "prepare") == "pending"
        other = await start(temporal_client, task_queue, "long", seconds=0.2, service="payments")
        assert (await other.result()).status == "succeeded", "another target must not wait"
        assert (await status(second)).phase.value == "waiting_for_lease"
        assert (await first.result()).status == "succeeded"
        assert (await second.result()).status == "succeeded"
        first_done = next(s for s in (await status(first)).steps if s.id == "after").ended_at
        second_start = next(s for s in (await status(second)).steps if s.id == "prepare").started_at
        assert first_done and second_start and second_start >= first_done


async def test_refuse_policy_fails_at_once_when_target_is_busy(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        holder = await start(temporal_client, task_queue, "long", seconds=3, service="checkout")
        await wait_until(holder, lambda s: step_state(s, "work") == "running")
        busy = await start(temporal_client, task_queue, "busy")
        with pytest.raises(WorkflowFailureError) as info:
            await busy.result()
        assert "target busy, refused by lease policy" in str(info.value.cause)
        assert holder.id in str(info.value.cause)
        await holder.result()


async def test_lease_freed_when_holder_is_terminated(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        holder = await start(temporal_client, task_queue, "long", seconds=120, service="search")
        await wait_until(holder, lambda s: step_state(s, "work") == "running")
        waiter = await start(temporal_client, task_queue, "long", seconds=0.1, service="search")
        await wait_until(waiter, lambda s: s.phase.value == "waiting_for_lease")
        await holder.terminate("test: holder dies without releasing")
        outcome = await asyncio.wait_for(waiter.result(), timeout=30)
    assert outcome.status == "succeeded"


def _worker(address: str, task_queue: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.engine_worker", address, task_queue],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    return proc


async def test_run_survives_worker_kill_9_mid_step(temporal_client: Client, task_queue: str, tmp_path: Path) -> None:
    address = temporal_client.service_client.config.target_host
    record = tmp_path / "completions.txt"
    log = tmp_path / "worker.log"
    worker = _worker(address, task_queue, log)
    try:
        handle = await start(temporal_client, task_queue, "long", seconds=3, record_to=str(record), service="kill")
        await wait_until(handle, lambda s: step_state(s, "work") == "running", timeout=60)
        await asyncio.sleep(1.0)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        assert not record.exists(), "the step completed before the kill; the test proves nothing"
        worker = _worker(address, task_queue, log)
        outcome = await asyncio.wait_for(handle.result(), timeout=90)
    finally:
        worker.kill()
        worker.wait(timeout=10)
    assert outcome.status == "succeeded"
    lines = record.read_text().splitlines()
    assert len(lines) == 1, lines  # the step ran to completion exactly once (on a later attempt)
    assert "attempt=2" in lines[0]
    history = await handle.fetch_history()
    completed = [e for e in history.events if e.HasField("activity_task_completed_event_attributes")]
    scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_id
                 for e in history.events if e.HasField("activity_task_scheduled_event_attributes")}
    ids = [scheduled[e.activity_task_completed_event_attributes.scheduled_event_id] for e in completed]
    assert sorted(ids) == sorted(set(ids)), f"a step completed twice: {ids}"
    assert {"prepare", "work", "after"} <= set(ids)
