"""Chaos runs on the real Temporal dev server with real chaoslib child processes (python providers that record
their calls): the journal has `chaos run`'s shape, an abort or the deadline stops the method and the rollbacks run
once, a failing rollback is retried and reported, an invalid experiment is refused with chaoslib's message."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowFailureError

from pitstop.activities.clients import ActivityClients
from pitstop.chaos.model import ChaosOutcome, ChaosRequest, ChaosStatus
from pitstop.config import Settings
from tests.fixtures.pitstop_api import RunningApi, running_api

from .chaos_harness import REGION, calls, chaos_engine, chaos_settings, experiment, maybe_record, start_chaos

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture
async def engine(temporal_client: Client, task_queue: str, pitstop_settings: Settings) -> AsyncIterator[None]:
    clients = ActivityClients(settings=chaos_settings(pitstop_settings), temporal=temporal_client)
    async with chaos_engine(temporal_client, task_queue, clients):
        yield


def request(exp: dict[str, Any], **fields: Any) -> ChaosRequest:
    return ChaosRequest(experiment=exp, region=REGION, **fields)


def keys(value: Any) -> Any:
    """The shape of a journal: nested keys (lists by their first item), no values."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items() if k != "experiment"}
    if isinstance(value, list):
        return [keys(value[0])] if value else []
    return type(value).__name__ if value is None or isinstance(value, bool) else "value"


def chaos_run_journal(exp: dict[str, Any], work: Path) -> dict[str, Any]:
    """The journal the Chaos Toolkit CLI writes for the same experiment."""
    (work / "experiment.json").write_text(json.dumps(exp))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([str(Path(sys.executable).parent / "chaos"), "run", "experiment.json", "--journal-path", "journal.json"],
                   cwd=work, env=env, check=False, capture_output=True, timeout=120)
    return json.loads((work / "journal.json").read_text())


async def test_a_completed_run_writes_the_journal_chaos_run_writes(
    temporal_client: Client, task_queue: str, engine: None, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    exp = experiment(log)
    handle = await start_chaos(temporal_client, task_queue, request(exp))
    outcome = await handle.result()
    await maybe_record(handle, "completed")
    assert (outcome.status, outcome.deviated, outcome.rollbacks_played) == (ChaosStatus.COMPLETED, False, True)
    assert [calls(log, label) for label in ("probe", "method", "rollback")] == [2, 1, 1]
    reference = chaos_run_journal(exp, tmp_path)
    assert keys(outcome.journal) == keys(reference)
    assert list(outcome.journal) == list(reference), "same keys in the same order as `chaos run` writes them"
    assert outcome.journal["experiment"] == exp, "the experiment is carried unchanged"
    assert outcome.journal["run"][0]["output"] == "method"
    assert outcome.journal["rollbacks"][0]["status"] == "succeeded"


async def test_an_abort_mid_method_kills_the_method_and_rolls_back_once(
    temporal_client: Client, task_queue: str, engine: None, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    handle = await start_chaos(temporal_client, task_queue, request(experiment(log, method_seconds=120)))
    for _ in range(600):
        if calls(log, "method"):
            break
        await asyncio.sleep(0.1)
    assert calls(log, "method") == 1, "the method started within 60s"
    method_pid = int(next(line for line in log.read_text().splitlines() if line.startswith("method")).split()[1])
    await handle.signal("abort", "test abort")
    outcome = await asyncio.wait_for(handle.result(), timeout=60)
    await maybe_record(handle, "aborted")
    assert outcome.status is ChaosStatus.ABORTED and outcome.reason == "test abort"
    assert calls(log, "rollback") == 1
    assert outcome.journal["rollbacks"][0]["status"] == "succeeded"
    with pytest.raises(ProcessLookupError):
        os.kill(method_pid, 0)


async def test_the_deadline_aborts_the_method_and_rolls_back(
    temporal_client: Client, task_queue: str, engine: None, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    handle = await start_chaos(temporal_client, task_queue, request(experiment(log, method_seconds=120), deadline_seconds=3))
    outcome = await asyncio.wait_for(handle.result(), timeout=60)
    assert outcome.status is ChaosStatus.ABORTED and "deadline (3s)" in outcome.reason
    assert calls(log, "rollback") == 1


async def test_a_failing_rollback_is_retried_then_reported(
    temporal_client: Client, task_queue: str, engine: None, tmp_path: Path
) -> None:
    recovering, failing = tmp_path / "recovering.log", tmp_path / "failing.log"
    first = await start_chaos(temporal_client, task_queue, request(experiment(recovering, rollback_failures=1), rollback_attempts=3))
    second = await start_chaos(temporal_client, task_queue, request(experiment(failing, rollback_failures=99), rollback_attempts=2))
    recovered, failed = await first.result(), await second.result()
    await maybe_record(second, "rollback-failed")
    assert calls(recovering, "rollback") == 2 and recovered.rollback_failures == [] and recovered.ok
    assert calls(failing, "rollback") == 2
    assert len(failed.rollback_failures) == 1 and "failing on purpose" in failed.rollback_failures[0]
    assert "after 2 attempt(s)" in failed.rollback_failures[0] and not failed.ok
    assert failed.journal["rollbacks"][0]["status"] == "failed", "the last attempt's run is in the journal"


async def test_an_invalid_experiment_is_refused_with_chaoslibs_message(
    temporal_client: Client, task_queue: str, engine: None, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    exp = {k: v for k, v in experiment(log).items() if k != "description"}
    handle = await start_chaos(temporal_client, task_queue, request(exp))
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    await maybe_record(handle, "invalid")
    assert "invalid experiment: experiment requires a description" in str(failure.value.cause)
    not_allowed = {**experiment(log), "method": [{"type": "action", "name": "shell", "provider": {
        "type": "python", "module": "os", "func": "system", "arguments": {"command": "true"}}}]}
    with pytest.raises(WorkflowFailureError) as failure:
        await (await start_chaos(temporal_client, task_queue, request(not_allowed))).result()
    assert "python module 'os' is not in security.chaos_provider_modules" in str(failure.value.cause)
    assert not log.exists(), "nothing ran"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pitstop.workers.cli", *args], env=env, capture_output=True, text=True, timeout=120)


async def test_the_cli_validates_runs_reports_and_shows_history(
    temporal_client: Client, task_queue: str, engine: None, tmp_path: Path, pitstop_settings: Settings
) -> None:
    async with running_api(temporal_client, chaos_settings(pitstop_settings), tmp_path / "api") as api:
        await cli_runs_reports_and_shows_history(temporal_client, task_queue, tmp_path, api)


async def cli_runs_reports_and_shows_history(temporal_client: Client, task_queue: str, tmp_path: Path,
                                             api: RunningApi) -> None:
    """`chaos run` and `chaos abort` go through the pitstop API (as carol, a verified test user)."""
    from .chaos_harness import TEST_CHAOS_MODULES

    env = dict(os.environ, PITSTOP_TEMPORAL__ADDRESS=temporal_client.service_client.config.target_host,
               PITSTOP_TEMPORAL__TASK_QUEUE=task_queue, PITSTOP_CONFIG=str(tmp_path / "absent.yaml"),
               PITSTOP_STATE_DIR=str(tmp_path), PITSTOP_SECURITY__CHAOS_PROVIDER_MODULES=json.dumps(TEST_CHAOS_MODULES),
               **api.env_for("carol"))
    log = tmp_path / "calls.log"
    exp = experiment(log)
    (tmp_path / "bad.json").write_text(json.dumps({k: v for k, v in exp.items() if k != "title"}))
    bad = await asyncio.to_thread(_cli, env, "chaos", "validate", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "chaoslib: experiment requires a title" in bad.stderr, bad.stdout + bad.stderr
    (tmp_path / "exp.yaml").write_text(json.dumps(exp))  # YAML is a superset of JSON
    ok = await asyncio.to_thread(_cli, env, "chaos", "validate", str(tmp_path / "exp.yaml"))
    assert ok.returncode == 0 and "valid: 'recorded calls'" in ok.stdout, ok.stdout + ok.stderr
    ran = await asyncio.to_thread(_cli, env, "chaos", "run", str(tmp_path / "exp.yaml"), "--region", REGION,
                                  "--target", f"{REGION}/team-chaos/recorded", "--journal-path", str(tmp_path / "j.json"))
    assert ran.returncode == 0 and "completed, 1 activit(ies), 1 rollback(s)" in ran.stdout, ran.stdout + ran.stderr
    assert json.loads((tmp_path / "j.json").read_text())["rollbacks"][0]["status"] == "succeeded"
    run_id = ran.stdout.split()[2].rstrip(":")
    history = await asyncio.to_thread(_cli, env, "history", run_id)
    assert "journal: 'recorded calls' completed" in history.stdout, history.stdout + history.stderr
    status = await asyncio.to_thread(_cli, env, "chaos", "status", run_id)
    assert f"{run_id}: 'recorded calls' phase done, 1 method run(s), 1 rollback run(s)" in status.stdout, status.stdout + status.stderr
    journal = await asyncio.to_thread(_cli, env, "chaos", "journal", run_id)
    assert json.loads(journal.stdout) == json.loads((tmp_path / "j.json").read_text())
    report = await asyncio.to_thread(_cli, env, "chaos", "report", "--service", "team-chaos/recorded")
    assert "team-chaos/recorded" in report.stdout and "runs=1" in report.stdout, report.stdout + report.stderr
    long_run = tmp_path / "long.json"
    long_run.write_text(json.dumps(experiment(tmp_path / "long.log", method_seconds=120)))
    detached = await asyncio.to_thread(_cli, env, "chaos", "run", str(long_run), "--region", REGION, "--no-wait")
    assert detached.returncode == 0 and " as carol" in detached.stdout, detached.stdout + detached.stderr
    long_id = detached.stdout.split()[1]
    for _ in range(600):  # abort mid-method, through the API
        if calls(tmp_path / "long.log", "method"):
            break
        await asyncio.sleep(0.1)
    aborted = await asyncio.to_thread(_cli, env, "chaos", "abort", long_id, "-m", "enough")
    assert aborted.returncode == 0 and f"abort: requested for {long_id} by carol" in aborted.stdout, aborted.stderr
    outcome = await asyncio.wait_for(temporal_client.get_workflow_handle(long_id, result_type=ChaosOutcome).result(), 60)
    assert outcome.status is ChaosStatus.ABORTED and "enough by carol" in outcome.reason, outcome


async def test_a_leased_target_refuses_or_with_skip_refused_skips(
    temporal_client: Client, task_queue: str, engine: None, tmp_path: Path
) -> None:
    from pitstop.chaos.model import ChaosTarget

    target = ChaosTarget(region=REGION, namespace="team-chaos", service="leased")
    holding, log = tmp_path / "holder.log", tmp_path / "calls.log"
    holder = await start_chaos(temporal_client, task_queue, request(experiment(holding, method_seconds=120), targets=[target]))
    for _ in range(600):
        if calls(holding, "method"):
            break
        await asyncio.sleep(0.1)
    assert calls(holding, "method") == 1, "the holder's method started within 60s: it holds the lease"
    refused = await start_chaos(temporal_client, task_queue, request(experiment(log), targets=[target]))
    with pytest.raises(WorkflowFailureError) as failure:
        await refused.result()
    assert "target busy, refused by lease policy" in str(failure.value.cause)
    skipping = await start_chaos(temporal_client, task_queue, request(experiment(log), targets=[target], skip_refused=True))
    skipped = await skipping.result()
    await maybe_record(skipping, "skipped")
    assert skipped.skipped and "refused by lease policy" in skipped.reason and not skipped.ok
    assert not log.exists(), "nothing ran on the leased target"
    await holder.signal("abort", "test done")
    assert (await asyncio.wait_for(holder.result(), timeout=60)).status is ChaosStatus.ABORTED


async def test_cancelling_the_run_mid_method_still_rolls_back_once(
    temporal_client: Client, task_queue: str, engine: None, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    handle = await start_chaos(temporal_client, task_queue, request(experiment(log, method_seconds=120)))
    for _ in range(600):
        if calls(log, "method"):
            break
        await asyncio.sleep(0.1)
    assert calls(log, "method") == 1, "the method started within 60s"
    await handle.cancel()
    outcome = await asyncio.wait_for(handle.result(), timeout=60)
    assert outcome.status is ChaosStatus.ABORTED and outcome.reason == "the run was cancelled"
    assert calls(log, "rollback") == 1
