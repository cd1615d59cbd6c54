"""Long releases continue-as-new, on the sandbox: real kube-apiserver/kwok per region, the traffic simulator,
real Prometheus, real Temporal, the product's worker. A tiny `history_limit` (100 events) and a 1 s analysis
interval make each release continue-as-new several times:

- a canary continues-as-new during analysis and during the warm window and still promotes: every step set
  once, in order, none skipped; `status` follows the chain (phase, run number, counters); the lease stays held
  by the chain and is released at the end; every run's history replays;
- a fault injected after a continue-as-new rolls the release back to the exact routes, subsets and scale
  recorded by the first run;
- region waves: the first region's release continues-as-new while it holds for the second region, and the
  parent's `finalize` still reaches it (same workflow id);
- the `rollback` update during a warm window that has already continued-as-new is instant and restores the
  first run's snapshot (no continue-as-new while the update handler runs).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pitstop.delivery.models import (
    MeasurementRecord, ReleasePhase, ReleaseOutcome, ReleaseStatus, RollbackRequest, WavesOutcome,
)
from pitstop.delivery.inputs import ReleaseInput
from pitstop.delivery.spec import RELEASE_WORKFLOW, WAVES_WORKFLOW, WavesSpec
from pitstop.runbook.leases import LeaseState, lease_id
from pitstop.traffic_routes import service_route_weights
from pitstop.sandbox.faults import BadRelease, clear_fault, inject_fault
from pitstop.workers.run_history import fetch_chain
from pitstop.workflows.delivery import ProgressiveRelease
from pitstop.workflows.delivery_waves import RegionWaves

from .test_delivery_sandbox import cluster_state, live_weights, product_worker, service_named, spec_for, stable_version

pytestmark = pytest.mark.sandbox

HISTORY_LIMIT = 100
STEPS = [10, 20, 30, 40, 50, 100]
ANALYSIS = {"interval": 1.0, "failure_threshold": 2, "window": "5s", "latency_p95_max_ms": 1000, "iterations": 3}


def scheduled(histories: list[WorkflowHistory], activity: str | None = None) -> list[tuple[str, Any]]:
    """(activity type, decoded input) of every activity scheduled over the whole chain, in order."""
    found: list[tuple[str, Any]] = []
    for history in histories:
        for event in history.events:
            if event.HasField("activity_task_scheduled_event_attributes"):
                attrs = event.activity_task_scheduled_event_attributes
                if activity is None or attrs.activity_type.name == activity:
                    payloads = attrs.input.payloads
                    found.append((attrs.activity_type.name, json.loads(payloads[0].data) if payloads else None))
    return found


def chain_route_weights(histories: list[WorkflowHistory]) -> list[int | None]:
    """Canary weight of every `delivery.set_routes` over the whole chain, in order."""
    return [service_route_weights(arg["http"], None).get("canary") for _, arg in scheduled(histories, "delivery.set_routes")]


def resume_points(histories: list[WorkflowHistory]) -> list[str]:
    """Where each continued run resumed (`ReleaseInput.carried.resume_at` of runs 2..n)."""
    points = []
    for history in histories[1:]:
        started = history.events[0].workflow_execution_started_event_attributes
        points.append(json.loads(started.input.payloads[0].data)["carried"]["resume_at"])
    return points


def check_chain_shape(histories: list[WorkflowHistory]) -> None:
    for history in histories[:-1]:
        assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        assert len(history.events) < HISTORY_LIMIT + 30, f"a run outgrew its limit by more than one analysis run: {len(history.events)}"
    assert histories[-1].events[-1].event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW


class StatusWatcher:
    """Polls `status` (always the chain's latest run) and records every distinct (run number, phase)."""

    def __init__(self, handle: WorkflowHandle[Any, Any]) -> None:
        self.seen: list[tuple[int, ReleasePhase]] = []
        self.last: ReleaseStatus | None = None
        self._task = asyncio.create_task(self._run(handle))

    async def _run(self, handle: WorkflowHandle[Any, Any]) -> None:
        while True:
            try:
                self.last = await handle.query("status", result_type=ReleaseStatus)
                key = (self.last.run_number, self.last.phase)
                if not self.seen or self.seen[-1] != key:
                    self.seen.append(key)
                if self.last.phase.terminal:
                    return
            except Exception:  # noqa: BLE001 - not started yet / between two runs of the chain
                pass
            await asyncio.sleep(0.1)

    async def until(self, check: Any, timeout: float = 90) -> ReleaseStatus:
        deadline = time.monotonic() + timeout
        while self.last is None or not check(self.last):
            assert time.monotonic() < deadline, f"status never matched; seen {self.seen}, last {self.last}"
            await asyncio.sleep(0.1)
        return self.last

    async def stop(self) -> list[tuple[int, ReleasePhase]]:
        await asyncio.wait_for(self._task, 30)
        return self.seen


async def replay_all(*chains: list[WorkflowHistory]) -> None:
    replayer = Replayer(workflows=[ProgressiveRelease, RegionWaves], data_converter=pydantic_data_converter)
    for histories in chains:
        for history in histories:
            await replayer.replay_workflow(history)


async def test_canary_continues_as_new_during_analysis_and_warm_window_and_promotes(
    temporal_client: Client, sandbox_monitoring: Any, task_queue: str
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "geo-service")
    region = list(sandbox.clusters.contexts)[0]
    lease = temporal_client.get_workflow_handle(lease_id(cluster=region, namespace=service.team, service=service.name))
    async with product_worker(temporal_client, sandbox, task_queue):
        started = time.monotonic()
        handle = await temporal_client.start_workflow(
            RELEASE_WORKFLOW,
            ReleaseInput(release=spec_for(service, "v4.2.0", steps=STEPS, warm_window=15, analysis=ANALYSIS),
                         region=region, history_limit=HISTORY_LIMIT),
            id=f"can-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
        )
        watcher = StatusWatcher(handle)
        await watcher.until(lambda s: s.run_number >= 2)
        held_by = (await lease.query("state", result_type=LeaseState)).holder  # held by the chain, not released
        outcome = await handle.result()
        elapsed = time.monotonic() - started
        seen = await watcher.stop()
        final = await handle.query("status", result_type=ReleaseStatus)
        records = await handle.query("measurements", 0, result_type=list[MeasurementRecord])
        lease_after = await lease.query("state", result_type=LeaseState)
    histories = await fetch_chain(temporal_client, handle.id)
    await replay_all(histories)
    planned = chain_route_weights(histories)
    names = [name for name, _ in scheduled(histories)]
    points = resume_points(histories)
    print(f"\nsandbox: canary with history_limit={HISTORY_LIMIT}: {len(histories)} runs "
          f"({[len(h.events) for h in histories]} events), resumed at {points}, routes {planned}, "
          f"{outcome.analysis_runs} analysis runs, {elapsed:.1f}s; status seen {seen}")
    assert outcome.promoted and outcome.failed_runs == 0, outcome
    assert len(histories) >= 4, f"expected several continue-as-new, got {len(histories)} run(s)"
    check_chain_shape(histories)
    assert "analysis" in points and "warm_window" in points, points
    assert planned == STEPS + [100, 0], planned  # every step once, in order, none skipped or repeated
    for once in ("delivery.snapshot", "delivery.deploy_candidate", "delivery.scale_candidate",
                 "delivery.finalize_stable", "delivery.retire_candidate", "lease.request"):
        assert names.count(once) == 1, (once, names)
    assert outcome.analysis_runs == names.count("delivery.measure") == final.analysis_runs  # counters carried
    assert final.phase is ReleasePhase.SUCCEEDED and final.run_number == len(histories)
    progressing_runs = {n for n, p in seen if p is ReleasePhase.PROGRESSING}
    promoted_runs = {n for n, p in seen if p is ReleasePhase.PROMOTED}
    assert max(progressing_runs) >= 2 and max(promoted_runs) > max(progressing_runs), seen
    assert [n for n, _ in seen] == sorted(n for n, _ in seen), seen  # status never went back to an older run
    assert any("continued as new" in e.message for e in final.events)
    assert [r.run for r in records] == sorted(r.run for r in records) and records[-1].run == outcome.analysis_runs
    assert len(records) + final.measurements_dropped == 2 * outcome.analysis_runs  # two default checks per run
    assert held_by is not None and held_by.workflow_id == handle.id
    assert lease_after.holder is None, lease_after
    assert stable_version(sandbox, region, service) == "v4.2.0"
    assert live_weights(sandbox, region, service) == {"stable": 100, "canary": 0}


async def test_fault_after_continue_as_new_rolls_back_to_the_first_runs_snapshot(
    temporal_client: Client, sandbox_monitoring: Any, task_queue: str
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "api-gateway")
    region = list(sandbox.clusters.contexts)[0]
    api = sandbox.api_clients[region]
    before = cluster_state(sandbox, region, service)
    old_version = stable_version(sandbox, region, service)
    fault_id = ""
    try:
        async with product_worker(temporal_client, sandbox, task_queue):
            handle = await temporal_client.start_workflow(
                RELEASE_WORKFLOW,
                ReleaseInput(release=spec_for(service, "v9.8.7", steps=STEPS, analysis=ANALYSIS),
                             region=region, history_limit=HISTORY_LIMIT),
                id=f"can-bad-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
            )
            watcher = StatusWatcher(handle)
            at_fault = await watcher.until(lambda s: s.run_number >= 2 and s.canary_weight >= 20)
            fault_id = inject_fault(api_client=api, fault=BadRelease(service=service.name, version="v9.8.7",
                                                                     error_ratio=0.4)).id
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            seen = await watcher.stop()
            final = await handle.query("status", result_type=ReleaseStatus)
    finally:
        if fault_id:
            clear_fault(api_client=api, fault_id=fault_id)
    histories = await fetch_chain(temporal_client, handle.id)
    await replay_all(histories)
    planned = chain_route_weights(histories)
    names = [name for name, _ in scheduled(histories)]
    print(f"\nsandbox: fault injected at {at_fault.canary_weight}% in run {at_fault.run_number}; rolled back in run "
          f"{final.run_number} of {len(histories)}; routes {planned}; status seen {seen}")
    assert final.phase is ReleasePhase.ROLLED_BACK and "threshold" in final.rollback_reason, final.rollback_reason
    assert final.run_number == len(histories) >= 2
    check_chain_shape(histories)
    assert len(planned) >= 2 and planned == STEPS[:len(planned)], planned  # forward only, none skipped or repeated
    assert names.count("delivery.restore") == 1 and names.count("delivery.snapshot") == 1, names
    assert "delivery.scale_candidate" not in names
    restore_input = scheduled(histories[-1:], "delivery.restore")[0][1]
    first_snapshot_http = restore_input["snapshot"]["http"]
    assert first_snapshot_http == before["http"]  # the snapshot crossed every continue-as-new unchanged
    assert cluster_state(sandbox, region, service) == before  # routes, subsets, scale, template, no candidate
    assert stable_version(sandbox, region, service) == old_version


async def test_region_waves_hold_across_continue_as_new_then_finalize(
    temporal_client: Client, sandbox_monitoring: Any, task_queue: str
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "telematics-ingest")
    regions = list(sandbox.clusters.contexts)
    async with product_worker(temporal_client, sandbox, task_queue):
        handle = await temporal_client.start_workflow(
            WAVES_WORKFLOW,
            WavesSpec(release=spec_for(service, "v5.9.0", steps=[50, 100], analysis=ANALYSIS), regions=regions,
                      history_limit=HISTORY_LIMIT),
            id=f"can-waves-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=WavesOutcome,
        )
        outcome = await handle.result()
    chains = {region: await fetch_chain(temporal_client, f"{handle.id}/{region}") for region in regions}
    await replay_all([await handle.fetch_history()], *chains.values())
    first, second = regions
    print(f"\nsandbox: waves with history_limit={HISTORY_LIMIT}: runs per region "
          f"{ {r: len(c) for r, c in chains.items()} }, {first} resumed at {resume_points(chains[first])}")
    assert outcome.phase == "succeeded" and outcome.promoted_regions == regions, outcome
    assert len(chains[first]) >= 2 and "hold" in resume_points(chains[first]), resume_points(chains[first])
    for region, histories in chains.items():
        check_chain_shape(histories)
        assert chain_route_weights(histories) == [50, 100, 100, 0], region
        assert outcome.regions[region].promoted, outcome.regions[region]
        assert stable_version(sandbox, region, service) == "v5.9.0"
        assert live_weights(sandbox, region, service) == {"stable": 100, "canary": 0}


async def test_instant_rollback_update_in_the_warm_window_after_continue_as_new(
    temporal_client: Client, sandbox_monitoring: Any, task_queue: str
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "firmware-catalog")
    region = list(sandbox.clusters.contexts)[0]
    before = cluster_state(sandbox, region, service)
    async with product_worker(temporal_client, sandbox, task_queue):
        handle = await temporal_client.start_workflow(
            RELEASE_WORKFLOW,
            ReleaseInput(release=spec_for(service, "v6.6.6", steps=[50, 100], warm_window=300, analysis=ANALYSIS),
                         region=region, history_limit=HISTORY_LIMIT),
            id=f"can-warm-{uuid.uuid4().hex[:6]}", task_queue=task_queue, result_type=ReleaseOutcome,
        )
        watcher = StatusWatcher(handle)
        promoted = await watcher.until(lambda s: s.phase is ReleasePhase.PROMOTED)
        warm = await watcher.until(lambda s: s.phase is ReleasePhase.PROMOTED and s.run_number > promoted.run_number)
        assert live_weights(sandbox, region, service) == {"stable": 0, "canary": 100}
        asked = time.monotonic()
        status = await handle.execute_update("rollback", RollbackRequest(reason="pager", identity="carol"),
                                             result_type=ReleaseStatus)
        took = time.monotonic() - asked
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        await watcher.stop()
    histories = await fetch_chain(temporal_client, handle.id)
    await replay_all(histories)
    print(f"\nsandbox: rollback update in run {status.run_number} (warm window since run {promoted.run_number}, "
          f"resumed at {resume_points(histories)}): traffic back on stable {took:.2f}s after the request")
    assert warm.run_number >= 2 and "warm_window" in resume_points(histories)
    assert status.phase is ReleasePhase.ROLLED_BACK and "pager by carol" in status.rollback_reason
    assert status.run_number == len(histories)
    check_chain_shape(histories)
    assert chain_route_weights(histories) == [50, 100, 100]
    assert took < 3.0
    assert cluster_state(sandbox, region, service) == before
