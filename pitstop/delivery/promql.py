"""Default analysis queries over Istio's standard metrics, per destination version, and check templating.

- request success rate (percent of non-5xx responses) of the new version:
  `sum(rate(istio_requests_total{reporter="destination",destination_service_name="S",
   destination_service_namespace="N",destination_version="V",response_code!~"5.*"}[1m]))
   / sum(rate(istio_requests_total{...same...}[1m])) * 100`
- p95 latency (ms) of the new version:
  `histogram_quantile(0.95, sum by (le)(rate(istio_request_duration_milliseconds_bucket{...}[1m])))`

A version without traffic yields an empty result (no data -> inconclusive), never 100 % or 0 ms.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from pitstop.analysis import Threshold

from .spec import AnalysisSpec, ErrorBudgetGate

SUCCESS_RATE_CHECK = "request-success-rate"
LATENCY_P95_CHECK = "request-duration-p95"


class CheckQuery(BaseModel):
    """One check ready to run: name, final PromQL and threshold."""

    name: str
    query: str
    threshold: Threshold
    unit: str = ""


class QueryScope(BaseModel):
    service: str
    namespace: str
    version: str
    stable_version: str = ""
    region: str = ""
    region_label: str | None = Field("region")
    window: str = "1m"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def region_selector(scope: QueryScope) -> str:
    if not scope.region_label or not scope.region:
        return ""
    return f",{scope.region_label}={_quote(scope.region)}"


def destination_selector(scope: QueryScope, *, extra: str = "") -> str:
    labels = (
        f'reporter="destination",destination_service_name={_quote(scope.service)},'
        f"destination_service_namespace={_quote(scope.namespace)},destination_version={_quote(scope.version)}"
        f"{region_selector(scope)}{extra}"
    )
    return "{" + labels + "}"


def success_rate_query(scope: QueryScope) -> str:
    ok = destination_selector(scope, extra=',response_code!~"5.*"')
    total = destination_selector(scope)
    return (
        f"sum(rate(istio_requests_total{ok}[{scope.window}]))"
        f" / sum(rate(istio_requests_total{total}[{scope.window}])) * 100"
    )


def latency_p95_query(scope: QueryScope) -> str:
    return (
        "histogram_quantile(0.95, sum by (le)(rate(istio_request_duration_milliseconds_bucket"
        f"{destination_selector(scope)}[{scope.window}])))"
    )


def render_custom(query: str, scope: QueryScope) -> str:
    """Fill `{service}`-style placeholders; other braces (label matchers) are left alone."""
    values = {
        "service": scope.service,
        "namespace": scope.namespace,
        "version": scope.version,
        "stable_version": scope.stable_version,
        "region": scope.region,
        "region_selector": region_selector(scope),
        "window": scope.window,
    }
    for key, value in values.items():
        query = query.replace("{" + key + "}", value)
    return query


def analysis_queries(analysis: AnalysisSpec, scope: QueryScope) -> list[CheckQuery]:
    """The checks one analysis run executes, in a stable order (defaults first)."""
    scope = scope.model_copy(update={"window": analysis.window, "region_label": analysis.region_label})
    checks: list[CheckQuery] = []
    if analysis.success_rate_min is not None:
        checks.append(
            CheckQuery(
                name=SUCCESS_RATE_CHECK,
                query=success_rate_query(scope),
                threshold=Threshold(min=analysis.success_rate_min),
                unit="%",
            )
        )
    if analysis.latency_p95_max_ms is not None:
        checks.append(
            CheckQuery(
                name=LATENCY_P95_CHECK,
                query=latency_p95_query(scope),
                threshold=Threshold(max=analysis.latency_p95_max_ms),
                unit="ms",
            )
        )
    for custom in analysis.checks:
        checks.append(CheckQuery(name=custom.name, query=render_custom(custom.query, scope), threshold=custom.threshold()))
    return checks


def error_ratio_query(gate: ErrorBudgetGate, *, service: str, namespace: str, region: str, region_label: str | None) -> str:
    """Share of 5xx responses (0..1) of the service, all versions, over the SLO window."""
    if gate.query:
        scope = QueryScope(service=service, namespace=namespace, version="", region=region, region_label=region_label, window=gate.window)
        return render_custom(gate.query, scope)
    region_part = f",{region_label}={_quote(region)}" if region_label and region else ""
    base = (
        f'reporter="destination",destination_service_name={_quote(service)},'
        f"destination_service_namespace={_quote(namespace)}{region_part}"
    )
    # Istio exports no 5xx series for a service that never failed: that is 0 errors (`or vector(0)`), not "no
    # data"; no traffic at all still is (the denominator is empty).
    return (
        f'(sum(increase(istio_requests_total{{{base},response_code=~"5.*"}}[{gate.window}])) or vector(0))'
        f" / sum(increase(istio_requests_total{{{base}}}[{gate.window}]))"
    )
