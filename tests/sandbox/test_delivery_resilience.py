"""Progressive delivery when its dependencies fail, on the sandbox: real kube-apiserver/kwok per region, the
traffic simulator following the live VirtualService, real Prometheus, real Temporal, the product's worker.

- Prometheus stops mid-release: analysis becomes inconclusive, the release holds (never 100 % on the new
  version) and is rolled back at the progress deadline with the routes restored. The Prometheus stopped is a
  dedicated one started for the test (scraping the same simulator), not the session's.
- The worker process (`python -m pitstop.workers.cli worker`) is killed -9 mid-release: nothing moves while no worker
  runs; a new worker resumes at the right step with the right weights and no step is repeated.
- The Temporal dev server itself is killed -9 between analysis runs (a dedicated one, not the session's) and
  restarted on the same SQLite file and ports: the running worker reconnects, the release resumes at the right
  step and is promoted with no step repeated.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter

from pitstop.delivery.models import ReleasePhase, ReleaseOutcome, ReleaseStatus
from pitstop.delivery.inputs import ReleaseInput
from pitstop.delivery.spec import RELEASE_WORKFLOW
from pitstop.sandbox.monitoring import MonitoringSettings, start_monitoring
from pitstop.workers.devserver import DevServer, DevServerPorts

from .test_delivery_sandbox import (
    INTERVAL,
    cluster_state,
    live_weights,
    product_worker,
    route_weights,
    scheduled_activities,
    service_named,
    spec_for,
    stable_version,
    wait_phase,
)

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]


class WeightRecorder:
    """Samples the live VirtualService weights every 50 ms in a thread: (monotonic, canary weight)."""

    def __init__(self, sandbox: Any, region: str, service: Any) -> None:
        self.samples: list[tuple[float, int | None]] = []
        self.last_error: Exception | None = None
        self._stop = threading.Event()
        self._args = (sandbox, region, service)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), live_weights(*self._args).get("canary")))
            except Exception as exc:  # noqa: BLE001 - a transient API error is not a sample
                self.last_error = exc
            time.sleep(0.05)

    def current(self) -> int:
        return (self.samples[-1][1] or 0) if self.samples else 0

    def stop(self) -> list[int | None]:
        self._stop.set()
        self._thread.join(5)
        return [w for _, w in self.samples]


async def wait_weight(recorder: WeightRecorder, at_least: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while recorder.current() < at_least:
        assert time.monotonic() < deadline, (f"canary weight never reached {at_least}%: {recorder.samples[-5:]}, "
                                             f"last error {recorder.last_error!r}")
        await asyncio.sleep(0.05)


async def test_prometheus_stopped_during_analysis_never_promotes(
    temporal_client: Client, sandbox_monitoring: Any, task_queue: str, tmp_path: Path
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "geo-service")
    region = list(sandbox.clusters.contexts)[0]
    before = cluster_state(sandbox, region, service)
    # a dedicated real Prometheus scraping the session's simulator: stopping it leaves the session's running
    prom = start_monitoring(settings=MonitoringSettings(
        simulator_target=sandbox.simulator.target, regions=list(sandbox.clusters.contexts),
        scrape_interval="1s", evaluation_interval="1s"), state_dir=tmp_path / "monitoring")
    try:
        probe = f'istio_requests_total{{region="{region}",destination_service_name="{service.name}"}}'
        deadline = time.monotonic() + 30
        while not httpx.get(f"{prom.prometheus_url}/api/v1/query", params={"query": probe}, timeout=2).json()["data"]["result"]:
            assert time.monotonic() < deadline, "the dedicated Prometheus never scraped the simulator"
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # two scrapes, so rate() has data
        recorder = WeightRecorder(sandbox, region, service)
        async with product_worker(temporal_client, sandbox, task_queue, prometheus_url=prom.prometheus_url):
            handle = await temporal_client.start_workflow(
                RELEASE_WORKFLOW,
                ReleaseInput(release=spec_for(service, "v2.4.0", steps=[10, 20, 30, 40, 50, 100], progress_deadline=10),
                             region=region),
                id=f"noprom-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
            )
            await wait_weight(recorder, 20)  # analysis passed at least once: the release is moving
            prom.stop()
            stopped_at = time.monotonic()
            stopped_weight = recorder.current()
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            ended_after = time.monotonic() - stopped_at
            status = await handle.query("status", result_type=ReleaseStatus)
            scheduled = [name for _, name, _ in await scheduled_activities(handle)]
            planned = await route_weights(handle)
        seen = recorder.stop()
    finally:
        prom.stop()
    print(f"\nsandbox: Prometheus stopped at {stopped_weight}%: held, weights seen {sorted(set(w for w in seen if w is not None))},"
          f" routes set {planned}, rolled back {ended_after:.1f}s later at the deadline")
    assert 100 not in seen and 100 not in planned, (seen, planned)
    assert max(w or 0 for w in seen) <= stopped_weight + 10
    assert "delivery.scale_candidate" not in scheduled and "delivery.finalize_stable" not in scheduled
    assert status.phase is ReleasePhase.ROLLED_BACK and "deadline" in status.rollback_reason, status.rollback_reason
    assert any(r.verdict.value == "inconclusive" and r.error for r in status.last_verdicts), status.last_verdicts
    assert live_weights(sandbox, region, service) == {"stable": 100, "canary": 0}
    assert cluster_state(sandbox, region, service) == before


def worker_env(temporal_server: Any, sandbox: Any, task_queue: str, tmp_path: Path) -> dict[str, str]:
    """`pitstop worker` configured by environment: test Temporal, this test's queue, the sandbox's clusters."""
    regions = {r: {"kubeconfig": str(sandbox.clusters.kubeconfig), "context": c} for r, c in sandbox.clusters.contexts.items()}
    return {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": temporal_server.address, "PITSTOP_TEMPORAL__TASK_QUEUE": task_queue,
            "PITSTOP_WORKER__METRICS_PORT": "0", "PITSTOP_STATE_DIR": str(tmp_path / "state"),
            "PITSTOP_CONFIG": str(tmp_path / "absent.yaml"), "PITSTOP_KUBERNETES__REGIONS": json.dumps(regions),
            "PITSTOP_PROMETHEUS__URL": sandbox.monitoring.prometheus_url, "PITSTOP_PROMETHEUS__TIMEOUT_SECONDS": "2"}


async def start_worker_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "pitstop.workers.cli", "worker"], env=env, cwd=REPO,
                               stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while "pitstop worker ready" not in log.read_text().split("pitstop worker stopped")[-1]:
        assert process.poll() is None, f"worker exited: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"worker not ready: {log.read_text()[-2000:]}"
        await asyncio.sleep(0.2)
    return process


async def test_worker_killed_mid_release_resumes_without_repeating(
    temporal_client: Client, temporal_server: Any, sandbox_monitoring: Any, task_queue: str, tmp_path: Path
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "firmware-catalog")
    region = list(sandbox.clusters.contexts)[0]
    env = worker_env(temporal_server, sandbox, task_queue, tmp_path)
    log = tmp_path / "worker.log"
    recorder = WeightRecorder(sandbox, region, service)
    worker = await start_worker_process(env, log)
    try:
        handle = await temporal_client.start_workflow(
            RELEASE_WORKFLOW,
            ReleaseInput(release=spec_for(service, "v3.1.0", steps=[10, 25, 50, 75, 100]), region=region, lease=False),
            id=f"kill-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
        )
        await wait_weight(recorder, 25)
        before = await handle.query("status", result_type=ReleaseStatus)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        killed_at_weight = recorder.current()
        await asyncio.sleep(INTERVAL * 1.5)  # nothing moves while no worker runs the workflow
        frozen = live_weights(sandbox, region, service).get("canary")
        worker = await start_worker_process(env, log)
        resumed = await wait_phase(handle, {ReleasePhase.PROGRESSING, ReleasePhase.PROMOTING, ReleasePhase.PROMOTED, ReleasePhase.SUCCEEDED})
        outcome = await handle.result()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(15)
    seen = recorder.stop()
    planned = await route_weights(handle)
    scheduled = [name for _, name, _ in await scheduled_activities(handle)]
    assert outcome.promoted and frozen == killed_at_weight
    assert resumed.canary_weight >= killed_at_weight
    check_promoted_without_repeats(
        sandbox, region, service, "v3.1.0", seen=seen, planned=planned, scheduled=scheduled,
        story=f"worker killed -9 at {killed_at_weight}% (status said {before.canary_weight}%)")


def check_promoted_without_repeats(sandbox: Any, region: str, service: Any, version: str, *, seen: list[int | None],
                                   planned: list[int | None], scheduled: list[str], story: str) -> None:
    """After an interruption of a [10, 25, 50, 75, 100] release: every step once, in order; the live route only
    moved forward; the new version is stable and takes all traffic."""
    distinct = [w for i, w in enumerate(seen) if w is not None and (i == 0 or w != seen[i - 1])]
    print(f"\nsandbox: {story}; routes set over the run {planned}; live weights seen {distinct}")
    assert planned == [10, 25, 50, 75, 100, 100, 0], planned  # every step once, in order, none repeated
    assert scheduled.count("delivery.deploy_candidate") == 1 and scheduled.count("delivery.finalize_stable") == 1
    steps = [w for w in distinct if w not in (None, 0)]
    assert steps == sorted(steps), distinct  # the live route only ever moved forward
    assert stable_version(sandbox, region, service) == version
    assert live_weights(sandbox, region, service) == {"stable": 100, "canary": 0}


async def test_temporal_killed_between_analysis_runs_resumes_the_release(
    sandbox_monitoring: Any, task_queue: str, tmp_path: Path
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "firmware-catalog")
    region = list(sandbox.clusters.contexts)[0]
    temporal = DevServer(state_dir=tmp_path / "temporal", ports=DevServerPorts.free())
    temporal.start()
    env = worker_env(temporal, sandbox, task_queue, tmp_path)
    log = tmp_path / "worker.log"
    recorder = WeightRecorder(sandbox, region, service)
    worker = await start_worker_process(env, log)
    try:
        client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
        handle = await client.start_workflow(
            RELEASE_WORKFLOW,
            ReleaseInput(release=spec_for(service, "v3.2.0", steps=[10, 25, 50, 75, 100]), region=region, lease=False),
            id=f"temporal-kill-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
        )
        await wait_weight(recorder, 25)
        before = await handle.query("status", result_type=ReleaseStatus)
        assert temporal.process is not None
        temporal.process.kill()  # SIGKILL, like a crash of the server
        temporal.process.wait()
        killed_at_weight = recorder.current()
        await asyncio.sleep(INTERVAL * 1.5)  # nothing moves while Temporal is down
        frozen = live_weights(sandbox, region, service).get("canary")
        temporal = DevServer(state_dir=temporal.state_dir, ports=temporal.ports)
        temporal.start()
        resumed = await wait_phase(handle, {ReleasePhase.PROGRESSING, ReleasePhase.PROMOTING, ReleasePhase.PROMOTED,
                                            ReleasePhase.SUCCEEDED})
        outcome = await asyncio.wait_for(handle.result(), timeout=180)
        assert worker.poll() is None, f"the worker died instead of reconnecting: {log.read_text()[-2000:]}"
        planned = await route_weights(handle)
        scheduled = [name for _, name, _ in await scheduled_activities(handle)]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(15)
        temporal.stop()
    seen = recorder.stop()
    assert outcome.promoted and frozen == killed_at_weight
    assert resumed.canary_weight >= killed_at_weight
    check_promoted_without_repeats(
        sandbox, region, service, "v3.2.0", seen=seen, planned=planned, scheduled=scheduled,
        story=f"Temporal killed -9 at {killed_at_weight}% (status said {before.canary_weight}%, {before.phase.value})")
