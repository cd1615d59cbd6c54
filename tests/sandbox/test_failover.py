"""Region failover and failback end to end, acting from outside the failing region (docs/failover.md).

Real parts only: two kwok-backed clusters of this module's own, a small fleet, the global traffic authority
(`sandbox.gslb`), the traffic simulator obeying it, Prometheus scraping it every second, the real Temporal dev
server and the product's worker whose every Kubernetes request is made as the worker's service account under
`deploy/rbac.yaml` (so `failover.capacity_inventory`'s verbs are proven by the shipped RBAC).

Why clusters of its own: a hard outage stops a region's kube-apiserver, and a restarted API server has left
the session's shared clusters unable to roll Deployments out for later tests (see sandbox/control_plane.py).
The module restores what it breaks (API server, weights, replicas, quota) and deletes its clusters at the end.

Runbooks run with sandbox-speed inputs (1 s between evaluations, 5 s rate windows); the shipped defaults are
15 s and 1 m. RTO figures are printed, never asserted (bench/failover.py reports them over rounds).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from kubernetes.client import ApiClient
from kubernetes.config import new_client_from_config
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError

from pitstop.activities.kube_api import KubeJson
from pitstop.activities.traffic_authority import HttpTrafficAuthority
from pitstop.config import SHIPPED_RUNBOOKS_DIR, Settings
from pitstop.dr import DrillRecord
from pitstop.runbook.leases import LEASE_WORKFLOW, LeaseHolder, LeaseState, lease_id
from pitstop.runbook.reach import AuthorReach
from pitstop.runbook.validation import validate_catalog
from pitstop.schedules.validation import parse_schedules
from pitstop.runbook.request import RunbookOutcome
from pitstop.sandbox.binaries import KubeBinaries
from pitstop.sandbox.clusters import SandboxClusters, create_sandbox_clusters, delete_sandbox_clusters
from pitstop.sandbox.faults import RegionOutage, clear_all_faults, inject_fault
from pitstop.sandbox.fleet import FLEET_LABEL, ServiceSpec, apply_fleet, expand_fleet, load_fleet_spec
from pitstop.sandbox.gslb import GslbProcess, start_gslb_process
from pitstop.sandbox.monitoring import AlertRuleSettings, MonitoringHandle, MonitoringSettings, start_monitoring
from pitstop.sandbox.orphans import owned_cluster_prefix
from pitstop.sandbox.region_outage import fail_region, restore_region
from pitstop.sandbox.simulator import SimulatorProcess, start_simulator_process
from tests.fixtures.monitoring import wait_for_fleet_available
from pitstop.workers import schedules
from pitstop.workers.cli_dr import drill_records
from pitstop.workers.clients import build_activity_clients
from pitstop.workflows import ALL_WORKFLOWS

from .step_library_support import WORKER_SA, apply_deploy_rbac, impersonate, product_workers
from .test_delivery_runbooks import failure_of, start_runbook

pytestmark = pytest.mark.sandbox

REGIONS = ["eu-central", "us-east"]
FAILING, SURVIVOR = "us-east", "eu-central"
SERVICES = 5
RUN_TIMEOUT = 240.0
FAST = {"interval": "1s", "window": "5s", "required_healthy": 2, "max_watch_evaluations": 20,
        "rollout_timeout_seconds": 120}
FAILOVER_FAST = {**FAST, "headroom": 0}
DATA_NAMESPACE = "team-platform"


@dataclass
class FailoverSandbox:
    clusters: SandboxClusters
    services: list[ServiceSpec]
    admin: dict[str, ApiClient]
    authority: GslbProcess
    simulator: SimulatorProcess
    monitoring: MonitoringHandle
    task_queue: str

    def authority_client(self) -> HttpTrafficAuthority:
        return HttpTrafficAuthority(base_url=self.authority.url, token_file=self.authority.token_file)

    def replicas(self, region: str) -> dict[str, int]:
        deployments = KubeJson(self.admin[region]).items("/apis/apps/v1/deployments", labelSelector=f"{FLEET_LABEL}=true")
        return {f"{d['metadata']['namespace']}/{d['metadata']['name']}": d["spec"]["replicas"] for d in deployments}

    def query(self, promql: str) -> float | None:
        response = httpx.get(f"{self.monitoring.prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        result = response.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None


def build_failover_sandbox_parts(clusters: SandboxClusters, state_dir: Path) -> tuple[list[ServiceSpec], dict[str, ApiClient], GslbProcess,
                                                                 SimulatorProcess, MonitoringHandle]:
    services = expand_fleet(load_fleet_spec(), services=SERVICES)
    admin = {r: new_client_from_config(config_file=str(clusters.kubeconfig), context=c) for r, c in clusters.contexts.items()}
    for region, client in admin.items():
        apply_fleet(api_client=client, region=region, services=services)
        apply_deploy_rbac(clusters, region)
    deployments = len(services) + sum(1 for s in services if s.canary_version)
    for client in admin.values():
        wait_for_fleet_available(api_client=client, expected_deployments=deployments)
    authority = start_gslb_process(state_dir=state_dir / "gslb", regions=REGIONS)
    simulator = start_simulator_process(kubeconfig=clusters.kubeconfig, contexts=REGIONS, tick_seconds=0.5,
                                        log_path=state_dir / "simulator.log",
                                        traffic_authority=(authority.url, authority.token_file))
    monitoring = start_monitoring(settings=MonitoringSettings(
        simulator_target=simulator.target, regions=REGIONS, scrape_interval="1s", evaluation_interval="1s",
        rules=AlertRuleSettings(window="5s", restart_window="10s", for_duration="2s")), state_dir=state_dir / "monitoring")
    return services, admin, authority, simulator, monitoring


@pytest.fixture(scope="module")
def failover_sandbox(kube_binaries: KubeBinaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FailoverSandbox]:
    state_dir = tmp_path_factory.mktemp("failover")
    arguments: dict[str, Any] = dict(regions=REGIONS, state_dir=state_dir, bin_dir=kube_binaries.bin_dir,
                                     cluster_prefix=f"{owned_cluster_prefix()}fo{uuid.uuid4().hex[:4]}")
    started = time.monotonic()
    clusters = create_sandbox_clusters(**arguments)
    parts: tuple[Any, ...] = ()
    try:
        parts = build_failover_sandbox_parts(clusters, state_dir)
        print(f"\nfailover sandbox ready in {time.monotonic() - started:.1f}s")
        yield FailoverSandbox(clusters, *parts, task_queue=f"failover-{uuid.uuid4().hex[:8]}")
    finally:
        if parts:
            _services, admin, authority, simulator, monitoring = parts
            monitoring.stop()
            simulator.stop()
            authority.stop()
            for client in admin.values():
                client.close()
        delete_sandbox_clusters(**arguments)


def worker_settings(fs: FailoverSandbox, state_dir: Path) -> Settings:
    """The worker's configuration for these clusters, this Prometheus and this traffic authority."""
    return Settings.model_validate({
        "state_dir": state_dir,
        "temporal": {"task_queue": fs.task_queue},
        "kubernetes": {"regions": {r: {"kubeconfig": fs.clusters.kubeconfig, "context": c}
                                   for r, c in fs.clusters.contexts.items()}},
        "prometheus": {"url": fs.monitoring.prometheus_url, "timeout_seconds": 2},
        "traffic": {"authority": {"url": fs.authority.url, "token_file": fs.authority.token_file}},
    })


async def wait_for_request_rates(fs: FailoverSandbox, timeout_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while any(fs.query(f'sum(rate(istio_requests_total{{region="{r}"}}[5s]))') in (None, 0.0) for r in REGIONS):
        assert time.monotonic() < deadline, f"no request rates in Prometheus within {timeout_seconds:g} s"
        await asyncio.sleep(1)


@pytest_asyncio.fixture(scope="module")
async def worker(failover_sandbox: FailoverSandbox, temporal_client: Client,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FailoverSandbox]:
    fs = failover_sandbox
    settings = worker_settings(fs, tmp_path_factory.mktemp("failover-worker"))
    clients = impersonate(build_activity_clients(settings, temporal=temporal_client, require_clusters=True), WORKER_SA)
    await wait_for_request_rates(fs)
    async with product_workers(temporal_client, settings, clients, ALL_WORKFLOWS):
        yield fs
    for api in clients.kube.values():
        api.close()


async def weights(fs: FailoverSandbox) -> dict[str, int]:
    return await fs.authority_client().get_weights()


async def run(client: Client, fs: FailoverSandbox, runbook: str, inputs: dict[str, Any]) -> RunbookOutcome:
    handle = await start_runbook(client, fs.task_queue, runbook, inputs)
    try:
        return await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
    except WorkflowFailureError as exc:
        raise AssertionError(f"{runbook} ({handle.id}) failed: {exc.cause}") from exc


async def run_failing(client: Client, fs: FailoverSandbox, runbook: str, inputs: dict[str, Any]) -> str:
    handle = await start_runbook(client, fs.task_queue, runbook, inputs)
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
    return failure_of(info)


# ------------------------------------------------------------------ a blip is not an outage


async def test_a_flap_shorter_than_the_hysteresis_fails_nothing_over(worker: FailoverSandbox, temporal_client: Client) -> None:
    fs = worker
    before = fs.replicas(SURVIVOR)
    # 5 bad evaluations 3 s apart confirm an outage (a 12 s window); the region fails for 2 s
    run_task = asyncio.create_task(run_failing(temporal_client, fs, "failover-region", {
        **FAILOVER_FAST, "region": FAILING, "required_bad": 5, "interval": "3s", "max_confirm_evaluations": 7}))
    inject_fault(api_client=fs.admin[FAILING], fault=RegionOutage())
    await asyncio.sleep(2)
    clear_all_faults(api_client=fs.admin[FAILING])
    message = await run_task
    assert "no failover" in message and "not confirmed bad" in message, message
    longest = int(re.search(r"longest run (\d+)", message).group(1))  # type: ignore[union-attr]
    assert 1 <= longest < 5, message  # the flap was seen, and was too short
    assert await weights(fs) == {SURVIVOR: 100, FAILING: 100}
    assert fs.replicas(SURVIVOR) == before


# ------------------------------------------------------------------ survivors short of capacity


async def test_survivors_short_of_quota_escalate_and_move_no_traffic(worker: FailoverSandbox, temporal_client: Client) -> None:
    fs = worker
    namespace = fs.services[0].team
    api = KubeJson(fs.admin[SURVIVOR])
    [quota] = api.items(f"/api/v1/namespaces/{namespace}/resourcequotas")
    path = f"/api/v1/namespaces/{namespace}/resourcequotas/{quota['metadata']['name']}"
    original = quota["spec"]["hard"]["requests.cpu"]
    used = api.get(path)["status"]["used"]["requests.cpu"]
    before = fs.replicas(SURVIVOR)
    api.patch(path, {"spec": {"hard": {"requests.cpu": used}}}, patch_type="merge")  # no room left
    inject_fault(api_client=fs.admin[FAILING], fault=RegionOutage())
    try:
        message = await run_failing(temporal_client, fs, "failover-region", {
            **FAILOVER_FAST, "region": FAILING, "required_bad": 2, "max_confirm_evaluations": 10})
    finally:
        clear_all_faults(api_client=fs.admin[FAILING])
        api.patch(path, {"spec": {"hard": {"requests.cpu": original}}}, patch_type="merge")
    assert "escalated, no traffic moved" in message, message
    assert f"quota {namespace}/{quota['metadata']['name']} requests.cpu" in message, message
    assert await weights(fs) == {SURVIVOR: 100, FAILING: 100}
    assert fs.replicas(SURVIVOR) == before


# ------------------------------------------------------------------ a hard outage: failover, then failback


def global_error_ratio(fs: FailoverSandbox) -> float | None:
    return fs.query('sum(rate(istio_requests_total{reporter="destination",response_code=~"5.."}[5s]))'
                    ' / sum(rate(istio_requests_total{reporter="destination"}[5s]))')


async def test_a_hard_region_outage_fails_over_through_the_authority_and_fails_back(
    worker: FailoverSandbox, temporal_client: Client
) -> None:
    fs = worker
    original_replicas = {r: fs.replicas(r) for r in REGIONS}
    original_weights = await weights(fs)
    outage = time.monotonic()
    fail_region(clusters=fs.clusters, region=FAILING, api_client=fs.admin[FAILING], simulator_url=fs.simulator.url)
    down = True
    try:
        with pytest.raises(Exception):  # noqa: B017 - the failing region's API server is really gone
            KubeJson(fs.admin[FAILING], timeout_seconds=2).get("/version")
        failover = await run(temporal_client, fs, "failover-region", {
            **FAILOVER_FAST, "region": FAILING, "required_bad": 3, "max_confirm_evaluations": 10})
        assert failover.status == "succeeded", failover
        confirm, verify = failover.outputs["confirm"], failover.outputs["verify"]
        rto = verify["met_at"] - confirm["first_bad_at"]
        print(f"\nfailover of {FAILING}: RTO {rto:.1f}s (first bad evaluation -> survivors' SLO verified), "
              f"{time.monotonic() - outage:.1f}s from the outage")
        assert await weights(fs) == {SURVIVOR: 100, FAILING: 0}
        plan = failover.outputs["capacity"]
        assert plan["sufficient"] and plan["load_factor"] == 2.0 and plan["items"], plan
        assert {i["region"] for i in plan["items"]} == {SURVIVOR}
        scaled = fs.replicas(SURVIVOR)
        for item in plan["items"]:
            key = f"{item['namespace']}/{item['name']}"
            assert (item["original"], scaled[key]) == (original_replicas[SURVIVOR][key], item["replicas"]), item
            assert item["replicas"] == 2 * item["original"], item
        # callees before callers: the order the graph gave
        order = [f"{s['namespace']}/{s['workload']}" for s in failover.outputs["order"]["order"]]
        ranked = [order.index(f"{i['namespace']}/{i['name']}") for i in plan["items"]
                  if f"{i['namespace']}/{i['name']}" in order]
        assert ranked == sorted(ranked), (order, plan["items"])
        # what users feel: after the rate window, the fleet's requests succeed again
        await asyncio.sleep(6)
        ratio = global_error_ratio(fs)
        assert ratio is not None and ratio < 0.05, ratio
        assert all(e["verdict"] == "healthy" for e in verify["last"]), verify["last"]

        restore_region(clusters=fs.clusters, region=FAILING, api_client=fs.admin[FAILING])
        down = False
        failback = await run(temporal_client, fs, "failback-region", {
            **FAST, "region": FAILING, "weights": failover.outputs["weights"]["weights"],
            "prescaled": plan["items"], "required_healthy": 3, "required_verified": 2})
        assert failback.status == "succeeded", failback
        assert await weights(fs) == original_weights == {SURVIVOR: 100, FAILING: 100}
        assert {r: fs.replicas(r) for r in REGIONS} == original_replicas
    finally:
        if down:
            restore_region(clusters=fs.clusters, region=FAILING, api_client=fs.admin[FAILING])
        await fs.authority_client().set_weights(original_weights)


# ------------------------------------------------------------------ the scheduled DR drill


def endpoint_records(fs: FailoverSandbox, name: str) -> None:
    """The data hook's endpoint record in both regions (primary FAILING, SURVIVOR's replica 3 s behind), with
    ClusterRole pitstop-data-endpoint bound in its namespace only."""
    replicated = (datetime.now(UTC) - timedelta(seconds=3)).isoformat()
    for region in REGIONS:
        api = KubeJson(fs.admin[region])
        api.apply(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{DATA_NAMESPACE}/rolebindings/pitstop-data-endpoint", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "pitstop-data-endpoint", "namespace": DATA_NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pitstop-data-endpoint"},
            "subjects": [{"kind": "ServiceAccount", "name": "pitstop-worker", "namespace": "pitstop"}]})
        api.apply(f"/api/v1/namespaces/{DATA_NAMESPACE}/configmaps/{name}", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": DATA_NAMESPACE},
            "data": {"primary": FAILING, f"last_replicated_at.{SURVIVOR}": replicated}})


async def drill_via_schedule(client: Client, fs: FailoverSandbox, schedule_id: str, nth: int) -> RunbookOutcome:
    """Trigger the schedule and wait for its `nth` run's outcome."""
    await client.get_schedule_handle(schedule_id).trigger()
    deadline = time.monotonic() + 30
    while len(runs := [e async for e in client.list_workflows(f"TemporalScheduledById='{schedule_id}'")]) < nth:
        assert time.monotonic() < deadline, f"schedule {schedule_id} started {len(runs)} run(s), expected {nth}"
        await asyncio.sleep(0.3)
    latest = sorted(runs, key=lambda e: e.start_time)[-1]
    handle = client.get_workflow_handle(latest.id, result_type=RunbookOutcome)
    return await asyncio.wait_for(handle.result(), RUN_TIMEOUT * 2)


async def test_a_scheduled_dr_drill_fails_over_fails_back_and_records_rto_and_rpo(
    worker: FailoverSandbox, temporal_client: Client
) -> None:
    fs = worker
    original_replicas = {r: fs.replicas(r) for r in REGIONS}
    original_weights = await weights(fs)
    endpoint_records(fs, "db-endpoint")  # the name data-switch-primary uses by default
    schedule_id = f"dr-drill-{uuid.uuid4().hex[:6]}"
    text = f"""
schedules:
  - id: {schedule_id}
    owner: sre
    runbook: dr-drill
    inputs: {{region: {FAILING}, interval: 1s, window: 5s, failback_required_healthy: 2, headroom: 0}}
    cron: "0 4 * * 0"
"""
    shipped = {name: runbook for name, (_, runbook) in validate_catalog(
        SHIPPED_RUNBOOKS_DIR, reach=AuthorReach.from_settings(Settings()))[0].items()}
    entries, problems = parse_schedules(text, "schedules.yaml", shipped)
    assert problems == [], [str(p) for p in problems]
    await schedules.apply(temporal_client, entries, task_queue=fs.task_queue)
    try:
        drill = await drill_via_schedule(temporal_client, fs, schedule_id, 1)
        assert drill.status == "succeeded", drill
        record = DrillRecord.model_validate(drill.outputs["record"]["record"])
        print(f"\nDR drill of {FAILING}: RTO {record.rto_seconds}s, RPO {record.rpo_seconds}s, failback {record.failback_seconds}s")
        assert record.outcome == "recovered" and record.rto_seconds is not None and record.rto_seconds > 0
        assert record.rpo_seconds is not None and record.rpo_seconds >= 3, record  # the replica was 3 s behind
        assert all(KubeJson(fs.admin[r]).get(f"/api/v1/namespaces/{DATA_NAMESPACE}/configmaps/db-endpoint")["data"]["primary"]
                   == FAILING for r in REGIONS), "the data primary is back in the drilled region"
        assert await weights(fs) == original_weights
        assert {r: fs.replicas(r) for r in REGIONS} == original_replicas
        assert [r for r in await drill_records(temporal_client, region=FAILING, limit=50) if r.started_at == record.started_at]

        # a service of the region held (a release, an incident): the drill refuses, recorded as skipped with the reason
        held = lease_id(cluster=FAILING, namespace="team-platform", service="held-by-a-release")
        other = lease_id(cluster=SURVIVOR, namespace="global-traffic", service="stand-in-holder")
        # a lease stays held while its holder runs: two lease workflows holding each other stand in for a release
        for lease, holder in ((held, other), (other, held)):
            await temporal_client.start_workflow(LEASE_WORKFLOW, LeaseState(lease_id=lease, check_seconds=600), id=lease,
                                                 task_queue=fs.task_queue, start_signal="request",
                                                 start_signal_args=[LeaseHolder(workflow_id=holder, runbook="canary")])
        try:
            skipped = await drill_via_schedule(temporal_client, fs, schedule_id, 2)
        finally:
            for lease in (held, other):
                with contextlib.suppress(RPCError):
                    await temporal_client.get_workflow_handle(lease).terminate("test over")
        record = DrillRecord.model_validate(skipped.outputs["record"]["record"])
        assert record.outcome == "skipped" and held in record.reason, (record, skipped.outputs.get("leases"))
        assert skipped.steps["failover"] == "skipped" and await weights(fs) == original_weights
    finally:
        await schedules.apply(temporal_client, [], task_queue=fs.task_queue)
