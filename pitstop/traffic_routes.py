"""Istio VirtualService HTTP routes as plain JSON: which route is the service's route, its weights, header-match
(A/B) routes, mirroring, and the DestinationRule subsets they point at. Pure functions, shared by the traffic
steps (`activities.traffic.IstioRouter`) and releases (`pitstop.delivery.routing.desired_http`).

The service's route — the one whose weights and mirror a step or a release changes — is:
1. the HTTP route named by the step or release (`route:`), when one is named;
2. otherwise the FIRST HTTP route without `match`: Istio evaluates HTTP routes in order and the first route
   without `match` takes all traffic no earlier route matched, so any route after it is unreachable;
3. if every route has a `match`, the last route.
`service_route_index` implements this rule; nothing else chooses a route.

Functions return new objects and never change their arguments. Errors are `RouteError` (a `ValueError`);
the activity layer turns them into non-retryable `ApplicationError`s naming the VirtualService.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from pitstop.steps.istio import Destination, HttpRouteSummary

JsonObject = dict[str, Any]


class RouteError(ValueError):
    """The VirtualService has no route to work on (none at all, or none with the requested name)."""


def http_routes(virtual_service: Mapping[str, Any]) -> list[JsonObject]:
    """The VirtualService's `spec.http` (empty if it has none)."""
    return (virtual_service.get("spec") or {}).get("http") or []


def service_route_index(http: list[JsonObject], route_name: str | None) -> int:
    """Index of the service's route in `http`: the named route, else the first without `match`, else the last."""
    if not http:
        raise RouteError("the VirtualService has no HTTP routes")
    if route_name:
        for index, route in enumerate(http):
            if route.get("name") == route_name:
                return index
        names = [r.get("name", "") for r in http]
        raise RouteError(f"the VirtualService has no HTTP route named {route_name!r} (routes: {names})")
    for index, route in enumerate(http):
        if not route.get("match"):
            return index
    return len(http) - 1


# ---------------------------------------------------------------- weights


def route_weights(route: Mapping[str, Any]) -> dict[str, int]:
    """subset -> weight of one route (a lone destination without weight has 100; repeated subsets add up)."""
    destinations = route.get("route") or []
    weights: dict[str, int] = {}
    for destination in destinations:
        subset = (destination.get("destination") or {}).get("subset") or ""
        weight = destination.get("weight")
        share = int(weight) if weight is not None else (100 if len(destinations) == 1 else 0)
        weights[subset] = weights.get(subset, 0) + share
    return weights


def service_route_weights(http: list[JsonObject], route_name: str | None) -> dict[str, int]:
    """subset -> weight of the service's route (empty when there are no routes)."""
    if not http:
        return {}
    return route_weights(http[service_route_index(http, route_name)])


def route_host(route: Mapping[str, Any]) -> str | None:
    """The host of the route's first destination that names one."""
    for destination in route.get("route") or []:
        host = (destination.get("destination") or {}).get("host")
        if host:
            return str(host)
    return None


def with_weights(route: Mapping[str, Any], host: str, weights: Mapping[str, int]) -> JsonObject:
    """The route sending exactly these subset weights to `host` (ports of existing destinations are kept)."""
    ports = {
        (d.get("destination") or {}).get("subset"): (d.get("destination") or {}).get("port")
        for d in route.get("route") or []
    }
    new = copy.deepcopy(dict(route))
    new["route"] = []
    for subset, weight in weights.items():
        destination: JsonObject = {"host": host, "subset": subset}
        if ports.get(subset):
            destination["port"] = copy.deepcopy(ports[subset])
        new["route"].append({"destination": destination, "weight": weight})
    return new


def has_weights(route: Mapping[str, Any], host: str, weights: Mapping[str, int]) -> bool:
    """Whether the route already sends exactly these weights, every destination to `host`."""
    return route_weights(route) == dict(weights) and all(
        (d.get("destination") or {}).get("host") == host for d in route.get("route") or []
    )


# ---------------------------------------------------------------- mirroring


def without_mirror(route: Mapping[str, Any]) -> JsonObject:
    """The route without mirroring."""
    new = copy.deepcopy(dict(route))
    new.pop("mirror", None)
    new.pop("mirrorPercentage", None)
    return new


def with_mirror(route: Mapping[str, Any], *, host: str, subset: str, percent: float) -> JsonObject:
    """The route mirroring `percent` of its traffic to `subset` of `host` (replacing any other mirror)."""
    new = without_mirror(route)
    new["mirror"] = {"host": host, "subset": subset}
    new["mirrorPercentage"] = {"value": percent}
    return new


def is_mirrored(route: Mapping[str, Any]) -> bool:
    return "mirror" in route or "mirrorPercentage" in route


# ---------------------------------------------------------------- header-match (A/B) routes


def header_route(*, name: str, headers: Mapping[str, Mapping[str, str]], host: str, subset: str) -> JsonObject:
    """A route sending requests whose headers match (header -> Istio StringMatch) to one subset."""
    return {
        "name": name,
        "match": [{"headers": {header: dict(match) for header, match in headers.items()}}],
        "route": [{"destination": {"host": host, "subset": subset}}],
    }


def route_named(http: list[JsonObject], name: str) -> int | None:
    """Index of the route called `name`, if there is one."""
    return next((i for i, route in enumerate(http) if route.get("name") == name), None)


# ---------------------------------------------------------------- summaries


def summarize_routes(http: list[JsonObject]) -> list[HttpRouteSummary]:
    """Every HTTP route, in order, as step results show them."""
    out = []
    for route in http:
        mirror = route.get("mirror")
        out.append(
            HttpRouteSummary(
                name=route.get("name", ""),
                has_match=bool(route.get("match")),
                destinations=[
                    Destination(
                        host=(d.get("destination") or {}).get("host", ""),
                        subset=(d.get("destination") or {}).get("subset"),
                        weight=d.get("weight"),
                    )
                    for d in route.get("route") or []
                ],
                mirror=Destination(host=mirror.get("host", ""), subset=mirror.get("subset")) if mirror else None,
                mirror_percent=(route.get("mirrorPercentage") or {}).get("value") if mirror else None,
            )
        )
    return out


# ---------------------------------------------------------------- DestinationRule subsets


def same_host(rule_host: str, host: str, namespace: str) -> bool:
    """Whether two service hosts name the same service (`api`, `api.ns`, `api.ns.svc.cluster.local`)."""

    def short(h: str) -> tuple[str, str]:
        parts = h.split(".")
        return parts[0], parts[1] if len(parts) > 1 else namespace

    return rule_host == host or short(rule_host) == short(host)


def defined_subsets(destination_rules: Iterable[Mapping[str, Any]], *, host: str, namespace: str) -> set[str] | None:
    """Subset names the DestinationRules for `host` define; None when no DestinationRule is for that host."""
    rules = [r for r in destination_rules if same_host((r.get("spec") or {}).get("host", ""), host, namespace)]
    if not rules:
        return None
    return {str(s["name"]) for r in rules for s in (r.get("spec") or {}).get("subsets") or [] if s.get("name")}
