"""Default PromQL, route computation from the snapshot, candidate Deployments, the error-budget gate."""

from __future__ import annotations

import copy

from pitstop.analysis import Measurement
from pitstop.delivery.budget import budget_gate, budget_remaining_percent
from pitstop.delivery.promql import QueryScope, analysis_queries, error_ratio_query, render_custom
from pitstop.delivery.routing import RouteState, desired_http, subsets_with_version
from pitstop.delivery.spec import AnalysisSpec, ErrorBudgetGate, ReleaseTarget
from pitstop.delivery.workloads import candidate_deployment, promoted_template
from pitstop.traffic_routes import service_route_weights

SCOPE = QueryScope(service="ota-update", namespace="team-ota", version="v2", stable_version="v1", region="eu-central")
HOST = "ota-update.team-ota.svc.cluster.local"
SNAPSHOT_HTTP = [
    {"name": "internal", "match": [{"headers": {"x-internal": {"exact": "1"}}}], "route": [{"destination": {"host": HOST, "subset": "stable"}}]},
    {"name": "primary", "timeout": "5s", "route": [{"destination": {"host": HOST, "subset": "stable"}, "weight": 100},
                                                   {"destination": {"host": HOST, "subset": "canary"}, "weight": 0}]},
]
TARGET = ReleaseTarget(service="ota-update", namespace="team-ota", region="eu-central")


def test_default_queries_per_destination_version_and_region() -> None:
    checks = analysis_queries(AnalysisSpec(window="30s"), SCOPE)
    assert [c.name for c in checks] == ["request-success-rate", "request-duration-p95"]
    success, latency = checks[0].query, checks[1].query
    assert 'istio_requests_total{reporter="destination",destination_service_name="ota-update"' in success
    assert 'destination_version="v2",region="eu-central",response_code!~"5.*"}[30s]' in success
    assert latency.startswith("histogram_quantile(0.95, sum by (le)(rate(istio_request_duration_milliseconds_bucket{")
    assert checks[0].threshold.min == 99.0 and checks[1].threshold.max == 500.0


def test_custom_check_placeholders_keep_label_braces() -> None:
    query = render_custom('sum(rate(errors_total{app="{service}",version="{version}"{region_selector}}[{window}]))', SCOPE)
    assert query == 'sum(rate(errors_total{app="ota-update",version="v2",region="eu-central"}[1m]))'
    spec = AnalysisSpec(region_label=None, checks=[{"name": "cpu", "query": "x{v=\"{version}\"{region_selector}}", "max": 1}])
    assert analysis_queries(spec, SCOPE)[-1].query == 'x{v="v2"}'


def test_weights_touch_only_the_release_route() -> None:
    http = desired_http(SNAPSHOT_HTTP, TARGET, RouteState(canary_weight=25))
    assert http[0] == SNAPSHOT_HTTP[0]
    assert http[1]["timeout"] == "5s"
    assert service_route_weights(http, None) == {"stable": 75, "canary": 25}
    assert service_route_weights(SNAPSHOT_HTTP, None) == {"stable": 100, "canary": 0}


def test_header_route_and_mirror_and_restore() -> None:
    original = copy.deepcopy(SNAPSHOT_HTTP)
    ab = desired_http(SNAPSHOT_HTTP, TARGET, RouteState(header_match={"x-fleet-cohort": {"exact": "beta"}}))
    assert [r.get("name") for r in ab] == ["internal", "pitstop-ab-ota-update", "primary"]
    assert ab[1]["route"][0]["destination"]["subset"] == "canary"
    mirrored = desired_http(SNAPSHOT_HTTP, TARGET, RouteState(mirror_percent=50))
    assert mirrored[1]["mirror"] == {"host": HOST, "subset": "canary"} and mirrored[1]["mirrorPercentage"] == {"value": 50}
    # derived from the snapshot each time: going back to 0 drops the header route and mirror
    assert desired_http(ab, TARGET, RouteState())[1]["route"] == SNAPSHOT_HTTP[1]["route"]
    assert SNAPSHOT_HTTP == original


def test_subsets_and_candidate_deployment() -> None:
    subsets = [{"name": "stable", "labels": {"version": "v1"}}, {"name": "canary", "labels": {"version": "v1"}}]
    assert subsets_with_version(subsets, subset="canary", version_label="version", version="v2")[1]["labels"] == {"version": "v2"}
    stable = {
        "metadata": {"name": "ota-update", "namespace": "team-ota", "resourceVersion": "7", "labels": {"app": "ota-update", "version": "v1", "pitstop.dev/role": "stable"},
                     "annotations": {"deployment.kubernetes.io/revision": "3", "pitstop.dev/sandbox-model": "{}"}},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "ota-update", "pitstop.dev/role": "stable"}},
                 "template": {"metadata": {"labels": {"app": "ota-update", "version": "v1", "pitstop.dev/role": "stable"}},
                              "spec": {"containers": [{"name": "ota-update", "image": "r/ota-update:v1"}]}}},
        "status": {"replicas": 4},
    }
    cand = candidate_deployment(stable, TARGET, image="r/ota-update:v2", version="v2", replicas=1, release_id="rel-1")
    assert cand["metadata"]["name"] == "ota-update-canary" and "resourceVersion" not in cand["metadata"]
    assert cand["spec"]["selector"] == {"matchLabels": {"app": "ota-update", "pitstop.dev/role": "canary"}}
    assert cand["spec"]["template"]["metadata"]["labels"]["version"] == "v2"
    assert cand["spec"]["template"]["spec"]["containers"][0]["image"] == "r/ota-update:v2"
    assert "deployment.kubernetes.io/revision" not in cand["metadata"]["annotations"]
    promoted = promoted_template(stable, cand)
    assert promoted["metadata"]["labels"] == {"app": "ota-update", "version": "v2", "pitstop.dev/role": "stable"}
    no_role = copy.deepcopy(stable)
    no_role["spec"]["selector"] = {"matchLabels": {"app": "ota-update"}}
    cand2 = candidate_deployment(no_role, TARGET.model_copy(update={"role_label": None}), image="x:v2", version="v2", replicas=1)
    assert cand2["spec"]["selector"] == {"matchLabels": {"app": "ota-update", "version": "v2"}}


def test_error_budget_gate() -> None:
    gate = ErrorBudgetGate(slo_percent=99.9, window="30d")
    assert round(budget_remaining_percent(error_ratio=0.0005, slo_percent=99.9), 6) == 50.0
    assert budget_gate(Measurement(value=0.0005), gate).allowed
    refused = budget_gate(Measurement(value=0.002), gate)
    assert not refused.allowed and "exhausted" in refused.reason
    assert not budget_gate(Measurement(value=None), gate).allowed
    assert not budget_gate(Measurement(error="down"), gate).allowed
    query = error_ratio_query(gate, service="ota-update", namespace="team-ota", region="eu-central", region_label="region")
    assert 'response_code=~"5.*"}[30d])) or vector(0))' in query and 'region="eu-central"' in query  # no 5xx series = 0
