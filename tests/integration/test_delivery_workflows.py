"""Release workflows on a real Temporal server with a real Prometheus (scrape 1 s) and analysis every 2 s.

Cluster activities are `FakeRegion`s (tests/integration/delivery_support.py); everything else is the
product's code: `ProgressiveRelease`, `RegionWaves`, the `delivery.measure` activity over
`PrometheusProvider`, the default PromQL, the lease workflow.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.clients import ActivityClients
from activities.delivery import ReleaseAnalysisActivities
from activities.metrics import PrometheusProvider
from pitstop.config import Settings, regional_task_queue
from pitstop.delivery.models import ApproveRequest, Phase, ReleaseOutcome, ReleaseStatus, RollbackRequest, WavesOutcome
from pitstop.delivery.promql import QueryScope, success_rate_query
from pitstop.delivery.spec import RELEASE_WORKFLOW, WAVES_WORKFLOW, ReleaseInput, ReleaseSpec, WavesSpec
from tests.fixtures.temporal import running_worker
from workflows.delivery import ProgressiveRelease
from workflows.delivery_waves import RegionWaves
from workflows.lease import TargetLease

from .delivery_support import NAMESPACE, SERVICE, FakeRegion, MeshMetrics, PrometheusProcess, mesh

pytestmark = pytest.mark.integration

INTERVAL = 2.0
SCRAPE = 1.0
REGIONS = ["eu-central", "us-east"]


def release_spec(**overrides: Any) -> ReleaseSpec:
    values: dict[str, Any] = {
        "service": SERVICE, "namespace": NAMESPACE, "image": f"registry/{SERVICE}:v2",
        "steps": [10, 50, 100], "warm_window": 0, "progress_deadline": 30,
        "analysis": {"interval": INTERVAL, "failure_threshold": 2, "window": "5s"},
    }
    values.update(overrides)
    return ReleaseSpec.model_validate(values)


@asynccontextmanager
async def delivery_workers(client: Client, task_queue: str, fakes: dict[str, FakeRegion], prom: PrometheusProcess,
                           *, workflows: bool = True) -> AsyncIterator[None]:
    from activities.runbook_catalog import LeaseActivities

    settings = Settings(prometheus={"url": prom.url, "timeout_seconds": 2})
    clients = ActivityClients(settings=settings, metrics=PrometheusProvider(base_url=prom.url, timeout_seconds=2))
    analysis = ReleaseAnalysisActivities(clients)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running_worker(
            client, task_queue=task_queue,
            workflows=[ProgressiveRelease, RegionWaves, TargetLease] if workflows else [],
            activities=[analysis.measure, *LeaseActivities(client, check_seconds=5).activities()],
        ))
        for region, fake in fakes.items():
            await stack.enter_async_context(running_worker(
                client, task_queue=regional_task_queue(task_queue, region), activities=fake.activities()))
        yield


async def wait_phase(handle: WorkflowHandle[Any, Any], phases: set[Phase], timeout: float = 60) -> ReleaseStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = await handle.query("status", result_type=ReleaseStatus)
            if status.phase in phases:
                return status
        except Exception:  # noqa: BLE001 - not started yet
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"phase {phases} not reached in {timeout}s")


def outcome_of(exc: WorkflowFailureError) -> dict[str, Any]:
    cause = exc.cause
    details = getattr(cause, "details", None) or ()
    return details[0] if details else {}


async def test_good_release_promoted_in_every_region_with_zero_failed_checks(
    temporal_client: Client, temporal_server: Any, task_queue: str, tmp_path: Path
) -> None:
    with mesh(REGIONS, tmp_path) as (fakes, _metrics, prom):
        async with delivery_workers(temporal_client, task_queue, fakes, prom):
            started = time.monotonic()
            handle = await temporal_client.start_workflow(
                WAVES_WORKFLOW, WavesSpec(release=release_spec(), regions=REGIONS),
                id=f"waves-good-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=WavesOutcome,
            )
            outcome = await handle.result()
            elapsed = time.monotonic() - started
            shown = await cli(temporal_server, "release", "status", handle.id)
            # replay: the recorded histories still run deterministically with the current code
            replayer = Replayer(workflows=[ProgressiveRelease, RegionWaves], data_converter=pydantic_data_converter)
            await replayer.replay_workflow(await handle.fetch_history())
            await replayer.replay_workflow(await temporal_client.get_workflow_handle(f"{handle.id}/us-east").fetch_history())
    assert shown.returncode == 0 and "eu-central: succeeded" in shown.stdout and "us-east: succeeded" in shown.stdout, shown.stdout
    assert outcome.phase == "succeeded" and outcome.promoted_regions == REGIONS
    for region in REGIONS:
        result = outcome.regions[region]
        assert result.promoted and result.failed_checks == 0 and result.failed_runs == 0, result
        fake = fakes[region]
        assert fake.deployments[SERVICE]["template"]["metadata"]["labels"]["version"] == "v2"
        assert f"{SERVICE}-canary" not in fake.deployments
        assert fake.weights() == {"stable": 100, "canary": 0}
        assert {s["name"]: s["labels"]["version"] for s in fake.subsets} == {"stable": "v2", "canary": "v2"}
        seen = [w.get("canary") for _, w in fake.weight_changes]
        assert seen == [10, 50, 100, 100, 0], seen
    # region waves: us-east started only after eu-central was promoted
    assert fakes["us-east"].calls[0][0] > next(t for t, n, d in fakes["eu-central"].calls if n == "scale_candidate")
    print(f"\ntwo-region canary 10/50/100 at interval {INTERVAL:g}s promoted in {elapsed:.1f}s")


async def test_bad_release_rolled_back_within_two_intervals_plus_a_scrape(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    region = "eu-central"
    with mesh([region], tmp_path) as (fakes, metrics, prom):
        query = success_rate_query(QueryScope(service=SERVICE, namespace=NAMESPACE, version="v2", region=region, window="5s"))
        visible: list[float] = []
        stop = threading.Event()

        def watch() -> None:  # when does Prometheus first show the fault?
            while not stop.is_set() and not visible:
                value = prom.query(query)
                if value is not None and value < 99.0:
                    visible.append(time.monotonic())
                time.sleep(0.05)

        async with delivery_workers(temporal_client, task_queue, fakes, prom):
            handle = await temporal_client.start_workflow(
                RELEASE_WORKFLOW, ReleaseInput(release=release_spec(steps=[20, 50, 100]), region=region),
                id=f"rel-bad-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
            )
            await wait_phase(handle, {Phase.PROGRESSING})
            await asyncio.sleep(INTERVAL * 1.5)  # at least one good analysis run first
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            metrics.inject(region, "v2", 0.4)
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
            stop.set()
            status = await handle.query("status", result_type=ReleaseStatus)
            history = await handle.query("measurements", 0, result_type=list)
    fake = fakes[region]
    restored_at = next(t for t, name, _ in fake.calls if name == "restore")
    assert visible, "the fault never became visible in Prometheus"
    delay = restored_at - visible[0]
    print(f"\nfault visible in Prometheus -> traffic back on stable: {delay:.2f}s "
          f"(bound: 2 x interval {INTERVAL:g}s + scrape {SCRAPE:g}s = {2 * INTERVAL + SCRAPE:g}s)")
    assert delay <= 2 * INTERVAL + SCRAPE
    assert "ReleaseRolledBack" in str(failure.value.cause.type if hasattr(failure.value.cause, "type") else "")
    assert status.phase is Phase.ROLLED_BACK and "threshold" in status.rollback_reason
    assert fake.weights() == {"stable": 100, "canary": 0}
    assert f"{SERVICE}-canary" not in fake.deployments
    assert fake.deployments[SERVICE]["template"]["metadata"]["labels"]["version"] == "v1"
    failed = [m for m in history if m["verdict"] == "fail"]
    assert failed and all({"query", "value", "threshold", "verdict"} <= set(m) for m in history)
    assert any("istio_requests_total" in m["query"] for m in failed)


async def test_prometheus_stopped_during_analysis_never_promotes(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    region = "eu-central"
    with mesh([region], tmp_path) as (fakes, _metrics, prom):
        async with delivery_workers(temporal_client, task_queue, fakes, prom):
            handle = await temporal_client.start_workflow(
                RELEASE_WORKFLOW,
                ReleaseInput(release=release_spec(steps=[10, 20, 30, 40, 50, 100], progress_deadline=8), region=region),
                id=f"rel-noprom-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
            )
            await wait_phase(handle, {Phase.PROGRESSING})
            deadline = time.monotonic() + 30
            while fakes[region].weights().get("canary", 0) < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # analysis passed at least once: the release is moving
            prom.stop()
            stopped_weight = fakes[region].weights().get("canary")
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            status = await handle.query("status", result_type=ReleaseStatus)
    weights = [w.get("canary") for _, w in fakes[region].weight_changes]
    names = [n for _, n, _ in fakes[region].calls]
    assert "scale_candidate" not in names and "finalize_stable" not in names
    assert 100 not in weights and max(weights) <= (stopped_weight or 0) + 10
    assert status.phase is Phase.ROLLED_BACK and "deadline" in status.rollback_reason
    assert any(r.verdict.value == "inconclusive" and r.error for r in status.last_verdicts)
    print(f"\nPrometheus stopped at {stopped_weight}%: held, weights seen {weights}, rolled back at the deadline")


async def test_failure_in_second_region_rolls_back_the_first(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    with mesh(REGIONS, tmp_path) as (fakes, metrics, prom):
        metrics.inject("us-east", "v2", 0.5)
        async with delivery_workers(temporal_client, task_queue, fakes, prom):
            handle = await temporal_client.start_workflow(
                WAVES_WORKFLOW, WavesSpec(release=release_spec(steps=[50, 100]), regions=REGIONS),
                id=f"waves-bad-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=WavesOutcome,
            )
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
    outcome = outcome_of(failure.value)
    assert outcome["failed_region"] == "us-east"
    assert outcome["rolled_back_regions"] == ["us-east", "eu-central"]
    eu, us = fakes["eu-central"], fakes["us-east"]
    assert "scale_candidate" in [n for _, n, _ in eu.calls]  # eu-central had been promoted (all traffic on v2)
    assert next(t for t, n, _ in us.calls if n == "restore") < next(t for t, n, _ in eu.calls if n == "restore")
    for fake in (eu, us):
        assert fake.weights() == {"stable": 100, "canary": 0}
        assert fake.deployments[SERVICE]["template"]["metadata"]["labels"]["version"] == "v1"
        assert f"{SERVICE}-canary" not in fake.deployments


async def cli(server: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": server.address, "PITSTOP_IDENTITY": "test"}
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "workers.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=60)


async def test_manual_gate_then_instant_rollback_during_warm_window(
    temporal_client: Client, temporal_server: Any, task_queue: str, tmp_path: Path
) -> None:
    region = "eu-central"
    with mesh([region], tmp_path) as (fakes, _metrics, prom):
        async with delivery_workers(temporal_client, task_queue, fakes, prom):
            handle = await temporal_client.start_workflow(
                RELEASE_WORKFLOW,
                ReleaseInput(release=release_spec(steps=[50], approval=True, approvers=["alice"], warm_window=120), region=region),
                id=f"rel-gate-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
            )
            await wait_phase(handle, {Phase.AWAITING_APPROVAL})
            shown = await cli(temporal_server, "release", "status", handle.id)
            assert shown.returncode == 0, shown.stdout
            assert "awaiting_approval" in shown.stdout and "stable=50%, canary=50%" in shown.stdout, shown.stdout
            assert "request-success-rate" in shown.stdout and "pitstop release promote" in shown.stdout
            refused = await cli(temporal_server, "release", "promote", handle.id, "--as", "mallory")
            assert refused.returncode != 0 and "may not promote" in refused.stdout + refused.stderr
            with pytest.raises(Exception) as rejected:
                await handle.execute_update("promote", ApproveRequest(identity="mallory"), result_type=ReleaseStatus)
            assert "may not promote" in str(getattr(rejected.value, "cause", rejected.value))
            approved = await cli(temporal_server, "release", "promote", handle.id, "--as", "alice")
            assert approved.returncode == 0, approved.stdout + approved.stderr
            await wait_phase(handle, {Phase.PROMOTED})
            assert fakes[region].weights() == {"stable": 0, "canary": 100}
            asked = time.monotonic()
            status = await handle.execute_update("rollback", RollbackRequest(reason="customer reports", identity="bob"),
                                                 result_type=ReleaseStatus)
            took = time.monotonic() - asked
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    assert status.phase is Phase.ROLLED_BACK and "customer reports by bob" in status.rollback_reason
    assert fakes[region].weights() == {"stable": 100, "canary": 0}
    assert any("approved by alice" in e.message for e in status.events)
    print(f"\ninstant rollback during the warm window: traffic back on stable {took:.2f}s after the request")
    assert took < 2.0


async def test_ab_and_blue_green_with_mirroring_promote(temporal_client: Client, task_queue: str, tmp_path: Path) -> None:
    region = "eu-central"
    with mesh([region], tmp_path) as (fakes, _metrics, prom):
        async with delivery_workers(temporal_client, task_queue, fakes, prom):
            ab = await temporal_client.start_workflow(
                RELEASE_WORKFLOW,
                ReleaseInput(release=release_spec(strategy="ab", headers={"x-vehicle-model": {"exact": "ev-9"}},
                                                  analysis={"interval": INTERVAL, "iterations": 2, "window": "5s"}), region=region),
                id=f"rel-ab-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
            )
            status = await wait_phase(ab, {Phase.PROGRESSING})
            await asyncio.sleep(0.5)
            assert [r.get("name") for r in fakes[region].http][0] == f"pitstop-ab-{SERVICE}"
            assert (await ab.result()).promoted
            assert [r.get("name") for r in fakes[region].http] == ["primary"]
            bg = await temporal_client.start_workflow(
                RELEASE_WORKFLOW,
                ReleaseInput(release=release_spec(image=f"registry/{SERVICE}:v3", strategy="blue_green", mirror=True,
                                                  analysis={"interval": INTERVAL, "iterations": 2, "window": "5s"}), region=region),
                id=f"rel-bg-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
            )
            outcome = await bg.result()
    assert status.strategy == "ab" and outcome.promoted and outcome.failed_checks == 0
    seen = [w.get("canary") for _, w in fakes[region].weight_changes]
    assert seen[-3:] == [0, 100, 0]  # blue-green: mirrored analysis at 0 %, then all at once
    assert fakes[region].deployments[SERVICE]["template"]["metadata"]["labels"]["version"] == "v3"


async def test_error_budget_gate_refuses_to_start(temporal_client: Client, task_queue: str, tmp_path: Path) -> None:
    region = "eu-central"
    with mesh([region], tmp_path) as (fakes, metrics, prom):
        metrics.inject(region, "v1", 0.05)
        deadline = time.monotonic() + 30
        while prom.query("sum(istio_requests_total)") is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # two scrapes, so increase() has data
        await asyncio.sleep(2 * SCRAPE)
        async with delivery_workers(temporal_client, task_queue, fakes, prom):
            handle = await temporal_client.start_workflow(
                RELEASE_WORKFLOW,
                ReleaseInput(release=release_spec(error_budget={"slo_percent": 99.9, "window": "1m"}), region=region),
                id=f"rel-budget-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
            )
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
            status = await handle.query("status", result_type=ReleaseStatus)
    assert "refused" in str(failure.value.cause)
    assert status.phase is Phase.FAILED and "exhausted" in status.message
    assert fakes[region].mutations() == []


async def test_worker_killed_mid_release_resumes_without_repeating(
    temporal_client: Client, temporal_server: Any, task_queue: str, tmp_path: Path
) -> None:
    """The workflow worker is the real `pitstop worker` process; it is killed -9 mid-release and restarted."""
    region = "eu-central"
    env = {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": temporal_server.address, "PITSTOP_TEMPORAL__TASK_QUEUE": task_queue,
           "PITSTOP_WORKER__METRICS_PORT": "0", "PITSTOP_STATE_DIR": str(tmp_path / "state"),
           "PITSTOP_SANDBOX__REGIONS": "[]"}

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "workers.cli", "worker"], env={**env, "PITSTOP_PROMETHEUS__URL": prom.url},
                                stdout=(tmp_path / "worker.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

    with mesh([region], tmp_path) as (fakes, _metrics, prom):
        worker = start_worker()
        try:
            async with delivery_workers(temporal_client, task_queue, fakes, prom, workflows=False):
                handle = await temporal_client.start_workflow(
                    RELEASE_WORKFLOW,
                    ReleaseInput(release=release_spec(steps=[10, 25, 50, 75, 100]), region=region, lease=False),
                    id=f"rel-kill-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
                )
                deadline = time.monotonic() + 60
                while fakes[region].weights().get("canary", 0) < 25 and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                before = await handle.query("status", result_type=ReleaseStatus)
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
                killed_at_weight = fakes[region].weights()["canary"]
                await asyncio.sleep(INTERVAL * 1.5)  # nothing moves while no worker runs the workflow
                frozen = fakes[region].weights()["canary"]
                worker = start_worker()
                outcome = await handle.result()
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(15)
    weights = [w.get("canary") for _, w in fakes[region].weight_changes]
    mutations = fakes[region].mutations()
    print(f"\nkilled at {killed_at_weight}% (status said {before.canary_weight}%), weights over the run: {weights}")
    assert outcome.promoted and frozen == killed_at_weight
    assert weights == [10, 25, 50, 75, 100, 100, 0], weights  # every step once, in order, none repeated
    assert mutations.count("deploy_candidate:v2") == 1 and mutations.count("finalize_stable") == 1
