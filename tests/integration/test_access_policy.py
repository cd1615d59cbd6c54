"""The access policy re-checked by a runbook's update validators on real Temporal: an identity outside the
policy is refused (pause, approve) with who/what/why in the error and, through the worker's `access_denied`
signal, in the run's history; an allowed identity passes and the run completes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from pitstop.config import Settings
from pitstop.policy import guard
from pitstop.policy.guard import ACCESS_DENIED
from pitstop.runbook.run_state import ApprovalDecision, ControlRequest, Phase
from pitstop.workers.access_audit import install_policy

from .runbook_harness import engine, start, status, wait_until

pytestmark = pytest.mark.integration

POLICY = """
groups:
  sre-oncall: {description: on-call rota}
rules:
  - id: oncall-operates-shop
    subjects: [group:sre-oncall]
    actions: [approve, pause, resume, abort]
    runbooks: ["policy-*"]
    targets: {namespace: shop}
  - id: test-starts-directly  # the test starts its run with a Temporal client, as the Web UI would (docs/security.md)
    subjects: ["user:web-ui"]
    actions: [start]
    runbooks: ["policy-*"]
  - id: interns-never-abort
    effect: deny
    subjects: [user:intern]
    actions: [abort]
    description: interns page someone instead
"""


async def refused(coro: object) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await coro  # type: ignore[misc]
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == ACCESS_DENIED, repr(cause)
    return cause.message


async def test_updates_outside_the_policy_are_refused_and_recorded(
    temporal_client: Client, task_queue: str, pitstop_settings: Settings, tmp_path: Path,
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    settings = pitstop_settings.model_copy(update={"security": pitstop_settings.security.model_copy(
        update={"policy_file": policy_file})})
    recorder = install_policy(settings, temporal_client)
    assert recorder is not None
    recording = asyncio.create_task(recorder.run())
    try:
        async with engine(temporal_client, task_queue):
            handle = await start(temporal_client, task_queue, "policy-gated")
            await wait_until(handle, lambda s: s.phase == Phase.WAITING_FOR_APPROVAL)

            pause = await refused(handle.execute_update("pause", ControlRequest(identity="mallory", reason="x")))
            assert pause == ("mallory (no groups) may not pause on runbook 'policy-gated' "
                                  "(namespace=shop, service=web): no rule allows it (default deny)")
            abort = await refused(handle.execute_update(
                "abort", ControlRequest(identity="intern", groups=["sre-oncall"], reason="oops")))
            assert "denied by rule interns-never-abort: interns page someone instead" in abort
            approve = await refused(handle.execute_update(
                "approve", ApprovalDecision(step="ok", identity="eve", groups=["sre-ops"])))
            assert approve.startswith("eve (groups: sre-ops) may not approve on runbook 'policy-gated'")

            current = await wait_until(handle, lambda s: len(s.access_denials) == 3)
            assert current.access_denials == [pause, abort, approve]
            assert current.phase == Phase.WAITING_FOR_APPROVAL  # nothing the refused updates asked for happened

            # allowed by the policy and by the step's `group:` approvers
            await handle.execute_update("approve", ApprovalDecision(step="ok", identity="alice", groups=["sre-oncall"]),
                                        result_type=str)
            outcome = await asyncio.wait_for(handle.result(), timeout=30)
            assert outcome.status == "succeeded" and (await status(handle)).access_denials == current.access_denials

            events = [MessageToDict(e) for e in (await handle.fetch_history()).events]
    finally:
        recording.cancel()
        guard.install(None)

    signalled = [e["workflowExecutionSignaledEventAttributes"] for e in events
                 if e["eventType"] == EventType.Name(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)]
    denials = [json.loads(_payload_text(s["input"]["payloads"][0])) for s in signalled if s["signalName"] == "access_denied"]
    assert [(d["identity"], d["action"], d["rule"]) for d in denials] == [
        ("mallory", "pause", None), ("intern", "abort", "interns-never-abort"), ("eve", "approve", None)]
    assert all(d["runbook"] == "policy-gated" and d["target"]["namespace"] == "shop" for d in denials)
    # what Temporal itself records: the accepted update only; the three rejected ones left no update event
    update_events = [e["eventType"] for e in events if "UPDATE" in e["eventType"]]
    assert update_events == [EventType.Name(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),
                             EventType.Name(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)]


def _payload_text(payload: dict[str, str]) -> str:
    import base64

    return base64.b64decode(payload["data"]).decode()
