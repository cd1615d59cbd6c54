"""The webhook's intake journal against the real Temporal dev server and a real webhook process:
alerts accepted while Temporal is down are not lost, even when the webhook is then killed with SIGKILL;
the next webhook (started while Temporal is still down) replays them, in order per incident, once Temporal
is back."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from pitstop.workers.devserver import DevServer, DevServerPorts, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "journal-test-token"


def alert(fingerprint: str, status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": status, "receiver": "pitstop",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [{
            "status": status, "labels": {"alertname": "JournalTest", "service": f"svc-{fingerprint}"},
            "annotations": {}, "startsAt": "2026-11-26T01:00:00Z",
            "endsAt": "2026-11-26T01:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": fingerprint,
        }],
    }


def incident_of(fingerprint: str) -> str:
    return f"incident-{fingerprint}-{1795654800}"  # 2026-11-26T01:00:00Z


class Webhook:
    """`python -m pitstop.workers.webhook` as its own process, like `pitstop up` runs it."""

    def __init__(self, *, temporal: DevServer, state_dir: Path, port: int) -> None:
        env = {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": temporal.address, "PITSTOP_WEBHOOK__TOKEN": TOKEN,
               "PITSTOP_WEBHOOK__LISTEN": f"127.0.0.1:{port}", "PITSTOP_STATE_DIR": str(state_dir),
               "PITSTOP_CONFIG": "/nonexistent", "PITSTOP_TEMPORAL__TASK_QUEUE": "journal-test"}
        self.log = state_dir / f"webhook-{time.monotonic_ns()}.log"
        state_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([sys.executable, "-m", "pitstop.workers.webhook"], env=env, cwd=ROOT,
                                        stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"webhook never became ready:\n{self.log.read_text()}")

    def post(self, payload: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url + "/alerts", json=payload, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/healthz", timeout=5).json())

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


async def signalled_statuses(client: Client, incident: str) -> list[str]:
    statuses = []
    async for event in client.get_workflow_handle(incident).fetch_history_events():
        if event.HasField("workflow_execution_signaled_event_attributes"):
            attrs = event.workflow_execution_signaled_event_attributes
            statuses.append(json.loads(attrs.input.payloads[0].data)["alert"]["status"])
    return statuses


async def wait_for_incidents(client: Client, incidents: set[str], timeout: float = 90) -> set[str]:
    deadline = time.monotonic() + timeout
    found: set[str] = set()
    while time.monotonic() < deadline:
        found = set()
        for incident in incidents:
            try:
                await client.get_workflow_handle(incident).describe()
                found.add(incident)
            except Exception:  # noqa: BLE001 - not there yet
                pass
        if found == incidents:
            return found
        time.sleep(0.5)
    return found


async def test_alerts_accepted_while_temporal_is_down_survive_a_killed_webhook(tmp_path: Path) -> None:
    ports = DevServerPorts.free()
    temporal = DevServer(state_dir=tmp_path / "temporal", ports=ports)
    temporal.start()
    webhook_port = free_port()
    state = tmp_path / "state"
    webhook = Webhook(temporal=temporal, state_dir=state, port=webhook_port)
    run = secrets.token_hex(3)
    try:
        client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
        # normal path: accepted at once, then forwarded to its incident in the background
        first = webhook.post(alert(f"{run}00"))
        assert first.status_code == 200
        assert first.json()["incidents"][0]["delivered"] == "accepted"
        assert await wait_for_incidents(client, {incident_of(f"{run}00")}) == {incident_of(f"{run}00")}

        # Temporal goes away; the webhook keeps accepting new alerts and status changes, quickly
        temporal.stop()
        fingerprints = [f"{run}{i:02x}" for i in range(1, 6)]
        answered = []
        for fingerprint in fingerprints:
            began = time.perf_counter()
            response = webhook.post(alert(fingerprint))
            answered.append(time.perf_counter() - began)
            assert response.status_code == 200, response.text
            assert response.json()["incidents"][0]["delivered"] == "accepted"
        resolved = webhook.post(alert(fingerprints[0], "resolved"))
        assert resolved.status_code == 200 and resolved.json()["incidents"][0]["delivered"] == "accepted"
        print(f"\nanswers while Temporal was down: max {max(answered) * 1000:.1f} ms")
        assert webhook.health()["backlog"] == 6
        assert (state / "webhook-journal.db").exists()

        # the webhook is killed before it could deliver any of them, and restarted while Temporal is still down
        webhook.kill()
        webhook = Webhook(temporal=temporal, state_dir=state, port=webhook_port)
        assert webhook.health()["backlog"] == 6
        temporal = DevServer(state_dir=tmp_path / "temporal", ports=ports)
        temporal.start()
        client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
        expected = {incident_of(f) for f in fingerprints}
        assert await wait_for_incidents(client, expected) == expected
        # in order per incident: the firing notification before the resolved one
        assert await signalled_statuses(client, incident_of(fingerprints[0])) == ["firing", "resolved"]
        for fingerprint in fingerprints[1:]:
            assert await signalled_statuses(client, incident_of(fingerprint)) == ["firing"]
        deadline = time.monotonic() + 30
        while webhook.health()["backlog"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert webhook.health()["backlog"] == 0
        assert "replaying 6 undelivered alert notification(s)" in webhook.log.read_text()
    finally:
        webhook.stop()
        temporal.stop()


async def test_a_second_webhook_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    temporal = DevServer(state_dir=tmp_path / "temporal", ports=DevServerPorts.free())
    temporal.start()
    state = tmp_path / "state"
    webhook = Webhook(temporal=temporal, state_dir=state, port=free_port())
    try:
        env = {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": temporal.address, "PITSTOP_WEBHOOK__TOKEN": TOKEN,
               "PITSTOP_WEBHOOK__LISTEN": f"127.0.0.1:{free_port()}", "PITSTOP_STATE_DIR": str(state),
               "PITSTOP_CONFIG": "/nonexistent"}
        second = subprocess.run([sys.executable, "-m", "pitstop.workers.webhook"], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 2
        assert f"another pitstop webhook is using the alert journal {state / 'webhook-journal.db'}" in second.stderr
        assert webhook.health()["status"] == "ok"  # the first keeps serving
    finally:
        webhook.stop()
        temporal.stop()
