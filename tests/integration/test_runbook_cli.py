"""The runbook CLI against the real server: validate, run --dry-run, approve (refused/allowed), status, history."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from temporalio.client import Client

from tests.fixtures.worker_reach import TEST_WORKER_ENV

from .runbook_harness import TEST_RUNBOOKS, engine, start, wait_until

pytestmark = pytest.mark.integration


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pitstop.workers.cli", *args], env=env, capture_output=True, text=True, timeout=60)


def _env(temporal_client: Client, task_queue: str, tmp_path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = dict(os.environ)
    env.update(
        PITSTOP_TEMPORAL__ADDRESS=temporal_client.service_client.config.target_host,
        PITSTOP_TEMPORAL__TASK_QUEUE=task_queue, PITSTOP_RUNBOOKS_DIR=str(TEST_RUNBOOKS),
        PITSTOP_CONFIG=str(tmp_path / "absent.yaml"), PITSTOP_STATE_DIR=str(tmp_path), **TEST_WORKER_ENV,
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


async def test_cli_status_and_history_follow_a_continue_as_new_chain(temporal_client: Client, task_queue: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = _env(temporal_client, task_queue, tmp_path)
    async with engine(temporal_client, task_queue):
        handle = await start(temporal_client, task_queue, "linear", history_limit=120)
        await handle.result()
        shown = await asyncio.to_thread(_cli, env, "status", handle.id)
        assert shown.returncode == 0, shown.stderr
        assert "linear succeeded" in shown.stdout and "continued-as-new" in shown.stdout, shown.stdout
        assert shown.stdout.count(" succeeded ") >= 60

        text = await asyncio.to_thread(_cli, env, "history", handle.id)
        assert text.returncode == 0, text.stderr
        assert "Temporal runs: the run continued-as-new" in text.stdout
        assert "continued as new run" in text.stdout
        assert "s01" in text.stdout and "s60" in text.stdout and "ended" in text.stdout
        machine = json.loads((await asyncio.to_thread(_cli, env, "history", handle.id, "--json")).stdout)
        calls = [e["call"] for e in machine["timeline"] if e["kind"] == "step"]
        assert calls == ["load"] + [f"s{i:02d}" for i in range(1, 61)]
        assert machine["run"]["status"] == "succeeded" and machine["run"]["runs"] >= 3
        assert machine["run"]["runbook"] == "linear" and machine["run"]["trigger"] == "test"
