"""`pitstop up` seen through the real Temporal Web UI (headless Debian chromium): the Schedules page lists the
schedules `up` applied from the runbooks directory's schedules file, and a runbook started from the UI's form
with a bad input (the catalog's start-form JSON pasted unedited) is refused at once with the message
`pitstop run` prints for the same inputs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from pitstop.config import SHIPPED_RUNBOOKS_DIR
from pitstop.runbook.catalog import start_form_json, start_form_request
from pitstop.runbook.request import RunbookOutcome
from pitstop.runbook.validation import load_runbook_file
from tests.fixtures.worker_reach import DEFAULT_REACH
from pitstop.workers.devserver import DevServerPorts, free_port

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PITSTOP = [sys.executable, "-m", "pitstop.workers.cli"]
SCHEDULE_ID = "nightly-scale-check"
SCHEDULES = f"""\
schedules:
  - id: {SCHEDULE_ID}
    owner: team-sre
    description: nightly dry run - pitstop can still read and would scale checkout (changes nothing)
    runbook: scale-service
    inputs: {{service: checkout, namespace: shop, region: eu-central, replicas: 6}}
    dry_run: true
    cron: "0 2 * * *"
    time_zone: Europe/Berlin
"""


@dataclass
class RunningUp:
    env: dict[str, str]
    ui: str
    address: str
    runbooks: Path
    log: Path


@pytest.fixture(scope="module")
def pitstop_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUp]:
    """`pitstop up --no-sandbox` on free ports, reading runbooks (and schedules.yaml) from a copy of the shipped ones."""
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: apt-get install -y chromium")
    root = tmp_path_factory.mktemp("up")
    runbooks = root / "runbooks"
    shutil.copytree(SHIPPED_RUNBOOKS_DIR, runbooks)
    (runbooks / "schedules.yaml").write_text(SCHEDULES)
    ports = DevServerPorts.free()
    env = dict(
        os.environ, PITSTOP_STATE_DIR=str(root / "state"), PITSTOP_CONFIG=str(root / "absent.yaml"),
        PITSTOP_TEMPORAL__ADDRESS=f"127.0.0.1:{ports.frontend}", PITSTOP_TEMPORAL__UI_PORT=str(ports.ui),
        PITSTOP_WORKER__METRICS_PORT="0", PITSTOP_WEBHOOK__LISTEN=f"127.0.0.1:{free_port()}",
        PITSTOP_RUNBOOKS_DIR=str(runbooks),
    )
    log = root / "up.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([*PITSTOP, "up", "--no-sandbox"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "ready in" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"pitstop up not ready in 90s:\n{log.read_text()}"
            time.sleep(0.2)
        yield RunningUp(env=env, ui=f"http://127.0.0.1:{ports.ui}", address=f"127.0.0.1:{ports.frontend}",
                        runbooks=runbooks, log=log)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def test_schedules_page_lists_the_schedules_up_applied(pitstop_up: RunningUp) -> None:
    from playwright.async_api import async_playwright

    assert SCHEDULE_ID in pitstop_up.log.read_text(), pitstop_up.log.read_text()  # `up` applied the file
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            listed = page.get_by_role("link", name=SCHEDULE_ID)
            for _ in range(20):  # the list comes from visibility, which may lag the create by a moment
                await page.goto(f"{pitstop_up.ui}/namespaces/default/schedules", wait_until="networkidle")
                if await listed.count():
                    break
                await asyncio.sleep(0.5)
            await listed.first.wait_for(timeout=5000)
            await listed.first.click()
            await page.wait_for_url(f"**/namespaces/default/schedules/{SCHEDULE_ID}**", timeout=15000)
            await page.get_by_text("Runbook").first.wait_for(timeout=15000)  # the workflow type it starts
        finally:
            await browser.close()


async def test_a_bad_input_from_the_start_form_is_refused_with_the_cli_message(pitstop_up: RunningUp) -> None:
    from playwright.async_api import async_playwright

    runbook = load_runbook_file(pitstop_up.runbooks / "scale-service.yaml", reach=DEFAULT_REACH)
    pasted = start_form_json(runbook)  # unedited: `replicas` is still its "<replicas: integer, ...>" placeholder
    inputs = start_form_request(runbook)["inputs"]
    cli = subprocess.run(
        [*PITSTOP, "run", "scale-service", *(arg for k, v in inputs.items() for arg in ("-i", f"{k}={json.dumps(v)}"))],
        env=pitstop_up.env, capture_output=True, text=True, timeout=60,
    )
    assert cli.returncode == 2 and "input 'replicas': type mismatch: expected integer, got string" in cli.stderr, cli.stderr

    workflow_id = f"ui-bad-input-{uuid.uuid4().hex[:6]}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{pitstop_up.ui}/namespaces/default/workflows/start-workflow", wait_until="networkidle")
            await page.fill("#workflowId", workflow_id)
            await page.fill("#taskQueue", "pitstop")
            await page.fill("#workflowType", "Runbook")
            await page.locator(".cm-content").first.click()
            await page.keyboard.insert_text(pasted)  # like a paste: no auto-closed brackets
            await page.click("#workflowId")  # the editor commits its text on blur
            await page.get_by_test_id("start-workflow-button").click()

            client = await Client.connect(pitstop_up.address, data_converter=pydantic_data_converter)
            handle = client.get_workflow_handle(workflow_id, result_type=RunbookOutcome)
            for _ in range(100):
                try:
                    if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                        break
                except Exception:  # not started yet
                    pass
                await asyncio.sleep(0.2)
            with pytest.raises(WorkflowFailureError) as info:
                await handle.result()
            refused = info.value.cause
            assert isinstance(refused, ApplicationError) and refused.type == "RunbookInvalid"
            assert cli.stderr == f"pitstop: error: {refused.message}\n"
            description = await handle.describe()
            assert description.close_time is not None
            assert (description.close_time - description.start_time).total_seconds() < 10  # at once, no retries

            await page.goto(f"{pitstop_up.ui}/namespaces/default/workflows/{workflow_id}", wait_until="networkidle")
            await page.get_by_text("Failed").first.wait_for(timeout=15000)
            await page.get_by_text("type mismatch: expected integer").first.wait_for(timeout=15000)
        finally:
            await browser.close()
