"""Prometheus step activities (and the incident metric snapshot) against a real Prometheus (Debian's
/usr/bin/prometheus) scraping a tiny metrics server every second; and against a Prometheus that is down."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from pitstop.activities.clients import ActivityClients
from pitstop.activities.incidents import IncidentActivities
from pitstop.activities.metrics import PrometheusProvider
from pitstop.activities.prometheus import PrometheusActivities
from pitstop.analysis import Verdict
from pitstop.config import Settings
from pitstop.incidents import MetricSnapshotRequest
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.prometheus import QueryArgs, ThresholdArgs, WaitForConditionArgs

pytestmark = pytest.mark.sandbox

PROMETHEUS = Path("/usr/bin/prometheus")


class MetricsServer:
    """Serves `/metrics` in the Prometheus text format from a mutable dict."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        values = self.values

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = "".join(f"{k} {v}\n" for k, v in list(values.items())).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_server() -> Iterator[MetricsServer]:
    server = MetricsServer()
    server.values.update({"pitstop_test_error_ratio": 0.02, 'pitstop_test_requests{version="a"}': 1, 'pitstop_test_requests{version="b"}': 2})
    yield server
    server.close()


@pytest.fixture(scope="module")
def prometheus_url(metrics_server: MetricsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not PROMETHEUS.exists():
        pytest.fail("/usr/bin/prometheus is missing: apt-get install -y --no-install-recommends prometheus", pytrace=False)
    work = tmp_path_factory.mktemp("prometheus")
    config = work / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: steps, static_configs: [{{targets: ['{metrics_server.address}']}}]}}]\n"
    )
    port = free_port()
    log = (work / "prometheus.log").open("w")
    process = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{url}/api/v1/query", params={"query": "pitstop_test_error_ratio"}, timeout=2)
                if r.status_code == 200 and r.json()["data"]["result"]:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail(f"prometheus did not scrape the test metrics within 30s; see {work / 'prometheus.log'}", pytrace=False)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def activities_for(url: str) -> PrometheusActivities:
    settings = Settings(prometheus={"url": url, "timeout_seconds": 2})
    return PrometheusActivities(ActivityClients(settings=settings, metrics=PrometheusProvider(base_url=url, timeout_seconds=2)))


def call(args: Any) -> StepInvocation[Any]:
    return StepInvocation[type(args)](args=args)  # type: ignore[misc]


async def test_query_returns_a_number_or_no_data(prometheus_url: str) -> None:
    prom, env = activities_for(prometheus_url), ActivityEnvironment()
    value = await env.run(prom.query, call(QueryArgs(query="pitstop_test_error_ratio")))
    assert value.value == pytest.approx(0.02) and not value.no_data
    missing = await env.run(prom.query, call(QueryArgs(query="pitstop_test_missing_metric")))
    assert missing.value is None and missing.no_data and missing.error is None
    nan = await env.run(prom.query, call(QueryArgs(query="0/0")))
    assert nan.value is None and nan.no_data


async def test_threshold_verdicts(prometheus_url: str) -> None:
    prom, env = activities_for(prometheus_url), ActivityEnvironment()
    passing = await env.run(prom.check_threshold, call(ThresholdArgs(query="pitstop_test_error_ratio", max=0.05)))
    assert passing.verdict is Verdict.PASS and passing.value == pytest.approx(0.02)
    failing = await env.run(prom.check_threshold, call(ThresholdArgs(query="pitstop_test_error_ratio", max=0.01)))
    assert failing.verdict is Verdict.FAIL and "fail: value 0.02" in failing.summary


async def test_no_data_is_inconclusive_never_a_pass(prometheus_url: str) -> None:
    prom, env = activities_for(prometheus_url), ActivityEnvironment()
    result = await env.run(prom.check_threshold, call(ThresholdArgs(query="pitstop_test_missing_metric", max=1e9)))
    assert result.verdict is Verdict.INCONCLUSIVE and result.value is None and "no data" in result.summary


async def test_prometheus_down_is_inconclusive_not_a_crash() -> None:
    prom, env = activities_for(f"http://127.0.0.1:{free_port()}"), ActivityEnvironment()
    result = await env.run(prom.check_threshold, call(ThresholdArgs(query="up", min=1)))
    assert result.verdict is Verdict.INCONCLUSIVE and result.error and "unreachable" in result.error
    query = await env.run(prom.query, call(QueryArgs(query="up")))
    assert query.value is None and query.error
    assert await PrometheusProvider(base_url=f"http://127.0.0.1:{free_port()}").is_online() is False


async def test_bad_queries_are_non_retryable_domain_errors(prometheus_url: str) -> None:
    prom, env = activities_for(prometheus_url), ActivityEnvironment()
    assert await PrometheusProvider(base_url=prometheus_url).is_online()
    with pytest.raises(ApplicationError, match="Prometheus rejected query") as info:
        await env.run(prom.check_threshold, call(ThresholdArgs(query="sum(", max=1)))
    assert info.value.non_retryable
    with pytest.raises(ApplicationError, match="returned 2 series") as info:
        await env.run(prom.query, call(QueryArgs(query="pitstop_test_requests")))
    assert info.value.non_retryable


async def test_wait_for_condition_heartbeats_until_the_metric_recovers(prometheus_url: str, metrics_server: MetricsServer) -> None:
    prom = activities_for(prometheus_url)
    heartbeats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *d: heartbeats.append(d)
    metrics_server.values["pitstop_test_latency_ms"] = 900.0

    async def recover() -> None:
        await asyncio.sleep(2.0)
        metrics_server.values["pitstop_test_latency_ms"] = 120.0

    task = asyncio.create_task(recover())
    args = WaitForConditionArgs(query="pitstop_test_latency_ms", max=250, timeout_seconds=30, poll_interval_seconds=0.5, consecutive=2)
    result = await env.run(prom.wait_for_condition, call(args))
    await task
    assert result.met and result.verdict is Verdict.PASS and result.value == pytest.approx(120.0)
    assert result.polls >= 4 and len(heartbeats) == result.polls

    gave_up = await env.run(
        prom.wait_for_condition,
        call(WaitForConditionArgs(query="pitstop_test_missing_metric", min=1, timeout_seconds=1.5, poll_interval_seconds=0.5, fail_on_timeout=False)),
    )
    assert gave_up.met is False and gave_up.verdict is Verdict.INCONCLUSIVE
    with pytest.raises(ApplicationError, match="not met within") as info:
        await env.run(prom.wait_for_condition, call(WaitForConditionArgs(query="pitstop_test_error_ratio", max=0.001, timeout_seconds=1, poll_interval_seconds=0.5)))
    assert info.value.non_retryable and info.value.type == "ConditionTimeout"


async def test_incident_metric_snapshot_reads_every_series_through_the_injected_provider(prometheus_url: str) -> None:
    """`incident.metric_snapshot` asks the injected `MetricsProvider` (no query path of its own): each series with
    its labels, bounded by `max_series`; a rejected query or a Prometheus that is down is recorded, not raised."""
    env = ActivityEnvironment()
    settings = Settings(prometheus={"url": "http://127.0.0.1:9", "timeout_seconds": 2})  # never used: injected
    incidents = IncidentActivities(ActivityClients(
        settings=settings, metrics=PrometheusProvider(base_url=prometheus_url, timeout_seconds=2)))
    snap = await env.run(incidents.metric_snapshot, MetricSnapshotRequest(promql="pitstop_test_requests", label="t"))
    by_version = {s["metric"]["version"]: s["value"] for s in snap.series}
    assert by_version == {"a": 1.0, "b": 2.0} and not snap.error and snap.at is not None, snap
    assert all(s["metric"]["__name__"] == "pitstop_test_requests" for s in snap.series)
    bounded = await env.run(incidents.metric_snapshot, MetricSnapshotRequest(promql="pitstop_test_requests", max_series=1))
    assert len(bounded.series) == 1
    rejected = await env.run(incidents.metric_snapshot, MetricSnapshotRequest(promql="sum("))
    assert rejected.series == [] and "Prometheus rejected query" in rejected.error
    down = IncidentActivities(ActivityClients(
        settings=settings, metrics=PrometheusProvider(base_url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2)))
    unreachable = await env.run(down.metric_snapshot, MetricSnapshotRequest(promql="up"))
    assert unreachable.series == [] and "unreachable" in unreachable.error
