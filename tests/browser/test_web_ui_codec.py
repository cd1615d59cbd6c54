"""The real Temporal Web UI (headless Debian chromium) shows a runbook's encrypted input decrypted, through the codec
endpoint the webhook process serves (`--ui-codec-endpoint`, as `pitstop up` starts the UI when
`security.payload_keys_file` is set), while the server itself holds only ciphertext."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client

from pitstop.config import Settings
from tests.integration.runbook_harness import engine, start
from tests.integration.test_webhook import webhook_server
from pitstop.workers.devserver import DevServer, DevServerPorts, free_port
from pitstop.workers.payload_codec import rotate_key_ring
from pitstop.workers.temporal_connection import connect

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
MARKER = "vin-WF0XXXGCDX8Y12345"


async def test_the_web_ui_shows_decrypted_input_through_the_codec_endpoint(task_queue: str, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: apt-get install -y chromium")
    from playwright.async_api import async_playwright

    ring = tmp_path / "payload-keys.yaml"
    rotate_key_ring(ring)
    ports = DevServerPorts.free()
    webhook_port = next(port for port in iter(free_port, None) if port not in (ports.frontend, ports.ui, ports.http, ports.metrics))
    settings = Settings(temporal={"address": f"127.0.0.1:{ports.frontend}", "ui_port": ports.ui},
                        state_dir=tmp_path / "state", security={"payload_keys_file": ring})
    async with webhook_server(settings, await connect(settings, lazy=True), webhook_port) as alerts_url:  # serves /codec/* beside /alerts
        server = DevServer(state_dir=tmp_path / "temporal", ports=ports,
                           codec_endpoint=alerts_url.removesuffix("/alerts") + "/codec")
        server.start()
        try:
            client = await connect(settings)
            async with engine(client, task_queue):
                handle = await start(client, task_queue, "hello", name=MARKER)
                await handle.result()
            raw = await (await Client.connect(server.address)).get_workflow_handle(handle.id).fetch_history()
            assert MARKER.encode() not in b"".join(event.SerializeToString() for event in raw.events)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
                try:
                    page = await browser.new_page()
                    await page.goto(f"{server.ui_url}/namespaces/default/workflows/{handle.id}", wait_until="networkidle")
                    await page.get_by_text(MARKER).first.wait_for(timeout=20000)
                finally:
                    await browser.close()
        finally:
            server.stop()
