"""pitstop's own observability, end to end (docs/observability.md): a real `pitstop worker` and webhook process
scraped by the sandbox's Prometheus (started by `sandbox.monitoring.start_monitoring` with pitstop's scrape
targets and alert rules, as `pitstop up` does), traces exported over OTLP to an in-test receiver.

- a runbook that calls Kubernetes (`scale-service`, which also takes a lease) has one trace with the client's,
  the workflow's, the activity's and the Kubernetes request's spans, each a child of the one before;
- every panel query of deploy/grafana/pitstop.json returns at least one series with a number;
- stopping the worker fires `PitstopWorkerDown` (the rules' `for:` is shortened to 2s in this Prometheus copy).

A dedicated Prometheus (not the session's `sandbox_monitoring`) because this test stops a scraped target on
purpose: the alert it raises must not reach the shared Alertmanager's receiver other tests read.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes.config import new_client_from_config

from pitstop.config import Settings
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.sandbox.clusters import SandboxClusters
from pitstop.sandbox.monitoring import MonitoringHandle, MonitoringSettings, start_monitoring
from tests.fixtures.otlp_receiver import OtlpTraceReceiver, ReceivedSpan
from tests.sandbox.step_library_support import create_deployment, deployment_manifest, unique
from pitstop.workers.devserver import DevServer
from pitstop.workers.temporal_connection import connect
from pitstop.workers.tracing import shutdown_tracing

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "pitstop.json"
NAMESPACE = "team-platform"
REGION = "eu-central"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ObservedPitstop:
    settings: Settings
    worker: subprocess.Popen[bytes]
    webhook: subprocess.Popen[bytes]
    prometheus: MonitoringHandle
    traces: OtlpTraceReceiver
    logs: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.prometheus.prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def healthz(self) -> None:
        httpx.get(f"http://{self.settings.webhook.listen}/healthz", timeout=5).raise_for_status()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout_seconds: float = 60) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not answering after {timeout_seconds}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def observed_pitstop(kube_sandbox: SandboxClusters, temporal_server: DevServer, tmp_path: Path) -> Iterator[ObservedPitstop]:
    traces = OtlpTraceReceiver()
    worker_port, webhook_metrics, webhook_port = free_port(), free_port(), free_port()
    config = {
        "state_dir": str(tmp_path / "state"),
        "temporal": {"address": temporal_server.address, "task_queue": f"observe-{uuid.uuid4().hex[:8]}"},
        "kubernetes": {"regions": {REGION: {"kubeconfig": str(kube_sandbox.kubeconfig),
                                            "context": kube_sandbox.contexts[REGION]}}},
        "worker": {"metrics_port": worker_port},
        "webhook": {"listen": f"127.0.0.1:{webhook_port}", "metrics_listen": f"127.0.0.1:{webhook_metrics}",
                    "token": "observe-test-token"},
        "alertmanager": {"url": "http://127.0.0.1:9"},
        "tracing": {"otlp_endpoint": traces.endpoint, "service_name": "pitstop-test"},
    }
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PITSTOP_")}
    env.update(PITSTOP_CONFIG=str(config_file), PYTHONPATH=str(REPO), OTEL_BSP_SCHEDULE_DELAY="200")
    settings = Settings.model_validate(config)
    prometheus = start_monitoring(settings=MonitoringSettings(
        simulator_target="127.0.0.1:9", regions=[], scrape_interval="1s", evaluation_interval="1s",
        pitstop_targets={"pitstop-worker": [f"127.0.0.1:{worker_port}"],
                         "pitstop-webhook": [f"127.0.0.1:{webhook_metrics}"]},
        pitstop_rules_for="2s",
    ), state_dir=tmp_path / "monitoring")
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in (("worker", [sys.executable, "-m", "pitstop.workers.cli", "worker"]),
                              ("webhook", [sys.executable, "-m", "pitstop.workers.webhook"])):
            processes.append(subprocess.Popen(command, env=env, cwd=REPO, stdout=(logs / f"{name}.log").open("wb"),
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        _wait_http(f"http://127.0.0.1:{worker_port}/metrics", processes[0], logs / "worker.log")
        _wait_http(f"http://127.0.0.1:{webhook_metrics}/metrics", processes[1], logs / "webhook.log")
        yield ObservedPitstop(settings=settings, worker=processes[0], webhook=processes[1], prometheus=prometheus,
                              traces=traces, logs=logs)
    finally:
        for process in processes:
            _stop(process)
        prometheus.stop()
        traces.close()


async def _run_scale(settings: Settings, name: str, replicas: int) -> tuple[str, RunbookOutcome]:
    """`scale-service` started by a traced client (as `pitstop run` with tracing on); (workflow id, outcome)."""
    client = await connect(settings)
    workflow_id = f"observe-scale-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(
        RUNBOOK_WORKFLOW, RunbookRequest(runbook="scale-service", trigger="cli", started_by="test", inputs={
            "service": name, "namespace": NAMESPACE, "region": REGION, "replicas": replicas}),
        id=workflow_id, task_queue=settings.temporal.task_queue, result_type=RunbookOutcome,
    )
    outcome = await asyncio.wait_for(handle.result(), 120)
    assert outcome.status == "succeeded", outcome
    return workflow_id, outcome


def _one_trace_through_kubernetes(spans: list[ReceivedSpan], workflow_id: str) -> list[ReceivedSpan] | None:
    """The spans of the trace the client started for `workflow_id`, once it holds the workflow's span and a
    Kubernetes request whose parents are the activity's run, its start by the workflow, and the client's start."""
    starts = [s for s in spans if s.name == "StartWorkflow:Runbook" and s.attributes.get("temporalWorkflowID") == workflow_id]
    if not starts:
        return None
    trace = [s for s in spans if s.trace_id == starts[0].trace_id]
    by_id = {s.span_id: s for s in trace}
    for span in trace:
        if not span.name.startswith("kubernetes "):
            continue
        chain, parent = [span], by_id.get(span.parent_span_id)
        while parent is not None:
            chain.append(parent)
            parent = by_id.get(parent.parent_span_id)
        names = [s.name for s in chain]  # temporalio parents a workflow's activities on its client span
        if names[1].startswith("RunActivity:kubernetes.") and names[2].startswith("StartActivity:kubernetes.") \
                and names[-1] == "StartWorkflow:Runbook" and any(
                    s.name == "RunWorkflow:Runbook" and s.attributes.get("temporalWorkflowID") == workflow_id
                    for s in trace):
            return trace
    return None


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def _has_number(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


async def test_pitstop_metrics_traces_dashboard_and_worker_down_alert(
    observed_pitstop: ObservedPitstop, kube_sandbox: SandboxClusters
) -> None:
    op = observed_pitstop
    name = unique("observed")
    api = new_client_from_config(config_file=str(kube_sandbox.kubeconfig), context=kube_sandbox.contexts[REGION])
    try:
        create_deployment(api, deployment_manifest(name, "registry.pitstop.dev/platform/observed:1.0", replicas=1))
    finally:
        api.close()

    # 1. one trace: client -> workflow -> activity -> Kubernetes request
    workflow_id, _ = await _run_scale(op.settings, name, 2)
    shutdown_tracing()  # flush this process's client span
    spans = op.traces.wait_for(lambda s: _one_trace_through_kubernetes(s, workflow_id) is not None, timeout_seconds=60)
    trace = _one_trace_through_kubernetes(spans, workflow_id) or []
    kube_spans = [s for s in trace if s.name.startswith("kubernetes ")]
    assert {s.attributes.get("pitstop.region") for s in kube_spans} == {REGION}, kube_spans
    assert any(s.name == "kubernetes PATCH" for s in kube_spans), sorted({s.name for s in trace})  # the scale
    assert {s.attributes.get("http.response.status_code") for s in kube_spans if s.name == "kubernetes PATCH"} == {200}

    # 2. every dashboard query returns data: a second run after Prometheus saw the first, so rates are > 0
    deadline = time.monotonic() + 60
    while not op.query("pitstop_runbook_runs_finished_total") and time.monotonic() < deadline:
        op.healthz()
        await asyncio.sleep(0.5)
    await _run_scale(op.settings, name, 1)
    queries = _dashboard_queries()
    assert len(queries) >= 10
    empty: list[tuple[str, str]] = list(queries)
    deadline = time.monotonic() + 60
    while empty and time.monotonic() < deadline:
        op.healthz()
        await asyncio.sleep(1.0)
        empty = [(title, expr) for title, expr in empty if not _has_number(op.query(expr))]
    assert not empty, f"dashboard queries without data: {empty}"
    finished = op.query('sum by (runbook, outcome) (pitstop_runbook_runs_finished_total{runbook="scale-service"})')
    assert [(s["metric"]["outcome"], float(s["value"][1])) for s in finished] == [("succeeded", 2.0)], finished
    codes = {s["metric"]["code"] for s in op.query(f'pitstop_kubernetes_requests_total{{region="{REGION}"}}')}
    assert "200" in codes, codes

    # 3. the worker stops: PitstopWorkerDown fires
    assert not [a for a in _alerts(op) if a["labels"]["alertname"] == "PitstopWorkerDown"]
    _stop(op.worker)
    deadline = time.monotonic() + 60
    firing: list[dict[str, Any]] = []
    while not firing and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        firing = [a for a in _alerts(op) if a["labels"]["alertname"] == "PitstopWorkerDown" and a["state"] == "firing"]
    assert firing, f"PitstopWorkerDown not firing within 60s: {_alerts(op)}"
    assert firing[0]["labels"]["job"] == "pitstop-worker"


def _alerts(op: ObservedPitstop) -> list[dict[str, Any]]:
    response = httpx.get(f"{op.prometheus.prometheus_url}/api/v1/alerts", timeout=10)
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()["data"]["alerts"]
    return alerts
