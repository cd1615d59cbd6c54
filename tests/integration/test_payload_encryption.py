"""Encrypted payloads on the real Temporal dev server: with `security.payload_keys_file` set, a runbook's input and
outputs are ciphertext in the server's history (read with a client that has no key), `pitstop history`'s reader
decodes them, a rotated key ring still reads old runs, and the webhook process serves the Web UI's codec endpoint
(`/codec/decode`) to the UI's origin only."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from pathlib import Path

import httpx
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError

from pitstop.config import Settings
from tests.integration.runbook_harness import engine, start
from tests.integration.test_webhook import TOKEN, alert_payload, auth, webhook_server
from pitstop.workers.devserver import DevServer
from pitstop.workers.payload_codec import ENCODING, KEY_ID_METADATA, rotate_key_ring
from pitstop.workers.run_history import fetch_chain, timeline
from pitstop.workers.temporal_connection import connect

MARKER = "vin-WP0ZZZ99ZTS392124"


def encrypted_settings(server: DevServer, tmp_path: Path, ring: Path) -> Settings:
    return Settings(temporal={"address": server.address, "ui_port": server.ports.ui}, state_dir=tmp_path / "state",
                    security={"payload_keys_file": ring})


def payloads_of(history: WorkflowHistory) -> list[Payload]:
    found: list[Payload] = []
    for event in history.events:
        attributes = getattr(event, event.WhichOneof("attributes") or "", None)
        for name in ("input", "result"):
            holder = getattr(attributes, name, None)
            found += list(getattr(holder, "payloads", []))
    return found


async def run_hello(client: Client, task_queue: str) -> str:
    async with engine(client, task_queue):
        handle = await start(client, task_queue, "hello", name=MARKER)
        outcome = await handle.result()
    assert outcome.status == "succeeded" and MARKER in outcome.outputs["greet"]["message"]
    return handle.id


async def test_histories_hold_ciphertext_and_rotation_keeps_old_runs_readable(
    temporal_server: DevServer, temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    ring = tmp_path / "payload-keys.yaml"
    first_key = rotate_key_ring(ring)
    settings = encrypted_settings(temporal_server, tmp_path, ring)
    client = await connect(settings)
    first_run = await run_hello(client, task_queue)

    # the server holds ciphertext: a client without the key sees no plaintext anywhere in the history
    raw = await temporal_client.get_workflow_handle(first_run).fetch_history()
    assert MARKER.encode() not in b"".join(event.SerializeToString() for event in raw.events)
    payloads = payloads_of(raw)
    assert payloads and all(p.metadata["encoding"] == ENCODING for p in payloads)
    assert {p.metadata[KEY_ID_METADATA] for p in payloads} == {first_key.encode()}

    # pitstop history's reader decodes with the configured ring
    decoded = timeline(await fetch_chain(client, first_run))
    assert decoded["run"]["inputs"] == {"name": MARKER}
    assert any(MARKER in str(entry.get("outputs")) for entry in decoded["timeline"])

    # rotation: the new key encrypts, the old run stays readable
    second_key = rotate_key_ring(ring)
    rotated = await connect(settings)
    second_run = await run_hello(rotated, task_queue)
    second_payloads = payloads_of(await temporal_client.get_workflow_handle(second_run).fetch_history())
    assert {p.metadata[KEY_ID_METADATA] for p in second_payloads} == {second_key.encode()}
    assert timeline(await fetch_chain(rotated, first_run))["run"]["inputs"] == {"name": MARKER}

    # the Web UI's codec endpoint, served by the webhook process: the UI's origin decodes, any other is refused
    origin = f"http://127.0.0.1:{temporal_server.ports.ui}"
    body = {"payloads": [json_format.MessageToDict(payloads[0])]}
    async with webhook_server(settings, rotated) as alerts_url, httpx.AsyncClient(timeout=10) as http:
        base = alerts_url.removesuffix("/alerts")
        answer = await http.post(f"{base}/codec/decode", json=body, headers={"Origin": origin, "X-Namespace": "default"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == origin
        (plain,) = answer.json()["payloads"]
        assert MARKER in base64.b64decode(plain["data"]).decode()
        preflight = await http.options(f"{base}/codec/decode", headers={"Origin": origin})
        assert preflight.status_code == 204 and "x-namespace" in preflight.headers["access-control-allow-headers"]
        refused = await http.post(f"{base}/codec/decode", json=body, headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403
        alerts = await http.post(f"{base}/alerts", json={})  # the webhook itself is unchanged: still authenticated
        assert alerts.status_code == 401


async def test_an_incident_opened_by_the_webhook_holds_no_plaintext_alert(
    temporal_server: DevServer, temporal_client: Client, tmp_path: Path
) -> None:
    """The webhook encrypts what it signals: the alert's labels and annotations never reach the server in clear."""
    ring = tmp_path / "payload-keys.yaml"
    rotate_key_ring(ring)
    settings = encrypted_settings(temporal_server, tmp_path, ring)
    settings = settings.model_copy(update={"webhook": settings.webhook.model_copy(update={"token": SecretStr(TOKEN)})})
    alert = alert_payload(fingerprint=uuid.uuid4().hex[:16], service=MARKER, namespace="team-telematics")
    async with webhook_server(settings, await connect(settings, lazy=True)) as url, httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(url, json=alert, headers=auth())
        assert answer.status_code == 200, answer.text
        (incident,) = [entry["incident"] for entry in answer.json()["incidents"]]
        handle = temporal_client.get_workflow_handle(incident)
        history = None
        for _ in range(100):  # the journal forwards in the background
            with contextlib.suppress(RPCError):
                history = await handle.fetch_history()
                if any(event.WhichOneof("attributes") == "workflow_execution_signaled_event_attributes" for event in history.events):
                    break
            await asyncio.sleep(0.1)
    assert history is not None
    try:
        raw = b"".join(event.SerializeToString() for event in history.events)
        assert MARKER.encode() not in raw and b"it is broken" not in raw
        signals = [event.workflow_execution_signaled_event_attributes.input.payloads for event in history.events
                   if event.WhichOneof("attributes") == "workflow_execution_signaled_event_attributes"]
        assert signals and all(p.metadata["encoding"] == ENCODING for payloads in signals for p in payloads)
    finally:
        await handle.terminate("test over")
