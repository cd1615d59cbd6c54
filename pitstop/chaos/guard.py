"""The dead-man switch's SLO checks: the release analysis' check model (`CheckQuery`, `Threshold`, evaluated by
`pitstop.analysis.evaluate` on `delivery.measure` results), over every version of a target service (a chaos run
has no canary version), with a severity for the resilience score."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from pitstop.analysis import Threshold
from pitstop.delivery.promql import CheckQuery, QueryScope, region_selector

from .model import ChaosTarget, SloGuard



def _selector(scope: QueryScope, extra: str = "") -> str:
    quoted = {k: v.replace("\\", "\\\\").replace('"', '\\"') for k, v in (("s", scope.service), ("n", scope.namespace))}
    return (f'{{reporter="destination",destination_service_name="{quoted["s"]}",'
            f'destination_service_namespace="{quoted["n"]}"{region_selector(scope)}{extra}}}')


def success_rate_all_versions(scope: QueryScope) -> str:
    ok, total = _selector(scope, ',response_code!~"5.*"'), _selector(scope)
    return (f"sum(rate(istio_requests_total{ok}[{scope.window}]))"
            f" / sum(rate(istio_requests_total{total}[{scope.window}])) * 100")


def latency_p95_all_versions(scope: QueryScope) -> str:
    return ("histogram_quantile(0.95, sum by (le)(rate(istio_request_duration_milliseconds_bucket"
            f"{_selector(scope)}[{scope.window}])))")


class GuardCheck(BaseModel):
    check: CheckQuery
    severity: Literal["critical", "warning"]


def guard_checks(guard: SloGuard, target: ChaosTarget) -> list[GuardCheck]:
    scope = QueryScope(service=target.service, namespace=target.namespace, version="", region=target.region,
                       region_label=guard.region_label, window=guard.window)
    checks = []
    if guard.success_rate_min is not None:
        checks.append(GuardCheck(severity="critical", check=CheckQuery(
            name=f"{target.service} success rate", query=success_rate_all_versions(scope),
            threshold=Threshold(min=guard.success_rate_min), unit="%")))
    if guard.latency_p95_max_ms is not None:
        checks.append(GuardCheck(severity="warning", check=CheckQuery(
            name=f"{target.service} p95 latency", query=latency_p95_all_versions(scope),
            threshold=Threshold(max=guard.latency_p95_max_ms), unit="ms")))
    return checks
