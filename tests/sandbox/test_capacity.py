"""Capacity on the sandbox: the shipped `nightly-capacity` runbook end to end (the interpreter workflow on the real
Temporal server, the product's workers, `capacity.collect` in both regions run as the worker's service account with
`deploy/rbac.yaml` applied) over the session's real Prometheus holding 14 days of backfilled usage
(tests/fixtures/monitoring.py: one sample per 15 minutes, so the collection steps at 900 s), and the report
attached to the run. Also: the `simple` CPU numbers equal KRR's own PromQL (`quantile_over_time` over a
subquery) on the same data, and `pitstop capacity report` writes the report locally (with a policy giving one
team the `vpa` strategy, and a real HorizontalPodAutoscaler whose Deployment's CPU is left to it).

Printed: each region's node plan against its lower bound and the forecast back-test MAPE per namespace.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client

from pitstop.activities.capacity import collect_region
from pitstop.activities.clients import ActivityClients
from pitstop.activities.kube_api import KubeJson
from pitstop.activities.metrics import PrometheusProvider
from pitstop.capacity.strategies import Status
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.steps.capacity import CollectArgs, CollectResult, ReportResult
from pitstop.sandbox.cluster_contents import INSTANCE_TYPES, NODES_PER_INSTANCE_TYPE, REGION_PRICE_FACTOR
from pitstop.sandbox.clusters import SandboxClusters
from tests.fixtures.monitoring import SandboxMonitoring
from pitstop.workers.run_history import fetch_chain, timeline
from pitstop.workflows import ALL_WORKFLOWS

from .step_library_support import WORKER_SA, apply_deploy_rbac, impersonating, product_workers

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

RUNBOOK = "nightly-capacity"
STEP = 900  # the fixture's backfill resolution
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def as_worker(kube_sandbox: SandboxClusters, sandbox_monitoring: SandboxMonitoring,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActivityClients]:
    """The worker's clients (every Kubernetes request as its service account, deploy/rbac.yaml applied), reading
    the session's Prometheus, writing reports into a state dir of their own."""
    for region in kube_sandbox.contexts:
        apply_deploy_rbac(kube_sandbox, region)
    clients = impersonating(kube_sandbox, WORKER_SA, state_dir=tmp_path_factory.mktemp("capacity-state"),
                            prometheus={"url": sandbox_monitoring.monitoring.prometheus_url})
    yield clients
    for api_client in clients.kube.values():
        api_client.close()


def region_cost(region: str) -> float:
    factor = REGION_PRICE_FACTOR.get(region, 1.0)
    return sum(round(t.hourly_price_usd * factor, 3) for t in INSTANCE_TYPES) * NODES_PER_INSTANCE_TYPE


def check_region(region: CollectResult, sandbox: SandboxMonitoring) -> None:
    """Every fleet Deployment recommended from its real history, with its evidence."""
    by_name = {w.workload: w for w in region.workloads}
    for service in sandbox.services:
        workload = by_name[service.name]
        (container,) = workload.containers
        assert (container.cpu_status, container.memory_status) == (Status.OK, Status.OK), (service.name, container.info)
        e = container.evidence
        # the pods with 14 days of history, plus any that other tests' rollouts and scale-outs created since
        backfilled = sum(1 for p in sandbox.history_pods[region.region] if p.app == service.name)
        assert backfilled == service.replicas and e.pods >= backfilled, e
        assert e.cpu_points >= 14 * 96 * backfilled * 0.95, e
        assert container.cpu_request is not None and container.cpu_limit is None
        assert container.memory_request == container.memory_limit
        assert container.memory_request == pytest.approx(e.memory_max_bytes * 1.15)
    chunks_per_namespace = math.ceil((336 * 3600 / STEP + 1) / CollectArgs(region="r").points_per_query)
    assert region.figures.range_queries == 2 * chunks_per_namespace * len({s.team for s in sandbox.services})
    assert len(region.nodes) == len(INSTANCE_TYPES) * NODES_PER_INSTANCE_TYPE


async def test_nightly_capacity_runbook_reports_every_region_from_the_real_history(
    temporal_client: Client, task_queue: str, kube_sandbox: SandboxClusters, sandbox_monitoring: SandboxMonitoring,
    as_worker: ActivityClients,
) -> None:
    regions = sorted(kube_sandbox.contexts)
    settings = as_worker.settings.model_copy(update={"temporal": as_worker.settings.temporal.model_copy(
        update={"task_queue": task_queue})})
    as_worker.temporal = temporal_client
    workflow_id = f"{RUNBOOK}-{uuid.uuid4().hex[:8]}"
    async with product_workers(temporal_client, settings, as_worker, ALL_WORKFLOWS):
        outcome = await temporal_client.execute_workflow(
            RUNBOOK_WORKFLOW, RunbookRequest(runbook=RUNBOOK, inputs={"regions": regions, "step_seconds": STEP},
                                             trigger="cli", started_by="test"),
            id=workflow_id, task_queue=task_queue, result_type=RunbookOutcome,
        )
    assert outcome.status == "succeeded", outcome
    collected = [CollectResult.model_validate(o) for o in outcome.outputs["collect"]]
    assert [c.region for c in collected] == regions
    for region in collected:
        check_region(region, sandbox_monitoring)
    result = ReportResult.model_validate(outcome.outputs["report"])
    report = result.report
    for r in report.regions:
        assert r.current.nodes == len(INSTANCE_TYPES) * NODES_PER_INSTANCE_TYPE
        assert r.current.hourly_cost_usd == pytest.approx(region_cost(r.region), abs=1e-3)
        assert sum(a.hourly_usd for a in r.by_requests.by_team) == pytest.approx(r.current.hourly_cost_usd, abs=1e-3)
        assert sum(a.hourly_usd for a in r.by_usage.by_team) == pytest.approx(r.current.hourly_cost_usd, abs=1e-3)
        for plan in (r.today, r.recommended):
            assert plan.best is not None and plan.best.lower_bound <= plan.best.nodes
            print(f"{r.region} node plan ({plan.scenario} requests): {plan.best.nodes} x {plan.best.instance_type}"
                  f" ({plan.best.algorithm.value}), lower bound {plan.best.lower_bound},"
                  f" gap {plan.best.gap_percent:.1f} %; cluster today {r.current.nodes} nodes")
        assert set(r.mape_percent) >= {f"{s.team}/cpu" for s in sandbox_monitoring.services}
        for name, value in sorted(r.mape_percent.items()):
            print(f"{r.region} forecast back-test MAPE {name}: {value:.1f} %")
    assert report.counts.recommended >= len(sandbox_monitoring.services) * len(regions)
    # the report is attached to the run (its history holds the step's output) and written by the worker
    entries = timeline(await fetch_chain(temporal_client, workflow_id))["timeline"]
    (recorded,) = [e for e in entries if e.get("type") == "capacity.report"]
    assert ReportResult.model_validate(recorded["outputs"]).report == report
    assert result.html.startswith("<!doctype html>") and result.html.count("<svg") > 4
    assert Path(result.html_path).read_text() == result.html
    assert report.markdown.startswith("# Capacity report (simple)")


async def test_simple_cpu_matches_krrs_promql_on_the_same_history(
    sandbox_monitoring: SandboxMonitoring, as_worker: ActivityClients,
) -> None:
    """KRR's query: quantile_over_time(0.95, max by (container, pod) (rate(...[w]))[336h:step]), highest pod."""
    region = sorted(sandbox_monitoring.clusters.contexts)[0]
    end = float(int(sandbox_monitoring.history.end_unix) // STEP * STEP)
    args = CollectArgs(region=region, step_seconds=STEP, rate_window_seconds=2 * STEP, end_unix=end)
    provider = PrometheusProvider(base_url=sandbox_monitoring.monitoring.prometheus_url, timeout_seconds=60)
    result = await collect_region(KubeJson(as_worker.kube_client(region)), provider, args)
    checked = 0
    for service in sandbox_monitoring.services[:4]:
        selector = f'region="{region}",namespace="{service.team}",container="{service.name}"'
        krr = sandbox_monitoring.query(
            f"max(quantile_over_time(0.95, max by (container, pod) (rate(container_cpu_usage_seconds_total"
            f"{{{selector}}}[{2 * STEP}s]))[{int(args.history_hours)}h:{STEP}s]))", time=str(end))
        (workload,) = [w for w in result.workloads if w.workload == service.name]
        ours = workload.containers[0].cpu_request
        assert ours == pytest.approx(max(float(krr[0]["value"][1]), 0.010), rel=0.02), service.name
        checked += 1
    assert checked == 4


def test_cli_writes_the_report_locally(kube_sandbox: SandboxClusters, sandbox_monitoring: SandboxMonitoring,
                                       tmp_path: Path) -> None:
    config = tmp_path / "pitstop.yaml"
    regions = {region: {"kubeconfig": str(kube_sandbox.kubeconfig), "context": ctx}
               for region, ctx in kube_sandbox.contexts.items()}
    config.write_text(yaml.safe_dump({"kubernetes": {"regions": regions}, "state_dir": str(tmp_path / "state"),
                                      "prometheus": {"url": sandbox_monitoring.monitoring.prometheus_url}}))
    policy = tmp_path / "policy.yaml"
    policy.write_text("teams:\n  team-platform: {strategy: vpa}\n")
    out = tmp_path / "report"
    env = {**os.environ, "PITSTOP_CONFIG": str(config)}
    # an HPA (scaling on CPU; bounds around today's replicas, so nothing is scaled) on one fleet service: left to it
    scaled = sandbox_monitoring.services[1]
    hpas = f"/apis/autoscaling/v2/namespaces/{scaled.team}/horizontalpodautoscalers"
    admin = KubeJson(sandbox_monitoring.api_clients["us-east"])
    hpa_name = f"capacity-test-{uuid.uuid4().hex[:5]}"
    admin.post(hpas, {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": hpa_name},
                      "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": scaled.name},
                               "minReplicas": 1, "maxReplicas": max(10, scaled.replicas),
                               "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                                   "type": "Utilization", "averageUtilization": 80}}}]}})
    try:
        done = subprocess.run([sys.executable, "-m", "pitstop.workers.cli", "capacity", "report", "--region", "us-east",
                               "--step", str(STEP), "--policy", str(policy), "--out", str(out)],
                              capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    finally:
        admin.request("DELETE", f"{hpas}/{hpa_name}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "us-east: namespace 1/" in done.stderr and f"wrote {out / 'capacity.html'}" in done.stdout
    data = json.loads((out / "capacity.json").read_text())
    strategies = {w["team"]: w["strategy"] for r in data["regions"] for w in r["workloads"]}
    assert strategies.get("team-platform") == "vpa" and "simple" in strategies.values()
    for w in (w for r in data["regions"] for w in r["workloads"] if w["team"] == "team-platform"):
        (c,) = w["containers"]  # the VPA's target between its bounds, above its floors
        assert c["cpu_bounds"][0] <= c["cpu_request"] <= c["cpu_bounds"][1] and c["cpu_request"] >= 0.025, c
        assert c["memory_bounds"][0] <= c["memory_request"] <= c["memory_bounds"][1], c
        assert c["memory_request"] >= 250 * 2**20 and c["evidence"]["memory_peaks"] >= 14 * c["evidence"]["pods"], c
    assert (out / "capacity.md").read_text().startswith("# Capacity report (")
    (left,) = [w for r in data["regions"] for w in r["workloads"] if w["workload"] == scaled.name]
    (c,) = left["containers"]
    assert left["hpa"] == {"name": hpa_name, "cpu": True, "memory": False}
    assert (c["cpu_status"], c["cpu_request"], c["memory_status"]) == ("hpa", None, "ok"), c
    assert f"cpu: HPA {hpa_name} scales on it" in c["info"]
