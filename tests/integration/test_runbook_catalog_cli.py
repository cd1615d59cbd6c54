"""The runbook catalog CLI (`runbooks list|show`) over a runbooks directory with a schedules file, and its
start-form JSON against the real server: pasted as is it runs; a bad input fails the run at once with the
message `pitstop run` prints."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from pitstop.config import SHIPPED_RUNBOOKS_DIR
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest

from .runbook_harness import engine

pytestmark = pytest.mark.integration

SCHEDULES = """\
schedules:
  - id: nightly-scale-check
    owner: team-sre
    runbook: scale-service
    inputs: {service: checkout, namespace: shop, region: eu-central, replicas: 6}
    dry_run: true
    cron: "0 2 * * *"
    time_zone: Europe/Berlin
"""


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pitstop.workers.cli", *args], env=env, capture_output=True, text=True, timeout=60)


def runbooks_with_a_schedule(tmp_path: Path) -> Path:
    runbooks = tmp_path / "runbooks"
    shutil.copytree(SHIPPED_RUNBOOKS_DIR, runbooks)
    (runbooks / "schedules.yaml").write_text(SCHEDULES)
    return runbooks


def _env(tmp_path: Path, runbooks: Path, address: str = "127.0.0.1:1", task_queue: str = "pitstop") -> dict[str, str]:
    return dict(
        os.environ, PITSTOP_RUNBOOKS_DIR=str(runbooks), PITSTOP_CONFIG=str(tmp_path / "absent.yaml"),
        PITSTOP_STATE_DIR=str(tmp_path / "state"), PITSTOP_TEMPORAL__ADDRESS=address,
        PITSTOP_TEMPORAL__TASK_QUEUE=task_queue,
    )


async def test_list_and_show(tmp_path: Path) -> None:
    runbooks = runbooks_with_a_schedule(tmp_path)
    env = _env(tmp_path, runbooks)  # no Temporal needed: nothing listens on port 1

    listed = await asyncio.to_thread(_cli, env, "runbooks", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["scale-service"][:5] == ["scale-service", "sre", "mutating", "refuse", "nightly-scale-check"]
    assert rows["hello"][:5] == ["hello", "platform-delivery", "read-only", "none", "-"]
    assert rows["remediate-restart"][3:6] == ["wait", "(up", "to"]

    machine = json.loads((await asyncio.to_thread(_cli, env, "runbooks", "list", "--json", "--tag", "remediation")).stdout)
    assert machine and {row["owner"] for row in machine} == {"sre"} and all("remediation" in r["tags"] for r in machine)

    shown = await asyncio.to_thread(_cli, env, "runbooks", "show", "scale-service")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "owner: sre    tags: operations, capacity" in text
    assert "  nightly-scale-check  cron 0 2 * * * Europe/Berlin  owner team-sre  dry run" in text
    assert "  replicas   integer  required  absolute replica count" in text
    assert "  └─ scale: kubernetes.scale (mutating)" in text and "undo: kubernetes.scale" in text
    assert "/namespaces/default/workflows/start-workflow" in text and "workflow type Runbook, task queue pitstop" in text

    form = await asyncio.to_thread(_cli, env, "runbooks", "show", "scale-service", "--start-form")
    assert json.loads(form.stdout)["inputs"]["replicas"] == "<replicas: integer, absolute replica count>"

    missing = await asyncio.to_thread(_cli, env, "runbooks", "show", "no-such")
    assert missing.returncode == 4 and "no runbook named 'no-such'" in missing.stderr

    (runbooks / "schedules.yaml").write_text(SCHEDULES.replace("replicas: 6", "replicas: six"))
    noted = await asyncio.to_thread(_cli, env, "runbooks", "list")
    assert noted.returncode == 0 and "schedules.yaml has 1 problem(s)" in noted.stdout, noted.stdout


async def test_start_form_json_runs_and_a_bad_input_fails_at_once_with_the_cli_message(
    temporal_client: Client, task_queue: str, tmp_path: Path,
) -> None:
    runbooks = runbooks_with_a_schedule(tmp_path)
    env = _env(tmp_path, runbooks, temporal_client.service_client.config.target_host, task_queue)
    hello_form = json.loads((await asyncio.to_thread(_cli, env, "runbooks", "show", "hello", "--start-form")).stdout)
    async with engine(temporal_client, task_queue, runbooks):
        outcome = await temporal_client.execute_workflow(
            RUNBOOK_WORKFLOW, RunbookRequest.model_validate(hello_form), id=f"form-hello-{task_queue}",
            task_queue=task_queue, result_type=RunbookOutcome,
        )
        assert outcome.status == "succeeded" and outcome.outputs["greet"]["message"] == "hello, world"

        cli = await asyncio.to_thread(_cli, env, "run", "scale-service", "-i", "service=checkout", "-i", "replicas=many")
        assert cli.returncode == 2 and cli.stderr.startswith("pitstop: error: scale-service is not valid; nothing was started:")
        handle = await temporal_client.start_workflow(
            RUNBOOK_WORKFLOW, RunbookRequest(runbook="scale-service", inputs={"service": "checkout", "replicas": "many"}),
            id=f"form-bad-{task_queue}", task_queue=task_queue, result_type=RunbookOutcome,
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        refused = info.value.cause
        assert isinstance(refused, ApplicationError) and refused.type == "RunbookInvalid"
        assert f"pitstop: error: {refused.message}\n" == cli.stderr
        assert "input 'replicas': type mismatch: expected integer, got string 'many'" in refused.message
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.FAILED
        assert description.close_time is not None and (description.close_time - description.start_time).total_seconds() < 10
        history = await handle.fetch_history()
        scheduled = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
        assert len(scheduled) == 1  # only `runbook.load`, once: no step ran, nothing was retried
