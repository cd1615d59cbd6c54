"""The access policy re-checked by a runbook's update validators on real Temporal: an identity outside the
policy is refused (pause, approve) with who/what/why in the error and, through the worker's `access_denied`
signal, in the run's history; an allowed identity passes and the run completes. The same for an incident's
approval (recorded in the incident's timeline), with the webhook stack of test_webhook."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from pitstop.config import Settings
from pitstop.delivery.inputs import ReleaseInput
from pitstop.delivery.models import ApproveRequest, RollbackRequest
from pitstop.delivery.spec import RELEASE_WORKFLOW, ReleaseSpec
from pitstop.incidents import ApprovalDecision as IncidentDecision
from pitstop.incidents import IncidentPhase, IncidentStatus
from pitstop.policy import guard
from pitstop.policy.guard import ACCESS_DENIED
from pitstop.runbook.run_state import ApprovalDecision, ControlRequest, Phase
from tests.fixtures.temporal import running_worker
from pitstop.workers.access_audit import install_policy
from pitstop.workflows.delivery import ProgressiveRelease

from .runbook_harness import engine, start, status, wait_until
from .test_incident_escalation import use_catalog
from .test_webhook import Stack, alert_payload, fp, post, stack, wait_for_phase  # noqa: F401 - `stack` is a fixture

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


INCIDENT_POLICY = """
groups:
  sre-oncall: {}
rules:
  - id: oncall-decides-shop-incidents
    subjects: [group:sre-oncall]
    actions: [incident.approve]
    runbooks: [incident]
    targets: {namespace: shop}
"""


async def test_incident_approval_outside_the_policy_is_refused_and_in_the_timeline(
    stack: Stack, tmp_path: Path,  # noqa: F811 - the fixture imported from test_webhook
) -> None:
    """`bob` is in the catalog rule's approvers but the policy lets only the on-call group decide shop's incidents."""
    use_catalog(stack)
    policy_file = tmp_path / "incident-policy.yaml"
    policy_file.write_text(INCIDENT_POLICY)
    settings = stack.settings.model_copy(update={"security": stack.settings.security.model_copy(
        update={"policy_file": policy_file})})
    recorder = install_policy(settings, stack.client)
    assert recorder is not None
    recording = asyncio.create_task(recorder.run())
    try:
        fingerprint = fp()
        # a service of its own: the target's remediation budget workflow outlives the test, on this test's task queue
        labels: dict[str, Any] = {"severity": "critical", "service": "payments-policy", "namespace": "shop",
                                  "region": "eu"}
        response = await post(stack, alert_payload(fingerprint=fingerprint, **labels))
        incident = response.json()["incidents"][0]["incident"]
        await wait_for_phase(stack, incident, {IncidentPhase.WAITING_FOR_APPROVAL})
        handle = stack.client.get_workflow_handle(incident, result_type=IncidentStatus)

        reason = await refused(handle.execute_update("approve", IncidentDecision(approved=True, identity="bob")))
        assert reason == ("bob (no groups) may not incident.approve on runbook 'incident' "
                          "(namespace=shop, service=payments-policy, region=eu): no rule allows it (default deny)")
        for _ in range(100):  # the worker signals the refusal to the incident: bounded wait for its timeline entry
            current = await handle.query("status", result_type=IncidentStatus)
            if any(e.kind == "access-denied" for e in current.timeline):
                break
            await asyncio.sleep(0.1)
        assert [e.message for e in current.timeline if e.kind == "access-denied"] == [reason]
        assert current.phase == IncidentPhase.WAITING_FOR_APPROVAL and current.actions == []

        verb = await handle.execute_update(
            "approve", IncidentDecision(approved=True, identity="alice", groups=["sre-oncall"]), result_type=str)
        assert verb == "approved"
        acting = await wait_for_phase(stack, incident, {IncidentPhase.VERIFYING})
        assert [a.status for a in acting.actions] == ["succeeded"]
        await post(stack, alert_payload(fingerprint=fingerprint, status="resolved", **labels))
        assert (await asyncio.wait_for(handle.result(), timeout=60)).phase == IncidentPhase.RECOVERED
    finally:
        recording.cancel()
        guard.install(None)


RELEASE_POLICY = """
groups:
  release-managers: {}
rules:
  - id: release-managers-shop-eu
    subjects: [group:release-managers]
    actions: [release.promote, release.rollback]
    runbooks: [release]
    targets: {namespace: shop, region: "eu-*"}
"""


async def test_release_updates_outside_the_policy_are_refused(
    temporal_client: Client, task_queue: str, pitstop_settings: Settings, tmp_path: Path,
) -> None:
    """A release's `rollback`/`promote` validators check the policy on runbook `release` and the release's target
    before anything else. Nobody serves the region's activity queue: the release waits at its first cluster step,
    which is all the validators need."""
    policy_file = tmp_path / "release-policy.yaml"
    policy_file.write_text(RELEASE_POLICY)
    settings = pitstop_settings.model_copy(update={"security": pitstop_settings.security.model_copy(
        update={"policy_file": policy_file})})
    recorder = install_policy(settings, temporal_client)
    assert recorder is not None
    recording = asyncio.create_task(recorder.run())
    spec = ReleaseSpec.model_validate({"service": "web", "namespace": "shop", "image": "registry.example/web:v2"})
    try:
        async with running_worker(temporal_client, task_queue=task_queue, workflows=[ProgressiveRelease]):
            handle = await temporal_client.start_workflow(
                RELEASE_WORKFLOW, ReleaseInput(release=spec, region="eu-central", lease=False),
                id=f"release-policy-{task_queue}", task_queue=task_queue)
            for _ in range(100):  # bounded: until the first workflow task ran (`begin` set the target)
                if await handle.query("phase") is not None:
                    break
                await asyncio.sleep(0.1)

            reason = await refused(handle.execute_update("rollback", RollbackRequest(identity="mallory")))
            assert reason == ("mallory (no groups) may not release.rollback on runbook 'release' "
                              "(namespace=shop, service=web, region=eu-central): no rule allows it (default deny)")
            # allowed by the policy: the next check speaks (this release has no promotion gate)
            with pytest.raises(WorkflowUpdateFailedError) as caught:
                await handle.execute_update("promote", ApproveRequest(identity="rm", groups=["release-managers"]))
            cause = caught.value.cause
            assert isinstance(cause, ApplicationError) and cause.type != ACCESS_DENIED
            assert cause.message == "this release has no manual promotion gate"

            for _ in range(100):  # the worker's access_denied signal reaches the history
                events = (await handle.fetch_history()).events
                names = [e.workflow_execution_signaled_event_attributes.signal_name for e in events
                         if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
                if names:
                    break
                await asyncio.sleep(0.1)
            assert names == ["access_denied"]
            await handle.terminate("test over")
    finally:
        recording.cancel()
        guard.install(None)
