"""Schedules from the file on the real Temporal dev server: apply creates, a second apply changes nothing, an
edited entry is updated, a removed one deleted, a schedule pitstop did not create is never touched; a
short-interval schedule starts runs with Trigger=schedule (overlap `skip` observed while one runs); a
scheduled run whose target is leased ends skipped with the reason, and the next one runs normally; so does one whose
`error_budget` is spent (measured on a real Prometheus), while one with budget left runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from temporalio.client import (
    Client, Schedule, ScheduleActionStartWorkflow, ScheduleIntervalSpec, ScheduleOverlapPolicy, ScheduleSpec,
    ScheduleState, WorkflowExecutionStatus, WorkflowHandle,
)

from pitstop.activities.delivery import ReleaseAnalysisActivities
from pitstop.config import Settings
from pitstop.runbook.request import RunbookOutcome
from pitstop.runbook.run_state import ControlRequest
from pitstop.runbook.validation import validate_catalog
from pitstop.schedules.model import ScheduleEntry
from pitstop.schedules.validation import parse_schedules
from tests.fixtures.pitstop_api import running_api
from tests.fixtures.worker_reach import TEST_REACH, TEST_WORKER_ENV
from pitstop.workers import schedules
from pitstop.workers.clients import build_activity_clients
from pitstop.workers.run_history import fetch_chain, render, timeline

from .runbook_harness import TEST_RUNBOOKS, engine, start, step_state, wait_until

pytestmark = pytest.mark.integration

RUNBOOKS = {name: runbook for name, (_, runbook) in validate_catalog(TEST_RUNBOOKS, reach=TEST_REACH)[0].items()}


def entries(text: str) -> list[ScheduleEntry]:
    parsed, problems = parse_schedules(text, "schedules.yaml", RUNBOOKS)
    assert problems == [], [str(p) for p in problems]
    return parsed


@pytest_asyncio.fixture
async def clean_schedules(temporal_client: Client, task_queue: str) -> AsyncIterator[None]:
    """Every test leaves no pitstop schedule behind (apply of an empty file deletes them)."""
    yield
    await schedules.apply(temporal_client, [], task_queue=task_queue)


async def scheduled_runs(client: Client, schedule_id: str, at_least: int, timeout: float = 30) -> list[Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [e async for e in client.list_workflows(f"TemporalScheduledById='{schedule_id}'")]
        if len(found) >= at_least:
            return sorted(found, key=lambda e: e.start_time)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(found)} run(s) of schedule {schedule_id} after {timeout}s, expected {at_least}")
        await asyncio.sleep(0.3)


async def test_apply_creates_is_idempotent_updates_deletes_and_leaves_foreign_alone(
    temporal_client: Client, task_queue: str, clean_schedules: None,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    nightly, hourly, foreign = f"nightly-{suffix}", f"hourly-{suffix}", f"foreign-{suffix}"
    await temporal_client.create_schedule(foreign, Schedule(
        action=ScheduleActionStartWorkflow("SomethingElse", id=f"other-{suffix}", task_queue="elsewhere"),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=5))]),
        state=ScheduleState(paused=True, note="someone else's"),
    ))
    first = entries(f"""
schedules:
  - {{id: {nightly}, owner: sre, runbook: hello, inputs: {{name: night}}, cron: "0 2 * * *", time_zone: Europe/Berlin}}
  - {{id: {hourly}, owner: sre, runbook: hello, every: 1h, overlap: buffer_one, paused: true, note: not yet}}
""")
    created = await schedules.apply(temporal_client, first, task_queue=task_queue)
    assert {c.id: c.kind for c in created} == {hourly: "create", nightly: "create"}

    described = await temporal_client.get_schedule_handle(nightly).describe()
    assert await described.memo_value("managed-by") == "pitstop"
    assert described.schedule.spec.time_zone_name == "Europe/Berlin"
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    next_local = described.info.next_action_times[0].astimezone(ZoneInfo("Europe/Berlin"))
    assert (next_local.hour, next_local.minute) == (2, 0)
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "Runbook" and action.task_queue == task_queue
    request = temporal_client.data_converter.payload_converter.from_payload(action.args[0])  # type: ignore[arg-type]
    assert request["trigger"] == "schedule" and request["inputs"] == {"name": "night"}
    assert request["started_by"] == f"schedule {nightly}"
    hourly_desc = await temporal_client.get_schedule_handle(hourly).describe()
    assert hourly_desc.schedule.state.paused and hourly_desc.schedule.state.note == "not yet"
    assert hourly_desc.schedule.policy.overlap == ScheduleOverlapPolicy.BUFFER_ONE

    again = await schedules.apply(temporal_client, first, task_queue=task_queue)
    assert {c.id: c.kind for c in again} == {hourly: "unchanged", nightly: "unchanged"}
    assert (await temporal_client.get_schedule_handle(nightly).describe()).info.last_updated_at == described.info.last_updated_at

    edited = entries(f"""
schedules:
  - {{id: {nightly}, owner: sre, runbook: hello, inputs: {{name: night}}, cron: "30 3 * * *", time_zone: UTC, jitter: 1m, overlap: cancel_other}}
""")
    diff = await schedules.plan(temporal_client, edited, task_queue=task_queue)
    assert [(c.id, c.kind, c.fields) for c in diff] == [
        (hourly, "delete", []), (nightly, "update", ["cron", "jitter", "overlap", "time_zone"])]
    done = await schedules.apply(temporal_client, edited, task_queue=task_queue)
    assert [(c.id, c.kind) for c in done] == [(hourly, "delete"), (nightly, "update")]
    updated = await temporal_client.get_schedule_handle(nightly).describe()
    assert updated.schedule.policy.overlap == ScheduleOverlapPolicy.CANCEL_OTHER
    assert updated.schedule.spec.jitter is not None and updated.schedule.spec.jitter.total_seconds() == 60
    assert (updated.info.next_action_times[0].hour, updated.info.next_action_times[0].minute) == (3, 30)
    assert await schedules.describe(temporal_client, hourly) is None, "the removed entry's schedule is deleted"
    assert [(c.id, c.kind) for c in await schedules.apply(temporal_client, edited, task_queue=task_queue)] == [(nightly, "unchanged")]

    conflicting = entries(f"schedules:\n  - {{id: {foreign}, owner: sre, runbook: hello, every: 1h}}\n")
    (conflict,) = [c for c in await schedules.apply(temporal_client, conflicting, task_queue=task_queue) if c.id == foreign]
    assert conflict.kind == "conflict"
    untouched = await temporal_client.get_schedule_handle(foreign).describe()
    assert untouched.schedule.state.paused and untouched.schedule.state.note == "someone else's"
    assert untouched.schedule.action.workflow == "SomethingElse"  # type: ignore[attr-defined]
    assert await untouched.memo_value("managed-by", None) is None
    await temporal_client.get_schedule_handle(foreign).delete()


async def test_short_interval_starts_runs_with_trigger_schedule_and_skips_overlaps(
    temporal_client: Client, task_queue: str, clean_schedules: None,
) -> None:
    schedule_id = f"every-2s-{uuid.uuid4().hex[:6]}"
    service = f"svc-{uuid.uuid4().hex[:6]}"
    file = entries(f"""
schedules:
  - {{id: {schedule_id}, owner: sre, runbook: long, inputs: {{seconds: 7, service: {service}}}, every: 2s, overlap: skip}}
""")
    async with engine(temporal_client, task_queue):
        await schedules.apply(temporal_client, file, task_queue=task_queue)
        (first,) = await scheduled_runs(temporal_client, schedule_id, at_least=1)
        handle: WorkflowHandle[Any, RunbookOutcome] = temporal_client.get_workflow_handle(first.id, result_type=RunbookOutcome)
        await wait_until(handle, lambda s: step_state(s, "work") == "running")
        await asyncio.sleep(4.5)  # two or more 2s ticks while the first run is still working
        described = await temporal_client.get_schedule_handle(schedule_id).describe()
        assert described.info.num_actions_skipped_overlap >= 1, described.info
        assert len(described.info.running_actions) == 1
        assert len([e async for e in temporal_client.list_workflows(f"TemporalScheduledById='{schedule_id}'")]) == 1
        await temporal_client.get_schedule_handle(schedule_id).pause(note="test: stop ticking")
        outcome = await handle.result()
        listed = [e async for e in temporal_client.list_workflows(f"TemporalScheduledById='{schedule_id}' AND `Trigger`='schedule'")]
        rows = {r.id: r for r in await schedules.rows(temporal_client)}
        chain = await fetch_chain(temporal_client, first.id)
    assert outcome.status == "succeeded"
    assert [e.id for e in listed] == [first.id]
    sa = (await handle.describe()).search_attributes
    assert sa["Trigger"] == ["schedule"] and sa["RunbookName"] == ["long"] and sa["TemporalScheduledById"] == [schedule_id]
    run = timeline(chain)["run"]
    assert (run["trigger"], run["schedule_id"], run["started_by"]) == ("schedule", schedule_id, f"schedule {schedule_id}")
    assert f"via schedule (Temporal Schedule {schedule_id})" in render(timeline(chain))
    row = rows[schedule_id]
    assert row.paused and row.note == "test: stop ticking" and row.timing == "every 2s" and row.overlap == "skip"
    assert row.last_run is not None and row.last_run.workflow_id == first.id and row.last_run.outcome == "succeeded"


async def test_a_leased_target_skips_the_scheduled_run_with_its_reason_then_the_next_runs(
    temporal_client: Client, task_queue: str, clean_schedules: None,
) -> None:
    schedule_id = f"nightly-{uuid.uuid4().hex[:6]}"
    service = f"svc-{uuid.uuid4().hex[:6]}"
    file = entries(f"""
schedules:
  - {{id: {schedule_id}, owner: sre, runbook: long, inputs: {{seconds: 0.2, service: {service}}}, cron: "0 2 * * *"}}
""")
    async with engine(temporal_client, task_queue):
        await schedules.apply(temporal_client, file, task_queue=task_queue)
        holder = await start(temporal_client, task_queue, "long", seconds=60, service=service)
        await wait_until(holder, lambda s: step_state(s, "work") == "running")

        await temporal_client.get_schedule_handle(schedule_id).trigger()
        (skipped_run,) = await scheduled_runs(temporal_client, schedule_id, at_least=1)
        skipped: WorkflowHandle[Any, RunbookOutcome] = temporal_client.get_workflow_handle(skipped_run.id, result_type=RunbookOutcome)
        outcome = await asyncio.wait_for(skipped.result(), timeout=30)
        described = await skipped.describe()
        row = {r.id: r for r in await schedules.rows(temporal_client)}[schedule_id]

        await holder.execute_update("abort", ControlRequest(identity="test", reason="release done"))
        await holder.result()
        await temporal_client.get_schedule_handle(schedule_id).trigger()
        runs = await scheduled_runs(temporal_client, schedule_id, at_least=2)
        next_outcome = await temporal_client.get_workflow_handle(runs[-1].id, result_type=RunbookOutcome).result()

    assert described.status == WorkflowExecutionStatus.COMPLETED, "a skipped run is not a failure"
    assert outcome.status == "skipped"
    assert f"lease/eu-central/shop/{service} is held by run {holder.id}" in outcome.error, outcome.error
    assert set(outcome.steps.values()) == {"pending"}, "nothing ran"
    assert described.search_attributes["Phase"] == ["skipped"]
    assert row.last_run is not None and row.last_run.outcome == "skipped" and holder.id in row.last_run.reason
    assert next_outcome.status == "succeeded"


async def test_cli_validate_diff_apply_list_pause_trigger_delete(
    temporal_client: Client, task_queue: str, tmp_path: Path, clean_schedules: None, pitstop_settings: Settings,
) -> None:
    schedule_id = f"cli-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "schedules.yaml"
    path.write_text(f"schedules:\n  - {{id: {schedule_id}, owner: sre, runbook: hello, cron: '0 4 * * *'}}\n")
    env = dict(os.environ, PITSTOP_TEMPORAL__ADDRESS=temporal_client.service_client.config.target_host,
               PITSTOP_TEMPORAL__TASK_QUEUE=task_queue, PITSTOP_RUNBOOKS_DIR=str(TEST_RUNBOOKS),
               PITSTOP_CONFIG=str(tmp_path / "absent.yaml"), PITSTOP_STATE_DIR=str(tmp_path), **TEST_WORKER_ENV)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pitstop.workers.cli", "schedules", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(cli, *args)

    settings = pitstop_settings.model_copy(update={"runbooks_dir": TEST_RUNBOOKS})
    async with running_api(temporal_client, settings, tmp_path / "api") as api:
        env.update(api.env_for("carol"))  # apply, pause, unpause, trigger and delete go through the pitstop API
        assert (await run("validate", "-f", str(path))).stdout.strip() == f"1 schedule(s) valid: {schedule_id}"
        diff = await run("diff", "-f", str(path))
        assert diff.returncode == 0 and f"create    {schedule_id}" in diff.stdout, diff.stdout + diff.stderr
        assert await schedules.describe(temporal_client, schedule_id) is None, "diff changes nothing"
        applied = await run("apply", "-f", str(path))
        assert applied.returncode == 0 and "1 created" in applied.stdout, applied.stdout + applied.stderr
        assert "applied as carol" in applied.stdout
        assert "1 unchanged" in (await run("apply", "-f", str(path))).stdout
        paused = await run("pause", schedule_id, "--reason", "freeze week")
        assert paused.returncode == 0, paused.stderr
        listed = await run("list")
        assert f"{schedule_id}  runbook hello  cron 0 4 * * * UTC" in listed.stdout, listed.stdout
        assert "PAUSED: paused by carol: freeze week" in listed.stdout
        async with engine(temporal_client, task_queue):
            assert (await run("trigger", schedule_id)).returncode == 0
            (triggered,) = await scheduled_runs(temporal_client, schedule_id, at_least=1)
            assert (await temporal_client.get_workflow_handle(triggered.id, result_type=RunbookOutcome).result()).status == "succeeded"
        unpaused = await run("unpause", schedule_id, "-m", "freeze over")
        assert unpaused.returncode == 0 and "unpaused by carol: freeze over" in unpaused.stdout
        assert not (await temporal_client.get_schedule_handle(schedule_id).describe()).schedule.state.paused
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"schedules:\n  - {{id: {schedule_id}, owner: sre, runbook: hello, cron: '0 25 * * *'}}\n")
        refused = await run("apply", "-f", str(bad))
        assert refused.returncode == 2 and f"{bad}:2: field '{schedule_id}.cron': cron hour field '25'" in refused.stderr
        assert (await run("delete", schedule_id)).returncode == 0
        assert await schedules.describe(temporal_client, schedule_id) is None
        missing = await run("trigger", schedule_id)
        assert missing.returncode == 4 and f"no schedule with id {schedule_id!r}" in missing.stderr


# ---------------------------------------------------------------- error budgets, on a real Prometheus


def write_request_history(path: Path, *, namespace: str, region: str, rps: dict[str, dict[str, float]],
                          minutes: int = 20, step: int = 15) -> None:
    """OpenMetrics of `istio_requests_total` (as Istio's destination reporter labels it), one counter per service
    and response code at `rps[service][code]` requests/s, over the last `minutes`, ending 30 s ago."""
    end = int(time.time()) - 30
    lines = ["# TYPE istio_requests counter"]
    for service, codes in rps.items():
        for code, rate in codes.items():
            labels = (f'reporter="destination",destination_service_name="{service}",'
                      f'destination_service_namespace="{namespace}",region="{region}",response_code="{code}"')
            for t in range(end - minutes * 60, end + 1, step):
                lines.append(f"istio_requests_total{{{labels}}} {rate * (t - end + minutes * 60):.1f} {t}")
    path.write_text("\n".join(lines) + "\n# EOF\n")


@pytest.fixture
def prometheus_with_history(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A real Prometheus whose TSDB holds 20 minutes of requests (backfilled with promtool): service `burnt-*`
    fails 20 % of them, `healthy-*` none (no 5xx series at all, as Istio exports it). Yields (url, burnt, healthy)."""
    from pitstop.sandbox.monitoring import MonitoringSettings, start_monitoring

    burnt, healthy = f"burnt-{uuid.uuid4().hex[:6]}", f"healthy-{uuid.uuid4().hex[:6]}"
    state = tmp_path / "monitoring"
    history = tmp_path / "requests.om"
    write_request_history(history, namespace="shop", region="eu-central",
                          rps={burnt: {"200": 8.0, "503": 2.0}, healthy: {"200": 10.0}})
    created = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(history),
                              str(state / "prometheus-data")], capture_output=True, text=True, timeout=120, check=False)
    assert created.returncode == 0, created.stderr
    monitoring = start_monitoring(settings=MonitoringSettings(simulator_target="127.0.0.1:9", regions=["eu-central"]),
                                  state_dir=state)
    try:
        yield monitoring.prometheus_url, burnt, healthy
    finally:
        monitoring.stop()


async def test_a_spent_error_budget_skips_the_scheduled_run_with_its_reason_and_a_healthy_one_runs(
    temporal_client: Client, task_queue: str, clean_schedules: None, prometheus_with_history: tuple[str, str, str],
) -> None:
    prometheus_url, burnt, healthy = prometheus_with_history
    suffix = uuid.uuid4().hex[:6]
    spent, fine = f"budget-spent-{suffix}", f"budget-ok-{suffix}"
    budget = "error_budget: {slo_percent: 99.9, window: 10m}"
    file = entries(f"""
schedules:
  - {{id: {spent}, owner: sre, runbook: long, inputs: {{seconds: 0.2, service: {burnt}}}, cron: "0 2 * * *", {budget}}}
  - {{id: {fine}, owner: sre, runbook: long, inputs: {{seconds: 0.2, service: {healthy}}}, cron: "0 2 * * *", {budget}}}
""")
    measure = ReleaseAnalysisActivities(build_activity_clients(Settings(prometheus={"url": prometheus_url}))).measure
    async with engine(temporal_client, task_queue, extra_activities=[measure]):
        await schedules.apply(temporal_client, file, task_queue=task_queue)
        for schedule_id in (spent, fine):
            await temporal_client.get_schedule_handle(schedule_id).trigger()
        (skipped_run,) = await scheduled_runs(temporal_client, spent, at_least=1)
        (ran,) = await scheduled_runs(temporal_client, fine, at_least=1)
        skipped: WorkflowHandle[Any, RunbookOutcome] = temporal_client.get_workflow_handle(skipped_run.id, result_type=RunbookOutcome)
        outcome = await asyncio.wait_for(skipped.result(), timeout=30)
        ran_outcome = await asyncio.wait_for(
            temporal_client.get_workflow_handle(ran.id, result_type=RunbookOutcome).result(), timeout=30)
        described = await skipped.describe()
        row = {r.id: r for r in await schedules.rows(temporal_client)}[spent]
        shown = render(timeline(await fetch_chain(temporal_client, skipped_run.id)))
        action = (await temporal_client.get_schedule_handle(spent).describe()).schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow) and action.static_details is not None
        details = action.static_details if isinstance(action.static_details, str) else \
            temporal_client.data_converter.payload_converter.from_payload(action.static_details, str)

    assert described.status == WorkflowExecutionStatus.COMPLETED, "a skipped run is not a failure"
    assert outcome.status == "skipped", outcome
    assert outcome.error.startswith(f"shop/{burnt}: error budget exhausted: ") and "99.9% SLO over 10m" in outcome.error, outcome.error
    assert "error ratio 20.0" in outcome.error, outcome.error  # 2 of every 10 requests failed
    assert set(outcome.steps.values()) == {"pending"}, "nothing ran"
    assert described.search_attributes["Phase"] == ["skipped"]
    assert row.last_run is not None and row.last_run.outcome == "skipped" and "error budget exhausted" in row.last_run.reason
    assert "error budget exhausted" in shown, shown
    assert details.endswith("skipped while the 99.9% SLO's error budget over 10m is spent"), details  # the Web UI shows it
    assert ran_outcome.status == "succeeded", ran_outcome  # no 5xx series at all: the whole budget is left
