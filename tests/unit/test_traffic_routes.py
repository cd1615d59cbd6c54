"""`pitstop.traffic_routes`: which HTTP route is the service's route, weights, header routes, mirroring, subsets."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pitstop.delivery.routing import RouteState, desired_http
from pitstop.delivery.spec import ReleaseTarget
from pitstop.traffic_routes import (
    RouteError,
    defined_subsets,
    has_weights,
    header_route,
    http_routes,
    is_mirrored,
    route_host,
    route_named,
    route_weights,
    same_host,
    service_route_index,
    service_route_weights,
    summarize_routes,
    with_mirror,
    with_weights,
    without_mirror,
)

HOST = "api.shop.svc.cluster.local"
HEADER = {"name": "beta", "match": [{"headers": {"x-cohort": {"exact": "beta"}}}], "route": [{"destination": {"host": HOST, "subset": "canary"}}]}
DEFAULT = {"name": "default", "route": [{"destination": {"host": HOST, "subset": "stable", "port": {"number": 8080}}, "weight": 100}]}
# a route after the first route without `match`: Istio never reaches it
SHADOWED = {"name": "shadowed", "route": [{"destination": {"host": HOST, "subset": "stable"}, "weight": 100}]}
HTTP = [HEADER, DEFAULT, SHADOWED]


def test_the_service_route_is_the_named_one_else_the_first_without_match_else_the_last() -> None:
    assert service_route_index(HTTP, None) == 1  # first without match, not the last one
    assert service_route_index(HTTP, "shadowed") == 2
    assert service_route_index(HTTP, "beta") == 0
    assert service_route_index([DEFAULT], None) == 0
    only_matches = [HEADER, {**HEADER, "name": "gamma"}]
    assert service_route_index(only_matches, None) == 1
    assert service_route_index(http_routes({"spec": {"http": HTTP}}), None) == 1


def test_no_route_to_work_on_is_a_route_error() -> None:
    with pytest.raises(RouteError, match="has no HTTP routes"):
        service_route_index([], None)
    with pytest.raises(RouteError, match=r"no HTTP route named 'nope' \(routes: \['beta', 'default', 'shadowed'\]\)") as info:
        service_route_index(HTTP, "nope")
    assert isinstance(info.value, ValueError)
    assert http_routes({}) == [] and http_routes({"spec": {}}) == []


def test_weights_of_a_route() -> None:
    assert route_weights(DEFAULT) == {"stable": 100}
    assert route_weights(HEADER) == {"canary": 100}  # a lone destination without weight takes everything
    two = {"route": [{"destination": {"host": HOST, "subset": "stable"}}, {"destination": {"host": HOST, "subset": "canary"}, "weight": 10}]}
    assert route_weights(two) == {"stable": 0, "canary": 10}
    repeated = {"route": [{"destination": {"subset": "stable", "port": {"number": 80}}, "weight": 30},
                          {"destination": {"subset": "stable", "port": {"number": 81}}, "weight": 70}]}
    assert route_weights(repeated) == {"stable": 100}
    assert service_route_weights(HTTP, None) == {"stable": 100}
    assert service_route_weights(HTTP, "beta") == {"canary": 100}
    assert service_route_weights([], None) == {}


def test_setting_weights_keeps_ports_and_the_rest_of_the_route() -> None:
    original = copy.deepcopy(DEFAULT)
    new = with_weights({**DEFAULT, "timeout": "5s"}, HOST, {"stable": 90, "canary": 10})
    assert new["route"] == [
        {"destination": {"host": HOST, "subset": "stable", "port": {"number": 8080}}, "weight": 90},
        {"destination": {"host": HOST, "subset": "canary"}, "weight": 10},
    ]
    assert new["timeout"] == "5s" and new["name"] == "default"
    assert route_weights(new) == {"stable": 90, "canary": 10}
    assert DEFAULT == original  # arguments are never changed
    assert has_weights(new, HOST, {"stable": 90, "canary": 10})
    assert not has_weights(new, HOST, {"stable": 100})
    assert not has_weights(new, "other.shop.svc.cluster.local", {"stable": 90, "canary": 10})


def test_route_host() -> None:
    assert route_host(DEFAULT) == HOST
    assert route_host({"route": [{"destination": {"subset": "stable"}}]}) is None
    assert route_host({}) is None


def test_mirroring_is_set_replaced_and_removed() -> None:
    assert not is_mirrored(DEFAULT)
    mirrored = with_mirror(DEFAULT, host=HOST, subset="canary", percent=25)
    assert mirrored["mirror"] == {"host": HOST, "subset": "canary"} and mirrored["mirrorPercentage"] == {"value": 25}
    assert is_mirrored(mirrored) and mirrored["route"] == DEFAULT["route"]
    again = with_mirror(mirrored, host=HOST, subset="blue", percent=100)
    assert again["mirror"]["subset"] == "blue" and again["mirrorPercentage"] == {"value": 100}
    assert without_mirror(again) == DEFAULT and not is_mirrored(without_mirror(again))
    assert "mirror" not in DEFAULT


def test_header_route() -> None:
    built = header_route(name="beta", headers={"x-cohort": {"exact": "beta"}}, host=HOST, subset="canary")
    assert built == HEADER
    assert route_named(HTTP, "beta") == 0 and route_named(HTTP, "shadowed") == 2 and route_named(HTTP, "nope") is None


def test_summaries_list_every_route_in_order() -> None:
    mirrored = with_mirror(DEFAULT, host=HOST, subset="canary", percent=50)
    summary = summarize_routes([HEADER, mirrored])
    assert [(s.name, s.has_match) for s in summary] == [("beta", True), ("default", False)]
    assert summary[0].destinations[0].subset == "canary" and summary[0].destinations[0].weight is None
    assert summary[1].mirror is not None and summary[1].mirror.subset == "canary" and summary[1].mirror_percent == 50


def test_destination_rule_subsets_for_a_host() -> None:
    rules: list[dict[str, Any]] = [
        {"spec": {"host": "api", "subsets": [{"name": "stable"}, {"name": "canary"}]}},
        {"spec": {"host": "api.shop.svc.cluster.local", "subsets": [{"name": "blue"}, {"labels": {"x": "y"}}]}},
        {"spec": {"host": "web", "subsets": [{"name": "green"}]}},
    ]
    assert same_host("api", HOST, "shop") and same_host("api.shop", "api", "shop") and not same_host("api", "api.other", "shop")
    assert defined_subsets(rules, host=HOST, namespace="shop") == {"stable", "canary", "blue"}
    assert defined_subsets(rules, host="payments", namespace="shop") is None


def test_a_release_changes_the_same_route_a_step_would() -> None:
    """The bug this module fixed: steps took the first route without match, releases the last."""
    target = ReleaseTarget(service="api", namespace="shop", region="eu")
    http = desired_http(HTTP, target, RouteState(canary_weight=30, mirror_percent=10, header_match={"x-b": {"prefix": "1"}}))
    assert [r["name"] for r in http] == ["beta", "pitstop-ab-api", "default", "shadowed"]
    assert route_weights(http[2]) == {"stable": 70, "canary": 30}
    assert http[2]["route"][0]["destination"]["port"] == {"number": 8080}
    assert http[2]["mirror"] == {"host": HOST, "subset": "canary"}
    assert http[0] == HEADER and http[3] == SHADOWED
    assert service_route_weights(http, target.route) == {"stable": 70, "canary": 30}
    named = desired_http(HTTP, target.model_copy(update={"route": "shadowed"}), RouteState(canary_weight=5))
    assert named[1] == DEFAULT and route_weights(named[2]) == {"stable": 95, "canary": 5}
