"""The runbook CLI against the real server: validate, run --dry-run, approve (refused/allowed), status, history."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from temporalio.client import Client

from .runbook_harness import TEST_RUNBOOKS, engine, start, wait_until

pytestmark = pytest.mark.integration


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=env, capture_output=True, text=True, timeout=60)


def _env(temporal_client: Client, task_queue: str, tmp_path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = dict(os.environ)
    env.update(
        PITSTOP_TEMPORAL__ADDRESS=temporal_client.service_client.config.target_host,
        PITSTOP_TEMPORAL__TASK_QUEUE=task_queue, PITSTOP_RUNBOOKS_DIR=str(TEST_RUNBOOKS),
        PITSTOP_CONFIG=str(tmp_path / "absent.yaml"), PITSTOP_STATE_DIR=str(tmp_path),
    )
    return env


async def test_validate_reports_file_line_step_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = dict(os.environ, PITSTOP_CONFIG=str(tmp_path / "absent.yaml"))
    ok = await asyncio.to_thread(_cli, env, "runbooks", "validate")
    assert ok.returncode == 0 and "hello" in ok.stdout, ok.stdout + ok.stderr
    bad = await asyncio.to_thread(_cli, env, "runbooks", "validate", str(TEST_RUNBOOKS.parent / "invalid_runbooks" / "cycle.yaml"))
    assert bad.returncode == 2
    assert "cycle.yaml:6: step 'a', field 'needs': dependency cycle: a -> c -> b -> a" in bad.stdout


async def test_cli_dry_run_approve_status_history(temporal_client: Client, task_queue: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = _env(temporal_client, task_queue, tmp_path)
    async with engine(temporal_client, task_queue):
        dry = await asyncio.to_thread(_cli, env, "run", "gated", "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "succeeded (dry run: nothing was changed)" in dry.stdout
        assert "would wait for approval by alice, bob" in dry.stdout

        invalid = await asyncio.to_thread(_cli, env, "run", "saga", "-i", "fail_attempts=many")
        assert invalid.returncode == 2 and "nothing was started" in invalid.stderr

        handle = await start(temporal_client, task_queue, "gated")
        await wait_until(handle, lambda s: s.phase.value == "waiting_for_approval")
        shown = await asyncio.to_thread(_cli, env, "status", handle.id)
        assert f"pitstop approve {handle.id} --step ok" in shown.stdout, shown.stdout
        refused = await asyncio.to_thread(_cli, env, "approve", handle.id, "--step", "ok", "--as", "mallory")
        assert refused.returncode == 2 and "'mallory' may not approve step 'ok'" in refused.stderr
        allowed = await asyncio.to_thread(_cli, env, "approve", handle.id, "--step", "ok", "--as", "alice", "-m", "ship it")
        assert allowed.returncode == 0 and "approved ok as alice" in allowed.stdout, allowed.stderr
        await handle.result()

        history = await asyncio.to_thread(_cli, env, "history", handle.id)
        assert "approve by alice" in history.stdout and "runbook.debug_change" in history.stdout, history.stdout
        assert "did the change approved by alice" in history.stdout
        machine = json.loads((await asyncio.to_thread(_cli, env, "history", handle.id, "--json")).stdout)
        assert machine["run"]["runbook"] == "gated" and machine["run"]["status"] == "succeeded"
        steps = [e for e in machine["timeline"] if e["kind"] == "step"]
        assert steps[-1]["call"] == "change" and steps[-1]["attempts"] == 1
