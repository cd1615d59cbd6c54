"""Unit tests of the sandbox's pure traffic/usage model and fleet expansion."""

from __future__ import annotations

import math

import pytest

from pitstop.sandbox.cluster_watch import summarize_virtual_service
from pitstop.sandbox.fleet import call_edges, expand_fleet, fleet_manifests, load_fleet_spec
from pitstop.sandbox.traffic_model import (
    HEADER_COHORT_SHARE,
    INGRESS_WORKLOAD,
    HttpRoute,
    LATENCY_BUCKETS_MS,
    CallEdge,
    LatencyHistogram,
    MonotonicCounter,
    VersionConditions,
    crash_restarts,
    diurnal_factor,
    diurnal_factor_at,
    http_traffic_split,
    latency_multiplier,
    lognormal_cdf,
    p95_latency_ms,
    pod_usage,
    propagate_request_rates,
    region_traffic_share,
    request_outcome,
    route_capture_shares,
    route_version_weights,
    served_rps_by_service,
    version_split,
)


def test_version_split_follows_virtual_service_weights() -> None:
    assert version_split({"v1": 90, "v2": 10}) == pytest.approx({"v1": 0.9, "v2": 0.1})
    assert version_split({"v1": 100, "v2": 0}) == {"v1": 1.0}
    assert version_split({"v1": 0}) == {}


def test_route_weights_resolve_subsets_to_versions() -> None:
    weights = route_version_weights(
        route_weights=[("stable", 90), ("canary", 10)],
        subset_versions={"stable": "v1", "canary": "v2"},
        stable_version="v1",
    )
    assert weights == {"v1": 90, "v2": 10}
    assert route_version_weights(route_weights=None, subset_versions=None, stable_version="v1") == {"v1": 100}
    # both subsets selecting the same version add up; an undefined subset is "unknown"
    assert route_version_weights(route_weights=[("stable", 50), ("canary", 50)],
                                 subset_versions={"stable": "v1", "canary": "v1"}, stable_version="v1") == {"v1": 100}
    assert route_version_weights(route_weights=[("ghost", 100)], subset_versions={},
                                 stable_version="v1") == {"unknown": 100}


def test_region_share_normalises_weights() -> None:
    weights = {"eu-central": 100, "us-east": 100}
    assert region_traffic_share(weights=weights, region="eu-central") == 0.5
    assert region_traffic_share(weights={"eu-central": 0, "us-east": 100}, region="us-east") == 1.0
    assert region_traffic_share(weights={"eu-central": 0}, region="eu-central") == 0.0


def test_request_rates_propagate_through_the_call_graph() -> None:
    edges = [CallEdge("gw", "auth", 1.0), CallEdge("gw", "trips", 0.5), CallEdge("trips", "geo", 2.0),
             CallEdge("auth", "geo", 0.1)]
    rates = propagate_request_rates(entry_rps={"gw": 100.0}, edges=edges)
    assert rates[(INGRESS_WORKLOAD, "gw")] == 100.0
    assert rates[("gw", "trips")] == 50.0
    assert rates[("trips", "geo")] == 100.0
    assert served_rps_by_service(rates)["geo"] == pytest.approx(110.0)


def test_cycles_are_rejected() -> None:
    with pytest.raises(ValueError, match="cycle"):
        propagate_request_rates(entry_rps={"a": 1}, edges=[CallEdge("a", "b"), CallEdge("b", "a")])


def test_diurnal_commute_peaks_at_rush_hour_and_is_low_at_night() -> None:
    assert diurnal_factor(hour=8.0, profile="commute") == pytest.approx(1.0)
    assert diurnal_factor(hour=3.0, profile="commute") < 0.3
    assert diurnal_factor(hour=2.0, profile="nightly-batch") == pytest.approx(1.0)
    assert diurnal_factor(hour=8.0, profile="commute", weekday=6) < 1.0
    # regions see their own local time: 07:00 UTC is 08:00 in eu-central, 02:00 in us-east
    t = 7 * 3600.0 + 3 * 86400  # a Sunday? 1970-01-04 is a Sunday, so pick Monday 1970-01-05
    monday = t + 86400
    assert diurnal_factor_at(unix_seconds=monday, region="eu-central", profile="commute") == pytest.approx(1.0)
    assert diurnal_factor_at(unix_seconds=monday, region="us-east", profile="commute") < 0.3


def test_bad_release_and_outages_shape_response_codes() -> None:
    healthy = request_outcome(rps=100, conditions=VersionConditions(available_replicas=2, base_error_ratio=0.0))
    assert healthy.rps_by_code["200"] == 100 and healthy.rps_by_code["500"] == 0
    bad = request_outcome(rps=100, conditions=VersionConditions(
        available_replicas=2, base_error_ratio=0.01, fault_error_ratio=0.3, extra_latency_ms=200))
    assert bad.rps_by_code["500"] == pytest.approx(31.0)
    assert bad.latency_median_ms == pytest.approx(220.0)
    down = request_outcome(rps=100, conditions=VersionConditions(available_replicas=2, region_down=True))
    assert down.rps_by_code["503"] == 100 and down.rps_by_code["200"] == 0
    no_pods = request_outcome(rps=10, conditions=VersionConditions(available_replicas=0))
    assert no_pods.rps_by_code["503"] == 10


def test_latency_histogram_is_cumulative_and_consistent() -> None:
    histogram = LatencyHistogram()
    histogram.observe_many(count=1000, median_ms=50, sigma=0.5)
    counts = histogram.bucket_counts
    assert all(a <= b for a, b in zip(counts, counts[1:]))
    assert counts[LATENCY_BUCKETS_MS.index(50)] == pytest.approx(500, rel=1e-6)
    assert histogram.total_count == 1000
    assert histogram.total_sum / 1000 == pytest.approx(50 * math.exp(0.125))
    assert lognormal_cdf(value=p95_latency_ms(median_ms=50, sigma=0.5), median=50, sigma=0.5) == pytest.approx(0.95)


def test_counters_only_grow() -> None:
    counter = MonotonicCounter()
    counter.advance(rate_per_second=10, seconds=2)
    counter.advance(rate_per_second=-5, seconds=2)
    assert counter.value == 20


def test_pod_usage_tracks_load_and_saturates_at_the_limit() -> None:
    common = dict(nominal_peak_rps_per_pod=100.0, cpu_request_cores=0.5, cpu_limit_cores=1.0,
                  memory_request_bytes=256e6, memory_limit_bytes=512e6, cpu_utilization_at_peak=0.6,
                  memory_utilization_at_peak=0.7)
    idle = pod_usage(rps_per_pod=0.0, **common)  # type: ignore[arg-type]
    peak = pod_usage(rps_per_pod=100.0, **common)  # type: ignore[arg-type]
    assert idle.cpu_cores == pytest.approx(0.025)
    assert peak.cpu_cores == pytest.approx(0.3)
    assert peak.memory_bytes == pytest.approx(0.7 * 256e6)
    saturated = pod_usage(rps_per_pod=10.0, saturated=True, **common)  # type: ignore[arg-type]
    assert saturated.cpu_cores == 1.0 and saturated.cpu_utilization == 1.0
    assert latency_multiplier(1.0) == 4.0 and latency_multiplier(0.3) == 1.0


def test_crash_restarts_count_intervals() -> None:
    assert crash_restarts(elapsed_seconds=0, restart_interval_seconds=10) == 0
    assert crash_restarts(elapsed_seconds=25, restart_interval_seconds=10) == 3


def test_fleet_expansion_is_reproducible_acyclic_and_sized() -> None:
    spec = load_fleet_spec()
    fleet = expand_fleet(spec, services=500)
    assert len(fleet) == 500 and len({s.name for s in fleet}) == 500
    assert expand_fleet(spec, services=500) == fleet
    call_edges(fleet)  # raises on a cycle
    small = expand_fleet(spec, services=5)
    names = {s.name for s in small}
    assert all(c.service in names for s in small for c in s.calls)


def test_fleet_manifests_route_100_0_between_stable_and_canary_subsets() -> None:
    spec = load_fleet_spec()
    ota = next(s for s in spec.services if s.name == "ota-update")
    objects = {(o["kind"], o["metadata"]["name"]): o for o in fleet_manifests(ota)}
    vs = objects[("VirtualService", "ota-update")]
    route = vs["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route] == [("stable", 100), ("canary", 0)]
    dr = objects[("DestinationRule", "ota-update")]
    assert {s["name"]: s["labels"]["version"] for s in dr["spec"]["subsets"]} == {"stable": "v3.4.0", "canary": "v3.5.0"}
    canary = objects[("Deployment", "ota-update-canary")]
    assert canary["spec"]["template"]["metadata"]["labels"]["version"] == "v3.5.0"
    assert objects[("Deployment", "ota-update")]["metadata"]["namespace"] == "team-ota"


SUBSETS = {"stable": "v1", "canary": "v2"}
DEFAULT_ROUTE = HttpRoute(weights=(("stable", 100.0), ("canary", 0.0)))


def test_header_match_route_takes_its_cohort_share_and_the_default_route_the_rest() -> None:
    ab = HttpRoute(weights=(("canary", 100.0),), header_matchers=1, has_match=True)
    split = http_traffic_split(routes=[ab, DEFAULT_ROUTE], subset_versions=SUBSETS, stable_version="v1")
    assert HEADER_COHORT_SHARE == 0.10
    assert split.served == pytest.approx({"v2": 0.10, "v1": 0.90})
    assert split.mirrored == {}
    # two matchers are two cohorts; a weighted default route splits what is left
    two = HttpRoute(weights=(("canary", 100.0),), header_matchers=2, has_match=True)
    weighted = HttpRoute(weights=(("stable", 50.0), ("canary", 50.0)))
    split = http_traffic_split(routes=[two, weighted], subset_versions=SUBSETS, stable_version="v1")
    assert split.served == pytest.approx({"v2": 0.2 + 0.4, "v1": 0.4})
    # the share is configurable and bounded by what earlier routes left
    assert route_capture_shares([two, two, DEFAULT_ROUTE], cohort_share=0.4) == pytest.approx([0.8, 0.2, 0.0])


def test_routes_without_header_matchers_capture_nothing_and_unrouted_requests_never_arrive() -> None:
    uri_only = HttpRoute(weights=(("canary", 100.0),), header_matchers=0, has_match=True)
    split = http_traffic_split(routes=[uri_only, DEFAULT_ROUTE], subset_versions=SUBSETS, stable_version="v1")
    assert split.served == pytest.approx({"v1": 1.0})
    only_header = HttpRoute(weights=(("canary", 100.0),), header_matchers=1, has_match=True)
    assert http_traffic_split(routes=[only_header], subset_versions=SUBSETS,
                              stable_version="v1").served == pytest.approx({"v2": 0.1})
    assert http_traffic_split(routes=None, subset_versions=None, stable_version="v1").served == {"v1": 1.0}


def test_mirroring_adds_copies_on_the_mirror_version() -> None:
    mirrored = HttpRoute(weights=(("stable", 100.0), ("canary", 0.0)), mirror_subset="canary", mirror_percent=50.0)
    split = http_traffic_split(routes=[mirrored], subset_versions=SUBSETS, stable_version="v1")
    assert split.served == pytest.approx({"v1": 1.0})
    assert split.mirrored == pytest.approx({"v2": 0.5})
    assert split.total() == pytest.approx({"v1": 1.0, "v2": 0.5})
    full = HttpRoute(weights=(("stable", 100.0),), mirror_subset="canary")  # Istio's default: 100 %
    assert http_traffic_split(routes=[full], subset_versions=SUBSETS, stable_version="v1").mirrored == pytest.approx({"v2": 1.0})


def test_virtual_service_summary_keeps_header_routes_and_mirroring() -> None:
    host = "svc.team.svc.cluster.local"
    vs = {"metadata": {"namespace": "team", "name": "svc"}, "spec": {"http": [
        {"name": "pitstop-ab-primary", "match": [{"headers": {"x-fleet-cohort": {"exact": "beta"}}}],
         "route": [{"destination": {"host": host, "subset": "canary"}, "weight": 100}]},
        {"name": "primary", "route": [{"destination": {"host": host, "subset": "stable"}, "weight": 100},
                                      {"destination": {"host": host, "subset": "canary"}, "weight": 0}],
         "mirror": {"host": host, "subset": "canary"}, "mirrorPercentage": {"value": 25.0}},
    ]}}
    summary = summarize_virtual_service(vs)
    assert summary.weights == (("stable", 100.0), ("canary", 0.0))
    assert summary.http[0] == HttpRoute(weights=(("canary", 100.0),), header_matchers=1, has_match=True,
                                        hosts=(host,))
    assert summary.http[1].mirror_subset == "canary" and summary.http[1].mirror_percent == 25.0
    split = http_traffic_split(routes=summary.http, subset_versions=SUBSETS, stable_version="v1")
    assert split.served == pytest.approx({"v2": 0.1, "v1": 0.9})
    assert split.mirrored == pytest.approx({"v2": 0.9 * 0.25})
