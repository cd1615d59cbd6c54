"""Incident escalation and approval, against a real Temporal server, a real worker and a real uvicorn.

- The circuit breaker refuses the first action: the incident escalates through the catalog's `escalation`
  webhook (URL and token read from worker env vars by name); a tiny real HTTP receiver gets exactly one
  POST carrying the incident id, the alert name, the reason and the evidence/timeline, and no secret in it.
- A rule requiring approval waits; `pitstop incident approve` (real CLI subprocess) by an identity not in the
  rule's `approvers` is refused with one clear line and a non-zero exit; an allowed identity lets the action run.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pitstop.incidents import IncidentPhase, IncidentStatus
from tests.integration.test_webhook import (  # noqa: F401 - `stack` is a fixture
    TOKEN,
    Stack,
    alert_payload,
    fp,
    post,
    stack,
    wait_for_phase,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PAGER_URL_ENV = "PITSTOP_TEST_PAGER_URL"
PAGER_TOKEN_ENV = "PITSTOP_TEST_PAGER_TOKEN"

CATALOG = f"""
defaults:
  policy: {{max_actions_per_hour: 5, on_lease_busy: wait, lease_wait_timeout: 60s}}
  recovery_deadline: 30s
  poll_interval: 1s
  gather_evidence: false
  max_incident_duration: 10m
  escalation: {{url_env: {PAGER_URL_ENV}, token_env: {PAGER_TOKEN_ENV}}}
rules:
  - name: breaker-open
    match: {{alertname: ServiceOverloaded}}
    target:
      service: {{label: service}}
      namespace: {{label: namespace}}
      region: {{label: region}}
    policy: {{max_actions_per_hour: 0}}
    ladder:
      - name: first-fix
        runbook: incident-fix
        inputs: {{service: "${{target.service}}", namespace: "${{target.namespace}}", region: "${{target.region}}"}}
  - name: approved-fix
    match: {{alertname: ServiceBroken, labels: {{severity: critical}}}}
    target:
      service: {{label: service}}
      namespace: {{label: namespace}}
      region: {{label: region}}
    policy: {{approval_above_severity: page, approvers: [alice, bob]}}
    ladder:
      - name: first-fix
        runbook: incident-fix
        inputs: {{service: "${{target.service}}", namespace: "${{target.namespace}}", region: "${{target.region}}"}}
"""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on a free 127.0.0.1 port recording every request."""
    requests: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            length = int(self.headers.get("Content-Length") or 0)
            requests.append(Received(self.path, dict(self.headers.items()), self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/page", requests=requests)
    finally:
        server.shutdown()
        server.server_close()


def use_catalog(stack: Stack) -> None:
    (stack.settings.runbooks_dir / "remediation-catalog.yaml").write_text(CATALOG)


async def approve_cli(stack: Stack, *args: str) -> tuple[int, str, str]:
    """`python -m pitstop.workers.cli incident approve ...` against the test server and task queue."""
    env = {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": stack.settings.temporal.address,
           "PITSTOP_TEMPORAL__TASK_QUEUE": stack.settings.temporal.task_queue, "PITSTOP_CONFIG": "/nonexistent"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pitstop.workers.cli", "incident", "approve", *args, env=env, cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_breaker_refusal_escalates_through_the_configured_webhook(
    stack: Stack, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    pager_token = "pager-secret-" + secrets.token_hex(8)
    monkeypatch.setenv(PAGER_URL_ENV, receiver.url)
    monkeypatch.setenv(PAGER_TOKEN_ENV, pager_token)
    use_catalog(stack)
    fingerprint = fp()
    labels = {"alertname": "ServiceOverloaded", "service": "search", "namespace": "shop", "region": "eu"}
    response = await post(stack, alert_payload(fingerprint=fingerprint, **labels))
    assert response.status_code == 200, response.text
    incident = response.json()["incidents"][0]["incident"]
    # evidence at escalation runs on the region's queue; no cluster here, so it times out (60s) and says so
    status = await wait_for_phase(stack, incident, {IncidentPhase.ESCALATED}, timeout=30)
    deadline = time.monotonic() + 120
    while not any(e.kind == "escalation" and "notified" in e.message for e in status.timeline):
        assert time.monotonic() < deadline, [e.message for e in status.timeline]
        await asyncio.sleep(0.5)
        status = await stack.client.get_workflow_handle(incident).query("status", result_type=IncidentStatus)
    assert status.escalated and status.actions == []
    assert "circuit open" in status.outcome or "circuit" in status.outcome, status.outcome

    assert len(receiver.requests) == 1, receiver.requests
    request = receiver.requests[0]
    assert request.path == "/page"
    assert request.headers.get("Authorization") == f"Bearer {pager_token}"  # the token goes only where it belongs
    body_text = request.body.decode()
    payload = json.loads(body_text)
    assert payload["incident"] == incident
    assert payload["alert"]["labels"]["alertname"] == "ServiceOverloaded"
    assert payload["alert"]["annotations"]["summary"] == "it is broken"
    assert "circuit" in payload["reason"]
    assert payload["target"] == {"service": "search", "namespace": "shop", "region": "eu", "kind": "Deployment"}
    assert "evidence" in payload
    kinds = [e["kind"] for e in payload["timeline"]]
    assert "alert" in kinds and "decision" in kinds and "evidence" in kinds
    for secret in (pager_token, TOKEN):
        assert secret not in body_text
        assert not any(secret in v for k, v in request.headers.items() if k.lower() != "authorization")

    await post(stack, alert_payload(fingerprint=fingerprint, status="resolved", **labels))
    result = await stack.client.get_workflow_handle(incident, result_type=IncidentStatus).result()
    assert result.phase == IncidentPhase.RESOLVED and result.escalated
    assert len(receiver.requests) == 1  # escalated once, not again on resolution


async def test_approval_by_an_allowed_identity_through_the_cli_lets_the_action_run(stack: Stack) -> None:
    use_catalog(stack)
    fingerprint = fp()
    labels = {"severity": "critical", "service": "payments", "namespace": "shop", "region": "eu"}
    response = await post(stack, alert_payload(fingerprint=fingerprint, **labels))
    incident = response.json()["incidents"][0]["incident"]
    waiting = await wait_for_phase(stack, incident, {IncidentPhase.WAITING_FOR_APPROVAL})
    assert waiting.rule == "approved-fix" and waiting.actions == []

    code, out, err = await approve_cli(stack, incident, "--identity", "mallory")
    assert code != 0, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "mallory" in lines[0] and "may not decide" in lines[0] and "alice" in lines[0], lines[0]
    assert "Traceback" not in err + out
    still = await stack.client.get_workflow_handle(incident).query("status", result_type=IncidentStatus)
    assert still.phase == IncidentPhase.WAITING_FOR_APPROVAL and still.actions == []

    code, out, err = await approve_cli(stack, incident, "--identity", "alice", "--comment", "go ahead")
    assert code == 0, (out, err)
    assert out.strip() == f"{incident}: approved"
    acting = await wait_for_phase(stack, incident, {IncidentPhase.VERIFYING})
    assert [a.status for a in acting.actions] == ["succeeded"]
    assert any(e.kind == "approval" and "approved by alice: go ahead" in e.message for e in acting.timeline)

    await post(stack, alert_payload(fingerprint=fingerprint, status="resolved", **labels))
    result = await stack.client.get_workflow_handle(incident, result_type=IncidentStatus).result()
    assert result.phase == IncidentPhase.RECOVERED and result.actions[0].recovered is True
    assert not any("mallory" in e.message for e in result.timeline)  # the refused decision left no trace


async def test_an_invalid_catalog_leaves_the_incident_open_for_the_on_call_team(stack: Stack) -> None:
    """A bad catalog edit must not fail incident workflows (a failed incident drops every later notification):
    the incident records why it could not plan, stays open, and still closes when the alert resolves."""
    catalog = stack.settings.runbooks_dir / "remediation-catalog.yaml"
    good = catalog.read_text()
    catalog.write_text(good.replace("ladder:", "ladders:", 1))  # an unknown field: the catalog no longer loads
    try:
        fingerprint = fp()
        response = await post(stack, alert_payload(fingerprint=fingerprint, service="payments", namespace="shop",
                                                   region="eu"))
        assert response.status_code == 200, response.text
        incident = response.json()["incidents"][0]["incident"]
        status = await wait_for_phase(stack, incident, {IncidentPhase.ESCALATED})
        assert status.outcome.startswith("could not plan a remediation: "), status.outcome
        assert "remediation-catalog.yaml: rules.0.ladder: Field required" in status.outcome, status.outcome
        assert status.actions == []
    finally:
        catalog.write_text(good)
    resolved = await post(stack, alert_payload(fingerprint=fingerprint, status="resolved", service="payments",
                                               namespace="shop", region="eu"))
    assert resolved.status_code == 200
    final = await stack.client.get_workflow_handle(incident, result_type=IncidentStatus).result()
    assert final.phase == IncidentPhase.RESOLVED, (final.phase, [e.message for e in final.timeline])


async def test_an_alert_gone_from_alertmanager_without_a_resolved_notification_closes_its_incident(
    stack: Stack, tmp_path: Path
) -> None:
    """A lost `resolved` notification (an Alertmanager restart forgets its alerts; a delivery fails for good) must
    not leave the incident open for a day: while it waits, the incident asks the real Alertmanager whether its
    alert is still there, and two answers of "gone" in a row count as resolved."""
    import httpx
    import yaml

    from pitstop.sandbox.monitoring import MonitoringSettings, start_monitoring

    catalog = stack.settings.runbooks_dir / "remediation-catalog.yaml"
    data = yaml.safe_load(catalog.read_text())
    data["defaults"]["alert_check_interval"] = "1s"
    catalog.write_text(yaml.safe_dump(data, sort_keys=False))
    monitoring = start_monitoring(settings=MonitoringSettings(simulator_target="127.0.0.1:9", regions=["eu"]),
                                  state_dir=tmp_path / "monitoring")
    try:
        stack.settings.alertmanager.url = monitoring.alertmanager_url  # what the worker's activities ask
        labels = {"alertname": "VanishingAlert", "severity": "warning", "service": "ledger", "region": "eu"}
        starts = datetime.now(timezone.utc).replace(microsecond=0)
        ends = starts + timedelta(seconds=12)
        async with httpx.AsyncClient(timeout=10) as http:
            pushed = await http.post(f"{monitoring.alertmanager_url}/api/v2/alerts", json=[{
                "labels": labels, "annotations": {"summary": "vanishes"}, "startsAt": starts.isoformat(),
                "endsAt": ends.isoformat()}])
            assert pushed.status_code == 200, pushed.text
            held = (await http.get(f"{monitoring.alertmanager_url}/api/v2/alerts",
                                   params={"filter": 'alertname="VanishingAlert"'})).json()
        [fingerprint] = [a["fingerprint"] for a in held]
        # Alertmanager's delivery to pitstop, as its webhook receiver would send it
        payload = alert_payload(fingerprint=fingerprint, starts_at=starts, **{k: v for k, v in labels.items()
                                                                            if k != "alertname"})
        payload["alerts"][0]["labels"]["alertname"] = "VanishingAlert"
        response = await post(stack, payload)
        assert response.status_code == 200, response.text
        incident = response.json()["incidents"][0]["incident"]
        status = await wait_for_phase(stack, incident, {IncidentPhase.ESCALATED})  # no rule: left to the on-call team
        await asyncio.sleep(4)  # several checks while Alertmanager still holds the alert: the incident stays open
        from tests.integration.test_webhook import incident_status

        status = await incident_status(stack, incident)
        assert status.phase == IncidentPhase.ESCALATED and status.resolved_at is None, status.phase
        # the alert ends in Alertmanager; pitstop never gets the resolved notification
        final = await asyncio.wait_for(
            stack.client.get_workflow_handle(incident, result_type=IncidentStatus).result(), 60)
        assert final.phase == IncidentPhase.RESOLVED, (final.phase, [e.message for e in final.timeline])
        assert final.resolved_at is not None and final.resolved_at >= ends - timedelta(seconds=1)
        gone = [e.message for e in final.timeline if e.kind == "resolved"]
        assert gone and "no longer active in Alertmanager" in gone[0] and "treated as resolved" in gone[0], gone
    finally:
        monitoring.stop()
