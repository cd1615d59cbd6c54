"""The alert webhook and the Incident workflow against a real Temporal server and a real uvicorn.

Covers: authentication (bearer, basic, HMAC with a timestamp window and replay refusal, 401; an unauthenticated
request is refused from its headers, its 1 MiB body never read), the per-client rate limit (429), malformed/oversized/hostile bodies (400/413/422 — deep nesting,
invalid UTF-8, NaN, huge numbers — never 500, the receiver keeps serving), 1,000 concurrent notifications
over 20 alerts -> exactly 20 incidents and no lost notification, an alert that resolves before its action runs gets no action, a remediation waits while a release holds
the service's lease, and a full alert -> action -> resolved -> recovered incident with its postmortem.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from pitstop.activities import activity_methods, build_activities
from pitstop.activities.clients import ActivityClients
from pitstop.activities.incidents import IncidentActivities
from pitstop.config import Settings, WebhookBasicAuth, WebhookRateLimit
from pitstop.incidents import BudgetState, IncidentPhase, IncidentStatus, postmortem_markdown
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.webhook_auth import sign
from tests.fixtures.temporal import running_worker
from pitstop.workers.webhook import serve
from pitstop.workflows import ALL_WORKFLOWS
from pitstop.workflows.incident import IncidentWorkflow
from pitstop.workflows.remediation_budget import RemediationBudget

pytestmark = pytest.mark.integration

TOKEN = "test-token-" + secrets.token_hex(8)
BASIC_USER, BASIC_PASSWORD = "alertmanager", "basic-" + secrets.token_hex(8)

CATALOG = """
defaults:
  policy: {max_actions_per_hour: 5, on_lease_busy: wait, lease_wait_timeout: 60s}
  recovery_deadline: 30s
  poll_interval: 1s
  gather_evidence: false
  max_incident_duration: 10m
rules:
  - name: approved-fix
    match: {alertname: ServiceBroken, labels: {severity: critical}}
    target:
      service: {label: service}
      namespace: {label: namespace}
      region: {label: region}
    policy: {approval_above_severity: page}
    ladder:
      - name: first-fix
        runbook: incident-fix
        inputs: {service: "${target.service}", namespace: "${target.namespace}", region: "${target.region}"}
  - name: fix-it
    match: {alertname: ServiceBroken}
    target:
      service: {label: service}
      namespace: {label: namespace}
      region: {label: region}
    ladder:
      - name: first-fix
        runbook: incident-fix
        inputs: {service: "${target.service}", namespace: "${target.namespace}", region: "${target.region}"}
"""

FIX_RUNBOOK = """
name: incident-fix
inputs:
  service: {type: string}
  namespace: {type: string, default: default}
  region: {type: string}
target: {service: "${{ inputs.service }}", namespace: "${{ inputs.namespace }}", region: "${{ inputs.region }}"}
lease: {policy: wait}
steps:
  - id: fix
    uses: debug.change
    with: {what: "fix ${{ inputs.service }}"}
"""

HOLD_RUNBOOK = """
name: hold-service
inputs:
  service: {type: string}
  namespace: {type: string, default: default}
  region: {type: string}
  seconds: {type: number, default: 5}
target: {service: "${{ inputs.service }}", namespace: "${{ inputs.namespace }}", region: "${{ inputs.region }}"}
lease: {policy: wait}
steps:
  - id: release
    uses: debug.wait
    with: {seconds: "${{ inputs.seconds }}"}
  - id: change
    uses: debug.change
    needs: release
    with: {what: "release of ${{ inputs.service }}"}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    client: Client
    settings: Settings
    url: str
    http: httpx.AsyncClient


@pytest_asyncio.fixture
async def stack(temporal_client: Client, pitstop_settings: Settings, tmp_path: Path) -> AsyncIterator[Stack]:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "remediation-catalog.yaml").write_text(CATALOG)
    (runbooks / "incident-fix.yaml").write_text(FIX_RUNBOOK)
    (runbooks / "hold-service.yaml").write_text(HOLD_RUNBOOK)
    settings = pitstop_settings.model_copy(update={"runbooks_dir": runbooks})
    from pydantic import SecretStr

    settings = settings.model_copy(update={"webhook": settings.webhook.model_copy(
        update={"token": SecretStr(TOKEN), "max_body_bytes": 64_000,
                "basic_auth": WebhookBasicAuth(username=BASIC_USER, password=SecretStr(BASIC_PASSWORD))})})
    clients = ActivityClients(settings=settings, temporal=temporal_client)
    activity_set = build_activities(clients)
    activities = list(activity_set.shared)
    names = {getattr(a, "__temporal_activity_definition").name for a in activities}
    activities += [a for a in activity_methods(IncidentActivities(clients))
                   if getattr(a, "__temporal_activity_definition").name not in names]
    workflows = list(dict.fromkeys([*ALL_WORKFLOWS, IncidentWorkflow, RemediationBudget]))
    async with running_worker(temporal_client, task_queue=settings.temporal.task_queue,
                              workflows=workflows, activities=activities, max_concurrent_workflow_tasks=50):
        async with webhook_server(settings, temporal_client) as url:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
            async with httpx.AsyncClient(timeout=30, limits=limits) as http:
                yield Stack(client=temporal_client, settings=settings, url=url, http=http)


@contextlib.asynccontextmanager
async def webhook_server(settings: Settings, client: Client, port: int | None = None) -> AsyncIterator[str]:
    """`serve` in this process on `port` (default a free one) until the block ends; its /alerts URL."""
    port = port or _free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve(settings, client=client, ready=ready, stop=stop, port=port))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield f"http://127.0.0.1:{port}/alerts"
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)


def alert_payload(*, fingerprint: str, status: str = "firing", starts_at: datetime | None = None,
                  **labels: str) -> dict[str, Any]:
    starts = starts_at or datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
    alert = {
        "status": status,
        "labels": {"alertname": "ServiceBroken", "severity": "warning", **labels},
        "annotations": {"summary": "it is broken"},
        "startsAt": starts.isoformat().replace("+00:00", "Z"),
        "endsAt": (starts + timedelta(minutes=3)).isoformat().replace("+00:00", "Z") if status == "resolved"
        else "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint,
    }
    return {"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": status, "receiver": "pitstop",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "alerts": [alert]}


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def post(stack: Stack, payload: dict[str, Any]) -> httpx.Response:
    return await stack.http.post(stack.url, json=payload, headers=auth())


async def incident_status(stack: Stack, incident: str) -> IncidentStatus:
    return await stack.client.get_workflow_handle(incident).query("status", result_type=IncidentStatus)


async def wait_for_phase(stack: Stack, incident: str, phases: set[IncidentPhase], timeout: float = 60) -> IncidentStatus:
    deadline = time.monotonic() + timeout
    last: IncidentStatus | None = None
    while time.monotonic() < deadline:
        try:
            last = await incident_status(stack, incident)
            if last.phase in phases:
                return last
        except Exception:  # noqa: BLE001 - not started yet
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{incident} never reached {phases}; last: {last.phase if last else None} "
                         f"{[e.message for e in last.timeline] if last else ''}")


async def cli(stack: Stack, *args: str) -> str:
    """Run the real `pitstop` console script against the test server."""
    env = {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": stack.settings.temporal.address,
           "PITSTOP_CONFIG": "/nonexistent"}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "pitstop"), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, (args, out.decode(), err.decode())
    return out.decode()


HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def record_history(stack: Stack, workflow_id: str, name: str) -> None:
    """With PITSTOP_RECORD_HISTORIES=1, save the run's history for tests/replay/test_incident_replay.py."""
    if os.environ.get("PITSTOP_RECORD_HISTORIES") != "1":
        return
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())


def fp() -> str:
    return uuid.uuid4().hex[:16]


# ------------------------------------------------------------------ request handling


async def test_unauthenticated_requests_are_refused(stack: Stack) -> None:
    payload = alert_payload(fingerprint=fp(), service="svc", namespace="ns", region="eu")
    response = await stack.http.post(stack.url, json=payload)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    response = await stack.http.post(stack.url, json=payload, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert TOKEN not in response.text
    assert response.headers["connection"] == "close"  # refused from the headers: its body is not read
    basic = await stack.http.post(stack.url, json=payload, headers=basic_auth(BASIC_USER, BASIC_PASSWORD))
    assert basic.status_code == 200, basic.text
    for user, password in ((BASIC_USER, "wrong"), ("someone", BASIC_PASSWORD), (BASIC_USER, TOKEN)):
        wrong = await stack.http.post(stack.url, json=payload, headers=basic_auth(user, password))
        assert wrong.status_code == 401, (user, wrong.text)
        assert BASIC_PASSWORD not in wrong.text


def basic_auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def signed(body: bytes, *, key: str = TOKEN, at: float | None = None) -> dict[str, str]:
    sent_at = int(time.time() if at is None else at)
    return {"X-Pitstop-Timestamp": str(sent_at), "X-Pitstop-Signature": sign(key.encode(), sent_at, body).decode(),
            "Content-Type": "application/json"}


async def test_hmac_signed_requests_are_accepted_once_and_only_while_fresh(stack: Stack) -> None:
    body = json.dumps(alert_payload(fingerprint=fp(), alertname="Unmatched", service="s", namespace="n",
                                    region="r")).encode()
    headers = signed(body)
    good = await stack.http.post(stack.url, content=body, headers=headers)
    assert good.status_code == 200, good.text
    replayed = await stack.http.post(stack.url, content=body, headers=headers)
    assert replayed.status_code == 401 and "already used" in replayed.json()["error"]
    for name, refused_headers in {
        "wrong key": signed(body, key="nope"),
        "stale by 301 s": signed(body, at=time.time() - 301),
        "from 301 s in the future": signed(body, at=time.time() + 301),
        "a fresher timestamp on the old signature": {**headers, "X-Pitstop-Timestamp": str(int(time.time()) + 1)},
        "signature without a timestamp": {k: v for k, v in headers.items() if k != "X-Pitstop-Timestamp"},
        "the old body-only scheme": {"X-Pitstop-Signature": "sha256=" + hmac_body_only(body)},
    }.items():
        response = await stack.http.post(stack.url, content=body, headers=refused_headers)
        assert response.status_code == 401, (name, response.status_code, response.text)
    # a different body needs its own signature; the size bound applies before a signed body is read
    other = body.replace(b"Unmatched", b"Unmatched2")
    assert (await stack.http.post(stack.url, content=other, headers=headers)).status_code == 401
    huge = body + b" " * 70_000
    assert (await stack.http.post(stack.url, content=huge, headers=signed(huge))).status_code == 413
    fresh = await stack.http.post(stack.url, content=other, headers=signed(other))
    assert fresh.status_code == 200, fresh.text


def hmac_body_only(body: bytes) -> str:
    return hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(fields["content-length"]))
    return int(lines[0].split()[1]), fields, body


async def test_an_unauthenticated_1_mib_body_is_refused_before_it_is_sent(stack: Stack, tmp_path: Path) -> None:
    """The 401 arrives while the client has sent 16 KiB of a declared 1 MiB body (within the size limit), and
    the server closes the connection: the rest is never read, let alone buffered. With the right token the
    same request waits for its body."""
    settings = stack.settings.model_copy(update={"webhook": stack.settings.webhook.model_copy(
        update={"max_body_bytes": 2 * 1_048_576, "journal": tmp_path / "second-webhook.db"})})
    async with webhook_server(settings, stack.client) as url:
        port = int(url.split(":")[2].split("/")[0])
        health_url = url.replace("/alerts", "/healthz")
        refused_before = (await stack.http.get(health_url)).json()["refused_unread"]

        async def declare_1_mib(authorization: str | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = ("POST /alerts HTTP/1.1\r\nHost: pitstop\r\nContent-Type: application/json\r\n"
                    "Content-Length: 1048576\r\n" + (f"Authorization: {authorization}\r\n" if authorization else "")
                    + "\r\n")
            writer.write(head.encode() + b"[" * 16_384)
            await writer.drain()
            return reader, writer

        for authorization in (None, "Bearer wrong", "Basic " + base64.b64encode(b"alertmanager:nope").decode()):
            reader, writer = await declare_1_mib(authorization)
            status, fields, answer = await asyncio.wait_for(_read_answer(reader), 5)
            assert status == 401 and fields["connection"] == "close", (authorization, status, answer)
            with contextlib.suppress(ConnectionResetError):  # closed (FIN or RST): the other 1,032,192 bytes unread
                assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        health = (await stack.http.get(health_url)).json()
        assert health["refused_unread"] == refused_before + 3
        reader, writer = await declare_1_mib(f"Bearer {TOKEN}")  # the control: authenticated, it waits
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), 1.0)
        writer.close()


async def test_a_burst_over_the_rate_limit_gets_429_per_client(stack: Stack, tmp_path: Path) -> None:
    settings = stack.settings.model_copy(update={"webhook": stack.settings.webhook.model_copy(
        update={"rate_limit": WebhookRateLimit(per_second=0.5, burst=5), "journal": tmp_path / "limited.db"})})
    payload = alert_payload(fingerprint=fp(), alertname="Unmatched", service="s", namespace="n", region="r")
    async with webhook_server(settings, stack.client) as url:
        burst = await asyncio.gather(*(stack.http.post(url, json=payload, headers=auth()) for _ in range(12)))
        codes = sorted(r.status_code for r in burst)
        assert 5 <= codes.count(200) <= 6 and codes.count(200) + codes.count(429) == 12, codes
        limited = next(r for r in burst if r.status_code == 429)
        assert 1 <= int(limited.headers["retry-after"]) <= 2 and "rate limit" in limited.json()["error"]
        # unauthenticated requests count against their address, not against the bearer identity
        wrong = [await stack.http.post(url, json=payload, headers={"Authorization": "Bearer wrong"})
                 for _ in range(6)]
        assert [r.status_code for r in wrong] == [401] * 5 + [429]
        basic = await stack.http.post(url, json=payload, headers=basic_auth(BASIC_USER, BASIC_PASSWORD))
        assert basic.status_code == 200, basic.text  # another identity, another bucket
        await asyncio.sleep(int(limited.headers["retry-after"]))
        again = await stack.http.post(url, json=payload, headers=auth())
        assert again.status_code == 200, again.text


async def test_malformed_and_oversized_requests_are_refused_and_the_receiver_keeps_serving(stack: Stack) -> None:
    not_json = await stack.http.post(stack.url, content=b"{not json", headers=auth())
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]
    wrong_version = await post(stack, {**alert_payload(fingerprint=fp()), "version": "3"})
    assert wrong_version.status_code == 422 and "version" in wrong_version.json()["error"]
    no_alerts = await post(stack, {**alert_payload(fingerprint=fp()), "alerts": []})
    assert no_alerts.status_code == 422 and "alerts" in no_alerts.json()["error"]
    bad_fingerprint = alert_payload(fingerprint="../etc/passwd")
    response = await post(stack, bad_fingerprint)
    assert response.status_code == 422 and "fingerprint" in response.json()["error"]
    big = alert_payload(fingerprint=fp(), service="s", namespace="n", region="r")
    big["alerts"][0]["annotations"]["description"] = "x" * 70_000
    oversized = await post(stack, big)
    assert oversized.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while streaming
        for _ in range(100):
            yield b" " * 1000

    streamed = await stack.http.post(stack.url, content=chunks(), headers=auth())
    assert streamed.status_code == 413
    wrong_method = await stack.http.get(stack.url, headers=auth())
    assert wrong_method.status_code == 405
    wrong_type = await stack.http.post(stack.url, content=b"a=b", headers={**auth(), "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    health = await stack.http.get(stack.url.replace("/alerts", "/healthz"))
    assert health.status_code == 200
    fine = await post(stack, alert_payload(fingerprint=fp(), alertname="Unmatched", service="s", namespace="n", region="r"))
    assert fine.status_code == 200, fine.text


async def test_hostile_bodies_get_400_never_500_and_the_receiver_keeps_serving(stack: Stack) -> None:
    good = json.dumps(alert_payload(fingerprint=fp(), alertname="Unmatched", service="s", namespace="n", region="r"))
    unrepresentable = {
        "nested 30,000 deep": b"[" * 30_000 + b"]" * 30_000,
        "objects nested 5,000 deep": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        "alerts nested in a field it ignores": good.replace('"receiver"', '"x": ' + "[" * 900 + "]" * 900
                                                            + ', "receiver"', 1).encode(),
        "invalid UTF-8": good.replace("Unmatched", "Un\udcffmatched").encode("utf-8", "surrogateescape"),
        "UTF-8-encoded surrogate": good.replace("Unmatched", "\ud800").encode("utf-8", "surrogatepass"),
        "escaped lone surrogate": good.replace("Unmatched", "\\ud800").encode(),
        "NaN": good.replace('"truncatedAlerts": 0', '"truncatedAlerts": NaN').encode(),
        "Infinity": good.replace('"truncatedAlerts": 0', '"truncatedAlerts": -Infinity').encode(),
        "float overflow": good.replace('"truncatedAlerts": 0', '"truncatedAlerts": 1e999').encode(),
        "huge integer": good.replace('"truncatedAlerts": 0', '"truncatedAlerts": ' + "9" * 5_000).encode(),
        "empty": b"",
        "truncated": good[:-10].encode(),
    }
    for name, body in unrepresentable.items():
        response = await stack.http.post(stack.url, content=body, headers=auth())
        assert response.status_code == 400, (name, response.status_code, response.text)
        assert response.json()["error"], name
    # JSON it can represent, odd or no Alertmanager payload at all: accepted or refused (4xx), never a 500
    odd = [None, 3, "x", [], {"alerts": {"a": 1}},
           {**json.loads(good), "truncatedAlerts": 10**19},
           {**json.loads(good), "alerts": [{**json.loads(good)["alerts"][0], "startsAt": "9999-12-31T23:59:59-23:59"}]},
           {**json.loads(good), "alerts": [{**json.loads(good)["alerts"][0], "startsAt": "0001-01-01T00:00:00+23:59"}]},
           {**json.loads(good), "alerts": [{**json.loads(good)["alerts"][0], "labels": {"alertname": ["x"]}}]},
           {**json.loads(good), "alerts": [{**json.loads(good)["alerts"][0], "fingerprint": 12}]}]
    for payload in odd:
        response = await stack.http.post(stack.url, json=payload, headers=auth())
        assert response.status_code < 500, (payload if not isinstance(payload, dict) else payload.get("alerts"),
                                            response.status_code, response.text)
    health = await stack.http.get(stack.url.replace("/alerts", "/healthz"))
    assert health.status_code == 200
    fine = await stack.http.post(stack.url, content=good.encode(), headers=auth())
    assert fine.status_code == 200, fine.text


# ------------------------------------------------------------------ coalescing


async def test_1000_concurrent_notifications_over_20_alerts_make_exactly_20_incidents(stack: Stack) -> None:
    run = uuid.uuid4().hex[:6]
    fingerprints = [f"{run}{i:010x}" for i in range(20)]
    payloads = [alert_payload(fingerprint=fingerprints[i % 20], alertname="LoadTest", service=f"svc-{i % 20}")
                for i in range(1000)]
    gate = asyncio.Semaphore(100)

    async def send(payload: dict[str, Any]) -> int:
        async with gate:
            response = await post(stack, payload)
            return response.status_code

    started = time.monotonic()
    codes = await asyncio.gather(*(send(p) for p in payloads))
    elapsed = time.monotonic() - started
    assert codes.count(200) == 1000, {c: codes.count(c) for c in set(codes)}
    print(f"\n1000 notifications over 20 alerts in {elapsed:.2f}s ({1000 / elapsed:.0f} req/s)")
    incidents = {f"incident-{f}-{int(datetime(2026, 11, 25, 10, tzinfo=timezone.utc).timestamp())}" for f in fingerprints}
    found: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = {w.id async for w in stack.client.list_workflows(f"WorkflowType = 'Incident' AND WorkflowId STARTS_WITH 'incident-{run}'")}
        if len(found) >= 20:
            break
        await asyncio.sleep(0.5)
    assert found == incidents
    # repeats of an alert already delivered are answered at once and their count flushed in one signal
    while time.monotonic() < deadline:
        statuses = [await incident_status(stack, i) for i in sorted(incidents)]
        if sum(s.notifications for s in statuses) >= 1000:
            break
        await asyncio.sleep(0.5)
    assert sum(s.notifications for s in statuses) == 1000
    assert all(s.notifications == 50 for s in statuses)
    # and their resolution closes them, all in one go
    resolved = await asyncio.gather(*(post(stack, alert_payload(fingerprint=f, status="resolved", alertname="LoadTest"))
                                      for f in fingerprints))
    assert [r.status_code for r in resolved] == [200] * 20
    for incident in incidents:
        result = await stack.client.get_workflow_handle(incident, result_type=IncidentStatus).result()
        assert result.phase == IncidentPhase.RESOLVED and result.actions == []


# ------------------------------------------------------------------ remediation


async def test_alert_resolved_before_its_action_runs_gets_no_action(stack: Stack) -> None:
    fingerprint = fp()
    firing = alert_payload(fingerprint=fingerprint, severity="critical", service="payments", namespace="shop", region="eu")
    response = await post(stack, firing)
    incident = response.json()["incidents"][0]["incident"]
    status = await wait_for_phase(stack, incident, {IncidentPhase.WAITING_FOR_APPROVAL})
    assert status.rule == "approved-fix" and status.actions == []
    await post(stack, alert_payload(fingerprint=fingerprint, status="resolved", severity="critical",
                                    service="payments", namespace="shop", region="eu"))
    result = await stack.client.get_workflow_handle(incident, result_type=IncidentStatus).result()
    assert result.phase == IncidentPhase.RESOLVED
    assert result.actions == [] and result.first_action_at is None
    assert result.outcome == "resolved before any action"
    await record_history(stack, incident, "incident-resolved-before-action")


async def test_remediation_waits_for_a_release_holding_the_lease_then_recovers(stack: Stack) -> None:
    service = f"checkout-{uuid.uuid4().hex[:4]}"
    release: WorkflowHandle[Any, RunbookOutcome] = await stack.client.start_workflow(
        RUNBOOK_WORKFLOW,
        RunbookRequest(runbook="hold-service", inputs={"service": service, "namespace": "shop", "region": "eu",
                                                        "seconds": 4}, trigger="cli"),
        id=f"release-{service}", task_queue=stack.settings.temporal.task_queue, result_type=RunbookOutcome,
    )
    await asyncio.sleep(1.0)  # the release takes the lease first
    fingerprint = fp()
    delivered_at = time.monotonic()
    response = await post(stack, alert_payload(fingerprint=fingerprint, service=service, namespace="shop", region="eu"))
    assert response.status_code == 200
    incident = response.json()["incidents"][0]["incident"]
    waiting = await wait_for_phase(stack, incident, {IncidentPhase.WAITING_FOR_LEASE})
    assert waiting.actions == []
    outcome = await release.result()
    assert outcome.status == "succeeded"
    release_closed = (await release.describe()).close_time
    status = await wait_for_phase(stack, incident, {IncidentPhase.VERIFYING})
    first_action = time.monotonic()
    assert status.first_action_at is not None and release_closed is not None
    assert status.first_action_at >= release_closed - timedelta(milliseconds=5)
    assert [a.status for a in status.actions] == ["succeeded"]
    await post(stack, alert_payload(fingerprint=fingerprint, status="resolved", service=service, namespace="shop", region="eu"))
    result = await stack.client.get_workflow_handle(incident, result_type=IncidentStatus).result()
    assert result.phase == IncidentPhase.RECOVERED and result.outcome == "recovered by automation"
    assert result.actions[0].recovered is True
    kinds = [e.kind for e in result.timeline]
    assert kinds[0] == "alert" and "lease" in kinds and "action" in kinds and "recovered" in kinds
    print(f"\nalert delivered -> first action (after the release's lease): {first_action - delivered_at:.2f}s")
    await record_history(stack, incident, "incident-lease-wait-recovered")
    draft = postmortem_markdown(result)
    shown = await cli(stack, "incident", "show", incident)
    assert "recovered" in shown and "MTTR" in shown and "first-fix" in shown
    assert (await cli(stack, "incident", "show", incident, "--postmortem")).startswith("# Postmortem draft")
    assert incident in await cli(stack, "incident", "list")
    for heading in ("## Summary", "## Impact", "## Timeline", "## What automation did", "## Follow-ups"):
        assert heading in draft
    assert "MTTR" in draft and "first-fix" in draft


async def test_circuit_breaker_stops_a_second_action_within_the_hour(stack: Stack) -> None:
    service = f"flappy-{uuid.uuid4().hex[:4]}"
    (stack.settings.runbooks_dir / "remediation-catalog.yaml").write_text(
        CATALOG.replace("max_actions_per_hour: 5", "max_actions_per_hour: 1").replace("recovery_deadline: 30s",
                                                                                      "recovery_deadline: 5s"))
    try:
        results = []
        for episode in range(2):
            fingerprint = fp()
            starts = datetime(2026, 11, 25, 10, episode, tzinfo=timezone.utc)
            response = await post(stack, alert_payload(fingerprint=fingerprint, starts_at=starts, service=service,
                                                       namespace="shop", region="eu"))
            incident = response.json()["incidents"][0]["incident"]
            await wait_for_phase(stack, incident, {IncidentPhase.VERIFYING, IncidentPhase.ESCALATED})
            await post(stack, alert_payload(fingerprint=fingerprint, starts_at=starts, status="resolved",
                                            service=service, namespace="shop", region="eu"))
            results.append(await stack.client.get_workflow_handle(incident, result_type=IncidentStatus).result())
            await asyncio.sleep(5.5)  # past the window in which a second incident would coalesce with the first
    finally:
        (stack.settings.runbooks_dir / "remediation-catalog.yaml").write_text(CATALOG)
    budget = await stack.client.get_workflow_handle(f"remediation-budget/eu/shop/{service}").query(
        "state", result_type=BudgetState)
    assert [a.key for a in budget.actions] == [f"{results[0].incident_id}/first-fix"]
    await record_history(stack, results[1].incident_id, "incident-circuit-open")
    assert results[0].phase == IncidentPhase.RECOVERED and len(results[0].actions) == 1
    assert results[1].actions == [] and results[1].escalated
    assert any("circuit open" in e.message for e in results[1].timeline)


async def test_two_alerts_on_one_service_take_one_action(stack: Stack) -> None:
    """Per-pod alerts of one service: the second incident waits for the lease, then does not stack an action."""
    service = f"podalerts-{uuid.uuid4().hex[:4]}"
    fingerprints = [fp(), fp()]
    responses = await asyncio.gather(*(post(stack, alert_payload(fingerprint=f, service=service, namespace="shop",
                                                                 region="eu", pod=f"p{i}"))
                                       for i, f in enumerate(fingerprints)))
    incidents = [r.json()["incidents"][0]["incident"] for r in responses]
    phases = {IncidentPhase.VERIFYING, IncidentPhase.WAITING_FOR_LEASE}
    statuses = [await wait_for_phase(stack, i, phases) for i in incidents]
    deadline = time.monotonic() + 20
    while sorted(s.phase.value for s in statuses) != ["verifying", "waiting_for_lease"] and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        statuses = [await incident_status(stack, i) for i in incidents]
    assert sorted(s.phase.value for s in statuses) == ["verifying", "waiting_for_lease"]
    assert sum(len(s.actions) for s in statuses) == 1
    for f in fingerprints:
        await post(stack, alert_payload(fingerprint=f, status="resolved", service=service, namespace="shop", region="eu"))
    results = [await stack.client.get_workflow_handle(i, result_type=IncidentStatus).result() for i in incidents]
    assert sorted(len(r.actions) for r in results) == [0, 1]
    assert {r.phase for r in results} == {IncidentPhase.RECOVERED, IncidentPhase.RESOLVED}
