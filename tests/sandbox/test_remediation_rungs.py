"""The remediation catalog's scale-out and cordon rungs, end to end on the real components (the failing-region
rung, a failover, is tests/sandbox/test_failover.py's).

One real pitstop worker (real activities, the runbook interpreter) and the real alert webhook serve the
tests, against the session's real Temporal dev server and the real kwok-backed kube-apiservers. Each test
POSTs an Alertmanager v4 notification (bearer token) for the alert its rule matches, lets the Incident
workflow plan and run the rung, checks the change on the kube-apiserver, then POSTs the `resolved`
notification and checks the incident closes as recovered with the action on its timeline. Each test puts
back what it changed (replicas, the node's schedulability).

Real Alertmanager delivery to the webhook is covered by test_incident_remediation.py; here the
notifications are synthetic but shaped like the sandbox's alert rules produce them.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from kubernetes.client import ApiClient
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from pitstop.activities import build_activities
from pitstop.config import SHIPPED_RUNBOOKS_DIR, Settings
from pitstop.incidents import ApprovalDecision, IncidentPhase, IncidentStatus
from pitstop.remediation import Rule, load_catalog
from pitstop.sandbox.faults import NodeNotReady, clear_fault, inject_fault
from pitstop.sandbox.kube_objects import get_object, list_objects, merge_patch
from pitstop.workers.clients import build_activity_clients
from pitstop.workers.devserver import DevServer
from pitstop.workers.webhook import serve
from pitstop.workers.worker import build_workers

from tests.fixtures.monitoring import SandboxMonitoring

pytestmark = pytest.mark.sandbox

# us-east: the other incident modules act in eu-central. A service's circuit breaker (`RemediationBudget`,
# idle for an hour after its last action) and lease are keyed region/namespace/service and run on the task
# queue of whoever started them, so modules with their own workers must not share a target.
REGION = "us-east"
ACTION_TIMEOUT = 180.0
CATALOG = load_catalog(SHIPPED_RUNBOOKS_DIR / "remediation-catalog.yaml")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rule(name: str) -> Rule:
    return next(r for r in CATALOG.rules if r.name == name)


@dataclass
class Stack:
    """The shared pitstop worker + webhook of this module."""

    client: Client
    settings: Settings
    url: str
    token: str
    monitoring: SandboxMonitoring

    def api(self, region: str = REGION) -> ApiClient:
        return self.monitoring.api_clients[region]


@pytest_asyncio.fixture(scope="module")
async def stack(sandbox_monitoring: SandboxMonitoring, temporal_server: DevServer, temporal_client: Client,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    sm = sandbox_monitoring
    token, port = secrets.token_urlsafe(16), _free_port()
    settings = Settings.model_validate({
        "state_dir": tmp_path_factory.mktemp("rungs-state"),
        "temporal": {"address": temporal_server.address, "task_queue": f"rungs-{uuid.uuid4().hex[:8]}",
                     "ui_port": temporal_server.ports.ui},
        "worker": {"metrics_port": 0},
        "kubernetes": {"regions": {region: {"kubeconfig": sm.clusters.kubeconfig, "context": context}
                                   for region, context in sm.clusters.contexts.items()}},
        "prometheus": {"url": sm.monitoring.prometheus_url},
        "webhook": {"token": token, "listen": f"127.0.0.1:{port}"},
    })
    clients = build_activity_clients(settings, temporal=temporal_client, require_clusters=True)
    activity_set = build_activities(clients)
    ready, stop = asyncio.Event(), asyncio.Event()
    with ThreadPoolExecutor(max_workers=64) as executor:
        workers = build_workers(client=temporal_client, settings=settings, activity_set=activity_set, executor=executor)
        async with contextlib.AsyncExitStack() as exit_stack:
            for worker in workers:
                await exit_stack.enter_async_context(worker)
            webhook = asyncio.create_task(serve(settings, client=temporal_client, ready=ready, stop=stop, port=port))
            try:
                await asyncio.wait_for(ready.wait(), 30)
                yield Stack(client=temporal_client, settings=settings, url=f"http://127.0.0.1:{port}/alerts",
                            token=token, monitoring=sm)
            finally:
                stop.set()
                await asyncio.wait_for(webhook, 30)
    for api in clients.kube.values():
        api.close()


# ---------------------------------------------------------------- alerts in, incidents out


@dataclass
class SentAlert:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    fingerprint: str
    generator_url: str = ""

    def as_json(self, status: str) -> dict[str, Any]:
        ends = datetime.now(UTC).isoformat() if status == "resolved" else "0001-01-01T00:00:00Z"
        return {"status": status, "labels": self.labels, "annotations": self.annotations,
                "startsAt": self.starts_at.isoformat(), "endsAt": ends, "generatorURL": self.generator_url,
                "fingerprint": self.fingerprint}


def new_alert(labels: dict[str, str], annotations: dict[str, str], generator_url: str = "") -> SentAlert:
    return SentAlert(labels=labels, annotations=annotations, starts_at=datetime.now(UTC).replace(microsecond=0),
                     fingerprint=secrets.token_hex(8), generator_url=generator_url)


async def post(stack: Stack, alert: SentAlert, status: str) -> str:
    """POST one v4 notification with the bearer token, as Alertmanager's webhook receiver does; the incident id."""
    body = {"version": "4", "groupKey": f"{{}}:{{alertname=\"{alert.labels['alertname']}\"}}", "truncatedAlerts": 0,
            "status": status, "receiver": "pitstop", "groupLabels": {"alertname": alert.labels["alertname"]},
            "commonLabels": alert.labels, "commonAnnotations": alert.annotations, "externalURL": "http://alertmanager",
            "alerts": [alert.as_json(status)]}
    async with httpx.AsyncClient(timeout=30) as http:
        unauthenticated = await http.post(stack.url, json=body)
        assert unauthenticated.status_code == 401, unauthenticated.text
        response = await http.post(stack.url, json=body, headers={"Authorization": f"Bearer {stack.token}"})
    assert response.status_code == 200, response.text
    [delivered] = response.json()["incidents"]
    # `signalled` (delivered to Temporal before the answer) or `accepted` (journaled, forwarded right after)
    assert delivered["status"] == status and delivered["delivered"] in ("signalled", "accepted"), delivered
    return str(delivered["incident"])


async def query_status(handle: WorkflowHandle[Any, Any], timeout: float = 30.0) -> IncidentStatus:
    """The incident's `status`, waiting for the workflow to exist (the webhook may forward after answering)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await handle.query("status", result_type=IncidentStatus)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


async def wait_status(handle: WorkflowHandle[Any, Any], predicate: Callable[[IncidentStatus], bool], what: str,
                      timeout: float = ACTION_TIMEOUT) -> IncidentStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = await query_status(handle)
        if predicate(status):
            return status
        assert time.monotonic() < deadline, (
            f"incident {status.incident_id}: {what} did not happen within {timeout:.0f}s; phase {status.phase.value}, "
            f"timeline: {[f'{e.kind}: {e.message}' for e in status.timeline]}")
        await asyncio.sleep(0.5)


def acted(status: IncidentStatus) -> bool:
    return any(a.status != "running" for a in status.actions if not a.dry_run)


async def resolve_and_close(stack: Stack, alert: SentAlert, incident: str) -> IncidentStatus:
    """POST the `resolved` notification; the incident's final status (awaited from the workflow result)."""
    assert await post(stack, alert, "resolved") == incident
    handle = stack.client.get_workflow_handle(incident, result_type=IncidentStatus)
    return await asyncio.wait_for(handle.result(), 120)


def assert_recovered_by(final: IncidentStatus, *, rule: str, rung: str, runbook: str) -> None:
    timeline = [f"{e.kind}: {e.message}" for e in final.timeline]
    assert final.phase == IncidentPhase.RECOVERED, (final.phase, final.outcome, timeline)
    assert final.rule == rule and final.outcome == "recovered by automation", (final.rule, final.outcome)
    [action] = final.actions
    assert (action.rung, action.runbook, action.status, action.dry_run, action.recovered) == (
        rung, runbook, "succeeded", False, True), action
    assert final.first_action_at is not None and final.resolved_at is not None
    kinds = [e.kind for e in final.timeline]
    assert kinds[0] == "alert" and "plan" in kinds and "recovered" in kinds and kinds[-1] == "closed", timeline
    assert any(e.kind == "action" and e.message == f"running {rung}: runbook {runbook}" for e in final.timeline), timeline
    assert any(e.kind == "action" and e.message.startswith(f"{rung} succeeded") for e in final.timeline), timeline


async def wait_in_thread(what: str, predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f}s"
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------- saturated-service -> scale-out


def _deployment(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    dep = get_object(api, kind="Deployment", name=name, namespace=namespace)
    assert dep is not None, f"Deployment {namespace}/{name} is missing"
    return dep


def _available(api: ApiClient, namespace: str, name: str, replicas: int) -> bool:
    dep = _deployment(api, namespace, name)
    status = dep.get("status") or {}
    return (dep["spec"]["replicas"] == replicas and status.get("availableReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas
            and status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 1))


async def test_saturation_scales_the_service_out_to_its_quota(stack: Stack) -> None:
    """Alertmanager groups Saturation by pod: one notification, hence one incident, per pod of the service.
    Exactly one of them scales the Deployment out; the other waits (lease, then breaker coalescing) and
    closes as resolved without stacking a second action."""
    api = stack.api()
    [scale_out] = _rule("saturated-service").ladder
    max_replicas = int(scale_out.inputs["max_replicas"])
    # the last plain service: test_incident_remediation takes the first one
    service = [s for s in stack.monitoring.services if not s.canary_version and 2 <= s.replicas < max_replicas][-1]
    namespace, name = service.team, service.name
    before = int(_deployment(api, namespace, name)["spec"]["replicas"])
    pods, _ = list_objects(api, kind="Pod", namespace=namespace, label_selector=f"app={name}")
    assert len(pods) == before >= 2, [p["metadata"]["name"] for p in pods]
    alerts = [
        new_alert({"alertname": "Saturation", "severity": "warning", "region": REGION, "namespace": namespace,
                   "team": namespace, "pod": pod["metadata"]["name"], "container": pod["spec"]["containers"][0]["name"]},
                  {"summary": f"{namespace}/{pod['metadata']['name']} in {REGION} uses 98% of its CPU limit",
                   "runbook": "scale-out"})
        for pod in pods
    ]
    try:
        incidents = [await post(stack, alert, "firing") for alert in alerts]
        handles = [stack.client.get_workflow_handle(incident) for incident in incidents]
        deadline = time.monotonic() + ACTION_TIMEOUT
        while True:
            statuses = [await query_status(h) for h in handles]
            if any(acted(s) for s in statuses):
                break
            assert time.monotonic() < deadline, [[f"{e.kind}: {e.message}" for e in s.timeline] for s in statuses]
            await asyncio.sleep(0.5)
        for status in statuses:
            assert status.rule == "saturated-service", status.rule
            assert status.target is not None and status.target.key == f"{REGION}/{namespace}/{name}", status.target
        assert sorted(len(s.actions) for s in statuses) == [0] * (len(statuses) - 1) + [1], statuses
        [acting] = [s for s in statuses if s.actions]
        assert acting.actions[0].status == "succeeded", [f"{e.kind}: {e.message}" for e in acting.timeline]

        dep = _deployment(api, namespace, name)
        assert before < dep["spec"]["replicas"] <= max_replicas, (before, dep["spec"]["replicas"])
        assert dep["spec"]["replicas"] == max_replicas  # the rung scales straight to the quota
        assert _available(api, namespace, name, max_replicas), dep.get("status")

        finals = {}
        for alert, incident in zip(alerts, incidents, strict=True):
            finals[incident] = await resolve_and_close(stack, alert, incident)
        final = finals.pop(acting.incident_id)
        assert_recovered_by(final, rule="saturated-service", rung="scale-out", runbook="remediate-scale-out")
        action = next(e for e in final.timeline if e.kind == "action")
        assert action.data["inputs"] == {"service": name, "namespace": namespace, "region": REGION,
                                         "max_replicas": max_replicas}
        assert f"from {before} to {max_replicas} replicas" in final.actions[0].summary, final.actions[0].summary
        for other in finals.values():
            assert (other.phase, other.actions) == (IncidentPhase.RESOLVED, []), [
                f"{e.kind}: {e.message}" for e in other.timeline]
        assert _deployment(api, namespace, name)["spec"]["replicas"] == max_replicas, "a second action changed it"
    finally:
        merge_patch(api, kind="Deployment", name=name, namespace=namespace, patch={"spec": {"replicas": before}})
        await wait_in_thread(f"{namespace}/{name} back at {before} replicas",
                             lambda: _available(api, namespace, name, before))


async def test_saturation_of_a_service_already_at_its_quota_escalates_at_once(stack: Stack) -> None:
    """Scaling out cannot help a service that already runs at its quota: the rung fails with the reason and the
    incident escalates right away, instead of waiting `recovery_deadline` (5m) for a recovery that cannot come."""
    api = stack.api()
    [scale_out] = _rule("saturated-service").ladder
    max_replicas = int(scale_out.inputs["max_replicas"])
    plain = [s for s in stack.monitoring.services if not s.canary_version and 1 <= s.replicas < max_replicas]
    service = plain[-2]  # [-1] is the scale-out test's, [0] test_incident_remediation's
    namespace, name = service.team, service.name
    before = int(_deployment(api, namespace, name)["spec"]["replicas"])
    merge_patch(api, kind="Deployment", name=name, namespace=namespace, patch={"spec": {"replicas": max_replicas}})
    try:
        await wait_in_thread(f"{namespace}/{name} at its quota of {max_replicas}",
                             lambda: _available(api, namespace, name, max_replicas))
        pods, _ = list_objects(api, kind="Pod", namespace=namespace, label_selector=f"app={name}")
        pod = pods[0]
        alert = new_alert({"alertname": "Saturation", "severity": "warning", "region": REGION, "namespace": namespace,
                           "team": namespace, "pod": pod["metadata"]["name"]},
                          {"summary": f"{namespace}/{pod['metadata']['name']} uses 99% of its CPU limit"})
        began = time.monotonic()
        incident = await post(stack, alert, "firing")
        handle = stack.client.get_workflow_handle(incident)
        status = await wait_status(handle, lambda st: st.phase == IncidentPhase.ESCALATED, "escalation", timeout=120)
        took = time.monotonic() - began
        timeline = [f"{e.kind}: {e.message}" for e in status.timeline]
        [action] = status.actions
        assert (action.rung, action.status) == ("scale-out", "failed"), (action, timeline)
        assert f"already runs {max_replicas} replicas, its quota is {max_replicas}" in action.summary, action.summary
        assert status.outcome is not None and status.outcome.startswith("escalated"), status.outcome
        assert took < 120 and not any(e.kind == "verification" for e in status.timeline), timeline
        assert _deployment(api, namespace, name)["spec"]["replicas"] == max_replicas  # nothing was changed
        print(f"\nat quota: alert posted -> escalated in {took:.1f}s")
        final = await resolve_and_close(stack, alert, incident)
        assert final.phase == IncidentPhase.RESOLVED, (final.phase, [f"{e.kind}: {e.message}" for e in final.timeline])
    finally:
        merge_patch(api, kind="Deployment", name=name, namespace=namespace, patch={"spec": {"replicas": before}})
        await wait_in_thread(f"{namespace}/{name} back at {before} replicas",
                             lambda: _available(api, namespace, name, before))


# ---------------------------------------------------------------- bad-node -> cordon


def _ready_condition(api: ApiClient, node: str) -> str:
    found = get_object(api, kind="Node", name=node, namespace=None) or {}
    return next((c.get("status", "") for c in (found.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready"), "")


def _unschedulable(api: ApiClient, node: str) -> bool:
    found = get_object(api, kind="Node", name=node, namespace=None)
    assert found is not None, f"node {node} is missing"
    return bool((found.get("spec") or {}).get("unschedulable"))


async def test_node_not_ready_cordons_the_node(stack: Stack) -> None:
    api = stack.api()
    nodes, _ = list_objects(api, kind="Node", label_selector="type=kwok")
    node = sorted(n["metadata"]["name"] for n in nodes)[-1]
    assert not _unschedulable(api, node), f"{node} is already cordoned"
    labels = {"alertname": "NodeNotReady", "severity": "warning", "region": REGION, "node": node}
    alert = new_alert(labels, {"summary": f"node {node} in {REGION} is NotReady"})
    fault = inject_fault(api_client=api, fault=NodeNotReady(node=node))  # kwok reports the node NotReady
    try:
        await wait_in_thread(f"{node} NotReady", lambda: _ready_condition(api, node) == "False", timeout=60)
        incident = await post(stack, alert, "firing")
        handle = stack.client.get_workflow_handle(incident)
        status = await wait_status(handle, acted, "the cordon action")
        assert [a.status for a in status.actions] == ["succeeded"], [(e.kind, e.message) for e in status.timeline]
        assert _unschedulable(api, node), f"{node} was not cordoned"

        final = await resolve_and_close(stack, alert, incident)
        assert_recovered_by(final, rule="bad-node", rung="cordon", runbook="remediate-cordon-node")
        assert final.target is not None and final.target.key == f"{REGION}/nodes/{node}"
        assert final.actions[0].summary == f"cordoned node {node} in {REGION}", final.actions[0].summary
        # evidence follows the target's kind: the node's own conditions and pods, not a Deployment's
        evidence = final.evidence
        assert evidence.get("kind") == "Node" and evidence.get("node") == node, evidence
        assert {"type": "Ready", "status": "False"}.items() <= next(
            c for c in evidence["conditions"] if c["type"] == "Ready").items(), evidence["conditions"]
        assert f"node {node} in {REGION}: Ready=False" in evidence["summary"], evidence["summary"]
        assert not any(e.kind == "evidence" and "unavailable" in e.message for e in final.timeline), final.timeline
    finally:
        clear_fault(api_client=api, fault_id=fault.id)
        merge_patch(api, kind="Node", name=node, namespace=None, patch={"spec": {"unschedulable": None}})
        await wait_in_thread(f"{node} Ready again", lambda: _ready_condition(api, node) == "True", timeout=60)
        assert not _unschedulable(api, node)
