"""pitstop on its production topology, as local processes: a real Temporal server (built from Go modules) on
PostgreSQL, two `pitstop worker` processes and two `pitstop webhook` replicas (`sandbox.production_topology`), the
workers pointed at the session's sandbox (real kube-apiservers + kwok, Prometheus, Alertmanager:
tests/fixtures/kube.py, tests/fixtures/monitoring.py). One topology serves the whole module.
Runbooks complete; a worker killed with SIGKILL mid-step loses nothing (the other worker takes the step over after a
missed heartbeat); the Temporal server killed with SIGKILL and started again on the same database lets runs in flight
finish; an alert accepted by a webhook replica that is then killed (while Temporal is down) reaches Temporal once
the replica and the server are back; the shipped `canary` runbook promotes a release analysed on the sandbox's
Prometheus; an Alertmanager notification posted to a webhook replica opens an incident whose remediation (scale-out)
runs on the cluster, and the `resolved` notification closes it as recovered."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from pitstop.config import SHIPPED_RUNBOOKS_DIR
from pitstop.incidents import IncidentPhase, IncidentStatus
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.traffic_routes import service_route_weights
from pitstop.sandbox.kube_objects import list_objects, merge_patch
from pitstop.sandbox.production_topology import ProductionTopology
from tests.fixtures.monitoring import SandboxMonitoring
from tests.integration.test_webhook_journal import alert, incident_of
from tests.sandbox.test_delivery_runbooks import image_of, routes_and_scale
from tests.sandbox.test_delivery_sandbox import service_named
from tests.sandbox.test_remediation_rungs import (CATALOG, SentAlert, _available, _deployment, acted, assert_recovered_by,
                                                  new_alert, wait_in_thread, wait_status)

pytestmark = [pytest.mark.integration, pytest.mark.sandbox]

TEST_RUNBOOKS = Path(__file__).resolve().parents[1] / "data" / "runbooks"
# us-east: the sandbox modules' canaries and incidents on the session's clusters act on other services there or in
# eu-central; each test here puts back what it changed
REGION = "us-east"
CANARY_SERVICE, INCIDENT_SERVICE = "token-service", "battery-analytics"


@pytest.fixture(scope="module")
def topology(sandbox_monitoring: SandboxMonitoring, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionTopology]:
    """The shipped runbooks and remediation catalog beside the test runbooks (debug steps on); Kubernetes, Prometheus
    and Alertmanager are the sandbox's."""
    started = time.monotonic()
    runbooks = tmp_path_factory.mktemp("topology-runbooks")
    shutil.copytree(SHIPPED_RUNBOOKS_DIR, runbooks, dirs_exist_ok=True)
    shutil.copytree(TEST_RUNBOOKS, runbooks, dirs_exist_ok=True)
    sm = sandbox_monitoring
    regions = {region: {"kubeconfig": str(sm.clusters.kubeconfig), "context": context}
               for region, context in sm.clusters.contexts.items()}
    topology = ProductionTopology(workers=2, webhooks=2, task_queue=f"topology-{uuid.uuid4().hex[:6]}", extra_env={
        "PITSTOP_RUNBOOKS_DIR": str(runbooks), "PITSTOP_WORKER__ENABLE_DEBUG_STEPS": "true",
        "PITSTOP_KUBERNETES__REGIONS": json.dumps(regions), "PITSTOP_PROMETHEUS__URL": sm.monitoring.prometheus_url,
        "PITSTOP_ALERTMANAGER__URL": sm.monitoring.alertmanager_url})
    try:
        topology.start()
        print(f"production topology up in {time.monotonic() - started:.1f}s (Temporal on PostgreSQL, 2 workers, 2 webhooks)")
        yield topology
    finally:
        topology.stop(remove_state=True)


@pytest_asyncio.fixture
async def client(topology: ProductionTopology) -> AsyncIterator[Client]:
    yield await Client.connect(topology.temporal.address, data_converter=pydantic_data_converter)


async def start(client: Client, topology: ProductionTopology, runbook: str, **inputs: object) -> str:
    workflow_id = f"{runbook}-{uuid.uuid4().hex[:8]}"
    await client.start_workflow(RUNBOOK_WORKFLOW, RunbookRequest(runbook=runbook, inputs=inputs, trigger="test", started_by="pytest"),
                                id=workflow_id, task_queue=topology.task_queue, result_type=RunbookOutcome)
    return workflow_id


async def outcome_of(client: Client, workflow_id: str, timeout: float = 120) -> RunbookOutcome:
    deadline = time.monotonic() + timeout
    handle = client.get_workflow_handle(workflow_id, result_type=RunbookOutcome)
    while time.monotonic() < deadline:
        try:
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                return await handle.result()
        except RPCError:
            pass  # the server is coming back
        time.sleep(0.3)
    pytest.fail(f"{workflow_id} still running after {timeout}s")


async def test_runbooks_complete_on_the_real_server(client: Client, topology: ProductionTopology) -> None:
    runs = [await start(client, topology, "fanout", items=[0.1] * 6) for _ in range(8)]
    outcomes = [await outcome_of(client, run) for run in runs]
    assert [o.status for o in outcomes] == ["succeeded"] * 8
    assert all(len(o.outputs["fan"]) == 6 for o in outcomes)


async def test_a_worker_killed_mid_step_loses_nothing(client: Client, topology: ProductionTopology, tmp_path: Path) -> None:
    record = tmp_path / "completions.txt"
    run = await start(client, topology, "long", seconds=6, record_to=str(record), service=f"svc-{uuid.uuid4().hex[:5]}")
    time.sleep(2.5)
    topology.worker_processes[0].kill()
    try:
        outcome = await outcome_of(client, run)
    finally:
        topology.worker_processes[0].start()
    assert outcome.status == "succeeded", outcome
    assert outcome.steps == {"prepare": "succeeded", "work": "succeeded", "after": "succeeded"}


async def test_server_restart_and_a_killed_webhook_replica_lose_no_run_and_no_alert(
    client: Client, topology: ProductionTopology, tmp_path: Path
) -> None:
    in_flight = await start(client, topology, "long", seconds=5, service=f"svc-{uuid.uuid4().hex[:5]}")
    time.sleep(1.5)
    topology.temporal.kill()  # kill -9 the server with a runbook step in flight
    fingerprint = uuid.uuid4().hex[:16]
    answer = httpx.post(topology.webhook_url(0), json=alert(fingerprint), timeout=10,
                        headers={"Authorization": f"Bearer {topology.webhook_token}"})
    assert answer.status_code == 200 and answer.json()["incidents"][0]["delivered"] == "accepted", answer.text
    topology.webhook_processes[0].kill()  # the alert is only in this replica's journal now
    topology.temporal.start()
    topology.webhook_processes[0].start()

    assert (await outcome_of(client, in_flight, timeout=180)).status == "succeeded"
    handle = client.get_workflow_handle(incident_of(fingerprint))
    deadline = time.monotonic() + 60
    while True:
        try:
            await handle.describe()
            break
        except RPCError:
            if time.monotonic() > deadline:
                pytest.fail(f"the alert journaled by the killed replica never reached Temporal (log {topology.webhook_processes[0].log_path})")
            time.sleep(0.5)


async def test_a_canary_release_is_promoted(client: Client, topology: ProductionTopology,
                                           sandbox_monitoring: SandboxMonitoring) -> None:
    """The shipped `canary` runbook: its release workflow analyses the canary on the sandbox's Prometheus every 2 s
    and shifts the live VirtualService route step by step; activities run on either worker (regional queue)."""
    service = service_named(sandbox_monitoring, CANARY_SERVICE)
    before = routes_and_scale(sandbox_monitoring, REGION, service)
    version = f"9.{uuid.uuid4().int % 100}.0"
    image = image_of(service, version)
    started = time.monotonic()
    run = await start(client, topology, "canary", service=service.name, namespace=service.team, region=REGION,
                      image=image, steps=[20, 50, 100], interval="2s", failure_threshold=2, warm_window="0s",
                      progress_deadline="2m")
    outcome = await outcome_of(client, run, timeout=180)
    print(f"\ncanary {service.name} -> {version} in {REGION} on the production topology: {outcome.status} "
          f"in {time.monotonic() - started:.1f}s")
    assert outcome.status == "succeeded", outcome
    release = outcome.outputs["release"]
    assert release["promoted"] is True and release["changed"] is True and release["failed_runs"] == 0, release
    after = routes_and_scale(sandbox_monitoring, REGION, service)
    assert after["image"] == image and after["version"] == version, after
    assert service_route_weights(after["http"], None) == {"stable": 100, "canary": 0}
    assert after["candidate"] is False and after["replicas"] == before["replicas"]


async def post_alert(topology: ProductionTopology, replica: int, sent: SentAlert, status: str) -> str:
    """One Alertmanager v4 notification (bearer token) to webhook replica `replica`; the incident it went to."""
    body = {"version": "4", "groupKey": f"{{}}:{{alertname=\"{sent.labels['alertname']}\"}}", "truncatedAlerts": 0,
            "status": status, "receiver": "pitstop", "groupLabels": {"alertname": sent.labels["alertname"]},
            "commonLabels": sent.labels, "commonAnnotations": sent.annotations, "externalURL": "http://alertmanager",
            "alerts": [sent.as_json(status)]}
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(topology.webhook_url(replica), json=body,
                                 headers={"Authorization": f"Bearer {topology.webhook_token}"})
    assert answer.status_code == 200, answer.text
    [delivered] = answer.json()["incidents"]
    assert delivered["status"] == status and delivered["delivered"] in ("signalled", "accepted"), delivered
    return str(delivered["incident"])


async def test_an_incident_is_remediated_and_closed(client: Client, topology: ProductionTopology,
                                                   sandbox_monitoring: SandboxMonitoring) -> None:
    """A `Saturation` alert posted to one webhook replica opens an incident; the catalog's `scale-out` rung scales the
    Deployment to its quota on the cluster; the `resolved` notification, posted to the other replica, closes it."""
    api = sandbox_monitoring.api_clients[REGION]
    service = service_named(sandbox_monitoring, INCIDENT_SERVICE)
    namespace, name = service.team, service.name
    [scale_out] = next(r for r in CATALOG.rules if r.name == "saturated-service").ladder
    quota = int(scale_out.inputs["max_replicas"])
    before = int(_deployment(api, namespace, name)["spec"]["replicas"])
    assert before < quota
    pods, _ = list_objects(api, kind="Pod", namespace=namespace, label_selector=f"app={name}")
    pod = pods[0]["metadata"]["name"]
    sent = new_alert({"alertname": "Saturation", "severity": "warning", "region": REGION, "namespace": namespace,
                      "team": namespace, "pod": pod, "container": pods[0]["spec"]["containers"][0]["name"]},
                     {"summary": f"{namespace}/{pod} in {REGION} uses 98% of its CPU limit"})
    started = datetime.now(UTC)
    try:
        incident = await post_alert(topology, 1, sent, "firing")
        status = await wait_status(client.get_workflow_handle(incident), acted, "the scale-out action")
        assert [a.status for a in status.actions] == ["succeeded"], [f"{e.kind}: {e.message}" for e in status.timeline]
        assert _available(api, namespace, name, quota), _deployment(api, namespace, name).get("status")
        assert await post_alert(topology, 0, sent, "resolved") == incident
        final = await asyncio.wait_for(client.get_workflow_handle(incident, result_type=IncidentStatus).result(), 120)
        print(f"\nincident {incident} on the production topology: {final.phase.value} "
              f"in {(datetime.now(UTC) - started).total_seconds():.1f}s")
        assert final.phase == IncidentPhase.RECOVERED
        assert_recovered_by(final, rule="saturated-service", rung="scale-out", runbook="remediate-scale-out")
        assert final.target is not None and final.target.key == f"{REGION}/{namespace}/{name}", final.target
    finally:
        merge_patch(api, kind="Deployment", name=name, namespace=namespace, patch={"spec": {"replicas": before}})
        await wait_in_thread(f"{namespace}/{name} back at {before} replicas", lambda: _available(api, namespace, name, before))
