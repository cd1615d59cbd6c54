"""pitstop's own Prometheus metrics, exported by Temporal's runtime beside the SDK's (one endpoint per process).

The worker (`worker.metrics_host:metrics_port`, default 127.0.0.1:9464) and the webhook
(`webhook.metrics_listen`, default 127.0.0.1:9465) each run a Temporal `Runtime` whose Prometheus exporter
serves `/metrics`: the SDK's `temporal_*` series and pitstop's own `pitstop_*` series, recorded through the
runtime's metric meter. Workflow code records its series through the workflow meter (`workflows/run_metrics.py`:
runs, steps, lease waits; nothing while replaying). Here:

- `pitstop_kubernetes_requests_total{region, method, code}` and `pitstop_kubernetes_request_duration_seconds`
  (every `KubeJson` request of the worker, `activities/kube_api.py`; code 0 = no answer), the same for
  `pitstop_prometheus_requests_total{code}` / `..._duration_seconds` (`PrometheusProvider`);
- `pitstop_webhook_request_duration_seconds{route, method, code}` (every webhook request, `WebhookMetrics`);
- `pitstop_webhook_journal_backlog` and `pitstop_webhook_journal_oldest_seconds` (undelivered alert notifications
  in the intake journal and the age of the oldest, sampled every `JOURNAL_SAMPLE_SECONDS`).

docs/observability.md lists every series with the alert rules and the dashboard that use them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from pitstop.activities.call_observer import ApiCall, CallObserver
from pitstop.config import Settings
from pitstop.workflows.run_metrics import LEASE_WAIT, STEP_DURATION

from .alert_journal import AlertForwarder

log = logging.getLogger("pitstop.metrics")

JOURNAL_SAMPLE_SECONDS = 2.0
API_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STEP_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LEASE_SECONDS_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
WEBHOOK_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
KUBE_DURATION = "pitstop_kubernetes_request_duration_seconds"
PROMETHEUS_DURATION = "pitstop_prometheus_request_duration_seconds"
WEBHOOK_DURATION = "pitstop_webhook_request_duration_seconds"
BUCKETS: dict[str, tuple[float, ...]] = {
    STEP_DURATION: STEP_SECONDS_BUCKETS, LEASE_WAIT: LEASE_SECONDS_BUCKETS, KUBE_DURATION: API_SECONDS_BUCKETS,
    PROMETHEUS_DURATION: API_SECONDS_BUCKETS, WEBHOOK_DURATION: WEBHOOK_SECONDS_BUCKETS,
}
WEBHOOK_ROUTES = ("/alerts", "/api/v1/alerts", "/", "/healthz", "/-/healthy", "/-/ready")


def metrics_runtime(bind_address: str | None) -> Runtime | None:
    """A Temporal runtime serving the SDK's and pitstop's metrics on `host:port` (None when not configured)."""
    if not bind_address:
        return None
    config = PrometheusConfig(bind_address=bind_address, histogram_bucket_overrides={k: list(v) for k, v in BUCKETS.items()})
    return Runtime(telemetry=TelemetryConfig(metrics=config))


def webhook_metrics_runtime(settings: Settings) -> Runtime | None:
    """The webhook's runtime serving its metrics on `webhook.metrics_listen`; None when off, or (logged) when that
    address is taken: the alert path never fails for its metrics."""
    try:
        return metrics_runtime(settings.webhook.metrics_listen)
    except ValueError as exc:  # "Failed starting Prometheus exporter: Address already in use"
        log.error("webhook metrics endpoint %s not started: %s", settings.webhook.metrics_listen, exc)
        return None


def bind_address(host: str, port: int) -> str | None:
    """`host:port` for a Prometheus endpoint, None when the port is 0 (off)."""
    return f"[{host}]:{port}" if port and ":" in host else (f"{host}:{port}" if port else None)


def scrape_targets(settings: Settings) -> dict[str, list[str]]:
    """Where a Prometheus on this host scrapes pitstop's worker and webhook (`pitstop up`'s sandbox Prometheus)."""
    targets: dict[str, list[str]] = {}
    worker = bind_address(_reachable(settings.worker.metrics_host), settings.worker.metrics_port)
    if worker:
        targets["pitstop-worker"] = [worker]
    if settings.webhook.metrics_listen:
        host, _, port = settings.webhook.metrics_listen.rpartition(":")
        targets["pitstop-webhook"] = [f"{_reachable(host.strip('[]'))}:{port}"]
    return targets


def _reachable(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def meter_of(client: Client) -> MetricMeter:
    """The metric meter of the runtime `client` runs on (a no-op meter when that runtime exports nothing)."""
    config = getattr(getattr(client, "service_client", None), "config", None)  # a stand-in client has none
    runtime = getattr(config, "runtime", None) or Runtime.default()
    meter: MetricMeter = runtime.metric_meter
    return meter


def api_call_metrics(meter: MetricMeter, *, system: str, region: str | None = None) -> CallObserver:
    """An observer counting one client's requests by method and answer code, with their duration."""
    attributes = {"region": region} if region is not None else {}
    scoped = meter.with_additional_attributes(attributes) if attributes else meter
    requests = scoped.create_counter(f"pitstop_{system}_requests_total", f"{system} API requests by answer code")
    duration = scoped.create_histogram_float(f"pitstop_{system}_request_duration_seconds",
                                             f"{system} API request duration", "s")

    @contextmanager
    def observe(call: ApiCall) -> Iterator[ApiCall]:
        started = time.perf_counter()
        try:
            yield call
        finally:
            requests.add(1, {"method": call.method, "code": str(call.status)})
            duration.record(time.perf_counter() - started, {"method": call.method})

    return observe


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class WebhookMetrics:
    """ASGI wrapper timing every HTTP request of the webhook (until its response started) by route and code."""

    def __init__(self, app: App, meter: MetricMeter) -> None:
        self.app = app
        self.duration = meter.create_histogram_float(WEBHOOK_DURATION, "webhook request duration", "s")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def timed_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                self.duration.record(time.perf_counter() - started, {
                    "route": _route(scope.get("path", "")), "method": scope.get("method", ""), "code": str(status[0])})
            await send(message)

        await self.app(scope, receive, timed_send)


def _route(path: str) -> str:
    if path in WEBHOOK_ROUTES:
        return path
    return "/codec" if path.startswith("/codec") else "other"


async def sample_journal(forwarder: AlertForwarder, meter: MetricMeter, *, every: float = JOURNAL_SAMPLE_SECONDS) -> None:
    """Until cancelled: the intake journal's undelivered notifications and the age of the oldest, as gauges."""
    backlog = meter.create_gauge("pitstop_webhook_journal_backlog", "alert notifications journaled, not yet in Temporal")
    oldest = meter.create_gauge_float("pitstop_webhook_journal_oldest_seconds",
                                      "age of the oldest undelivered alert notification (0: none)", "s")
    while True:
        backlog.set(forwarder.backlog)
        oldest.set(forwarder.oldest_seconds)
        await asyncio.sleep(every)
