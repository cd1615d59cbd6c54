"""pitstop's OpenTelemetry traces: client -> workflow -> activity -> Kubernetes/Prometheus request, over OTLP.

Off unless `tracing.otlp_endpoint` is set (PITSTOP_TRACING__OTLP_ENDPOINT, e.g. http://127.0.0.1:4318 for an
OpenTelemetry Collector or Jaeger's OTLP/HTTP port). Then every Temporal client built by
`workers.temporal_connection.connect` carries temporalio's `TracingInterceptor` (and so does a worker built on it):
the CLI's and the webhook's StartWorkflow/SignalWithStart spans, the workflow's RunWorkflow and StartActivity spans,
the activity's RunActivity span; and `workers/clients.py` wraps every `KubeJson` and `PrometheusProvider` request in
a client span (`kubernetes GET`, `prometheus GET`: method, path without query, region, status code). One run's
spans share one trace id. Spans are batched (`OTEL_BSP_*` env vars tune it) and flushed when the process stops
(`shutdown_tracing`).

The tracer provider is this module's own (one per process, per endpoint), not the global one, so a host process
that has its own OpenTelemetry setup keeps it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pitstop.activities.call_observer import ApiCall, CallObserver
from pitstop.config import Settings

_LOCK = threading.Lock()
_PROVIDERS: dict[tuple[str, str], Any] = {}  # (endpoint, service name) -> TracerProvider


def tracer(settings: Settings) -> Any | None:
    """This process's tracer exporting to `tracing.otlp_endpoint`, or None when tracing is off."""
    endpoint = settings.tracing.otlp_endpoint
    if not endpoint:
        return None
    key = (endpoint.rstrip("/"), settings.tracing.service_name)
    with _LOCK:
        provider = _PROVIDERS.get(key)
        if provider is None:
            provider = _PROVIDERS[key] = _provider(traces_url=f"{key[0]}/v1/traces", service_name=key[1])
    return provider.get_tracer("pitstop")


def _provider(*, traces_url: str, service_name: str) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url)))
    return provider


def client_interceptors(settings: Settings) -> list[Any]:
    """temporalio's TracingInterceptor for a Temporal client (and its workers) when tracing is on, else []."""
    found = tracer(settings)
    if found is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    # workflow spans also for runs started without a client span (schedules, the Web UI, another client)
    return [TracingInterceptor(found, always_create_workflow_spans=True)]


def api_call_spans(settings: Settings, *, region: str | None = None) -> CallObserver | None:
    """An observer opening a client span per API request (child of the activity's span), None when off."""
    found = tracer(settings)
    if found is None:
        return None
    from opentelemetry.trace import SpanKind, Status, StatusCode

    @contextmanager
    def observe(call: ApiCall) -> Iterator[ApiCall]:
        attributes = {"http.request.method": call.method, "url.path": call.path, "pitstop.api": call.system}
        if region is not None:
            attributes["pitstop.region"] = region
        with found.start_as_current_span(f"{call.system} {call.method}", kind=SpanKind.CLIENT,
                                         attributes=attributes) as span:
            try:
                yield call
            finally:
                span.set_attribute("http.response.status_code", call.status)
                if call.status == 0 or call.status >= 500:
                    span.set_status(Status(StatusCode.ERROR))

    return observe


def shutdown_tracing(timeout_millis: int = 5000) -> None:
    """Export what is still batched (a stopping worker, webhook or CLI command); harmless when tracing is off."""
    with _LOCK:
        providers = list(_PROVIDERS.values())
        _PROVIDERS.clear()
    for provider in providers:
        provider.force_flush(timeout_millis)
        provider.shutdown()
