"""Start a runbook from the real Temporal Web UI's start-workflow form (headless Debian chromium) and see it
complete: the workflow's single JSON input is what an operator types."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from pitstop.runbook.request import RunbookOutcome
from tests.integration.runbook_harness import engine

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


async def test_start_hello_from_the_web_ui(temporal_server, temporal_client: Client, task_queue: str) -> None:  # type: ignore[no-untyped-def]
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: apt-get install -y chromium")
    from playwright.async_api import async_playwright

    workflow_id = f"ui-hello-{uuid.uuid4().hex[:6]}"
    payload = json.dumps({"runbook": "hello", "inputs": {"name": "from the UI"}})
    base = f"http://127.0.0.1:{temporal_server.ports.ui}"
    async with engine(temporal_client, task_queue), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{base}/namespaces/default/workflows/start-workflow", wait_until="networkidle")
            await page.fill("#workflowId", workflow_id)
            await page.fill("#taskQueue", task_queue)
            await page.fill("#workflowType", "Runbook")
            editor = page.locator(".cm-content").first
            await editor.click()
            await page.keyboard.type(payload)
            await page.click("#workflowId")  # the editor commits its text on blur
            await page.get_by_test_id("start-workflow-button").click()
            handle = temporal_client.get_workflow_handle(workflow_id, result_type=RunbookOutcome)
            for _ in range(100):
                try:
                    if (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED:
                        break
                except Exception:
                    pass
                await asyncio.sleep(0.2)
            outcome = await handle.result()
            assert outcome.status == "succeeded"
            assert outcome.outputs["greet"]["message"] == "hello, from the UI"
            description = await handle.describe()
            attributes = description.typed_search_attributes
            assert any(p.key.name == "RunbookName" and p.value == "hello" for p in attributes)
            assert any(p.key.name == "Phase" and p.value == "succeeded" for p in attributes)
            await page.goto(f"{base}/namespaces/default/workflows/{workflow_id}", wait_until="networkidle")
            await page.get_by_text("Completed").first.wait_for(timeout=15000)
        finally:
            await browser.close()
