"""The shipped release runbooks end to end: `canary`, `ab-test`, `blue-green` and `multi-region-release` started
through the runbook interpreter (workflow `Runbook` with a `RunbookRequest`, or `pitstop run` itself) on the real
Temporal server, against the sandbox's real kube-apiservers (Istio CRDs), the traffic simulator following the live
VirtualService (weights, header-match cohorts, mirroring) and Prometheus scraping it every second.
The worker is the product's (`workers.worker.build_workers` with every workflow); analysis every 2 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from kubernetes.client.exceptions import ApiException

from pitstop.activities.kube_api import KubeJson
from pitstop.delivery.models import ReleasePhase, ReleaseStatus, WavesStatus
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.runbook.run_state import RunStatus
from pitstop.traffic_routes import service_route_weights
from pitstop.sandbox.faults import BadRelease, clear_fault, inject_fault
from pitstop.workflows import ALL_WORKFLOWS

from .test_delivery_sandbox import product_worker, service_named

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

REGION = "eu-central"
FAST = {"interval": "2s", "failure_threshold": 2, "progress_deadline": "2m"}


# ------------------------------------------------------------------ cluster state


def api(sandbox: Any, region: str) -> KubeJson:
    return KubeJson(sandbox.api_clients[region])


def routes_and_scale(sandbox: Any, region: str, service: Any) -> dict[str, Any]:
    """Everything a rollback must restore exactly: VirtualService http, DestinationRule subsets, Deployments."""
    kube = api(sandbox, region)
    ns, name = service.team, service.name
    vs = kube.get(f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/{name}")
    dr = kube.get(f"/apis/networking.istio.io/v1/namespaces/{ns}/destinationrules/{name}")
    dep = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    return {
        "http": vs["spec"]["http"],
        "subsets": dr["spec"]["subsets"],
        "replicas": dep["spec"]["replicas"],
        "image": dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "version": dep["spec"]["template"]["metadata"]["labels"]["version"],
        "candidate": candidate_exists(sandbox, region, service),
    }


def candidate_exists(sandbox: Any, region: str, service: Any) -> bool:
    try:
        api(sandbox, region).get(f"/apis/apps/v1/namespaces/{service.team}/deployments/{service.name}-canary")
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def version_rates(sandbox: Any, region: str, service: Any, window: str = "3s") -> dict[str, float]:
    result = sandbox.query(
        f'sum by (destination_version) (rate(istio_requests_total{{region="{region}",'
        f'destination_service_name="{service.name}",reporter="destination"}}[{window}]))')
    return {r["metric"]["destination_version"]: float(r["value"][1]) for r in result}


# ------------------------------------------------------------------ runs


def image_of(service: Any, version: str) -> str:
    return f"registry.pitstop.dev/{service.team}/{service.name}:{version}"


async def start_runbook(client: Client, task_queue: str, runbook: str, inputs: dict[str, Any]) -> WorkflowHandle[Any, RunbookOutcome]:
    """What `pitstop run` does after validating: start workflow `Runbook` with a `RunbookRequest`."""
    return await client.start_workflow(
        RUNBOOK_WORKFLOW, RunbookRequest(runbook=runbook, inputs=inputs, trigger="cli", started_by="test"),
        id=f"{runbook}-{uuid.uuid4().hex[:8]}", task_queue=task_queue, result_type=RunbookOutcome,
    )


async def release_status(client: Client, run_id: str, step: str = "release") -> ReleaseStatus | None:
    try:
        return await client.get_workflow_handle(f"{run_id}/{step}").query("status", result_type=ReleaseStatus)
    except Exception:  # noqa: BLE001 - not started yet
        return None


async def wait_for_release(client: Client, run_id: str, what: str, predicate: Any, timeout: float = 90) -> ReleaseStatus:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await release_status(client, run_id)
        if last is not None and predicate(last):
            return last
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; last status: {last}")


def cli_env(temporal_server: Any, task_queue: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": temporal_server.address, "PITSTOP_TEMPORAL__TASK_QUEUE": task_queue,
            "PITSTOP_STATE_DIR": str(tmp_path / "state"), "PITSTOP_CONFIG": str(tmp_path / "absent.yaml"),
            "PITSTOP_IDENTITY": "test", "PITSTOP_TEMPORAL__UI_PORT": str(temporal_server.ports.ui)}


async def pitstop(env: dict[str, str], *args: str, timeout: float = 240) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pitstop.workers.cli", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, out.decode()


def failure_of(info: pytest.ExceptionInfo[WorkflowFailureError]) -> str:
    cause = info.value.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause)


# ------------------------------------------------------------------ tests


async def test_canary_runbook_promotes_a_good_image_and_status_shows_weights_and_verdicts(
    temporal_client: Client, temporal_server: Any, sandbox_monitoring: Any, task_queue: str, tmp_path: Path
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "trip-service")
    before = routes_and_scale(sandbox, REGION, service)
    env = cli_env(temporal_server, task_queue, tmp_path)
    run_id = f"canary-{uuid.uuid4().hex[:8]}"
    image = image_of(service, "2.0.0")
    async with product_worker(temporal_client, sandbox, task_queue, workflows=ALL_WORKFLOWS):
        started = time.monotonic()
        run = asyncio.create_task(pitstop(
            env, "run", "canary", "--id", run_id, "-i", f"service={service.name}", "-i", f"namespace={service.team}",
            "-i", f"region={REGION}", "-i", f"image={image}", "-i", "interval=2s", "-i", "steps=[20,50,100]",
            "-i", "warm_window=6s", "-i", "progress_deadline=2m"))
        # (d) while it runs: the release's phase, weights and last verdicts, through the run id
        await wait_for_release(temporal_client, run_id, "a passing analysis run",
                               lambda s: s.last_verdict is not None and s.last_verdict.value == "pass")
        code, shown = await pitstop(env, "release", "status", run_id)
        assert code == 0, shown
        assert f"{run_id}/release (ProgressiveRelease)" in shown
        assert re.search(rf"{REGION}: (progressing|promoting|promoted)\s+{service.name}\.{service.team}\s+canary\s+"
                         rf"{before['version']} -> 2\.0\.0", shown), shown
        assert re.search(r"weights: stable=\d+%, canary=\d+%", shown), shown
        assert re.search(r"last analysis \(pass\):\n\s+pass\s+request-success-rate", shown), shown
        code, run_status = await pitstop(env, "status", run_id)
        assert code == 0 and re.search(rf"{run_id}: canary running on {service.team}/{service.name}", run_status), run_status
        assert re.search(r"release\s+running", run_status), run_status
        code, printed = await run
        took = time.monotonic() - started
        outcome = await temporal_client.get_workflow_handle(run_id, result_type=RunbookOutcome).result()
        code_after, run_status = await pitstop(env, "status", run_id)
    print(f"\nsandbox runbook: canary {service.name} -> 2.0.0 promoted in {took:.1f}s "
          f"(steps 20/50/100, interval 2s, warm 6s)\n{printed}")
    assert code == 0, printed
    assert outcome.status == "succeeded" and outcome.outputs["release"]["promoted"] is True
    assert outcome.outputs["release"]["changed"] is True and outcome.outputs["release"]["failed_runs"] == 0
    assert re.search(rf"release\s+succeeded\s+promoted 2\.0\.0 in {REGION} after \d+ analysis runs \(0 failed\)", printed), printed
    assert re.search(r"release\s+succeeded\s+[\d.]+s promoted 2\.0\.0", run_status), run_status
    after = routes_and_scale(sandbox, REGION, service)
    assert after["image"] == image and after["version"] == "2.0.0"
    assert service_route_weights(after["http"], None) == {"stable": 100, "canary": 0}
    assert {s["name"]: s["labels"]["version"] for s in after["subsets"]}["stable"] == "2.0.0"
    assert after["candidate"] is False and after["replicas"] == before["replicas"]
    # the simulator now reports the new version as the one serving the service
    deadline = time.monotonic() + 20
    while (rates := version_rates(sandbox, REGION, service)).get(before["version"], 0.0) > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert rates.get("2.0.0", 0.0) > 0 and rates.get(before["version"], 0.0) == 0, rates


async def test_canary_runbook_with_a_bad_release_rolls_back_to_exactly_the_prior_state(
    temporal_client: Client, sandbox_monitoring: Any, task_queue: str
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "user-profile")
    before = routes_and_scale(sandbox, REGION, service)
    fault = inject_fault(api_client=sandbox.api_clients[REGION],
                         fault=BadRelease(service=service.name, version="6.6.6", error_ratio=0.4)).id
    try:
        async with product_worker(temporal_client, sandbox, task_queue, workflows=ALL_WORKFLOWS):
            started = time.monotonic()
            handle = await start_runbook(temporal_client, task_queue, "canary", {
                "service": service.name, "namespace": service.team, "region": REGION, "image": image_of(service, "6.6.6"),
                "steps": [20, 50, 100], "warm_window": "0s", **FAST})
            with pytest.raises(WorkflowFailureError) as info:
                await handle.result()
            took = time.monotonic() - started
            run = await handle.query("status", result_type=RunStatus)
            release = await release_status(temporal_client, handle.id)
    finally:
        clear_fault(api_client=sandbox.api_clients[REGION], fault_id=fault)
    print(f"\nsandbox runbook: canary {service.name} -> 6.6.6 (40% errors) rolled back, run failed after {took:.1f}s")
    message = failure_of(info)
    assert "rolled back" in message and "threshold" in message, message
    assert run.phase.value == "failed" and [s.state.value for s in run.steps if s.id == "release"] == ["failed"]
    assert release is not None and release.phase is ReleasePhase.ROLLED_BACK and release.failed_runs >= 2
    assert release.last_verdict is not None and release.last_verdict.value == "fail"
    assert routes_and_scale(sandbox, REGION, service) == before


async def test_multi_region_release_with_a_fault_in_the_second_region_rolls_back_the_first(
    temporal_client: Client, temporal_server: Any, sandbox_monitoring: Any, task_queue: str, tmp_path: Path
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "token-service")
    regions = list(sandbox.clusters.contexts)
    first, second = regions
    before = {region: routes_and_scale(sandbox, region, service) for region in regions}
    fault = inject_fault(api_client=sandbox.api_clients[second],
                         fault=BadRelease(service=service.name, version="3.0.0", error_ratio=0.5)).id
    first_promoted: list[dict[str, Any]] = []
    try:
        async with product_worker(temporal_client, sandbox, task_queue, workflows=ALL_WORKFLOWS):
            started = time.monotonic()
            handle = await start_runbook(temporal_client, task_queue, "multi-region-release", {
                "service": service.name, "namespace": service.team, "image": image_of(service, "3.0.0"),
                "regions": regions, "steps": [50, 100], "slo_percent": 99.0, **FAST})
            waves = temporal_client.get_workflow_handle(f"{handle.id}/waves")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not first_promoted:
                try:
                    state = await waves.query("status", result_type=WavesStatus)
                except Exception:  # noqa: BLE001 - not started yet
                    state = None
                if state is not None and first in state.promoted_regions:
                    first_promoted.append(routes_and_scale(sandbox, first, service))
                await asyncio.sleep(0.2)
            with pytest.raises(WorkflowFailureError) as info:
                await handle.result()
            took = time.monotonic() - started
            code, shown = await pitstop(cli_env(temporal_server, task_queue, tmp_path), "release", "status", handle.id)
            state = await waves.query("status", result_type=WavesStatus)
    finally:
        clear_fault(api_client=sandbox.api_clients[second], fault_id=fault)
    print(f"\nsandbox runbook: multi-region-release {service.name} -> 3.0.0, bad in {second}: "
          f"{first} rolled back, run failed after {took:.1f}s")
    assert first_promoted and service_route_weights(first_promoted[0]["http"], None) == {"stable": 0, "canary": 100}
    message = failure_of(info)
    assert f"halted in {second}" in message, message
    assert state.phase == "rolled_back" and state.rolled_back_regions == [second, first], state
    assert state.region_phases == {first: ReleasePhase.ROLLED_BACK, second: ReleasePhase.ROLLED_BACK}
    for region in regions:
        assert routes_and_scale(sandbox, region, service) == before[region], region
    # (d) the waves view through the runbook run id: both regions, their weights and last verdicts
    assert code == 0, shown
    assert f"{handle.id}/waves (RegionWaves)" in shown and "waves: rolled_back" in shown, shown
    assert re.search(rf"{second}: rolled_back .*\n\s+weights: stable=100%, canary=0%", shown), shown
    assert re.search(r"last analysis \(fail\):\n\s+fail\s+request-success-rate", shown), shown


async def test_ab_runbook_promotes_a_good_version_through_header_routing(
    temporal_client: Client, sandbox_monitoring: Any, task_queue: str
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "vehicle-auth")
    before = routes_and_scale(sandbox, REGION, service)
    shares: list[float] = []
    async with product_worker(temporal_client, sandbox, task_queue, workflows=ALL_WORKFLOWS):
        started = time.monotonic()
        handle = await start_runbook(temporal_client, task_queue, "ab-test", {
            "service": service.name, "namespace": service.team, "region": REGION, "image": image_of(service, "4.2.0"),
            "iterations": 6, "approval": False, "warm_window": "2s", **FAST})
        await wait_for_release(temporal_client, handle.id, "the header route", lambda s: s.phase is ReleasePhase.PROGRESSING
                               and any(r.get("name", "").startswith("pitstop-ab-") for r in
                                       routes_and_scale(sandbox, REGION, service)["http"]))
        while (await handle.describe()).close_time is None:
            rates = version_rates(sandbox, REGION, service)
            if rates.get("4.2.0") and rates.get(before["version"]):
                shares.append(rates["4.2.0"] / (rates["4.2.0"] + rates[before["version"]]))
            await asyncio.sleep(0.5)
            status = await release_status(temporal_client, handle.id)
            if status is None or status.phase is not ReleasePhase.PROGRESSING:
                break
        outcome = await handle.result()
        took = time.monotonic() - started
    cohort = sorted(shares)[len(shares) // 2] if shares else 0.0
    print(f"\nsandbox runbook: ab-test {service.name} -> 4.2.0 promoted in {took:.1f}s; header cohort share of "
          f"requests during analysis (median of {len(shares)} samples): {cohort:.3f}")
    assert outcome.status == "succeeded" and outcome.outputs["release"]["promoted"] is True, outcome
    assert outcome.summaries["release"].startswith(f"promoted 4.2.0 in {REGION} after ")
    assert 0.07 <= cohort <= 0.13, shares  # one header matcher = a 10 % cohort (sandbox.traffic_model)
    after = routes_and_scale(sandbox, REGION, service)
    assert after["version"] == "4.2.0" and after["candidate"] is False
    assert [r.get("name") for r in after["http"]] == [r.get("name") for r in before["http"]]  # header route gone
    assert service_route_weights(after["http"], None) == {"stable": 100, "canary": 0}


async def test_ab_runbook_with_a_bad_version_rolls_back(temporal_client: Client, sandbox_monitoring: Any, task_queue: str) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "stream-processor")
    before = routes_and_scale(sandbox, REGION, service)
    fault = inject_fault(api_client=sandbox.api_clients[REGION],
                         fault=BadRelease(service=service.name, version="2.9.0-rc1", error_ratio=0.4)).id
    try:
        async with product_worker(temporal_client, sandbox, task_queue, workflows=ALL_WORKFLOWS):
            started = time.monotonic()
            handle = await start_runbook(temporal_client, task_queue, "ab-test", {
                "service": service.name, "namespace": service.team, "region": REGION,
                "image": image_of(service, "2.9.0-rc1"), "iterations": 6, "approval": False, "warm_window": "0s", **FAST})
            with pytest.raises(WorkflowFailureError) as info:
                await handle.result()
            took = time.monotonic() - started
            release = await release_status(temporal_client, handle.id)
    finally:
        clear_fault(api_client=sandbox.api_clients[REGION], fault_id=fault)
    print(f"\nsandbox runbook: ab-test {service.name} -> 2.9.0-rc1 (40% errors on the cohort) rolled back after {took:.1f}s")
    assert "rolled back" in failure_of(info)
    assert release is not None and release.phase is ReleasePhase.ROLLED_BACK and "threshold" in release.rollback_reason
    assert routes_and_scale(sandbox, REGION, service) == before


async def test_blue_green_runbook_with_mirroring_promotes(
    temporal_client: Client, sandbox_monitoring: Any, task_queue: str
) -> None:
    sandbox = sandbox_monitoring
    service = service_named(sandbox, "battery-analytics")
    before = routes_and_scale(sandbox, REGION, service)
    mirrored: list[dict[str, float]] = []
    async with product_worker(temporal_client, sandbox, task_queue, workflows=ALL_WORKFLOWS):
        started = time.monotonic()
        handle = await start_runbook(temporal_client, task_queue, "blue-green", {
            "service": service.name, "namespace": service.team, "region": REGION, "image": image_of(service, "2.0.0"),
            "mirror": True, "mirror_percent": 100, "iterations": 4, "warm_window": "2s", **FAST})
        await wait_for_release(temporal_client, handle.id, "analysis on mirrored traffic",
                               lambda s: s.phase is ReleasePhase.PROGRESSING and s.analysis_runs >= 2)
        status = await release_status(temporal_client, handle.id)
        if status is not None and status.phase is ReleasePhase.PROGRESSING:
            mirrored.append(version_rates(sandbox, REGION, service))
            live = routes_and_scale(sandbox, REGION, service)
        outcome = await handle.result()
        took = time.monotonic() - started
    print(f"\nsandbox runbook: blue-green {service.name} -> 2.0.0 (100% mirrored) promoted in {took:.1f}s; "
          f"rates while analysing: {json.dumps(mirrored)}")
    assert outcome.status == "succeeded" and outcome.outputs["release"]["promoted"] is True, outcome
    assert outcome.outputs["release"]["failed_runs"] == 0
    assert mirrored, "the release left the analysis phase before it could be observed"
    # all requests are still answered by blue; green receives a mirror of them (reported like any request)
    assert service_route_weights(live["http"], None) == {"stable": 100, "canary": 0} and live["http"][-1]["mirror"]["subset"] == "canary"
    rates = mirrored[0]
    assert rates.get("2.0.0", 0) > 0 and rates["2.0.0"] == pytest.approx(rates[before["version"]], rel=0.35), rates
    after = routes_and_scale(sandbox, REGION, service)
    assert after["version"] == "2.0.0" and after["candidate"] is False
    assert "mirror" not in after["http"][-1] and service_route_weights(after["http"], None) == {"stable": 100, "canary": 0}
