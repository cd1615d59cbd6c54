"""Incident ladder exhaustion and escalation, and PromQL recovery, on real components.

Everything is real: the Temporal dev server, pitstop's worker (real activities) and alert webhook (uvicorn),
the two-region kube sandbox (kube-apiserver, controller-manager, scheduler, kwok), the traffic simulator and
Prometheus. The alert itself is a synthetic Alertmanager v4 POST to pitstop's webhook (real Alertmanager
delivery is proven in test_incident_remediation.py); the remediation catalog is a test file in tmp_path
next to a copy of the shipped `remediate-restart` runbook.

- A crash loop that persists (the fault is never cleared; new pods are labelled again once their rollout
  completes, as a crash-looping image would do): the incident runs `restart`, does not recover within the
  deadline, runs `restart-again`, does not recover, then escalates exactly once through the catalog's pager
  webhook (URL and token by env var name) with evidence read from the real kube-apiserver: the service's
  pods in CrashLoopBackOff with their restart counts, and the kwok BackOff events. No secret in the payload
  or the workflow history; the postmortem draft lists both rungs and the escalation.
- The same rule, when the crash loop stops after the first rung: the rung's `recovered_when` PromQL holds on
  the real Prometheus, the incident counts as recovered by `restart` and never runs `restart-again`.
- A `recovered_when` the real Prometheus answers with one series per pod (not one number): the check is
  inconclusive (said once in the timeline), the ladder runs out and the incident pages; it does not fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import shutil
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from kubernetes.client import ApiClient
from temporalio.client import Client

from pitstop.activities import build_activities
from pitstop.config import Settings
from pitstop.incidents import IncidentPhase, IncidentStatus, postmortem_markdown
from pitstop.remediation import CATALOG_FILE
from pitstop.sandbox.faults import CrashLoop, clear_fault, inject_fault, reconcile_fault_labels
from pitstop.sandbox.fleet import ServiceSpec
from pitstop.sandbox.kube_objects import get_object, list_objects, sandbox_kube
from tests.fixtures.monitoring import AlertWebhookReceiver, ReceivedWebhook, SandboxMonitoring
from tests.fixtures.worker_reach import TEST_SECURITY_SETTINGS
from pitstop.workers.clients import build_activity_clients
from pitstop.workers.webhook import serve
from pitstop.workers.worker import build_workers

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
REGION = "eu-central"
PAGER_URL_ENV = "PITSTOP_TEST_ESCALATION_PAGER_URL"
PAGER_TOKEN_ENV = "PITSTOP_TEST_ESCALATION_PAGER_TOKEN"
POD_REGEX = r"^([a-z0-9][a-z0-9-]*?)-[a-z0-9]{6,10}-[a-z0-9]{5}$"  # as runbooks/remediation-catalog.yaml
CRASH_INTERVAL_SECONDS = 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _crash_looping_now(region: str, namespace: str, container: str) -> str:
    return (f'sum(kube_pod_container_status_waiting_reason{{reason="CrashLoopBackOff", region="{region}", '
            f'namespace="{namespace}", container="{container}"}})')


# value 1 once no container of the service is in CrashLoopBackOff (0 while one is; no data: no pods)
RECOVERED_WHEN = _crash_looping_now("${target.region}", "${target.namespace}", "${target.service}") + " == bool 0"


def catalog(*, recovery_deadline_seconds: float, recovered_when: str = RECOVERED_WHEN,
            rungs: tuple[str, ...] = ("restart", "restart-again")) -> dict[str, Any]:
    """A one-rule catalog: CrashLooping -> restart -> restart-again, recovered when no container crash-loops."""
    inputs = {"service": "${target.service}", "namespace": "${target.namespace}", "region": "${target.region}"}
    return {
        "defaults": {
            "policy": {"max_actions_per_hour": 10, "on_lease_busy": "wait", "lease_wait_timeout": "60s"},
            "recovery_deadline": f"{recovery_deadline_seconds:g}s",
            "poll_interval": "1s",
            "gather_evidence": True,
            "max_incident_duration": "10m",
            "escalation": {"url_env": PAGER_URL_ENV, "token_env": PAGER_TOKEN_ENV},
        },
        "rules": [{
            "name": "crash-looping-pods",
            "match": {"alertname": "CrashLooping"},
            "target": {"service": {"label": "pod", "regex": POD_REGEX},
                       "namespace": {"label": "namespace"}, "region": {"label": "region"}},
            "recovered_when": recovered_when,
            "ladder": [{"name": rung, "runbook": "remediate-restart", "inputs": inputs} for rung in rungs],
        }],
    }


def pods_of(api: ApiClient, namespace: str, service: str) -> list[dict[str, Any]]:
    pods, _ = list_objects(api, kind="Pod", namespace=namespace, label_selector=f"app={service}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def crash_looping(pod: dict[str, Any]) -> bool:
    return any(((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
               for cs in (pod.get("status") or {}).get("containerStatuses") or [])


def revision(api: ApiClient, namespace: str, name: str) -> int:
    dep = get_object(api, kind="Deployment", name=name, namespace=namespace) or {}
    return int(((dep.get("metadata") or {}).get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))


def rollout_complete(api: ApiClient, namespace: str, name: str) -> bool:
    dep = get_object(api, kind="Deployment", name=name, namespace=namespace) or {}
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    replicas = spec.get("replicas", 1)
    return (status.get("observedGeneration", 0) >= (dep.get("metadata") or {}).get("generation", 1)
            and status.get("updatedReplicas", 0) == replicas == status.get("replicas", 0))


async def until(what: str, check: Callable[[], Any], *, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@dataclass
class CrashLoopFault:
    fault_id: str
    pod: str  # a pod of the service in CrashLoopBackOff, as the kube-apiserver reports it
    relabelling: threading.Event  # set: stop labelling new pods


@contextlib.asynccontextmanager
async def persistent_crash_loop(api: ApiClient, service: ServiceSpec) -> AsyncIterator[CrashLoopFault]:
    """Inject a crash loop that survives restarts (new pods are labelled again once their rollout completes);
    entered once a pod of the service is in CrashLoopBackOff.

    `sandbox.faults` labels pods at inject time only; a crash-looping image crashes in every new pod too.
    Labelling only after the rollout completed mirrors a container that starts, passes readiness, then
    crashes, and keeps the rung's `kubernetes.wait_for_rollout` from waiting on a pod that already crashed.
    """
    namespace, name = service.team, service.name
    fault = await asyncio.to_thread(inject_fault, api_client=api, fault=CrashLoop(
        # every version: a delivery test earlier in the session may have promoted a newer one than the fleet spec's
        service=name, version=None, restart_interval_seconds=CRASH_INTERVAL_SECONDS))
    stop = threading.Event()

    def relabel() -> None:
        while not stop.wait(0.5):
            try:
                if rollout_complete(api, namespace, name):
                    reconcile_fault_labels(api_client=api)
            except Exception as exc:  # noqa: BLE001 - keep relabelling; a transient API error is retried
                print(f"crash-loop relabel: {exc}", flush=True)

    thread = threading.Thread(target=relabel, daemon=True)
    thread.start()
    try:
        crashing = await until(f"a pod of {name} in CrashLoopBackOff",
                               lambda: [p for p in pods_of(api, namespace, name) if crash_looping(p)], timeout=90)
        yield CrashLoopFault(fault_id=fault.id, pod=crashing[0]["metadata"]["name"], relabelling=stop)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 10)
        await asyncio.to_thread(clear_fault, api_client=api, fault_id=fault.id)


def alert_payload(*, pod: str, namespace: str, container: str, region: str, starts_at: datetime,
                  fingerprint: str, prometheus_url: str) -> dict[str, Any]:
    """An Alertmanager v4 webhook body for the sandbox's CrashLooping rule."""
    expr = _crash_looping_now(region, namespace, container) + " >= 1"
    alert = {
        "status": "firing",
        "labels": {"alertname": "CrashLooping", "severity": "warning", "region": region, "namespace": namespace,
                   "pod": pod, "container": container, "team": namespace},
        "annotations": {"summary": f"{namespace}/{pod} is crash-looping"},
        "startsAt": starts_at.isoformat().replace("+00:00", "Z"),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": f"{prometheus_url}/graph?g0.expr={quote(expr)}&g0.tab=1",
        "fingerprint": fingerprint,
    }
    return {"version": "4", "groupKey": "{}:{alertname=\"CrashLooping\"}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "pitstop", "groupLabels": {"alertname": "CrashLooping"}, "commonLabels": alert["labels"],
            "commonAnnotations": {}, "externalURL": "http://alertmanager.invalid", "alerts": [alert]}


def resolved(firing: dict[str, Any]) -> dict[str, Any]:
    """The same alert's `resolved` notification, as Alertmanager sends it."""
    ends_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {**firing, "status": "resolved", "alerts": [{**a, "status": "resolved", "endsAt": ends_at}
                                                       for a in firing["alerts"]]}


@dataclass
class Pitstop:
    client: Client
    settings: Settings
    alerts_url: str
    token: str
    http: httpx.AsyncClient

    async def post_alert(self, payload: dict[str, Any]) -> str:
        response = await self.http.post(self.alerts_url, json=payload, headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 200, response.text
        return str(response.json()["incidents"][0]["incident"])

    async def status(self, incident: str) -> IncidentStatus:
        return await self.client.get_workflow_handle(incident).query("status", result_type=IncidentStatus)


@contextlib.asynccontextmanager
async def running_pitstop(sm: SandboxMonitoring, temporal_client: Client, base: Settings, tmp_path: Path,
                          catalog_data: dict[str, Any]) -> AsyncIterator[Pitstop]:
    """pitstop's real worker (all activities, both regions) and alert webhook, reading a test catalog."""
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    shutil.copy(REPO / "runbooks" / "remediate-restart.yaml", runbooks / "remediate-restart.yaml")
    (runbooks / CATALOG_FILE).write_text(yaml.safe_dump(catalog_data, sort_keys=False))
    token = secrets.token_urlsafe(16)
    port = _free_port()
    settings = Settings.model_validate({
        "state_dir": base.state_dir,
        "runbooks_dir": runbooks,
        "temporal": base.temporal.model_dump(),
        "worker": {"metrics_port": 0},
        "kubernetes": {"regions": {region: {"kubeconfig": sm.clusters.kubeconfig, "context": context}
                                   for region, context in sm.clusters.contexts.items()}},
        "prometheus": {"url": sm.monitoring.prometheus_url},
        "webhook": {"token": token, "listen": f"127.0.0.1:{port}"},
        "security": TEST_SECURITY_SETTINGS,  # the pager URL and token are PITSTOP_TEST_* env vars
    })
    activity_set = build_activities(build_activity_clients(settings, temporal=temporal_client, require_clusters=True))
    ready, stop = asyncio.Event(), asyncio.Event()
    with ThreadPoolExecutor(max_workers=64) as executor:
        workers = build_workers(client=temporal_client, settings=settings, activity_set=activity_set, executor=executor)
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            webhook = asyncio.create_task(serve(settings, client=temporal_client, ready=ready, stop=stop, port=port))
            await asyncio.wait_for(ready.wait(), 15)
            try:
                async with httpx.AsyncClient(timeout=30) as http:
                    yield Pitstop(client=temporal_client, settings=settings, alerts_url=f"http://127.0.0.1:{port}/alerts",
                                  token=token, http=http)
            finally:
                stop.set()
                await asyncio.wait_for(webhook, 15)


def pick_services(sm: SandboxMonitoring, count: int) -> list[ServiceSpec]:
    """Services no other incident test uses (test_incident_remediation takes the first), two replicas or more."""
    first = next(s for s in sm.services if not s.canary_version and s.replicas >= 1)
    names = {s.name for s in sm.services}
    chosen = [s for s in reversed(sm.services)
              if s is not first and not s.canary_version and s.replicas >= 2
              and not any(other != s.name and other.startswith(s.name + "-") for other in names)]
    assert len(chosen) >= count, [s.name for s in sm.services]
    return chosen[:count]


@dataclass
class Pager:
    receiver: AlertWebhookReceiver  # a real HTTP server recording every POST
    token: str


@pytest.fixture
def pager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pager]:
    """The on-call pager the catalog's `escalation` names by env var (URL and bearer token)."""
    receiver, token = AlertWebhookReceiver(), "pager-secret-" + secrets.token_hex(8)
    monkeypatch.setenv(PAGER_URL_ENV, receiver.url)
    monkeypatch.setenv(PAGER_TOKEN_ENV, token)
    try:
        yield Pager(receiver=receiver, token=token)
    finally:
        receiver.close()


async def test_an_exhausted_ladder_escalates_once_with_evidence_from_the_cluster(
    sandbox_monitoring: SandboxMonitoring, temporal_client: Client, pitstop_settings: Settings, tmp_path: Path,
    pager: Pager,
) -> None:
    sm = sandbox_monitoring
    api = sm.api_clients[REGION]
    service = pick_services(sm, 2)[0]
    namespace, name = service.team, service.name
    deadline_seconds = 15.0
    started = time.monotonic()
    async with persistent_crash_loop(api, service) as fault:
        pod = fault.pod
        revision_before = await asyncio.to_thread(revision, api, namespace, name)
        async with running_pitstop(sm, temporal_client, pitstop_settings, tmp_path,
                                   catalog(recovery_deadline_seconds=deadline_seconds)) as ps:
            payload = alert_payload(pod=pod, namespace=namespace, container=name, region=REGION,
                                    starts_at=datetime.now(UTC) - timedelta(seconds=20),
                                    fingerprint=uuid.uuid4().hex[:16], prometheus_url=sm.monitoring.prometheus_url)
            incident = await ps.post_alert(payload)
            alerted = time.monotonic()

            deliveries: list[ReceivedWebhook] = await until(
                "the escalation POST", lambda: list(pager.receiver.received), timeout=300, interval=1.0)
            status = await until_status(ps, incident, lambda s: any(
                e.kind == "escalation" and "notified" in e.message for e in s.timeline), timeout=60)
            escalated_after = time.monotonic() - alerted
            live_pods = {p["metadata"]["name"]: p for p in await asyncio.to_thread(pods_of, api, namespace, name)}

            # ---- the ladder, climbed in order, each rung run for real and not recovered
            assert status.phase == IncidentPhase.ESCALATED, (status.phase, timeline(status))
            assert status.escalated and status.rule == "crash-looping-pods"
            assert status.target is not None and status.target.key == f"{REGION}/{namespace}/{name}"
            assert [a.rung for a in status.actions] == ["restart", "restart-again"], timeline(status)
            assert all(a.status == "succeeded" and a.recovered is False and not a.dry_run
                       for a in status.actions), status.actions
            assert status.actions[0].ended_at is not None
            assert status.actions[0].ended_at + timedelta(seconds=deadline_seconds) <= status.actions[1].started_at
            assert status.outcome == "escalated: the remediation ladder is exhausted", status.outcome
            messages = [e.message for e in status.timeline]
            order = [
                index_of(messages, "running restart: runbook remediate-restart"),
                index_of(messages, "restart succeeded"),
                index_of(messages, f"not recovered {deadline_seconds:.0f}s after restart", exact=True),
                index_of(messages, "running restart-again: runbook remediate-restart"),
                index_of(messages, f"not recovered {deadline_seconds:.0f}s after restart-again", exact=True),
                index_of(messages, "evidence at escalation:"),
                index_of(messages, "escalating to the on-call team: the remediation ladder is exhausted"),
                index_of(messages, f"notified ${PAGER_URL_ENV}"),
            ]
            assert order == sorted(order), messages
            # each rung restarted the Deployment for real: two rollouts, two new revisions
            assert await asyncio.to_thread(revision, api, namespace, name) == revision_before + 2

            # ---- escalated exactly once, to the configured pager, with the evidence
            assert len(deliveries) == 1, deliveries
            delivery = deliveries[0]
            assert delivery.path == "/alerts"
            assert delivery.authorization == f"Bearer {pager.token}"
            body = delivery.body
            body_text = json.dumps(body)
            assert body["incident"] == incident
            assert body["reason"] == "the remediation ladder is exhausted"
            assert body["alert"]["labels"]["alertname"] == "CrashLooping"
            assert body["target"] == {"service": name, "namespace": namespace, "region": REGION, "kind": "Deployment"}
            assert [(a["rung"], a["status"], a["recovered"]) for a in body["actions"]] == [
                ("restart", "succeeded", False), ("restart-again", "succeeded", False)]
            evidence = body["evidence"]
            assert evidence.get("label") == "at escalation", evidence
            pods = evidence["pods"]
            assert pods, evidence
            assert {p["name"] for p in pods} == set(live_pods), (pods, sorted(live_pods))
            looping = [p for p in pods if p["reason"] == "CrashLoopBackOff"]
            assert looping, pods
            for summary in looping:
                real = live_pods[summary["name"]]
                assert summary["ready"] is False and summary["phase"] == "Running", summary
                assert summary["restarts"] >= 1, summary
                real_restarts = sum(cs.get("restartCount", 0) for cs in real["status"]["containerStatuses"])
                assert summary["restarts"] <= real_restarts, (summary, real_restarts)  # read before, never invented
            events = evidence["events"]
            assert events, evidence
            backoffs = [e for e in events if e["type"] == "Warning" and e["reason"] == "BackOff"
                        and e["object"] in {f"Pod/{p}" for p in live_pods}]
            assert backoffs, events
            real_events = (await asyncio.to_thread(
                sandbox_kube(api).get, f"/api/v1/namespaces/{namespace}/events"))["items"]
            real_backoffs = {(e["involvedObject"]["name"], e["reason"]) for e in real_events}
            assert all((e["object"].split("/", 1)[1], e["reason"]) in real_backoffs for e in backoffs)
            kinds = [e["kind"] for e in body["timeline"]]
            assert kinds.count("action") >= 4 and "verification" in kinds and "evidence" in kinds, kinds
            leaked = [pager.token, ps.token]
            for secret in leaked:
                assert secret not in body_text

            # ---- no secret in the workflow's history either
            history = readable_history((await temporal_client.get_workflow_handle(incident).fetch_history()).to_json())
            assert "notify.webhook" in history and pod in history  # payloads decoded: the check can see them
            for secret in leaked:
                assert secret not in history
            assert PAGER_URL_ENV in history and pager.receiver.url not in history  # the URL is resolved on the worker only

            # ---- the postmortem draft lists the rungs taken and the escalation
            draft = postmortem_markdown(status)
            automation = draft.split("## What automation did", 1)[1]
            assert automation.index("- `restart`: runbook `remediate-restart`") < automation.index(
                "- `restart-again`: runbook `remediate-restart`"), automation
            assert automation.count("succeeded") >= 2 and automation.count("did not recover") == 2, automation
            assert "escalated to humans: yes" in draft
            assert "escalating to the on-call team: the remediation ladder is exhausted" in draft
            assert "CrashLoopBackOff" in draft and "BackOff" in draft
            assert "Automation could not fix this" in draft

            # ---- humans fix it; the alert resolves; no second page
            await ps.post_alert(resolved(payload))
            result = await temporal_client.get_workflow_handle(incident, result_type=IncidentStatus).result()
            assert result.phase == IncidentPhase.RESOLVED and result.escalated, timeline(result)
            assert len(pager.receiver.received) == 1, pager.receiver.received
    print(f"\nladder exhausted and escalated {escalated_after:.1f}s after the alert "
          f"(2 rungs x {deadline_seconds:.0f}s deadline); test took {time.monotonic() - started:.1f}s")


async def test_a_promql_recovery_condition_ends_the_ladder_after_the_rung_that_fixed_it(
    sandbox_monitoring: SandboxMonitoring, temporal_client: Client, pitstop_settings: Settings, tmp_path: Path,
    pager: Pager,
) -> None:
    sm = sandbox_monitoring
    api = sm.api_clients[REGION]
    service = pick_services(sm, 2)[1]
    namespace, name = service.team, service.name
    crash_now = _crash_looping_now(REGION, namespace, name)
    async with persistent_crash_loop(api, service) as fault:
        await until("Prometheus to see the crash loop",
                    lambda: any(float(r["value"][1]) >= 1 for r in sm.query(crash_now)), timeout=60)
        async with running_pitstop(sm, temporal_client, pitstop_settings, tmp_path,
                                   catalog(recovery_deadline_seconds=90)) as ps:
            payload = alert_payload(pod=fault.pod, namespace=namespace,
                                    container=name, region=REGION, starts_at=datetime.now(UTC),
                                    fingerprint=uuid.uuid4().hex[:16], prometheus_url=sm.monitoring.prometheus_url)
            incident = await ps.post_alert(payload)
            # the restart ran and is being verified; the condition does not hold yet (still crash-looping)
            verifying = await until_status(ps, incident, lambda s: s.phase == IncidentPhase.VERIFYING, timeout=120)
            assert [a.rung for a in verifying.actions] == ["restart"] and verifying.actions[0].recovered is None
            # the crash loop stops (say, the bad dependency came back): the next pods stay Ready
            fault.relabelling.set()
            assert clear_fault(api_client=api, fault_id=fault.fault_id)
            status = await until_status(ps, incident, lambda s: any(e.kind == "recovered" for e in s.timeline),
                                        timeout=90)
            assert [a.rung for a in status.actions] == ["restart"], timeline(status)
            assert status.actions[0].recovered is True and not status.escalated
            recovered = next(e for e in status.timeline if e.kind == "recovered")
            assert recovered.message.startswith("recovered after restart: ") and "= 1" in recovered.message
            assert crash_now in recovered.message
            assert float(sm.query(crash_now + " == bool 0")[0]["value"][1]) == 1.0  # it really holds
            assert not any(e.kind == "action" and "restart-again" in e.message for e in status.timeline), timeline(status)
            assert pager.receiver.received == []

            await ps.post_alert(resolved(payload))
            result = await temporal_client.get_workflow_handle(incident, result_type=IncidentStatus).result()
            assert result.phase == IncidentPhase.RECOVERED, timeline(result)
            assert result.outcome == "recovered by automation" and pager.receiver.received == []
            assert "- `restart`: runbook `remediate-restart`" in postmortem_markdown(result)


async def test_a_recovery_condition_prometheus_cannot_answer_still_climbs_and_escalates(
    sandbox_monitoring: SandboxMonitoring, temporal_client: Client, pitstop_settings: Settings, tmp_path: Path,
    pager: Pager,
) -> None:
    """A catalog `recovered_when` the real Prometheus answers with one series per pod (not one number):
    the check is inconclusive, never a pass and never a crash of the incident; the ladder runs out and pages."""
    sm = sandbox_monitoring
    api = sm.api_clients[REGION]
    service = pick_services(sm, 3)[2]
    namespace, name = service.team, service.name
    per_pod = 'kube_pod_container_status_waiting_reason{namespace="${target.namespace}", container="${target.service}"}'
    pods = await asyncio.to_thread(pods_of, api, namespace, name)
    assert len(pods) >= 2
    async with running_pitstop(sm, temporal_client, pitstop_settings, tmp_path,
                               catalog(recovery_deadline_seconds=8, recovered_when=per_pod, rungs=("restart",))) as ps:
        payload = alert_payload(pod=pods[0]["metadata"]["name"], namespace=namespace, container=name, region=REGION,
                                starts_at=datetime.now(UTC), fingerprint=uuid.uuid4().hex[:16],
                                prometheus_url=sm.monitoring.prometheus_url)
        incident = await ps.post_alert(payload)
        handle = temporal_client.get_workflow_handle(incident)
        await until_status(ps, incident, lambda s: True, timeout=30)  # started
        deadline = time.monotonic() + 120
        while not pager.receiver.received:
            description = await handle.describe()
            assert description.status is None or description.status.name == "RUNNING", (
                f"the incident ended {description.status} instead of escalating: {timeline(await ps.status(incident))}")
            assert time.monotonic() < deadline, timeline(await ps.status(incident))
            await asyncio.sleep(1.0)
        status = await until_status(ps, incident, lambda s: any(
            e.kind == "escalation" and "notified" in e.message for e in s.timeline), timeout=60)
        assert status.phase == IncidentPhase.ESCALATED and status.outcome.endswith("the remediation ladder is exhausted")
        assert [(a.rung, a.status, a.recovered) for a in status.actions] == [("restart", "succeeded", False)]
        failed = [e.message for e in status.timeline if e.kind == "verification" and "recovery check failed" in e.message]
        assert len(failed) == 1 and "series" in failed[0], timeline(status)  # said once, with Prometheus's reason
        assert len(pager.receiver.received) == 1
        assert pager.receiver.received[0].body["evidence"]["pods"]
        await ps.post_alert(resolved(payload))
        result = await temporal_client.get_workflow_handle(incident, result_type=IncidentStatus).result()
        assert result.phase == IncidentPhase.RESOLVED and result.escalated


async def until_status(ps: Pitstop, incident: str, predicate: Callable[[IncidentStatus], bool], *,
                       timeout: float) -> IncidentStatus:
    deadline = time.monotonic() + timeout
    last: IncidentStatus | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # not started yet
            last = await ps.status(incident)
        if last is not None and predicate(last):
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{incident}: condition not met within {timeout}s; "
                         f"phase {last.phase.value if last else None}: {timeline(last) if last else ''}")


def readable_history(history_json: str) -> str:
    """A workflow history as JSON with every payload's (base64) data decoded next to it."""
    decoded: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and "metadata" in node:
                decoded.append(base64.b64decode(node["data"]).decode(errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history_json))
    return history_json + "\n" + "\n".join(decoded)


def index_of(messages: list[str], prefix: str, *, exact: bool = False) -> int:
    """The index of the one timeline message starting with (or equal to) `prefix`."""
    found = [i for i, m in enumerate(messages) if m == prefix or (not exact and m.startswith(prefix))]
    assert len(found) == 1, (prefix, messages)
    return found[0]


def timeline(status: IncidentStatus) -> list[str]:
    return [f"{e.kind}: {e.message}" for e in status.timeline]
