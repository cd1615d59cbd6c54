"""End-to-end: real clusters -> simulator -> Prometheus -> Alertmanager -> webhook.

Each test changes live cluster state (VirtualService weights, the faults ConfigMap) exactly as pitstop
would, and observes the result only through Prometheus queries and Alertmanager webhook deliveries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pitstop.sandbox.faults import BadRelease, CrashLoop, RegionOutage, SaturatedService, clear_all_faults, inject_fault
from pitstop.activities.traffic_authority import HttpTrafficAuthority
from pitstop.sandbox.kube_objects import merge_patch
from tests.fixtures.monitoring import WEBHOOK_TOKEN, SandboxMonitoring

pytestmark = pytest.mark.sandbox

REGION = "eu-central"
SERVICE = "ota-update"
NAMESPACE = "team-ota"
STABLE, CANARY = "v3.4.0", "v3.5.0"


def set_weights(sandbox: SandboxMonitoring, *, stable: int, canary: int, region: str = REGION) -> None:
    host = f"{SERVICE}.{NAMESPACE}.svc.cluster.local"
    merge_patch(sandbox.api_clients[region], kind="VirtualService", name=SERVICE, namespace=NAMESPACE, patch={
        "spec": {"http": [{"name": "primary", "route": [
            {"destination": {"host": host, "subset": "stable"}, "weight": stable},
            {"destination": {"host": host, "subset": "canary"}, "weight": canary},
        ]}]}})


def eventually(check: Callable[[], Any], *, timeout_seconds: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not seen within {timeout_seconds}s (last: {last!r})")


@pytest.fixture
def clean_ota(sandbox_monitoring: SandboxMonitoring) -> Iterator[SandboxMonitoring]:
    yield sandbox_monitoring
    for client in sandbox_monitoring.api_clients.values():
        clear_all_faults(api_client=client)
    for region in sandbox_monitoring.api_clients:
        set_weights(sandbox_monitoring, stable=100, canary=0, region=region)


def canary_share(sandbox: SandboxMonitoring) -> float | None:
    result = sandbox.query(
        f'sum by (destination_version) (rate(istio_requests_total{{region="{REGION}",'
        f'destination_service_name="{SERVICE}",reporter="destination"}}[5s]))')
    rates = {r["metric"]["destination_version"]: float(r["value"][1]) for r in result}
    total = sum(rates.values())
    return rates.get(CANARY, 0.0) / total if total > 0 else None


def test_virtual_service_weights_drive_the_traffic_split_in_prometheus(clean_ota: SandboxMonitoring) -> None:
    sandbox = clean_ota
    eventually(lambda: canary_share(sandbox) == 0.0, timeout_seconds=30, what="all traffic on stable")
    set_weights(sandbox, stable=90, canary=10)
    eventually(lambda: (s := canary_share(sandbox)) is not None and abs(s - 0.10) < 0.02,
               timeout_seconds=30, what="a 90/10 split")
    set_weights(sandbox, stable=50, canary=50)
    eventually(lambda: (s := canary_share(sandbox)) is not None and abs(s - 0.50) < 0.03,
               timeout_seconds=30, what="a 50/50 split")
    # the other region's VirtualService is untouched
    other = sandbox.query(f'sum by (destination_version) (rate(istio_requests_total{{region="us-east",'
                          f'destination_service_name="{SERVICE}"}}[5s]))')
    assert {r["metric"]["destination_version"] for r in other} == {STABLE}


def test_bad_release_fires_high_error_rate_and_alertmanager_delivers_it(clean_ota: SandboxMonitoring) -> None:
    sandbox = clean_ota
    set_weights(sandbox, stable=50, canary=50)
    inject_fault(api_client=sandbox.api_clients[REGION],
                 fault=BadRelease(service=SERVICE, version=CANARY, error_ratio=0.5))

    def matches(_delivery: Any, alert: dict[str, Any]) -> bool:
        labels = alert["labels"]
        return (labels.get("alertname") == "HighErrorRate" and alert["status"] == "firing"
                and labels.get("destination_service_name") == SERVICE and labels.get("region") == REGION)

    delivery, alert = sandbox.webhook.wait_for(matches, timeout_seconds=60)
    assert delivery.body["version"] == "4"
    assert delivery.authorization == f"Bearer {WEBHOOK_TOKEN}"
    assert alert["fingerprint"] and alert["startsAt"]
    assert alert["labels"]["destination_version"] == CANARY
    assert alert["labels"]["team"] == NAMESPACE
    assert alert["labels"]["severity"] == "page"
    assert "fails" in alert["annotations"]["summary"]
    firing = [a for a in sandbox.firing_alerts() if a["labels"]["alertname"] == "HighErrorRate"]
    assert {a["labels"]["destination_version"] for a in firing} == {CANARY}


def test_region_outage_fires_region_down(clean_ota: SandboxMonitoring) -> None:
    sandbox = clean_ota
    inject_fault(api_client=sandbox.api_clients["us-east"], fault=RegionOutage())
    alert = eventually(lambda: [a for a in sandbox.firing_alerts()
                                if a["labels"]["alertname"] == "RegionDown"], timeout_seconds=45,
                       what="RegionDown firing")
    assert {a["labels"]["region"] for a in alert} == {"us-east"}


def test_crash_loop_fault_fires_crash_looping(clean_ota: SandboxMonitoring) -> None:
    sandbox = clean_ota
    inject_fault(api_client=sandbox.api_clients[REGION],
                 fault=CrashLoop(service="firmware-catalog", restart_interval_seconds=2))
    alerts = eventually(lambda: [a for a in sandbox.firing_alerts() if a["labels"]["alertname"] == "CrashLooping"],
                        timeout_seconds=45, what="CrashLooping firing")
    assert {a["labels"]["namespace"] for a in alerts} == {"team-ota"}
    assert all(a["labels"]["pod"].startswith("firmware-catalog-") for a in alerts)


def test_history_backfill_is_queryable_13_days_back(sandbox_monitoring: SandboxMonitoring) -> None:
    sandbox = sandbox_monitoring
    at = time.time() - 13 * 86400
    for promql in ('sum by (region) (rate(container_cpu_usage_seconds_total[1h]))',
                   'sum by (region) (max_over_time(container_memory_working_set_bytes[1h]))',
                   'sum by (region) (rate(istio_requests_total{destination_service_name="api-gateway"}[1h]))'):
        result = sandbox.query(promql, start=at - 6 * 3600, end=at, step="900")
        assert {r["metric"]["region"] for r in result} == {"eu-central", "us-east"}, promql
        values = [float(v) for r in result for _, v in r["values"]]
        assert len(values) > 20 and all(v > 0 for v in values), promql
    # daily seasonality: api-gateway traffic differs across a day
    day = sandbox.query('sum(rate(istio_requests_total{destination_service_name="api-gateway",region="eu-central"}[1h]))',
                        start=at, end=at + 86400, step="3600")
    series = [float(v) for _, v in day[0]["values"]]
    assert max(series) > 2 * min(series)


def test_global_traffic_weight_fails_vehicles_over_to_the_other_region(sandbox_monitoring: SandboxMonitoring) -> None:
    sandbox = sandbox_monitoring

    def ingress_rates() -> dict[str, float]:
        result = sandbox.query('sum by (region) (rate(istio_requests_total{source_workload="istio-ingressgateway",'
                               'destination_service_name="api-gateway"}[5s]))')
        return {r["metric"]["region"]: float(r["value"][1]) for r in result}

    authority = HttpTrafficAuthority(base_url=sandbox.traffic_authority.url,
                                     token_file=sandbox.traffic_authority.token_file)
    try:
        change = asyncio.run(authority.set_weights({"us-east": 0}))
        assert change.previous == {"eu-central": 100, "us-east": 100}
        assert asyncio.run(authority.get_weights()) == {"eu-central": 100, "us-east": 0}
        eventually(lambda: (r := ingress_rates()).get("us-east", 1.0) == 0.0 and r.get("eu-central", 0) > 0,
                   timeout_seconds=30, what="us-east drained")
    finally:
        asyncio.run(authority.set_weights({"us-east": 100}))
    eventually(lambda: ingress_rates().get("us-east", 0.0) > 0, timeout_seconds=30, what="us-east back")


def test_saturated_service_fires_saturation_and_slows_down(clean_ota: SandboxMonitoring) -> None:
    sandbox = clean_ota
    inject_fault(api_client=sandbox.api_clients[REGION], fault=SaturatedService(service="geo-service"))
    alerts = eventually(lambda: [a for a in sandbox.firing_alerts() if a["labels"]["alertname"] == "Saturation"],
                        timeout_seconds=45, what="Saturation firing")
    assert {a["labels"]["region"] for a in alerts} == {REGION}
    assert all(a["labels"]["pod"].startswith("geo-service-") for a in alerts)
    p95 = sandbox.query('histogram_quantile(0.95, sum by (region, le) (rate(istio_request_duration_milliseconds_bucket'
                        '{destination_service_name="geo-service",response_code="200"}[5s])))')
    by_region = {r["metric"]["region"]: float(r["value"][1]) for r in p95}
    assert by_region[REGION] > 2 * by_region["us-east"]
