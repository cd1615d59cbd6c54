"""The pitstop API's routes for what is not a runbook run — `POST /api/v1/chaos` (start), `/chaos/<id>/abort`,
`/rightsizing` (start a RightsizingLoop) and `/schedules` (apply the schedules file) — on the real webhook process's
`serve`, the real Temporal dev server and the real policy evaluator: an allowed identity acts and its verified name
is what Temporal records (the start input's `started_by`, the abort signal, the schedule's details); an identity
outside the policy, a target the policy denies (one of several), an unknown or absent credential are refused, each
with an audit record, and nothing changes. The runs are started on a task queue nobody polls: what is checked is
who may start and what Temporal records (the CLI tests run them: test_chaos_experiments.py, test_capacity_loop.py).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from pitstop.capacity.closed_loop import LoopInput, LoopSettings
from pitstop.chaos.model import ChaosRequest, ChaosTarget
from pitstop.config import Settings
from pitstop.delivery.spec import ContainerResources
from pitstop.policy import parse_policy
from pitstop.workers import schedules
from tests.fixtures.pitstop_api import DEFAULT_USERS, TEST_POLICY, RunningApi, running_api

from .runbook_harness import TEST_RUNBOOKS

pytestmark = pytest.mark.integration

# operators may do everything but touch kube-system; `sched` may change the schedules of `hello` only
POLICY = TEST_POLICY.replace("  oncall: {description: on call}\n", "  oncall: {description: on call}\n  sched: {}\n") + """
  - {id: sched-hello, subjects: [group:sched], actions: [schedule.change], runbooks: [hello]}
  - {id: no-kube-system, effect: deny, subjects: ["*"], actions: ["*"], targets: {namespace: [kube-system]}}
"""


@pytest_asyncio.fixture
async def api(temporal_client: Client, pitstop_settings: Settings, tmp_path: Path) -> AsyncIterator[RunningApi]:
    nobody = pitstop_settings.temporal.model_copy(update={"task_queue": f"{pitstop_settings.temporal.task_queue}-nobody"})
    settings = pitstop_settings.model_copy(update={"runbooks_dir": TEST_RUNBOOKS, "temporal": nobody})
    async with running_api(temporal_client, settings, tmp_path / "api", users={**DEFAULT_USERS, "paula": ["sched"]},
                           policy=parse_policy(POLICY, source="POLICY")) as running:
        yield running


async def post(api: RunningApi, path: str, body: dict[str, Any], token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"{api.url}/api/v1/{path}", json=body, headers=headers)


def audits(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "pitstop.api.audit"]


async def refused(api: RunningApi, caplog: pytest.LogCaptureFixture, path: str, body: dict[str, Any],
                  *, action: str, runbook: str, by: str = "mallory", reason: str = "mallory (no groups) may not") -> None:
    """`by` (outside the policy), an unknown token and no token at all are refused, each audited."""
    before = len(audits(caplog))
    denied = await post(api, path, body, api.tokens[by])
    assert denied.status_code == 403 and reason in denied.json()["error"], (path, denied.text)
    unknown = await post(api, path, body, "pst_" + "0" * 40)
    assert unknown.status_code == 401, (path, unknown.text)
    absent = await post(api, path, body, None)
    assert absent.status_code == 401, (path, absent.text)
    records = audits(caplog)[before:]
    assert [(r["event"], r["subject"]) for r in records] == [
        ("access.denied", by), ("access.denied", None), ("access.denied", None)], records
    assert (records[0]["action"], records[0]["runbook"]) == (action, runbook), records[0]
    assert all(r["reason"] for r in records)


async def started_input(client: Client, workflow_id: str) -> dict[str, Any]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    payload = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    return dict(json.loads(payload.data))


async def test_chaos_start_and_abort(api: RunningApi, temporal_client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pitstop.api.audit")
    experiment = {"title": "api test", "description": "never runs", "method": []}
    shop = ChaosTarget(region="eu-central", namespace="shop", service="cart")
    request = ChaosRequest(experiment=experiment, targets=[shop]).model_dump(mode="json")
    run_id = f"chaos-api-{uuid.uuid4().hex[:6]}"
    await refused(api, caplog, "chaos", {"request": request, "id": run_id}, action="start", runbook="ChaosExperiment")
    both = ChaosRequest(experiment=experiment, targets=[shop, ChaosTarget(region="eu-central", namespace="kube-system",
                                                                          service="coredns")])
    denied = await post(api, "chaos", {"request": both.model_dump(mode="json"), "id": run_id}, api.tokens["alice"])
    assert denied.status_code == 403 and "no-kube-system" in denied.json()["error"], denied.text
    assert audits(caplog)[-1]["target"] == {"region": "eu-central", "namespace": "kube-system", "service": "coredns"}
    with pytest.raises(RPCError) as nothing:
        await temporal_client.get_workflow_handle(run_id).describe()
    assert nothing.value.status == RPCStatusCode.NOT_FOUND, "nothing was started"

    forged = {**request, "started_by": "bob"}
    started = await post(api, "chaos", {"request": forged, "id": run_id}, api.tokens["alice"])
    assert started.status_code == 200 and started.json()["workflow_id"] == run_id, started.text
    try:
        assert (await started_input(temporal_client, run_id))["started_by"] == "alice"
        await refused(api, caplog, f"chaos/{run_id}/abort", {"reason": "x"}, action="abort", runbook="ChaosExperiment")
        aborted = await post(api, f"chaos/{run_id}/abort", {"reason": "game day over"}, api.tokens["carol"])
        assert aborted.status_code == 200, aborted.text
        signals = [e.workflow_execution_signaled_event_attributes
                   for e in (await temporal_client.get_workflow_handle(run_id).fetch_history()).events
                   if e.HasField("workflow_execution_signaled_event_attributes")]
        assert [s.signal_name for s in signals] == ["abort"]
        assert json.loads(signals[0].input.payloads[0].data) == "game day over by carol"
        missing = await post(api, "chaos/no-such-run/abort", {}, api.tokens["carol"])
        assert missing.status_code == 404 and "no chaos run with id 'no-such-run'" in missing.json()["error"]
    finally:
        await temporal_client.get_workflow_handle(run_id).terminate("test over")
    allowed = [(r["subject"], r["action"], r["runbook"]) for r in audits(caplog) if r["event"] == "access.allowed"]
    assert allowed == [("alice", "start", "ChaosExperiment"), ("carol", "abort", "ChaosExperiment")], allowed


async def test_rightsizing_loop_start(api: RunningApi, temporal_client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pitstop.api.audit")
    service = f"svc-{uuid.uuid4().hex[:6]}"
    loop = LoopInput(service=service, namespace="shop", region="eu-central", team="shop", settings=LoopSettings(),
                     resources={"app": ContainerResources(requests={"cpu": "100m"})}).model_dump(mode="json")
    await refused(api, caplog, "rightsizing", loop, action="start", runbook="RightsizingLoop")
    system = await post(api, "rightsizing", {**loop, "namespace": "kube-system"}, api.tokens["bob"])
    assert system.status_code == 403 and "no-kube-system" in system.json()["error"], system.text
    started = await post(api, "rightsizing", {**loop, "started_by": "alice"}, api.tokens["bob"])
    assert started.status_code == 200, started.text
    workflow_id = f"rightsizing/eu-central/shop/{service}"
    assert started.json()["workflow_id"] == workflow_id and started.json()["started_by"] == "bob"
    try:
        assert (await started_input(temporal_client, workflow_id))["started_by"] == "bob"
        again = await post(api, "rightsizing", loop, api.tokens["bob"])
        assert again.status_code == 409 and "already running" in again.json()["error"], again.text
    finally:
        await temporal_client.get_workflow_handle(workflow_id).terminate("test over")


async def test_schedules_apply(api: RunningApi, temporal_client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pitstop.api.audit")
    hello, gated = f"api-hello-{uuid.uuid4().hex[:6]}", f"api-gated-{uuid.uuid4().hex[:6]}"
    text = (f"schedules:\n  - {{id: {hello}, owner: sre, runbook: hello, cron: '0 4 * * *'}}\n"
            f"  - {{id: {gated}, owner: sre, runbook: gated, cron: '0 5 * * *'}}\n")
    body = {"file": "schedules.yaml", "text": text}
    try:
        await refused(api, caplog, "schedules", body, action="schedule.change", runbook="hello")
        await refused(api, caplog, "schedules", body, action="schedule.change", runbook="gated", by="paula",
                      reason="paula (groups: sched) may not")
        invalid = await post(api, "schedules", {"text": text.replace("runbook: gated", "runbook: nope")},
                             api.tokens["alice"])
        assert invalid.status_code == 422 and "schedules.yaml:3" in invalid.json()["error"], invalid.text
        for schedule_id in (hello, gated):
            assert await schedules.describe(temporal_client, schedule_id) is None, "nothing was applied"
        applied = await post(api, "schedules", body, api.tokens["alice"])
        assert applied.status_code == 200 and applied.json()["applied_by"] == "alice", applied.text
        assert {(c["id"], c["kind"]) for c in applied.json()["changes"]} >= {(hello, "create"), (gated, "create")}
        described = await schedules.describe(temporal_client, gated)
        assert described is not None and "schedule applied by alice" in str(described.schedule.action.static_details)
    finally:
        for schedule_id in (hello, gated):
            if await schedules.describe(temporal_client, schedule_id) is not None:
                await temporal_client.get_schedule_handle(schedule_id).delete()
    allowed = [(r["subject"], r["runbook"]) for r in audits(caplog) if r["event"] == "access.allowed"]
    assert ("alice", "hello") in allowed and ("alice", "gated") in allowed, allowed
