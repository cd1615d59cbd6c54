"""Approval steps on real Temporal: deadlines that decide by default, escalation (more approvers + a webhook /
Slack notification received by a real HTTP server), and an approval surviving a worker kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from pitstop.runbook.run_state import ApprovalDecision

from tests.fixtures.worker_reach import TEST_WORKER_ENV

from .runbook_harness import TEST_RUNBOOKS, engine, start, status, step_state, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """A tiny HTTP server on a free loopback port recording the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                receiver.bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                receiver.headers.append(dict(self.headers))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/escalation"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    async def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        for _ in range(int(timeout * 10)):
            if len(self.bodies) >= count:
                return self.bodies
            await asyncio.sleep(0.1)
        raise AssertionError(f"expected {count} notification(s), got {self.bodies}")


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    monkeypatch.setenv("PITSTOP_TEST_ESCALATION_URL", server.url)  # the in-process worker reads it by name
    yield server
    server.server.shutdown()
    server.server.server_close()


# ------------------------------------------------------------------ deadlines decide by default


@pytest.mark.parametrize("on_timeout", ["approve", "reject"])
async def test_deadline_decides_by_default_on_the_time_skipping_server(
    time_skipping_env: WorkflowEnvironment, task_queue: str, on_timeout: str
) -> None:
    """A one-hour approval deadline passes in wall-clock seconds; nobody decides, the default does."""
    client = time_skipping_env.client
    async with engine(client, task_queue):
        handle = await start(client, task_queue, "deadline", on_timeout=on_timeout, timeout=3600)
        if on_timeout == "approve":
            outcome = await handle.result()
            assert outcome.status == "succeeded"
            assert outcome.outputs["ok"]["approved"] and outcome.outputs["ok"]["by_default"]
            assert outcome.outputs["ok"]["summary"] == "no decision by the deadline: approved by default"
            assert outcome.outputs["change"]["summary"] == "did the change (by default: true)"
        else:
            with pytest.raises(WorkflowFailureError) as info:
                await handle.result()
            assert "no decision by the deadline: rejected by default" in str(info.value.cause)
        history = await handle.fetch_history()
    timers = [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
              for e in history.events if e.HasField("timer_started_event_attributes")]
    assert timers == [3600.0]


async def test_decision_before_the_deadline_wins(temporal_client: Client, task_queue: str) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "deadline", on_timeout="approve", timeout=60)
        waiting = await wait_until(handle, lambda s: s.phase.value == "waiting_for_approval")
        assert waiting.approvals[0].deadline is not None
        await handle.execute_update("approve", ApprovalDecision(step="ok", identity="alice", approved=False))
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    assert "rejected by alice" in str(info.value.cause)


# ------------------------------------------------------------------ escalation


async def test_escalation_adds_approvers_and_notifies(temporal_client: Client, task_queue: str, receiver: Receiver) -> None:
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "escalate", timeout=1)
        escalated = await wait_until(handle, lambda s: bool(s.approvals) and s.approvals[0].escalated, timeout=30)
        assert escalated.approvals[0].approvers == ["alice", "carol"]
        [event] = await receiver.wait_for(1)
        assert event == {
            "event": "approval_escalated", "run_id": handle.id, "runbook": "escalate", "step": "ok",
            "message": "restart checkout?", "approvers": ["alice", "carol"], "escalated_to": ["carol"],
            "escalation_timeout_seconds": 120.0,
            "approve_command": f"pitstop approve {handle.id} --step ok --as <identity>",
        }
        assert receiver.headers[0].get("Idempotency-Key"), "notifications carry an idempotency key"
        shown = await wait_until(handle, lambda s: s.approvals[0].notified != "", timeout=10)
        assert shown.approvals[0].notified == "notified $PITSTOP_TEST_ESCALATION_URL (204)"
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update("approve", ApprovalDecision(step="ok", identity="mallory"))
        await handle.execute_update("approve", ApprovalDecision(step="ok", identity="carol", comment="go"))

        await wait_until(handle, lambda s: bool(s.approvals) and s.approvals[0].key == "chat" and s.approvals[0].escalated)
        bodies = await receiver.wait_for(2)
        text = bodies[1]["text"]
        assert f"run {handle.id} (escalate), step chat: and the cache?" in text
        assert "Approvers now: alice, dave" in text and f"pitstop approve {handle.id} --step chat" in text
        await handle.execute_update("approve", ApprovalDecision(step="chat", identity="dave"))
        outcome = await handle.result()
    assert outcome.status == "succeeded"
    assert outcome.outputs["ok"]["escalated"] and outcome.outputs["ok"]["approver"] == "carol"
    assert outcome.outputs["ok"]["notified"].startswith("notified $PITSTOP_TEST_ESCALATION_URL")
    assert outcome.outputs["change"]["summary"] == "did restart approved by carol and dave"
    assert len(receiver.bodies) == 2, "each escalation notifies exactly once"


async def test_failed_escalation_notification_does_not_block_the_approval(
    temporal_client: Client, task_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PITSTOP_TEST_ESCALATION_URL", raising=False)
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "escalate", timeout=1, escalation_timeout=4)
        waiting = await wait_until(handle, lambda s: bool(s.approvals) and s.approvals[0].notified != "", timeout=20)
        assert waiting.approvals[0].approvers == ["alice", "carol"], "escalation happens even if the notification fails"
        assert waiting.approvals[0].notified.startswith("notification failed: environment variable PITSTOP_TEST_ESCALATION_URL")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        final = await status(handle)
    assert "no decision after escalation: rejected by default" in str(info.value.cause)
    assert step_state(final, "ok") == "failed"
    assert "chat" not in str(info.value.cause)


# ------------------------------------------------------------------ worker kill -9 while waiting


def _worker(address: str, task_queue: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.engine_worker", address, task_queue],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )


def _cli_env(address: str, task_queue: str, tmp_path: Path) -> dict[str, str]:
    return dict(
        os.environ, PITSTOP_TEMPORAL__ADDRESS=address, PITSTOP_TEMPORAL__TASK_QUEUE=task_queue,
        PITSTOP_RUNBOOKS_DIR=str(TEST_RUNBOOKS), PITSTOP_CONFIG=str(tmp_path / "absent.yaml"),
        PITSTOP_STATE_DIR=str(tmp_path), **TEST_WORKER_ENV,
    )


async def test_approval_survives_worker_kill_9(temporal_client: Client, task_queue: str, tmp_path: Path) -> None:
    address = temporal_client.service_client.config.target_host
    log = tmp_path / "worker.log"
    worker = _worker(address, task_queue, log)
    try:
        handle = await start(temporal_client, task_queue, "gated")
        await wait_until(handle, lambda s: s.phase.value == "waiting_for_approval", timeout=60)
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL
        worker = _worker(address, task_queue, log)
        approve = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "pitstop.workers.cli", "approve", handle.id, "--step", "ok", "--as", "alice", "-m", "after the crash"],
            env=_cli_env(address, task_queue, tmp_path), capture_output=True, text=True, timeout=90,
        )
        assert approve.returncode == 0, approve.stdout + approve.stderr + log.read_text()
        assert "approved ok as alice" in approve.stdout
        outcome = await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        worker.kill()
        worker.wait(timeout=10)
    assert outcome.status == "succeeded"
    assert outcome.outputs["ok"]["approver"] == "alice" and outcome.outputs["ok"]["comment"] == "after the crash"
    assert outcome.outputs["change"]["summary"] == "did the change approved by alice"
