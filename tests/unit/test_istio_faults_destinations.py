"""Istio fault blocks and destination resolution in the traffic simulator (pure functions)."""

from __future__ import annotations

import pytest

from pitstop.sandbox.cluster_watch import pod_workload, summarize_http_route, summarize_virtual_service
from pitstop.sandbox.istio_destinations import (
    Endpoint,
    Owner,
    RouteContext,
    Target,
    resolve_host,
    route_split,
    summarize_service,
)
from pitstop.sandbox.istio_faults import (
    HttpFault,
    RequestBatch,
    apply_fault,
    apply_faults,
    p95_of_mixture,
    parse_duration_ms,
    parse_http_fault,
)
from pitstop.sandbox.traffic_model import HttpRoute

BATCH = RequestBatch({"200": 99.0, "500": 1.0}, {"200": (20.0, 0.6), "500": (10.0, 0.6)})


@pytest.mark.parametrize(("text", "ms"), [("5s", 5000.0), ("0.5s", 500.0), ("100ms", 100.0), ("1m30s", 90000.0),
                                          ("1h", 3_600_000.0), ("250us", 0.25)])
def test_durations(text: str, ms: float) -> None:
    assert parse_duration_ms(text, field="f") == pytest.approx(ms)


@pytest.mark.parametrize("text", ["", "5", "s", "5 s", "5sec", 5])
def test_bad_durations_name_the_field(text: object) -> None:
    with pytest.raises(ValueError, match="http\\[0\\].fault.delay.fixedDelay"):
        parse_duration_ms(text, field="http[0].fault.delay.fixedDelay")


def test_parse_delay_and_abort() -> None:
    fault = parse_http_fault({"fault": {"delay": {"fixedDelay": "2s", "percentage": {"value": 50}},
                                        "abort": {"httpStatus": 503, "percentage": {"value": 12.5}}}})
    assert fault == HttpFault(delay_ratio=0.5, delay_ms=2000.0, abort_ratio=0.125, abort_status="503")


def test_legacy_percent_and_istios_default_of_no_injection() -> None:
    assert parse_http_fault({"fault": {"delay": {"fixedDelay": "1s", "percent": 30}}}) == HttpFault(
        delay_ratio=0.3, delay_ms=1000.0)
    unspecified = parse_http_fault({"fault": {"delay": {"fixedDelay": "1s"}, "abort": {"httpStatus": 500}}})
    assert unspecified is not None and not unspecified.active
    assert parse_http_fault({"route": []}) is None


@pytest.mark.parametrize(("fault", "field"), [
    ({"abort": {"httpStatus": 42, "percentage": {"value": 10}}}, "abort.httpStatus"),
    ({"abort": {"httpStatus": 500, "percentage": {"value": 120}}}, "abort.percentage.value"),
    ({"delay": {"percentage": {"value": 10}}}, "delay.fixedDelay"),
    ({"delay": {"fixedDelay": "1s", "percent": "x"}}, "delay.percent"),
])
def test_invalid_faults_name_the_field(fault: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", "\\.")):
        parse_http_fault({"fault": fault})


def test_abort_replaces_its_share_with_the_status_and_keeps_the_rate() -> None:
    batches = apply_fault(BATCH, HttpFault(abort_ratio=0.25, abort_status="503"))
    rates: dict[str, float] = {}
    for b in batches:
        for code, rps in b.rps_by_code.items():
            rates[code] = rates.get(code, 0.0) + rps
    assert rates == pytest.approx({"200": 99.0 * 0.75, "500": 0.75, "503": 25.0})


def test_delay_moves_p95_up_by_about_the_delay_for_its_share() -> None:
    base = p95_of_mixture([BATCH])
    everything = p95_of_mixture(apply_fault(BATCH, HttpFault(delay_ratio=1.0, delay_ms=500.0)))
    assert everything == pytest.approx(base + 500.0, rel=0.05)
    # 50 % delayed: more than 5 % of requests are slow, so p95 is near the delayed requests' own latency
    half = p95_of_mixture(apply_fault(BATCH, HttpFault(delay_ratio=0.5, delay_ms=500.0)))
    assert 500.0 < half < everything
    # 2 % delayed: the p95 stays among the undelayed requests
    assert p95_of_mixture(apply_fault(BATCH, HttpFault(delay_ratio=0.02, delay_ms=500.0))) < 100.0


def test_faults_apply_only_to_the_routes_share() -> None:
    batches = apply_faults(BATCH, [(0.4, HttpFault(abort_ratio=1.0, abort_status="500"))])
    total = sum(sum(b.rps_by_code.values()) for b in batches)
    aborted = sum(b.rps_by_code.get("500", 0.0) for b in batches)
    assert total == pytest.approx(100.0)
    assert aborted == pytest.approx(40.0 + 0.6)


@pytest.mark.parametrize(("host", "expected"), [
    ("geo-service", ("team-ota", "geo-service")),
    ("geo-service.team-telematics", ("team-telematics", "geo-service")),
    ("geo-service.team-telematics.svc", ("team-telematics", "geo-service")),
    ("geo-service.team-telematics.svc.cluster.local", ("team-telematics", "geo-service")),
    ("api.example.com", None),
    ("*.team-ota.svc.cluster.local", None),
])
def test_hosts_resolve_like_istio(host: str, expected: tuple[str, str] | None) -> None:
    assert resolve_host(host, namespace="team-ota") == expected


def _context() -> RouteContext:
    geo = summarize_service({"metadata": {"namespace": "team-telematics", "name": "geo-service"},
                             "spec": {"selector": {"app": "geo-service"}}})
    assert geo is not None
    endpoints = [Endpoint("team-telematics", (("app", "geo-service"), ("version", "v1.7.5")), "geo-service")] * 3
    endpoints += [Endpoint("team-telematics", (("app", "geo-service"), ("version", "v1.8.0")), "geo-service-canary")]
    endpoints += [Endpoint("team-ota", (("app", "geo-service"), ("version", "v9")), "elsewhere")]
    return RouteContext(services={("team-telematics", "geo-service"): geo},
                        subsets={("team-ota", "ota-update"): {"stable": "v3.4.0", "canary": "v3.5.0"},
                                 ("team-telematics", "geo-service"): {"next": "v1.8.0"}},
                        endpoints=endpoints, workload_of={("ota-update", "v3.4.0"): "ota-update",
                                                          ("ota-update", "v3.5.0"): "ota-update-canary"})


OWNER = Owner("team-ota", "ota-update", "v3.4.0")


def test_a_route_to_another_service_goes_to_its_pods_with_their_workloads() -> None:
    geo_host = "geo-service.team-telematics.svc.cluster.local"
    split = route_split(routes=[HttpRoute(weights=(("stable", 50.0), ("", 50.0)),
                                          hosts=("ota-update", geo_host))], owner=OWNER, context=_context())
    assert split.served == pytest.approx({
        Target("team-ota", "ota-update", "ota-update", "v3.4.0", "ota-update"): 0.5,
        Target("team-telematics", "geo-service", "geo-service", "v1.7.5", "geo-service"): 0.375,
        Target("team-telematics", "geo-service", "geo-service", "v1.8.0", "geo-service-canary"): 0.125,
    })
    assert Target("team-telematics", "geo-service", "geo-service", "v1.7.5", "geo-service").fqdn == geo_host


def test_a_subset_of_another_host_uses_that_hosts_destination_rule() -> None:
    split = route_split(routes=[HttpRoute(weights=(("next", 100.0),), hosts=("geo-service.team-telematics",))],
                        owner=OWNER, context=_context())
    assert split.served == {Target("team-telematics", "geo-service", "geo-service", "v1.8.0", "geo-service-canary"): 1.0}


def test_an_unknown_host_or_subset_has_no_endpoints() -> None:
    split = route_split(routes=[HttpRoute(weights=(("", 100.0),), hosts=("nothing.team-ota",))],
                        owner=OWNER, context=_context())
    assert [t.workload for t in split.served] == ["unknown"]
    split = route_split(routes=[HttpRoute(weights=(("gone", 100.0),), hosts=("geo-service.team-telematics",))],
                        owner=OWNER, context=_context())
    assert [(t.version, t.workload) for t in split.served] == [("unknown", "unknown")]


def test_the_faults_of_a_header_route_cover_its_cohort_only() -> None:
    vs = {"metadata": {"namespace": "team-ota", "name": "ota-update"}, "spec": {"http": [
        {"match": [{"headers": {"x-cohort": {"exact": "beta"}}}],
         "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}},
         "route": [{"destination": {"host": "ota-update", "subset": "canary"}}]},
        {"fault": {"delay": {"fixedDelay": "1s", "percentage": {"value": 50}}},
         "route": [{"destination": {"host": "ota-update", "subset": "stable"}, "weight": 80},
                   {"destination": {"host": "ota-update", "subset": "canary"}, "weight": 20}]},
    ]}}
    split = route_split(routes=summarize_virtual_service(vs).http, owner=OWNER, context=_context())
    stable = Target("team-ota", "ota-update", "ota-update", "v3.4.0", "ota-update")
    canary = Target("team-ota", "ota-update", "ota-update", "v3.5.0", "ota-update-canary")
    assert split.served == pytest.approx({stable: 0.72, canary: 0.1 + 0.18})
    assert split.faults[stable] == [(pytest.approx(1.0), HttpFault(delay_ratio=0.5, delay_ms=1000.0))]
    (cohort_share, cohort_fault), (rest_share, rest_fault) = split.faults[canary]
    assert cohort_share == pytest.approx(0.1 / 0.28) and cohort_fault.abort_ratio == 1.0
    assert rest_share == pytest.approx(0.18 / 0.28) and rest_fault.delay_ms == 1000.0


def test_an_invalid_fault_is_reported_and_ignored_by_the_watcher() -> None:
    vs = {"metadata": {"namespace": "team-ota", "name": "ota-update"}, "spec": {"http": [
        {"fault": {"abort": {"httpStatus": "oops"}}, "route": [{"destination": {"host": "ota-update"}}]}]}}
    assert summarize_virtual_service(vs).http == (summarize_http_route(
        {"route": [{"destination": {"host": "ota-update"}}]}),)


def test_pod_workload_is_the_deployment() -> None:
    meta = {"name": "geo-service-canary-5d9f7-abcde", "labels": {"pod-template-hash": "5d9f7"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "geo-service-canary-5d9f7", "controller": True}]}
    assert pod_workload(meta) == "geo-service-canary"
    assert pod_workload({"name": "lonely"}) == "lonely"
