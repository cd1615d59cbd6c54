"""`TrafficRouter`: the one interface for shifting traffic between subsets of a service (flagger pkg/router
style), an Istio implementation over VirtualServices, and a do-nothing one for services without a mesh.

`router_for(...)` picks the implementation from configuration (`settings.traffic.provider`, the service's
entry in `settings.traffic.services_without_mesh`) or a step's explicit `provider`.

Istio writes are read-modify-write with the object's `resourceVersion`: a concurrent change makes the API
answer 409, and the router re-reads and re-applies (the only retry done inside an activity); anything else
propagates for Temporal to retry. Synchronous (kubernetes client): called from sync activities.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError

from pitstop.config import Settings
from pitstop.steps.istio import (
    Destination,
    HeaderMatch,
    HttpRouteSummary,
    RouteChangeResult,
    RoutesResult,
    SetWeightsResult,
    TrafficProvider,
)

from .kube_api import KubeJson

ISTIO_GROUP_VERSION = "networking.istio.io/v1"
CONFLICT_ATTEMPTS = 5


@dataclass(frozen=True)
class RouteTarget:
    """Which routes: a VirtualService (named like the service), optionally one named HTTP route in it."""

    region: str
    namespace: str
    virtual_service: str
    route: str | None = None
    host: str | None = None

    def describe(self) -> str:
        route = f" route {self.route!r}" if self.route else ""
        return f"virtualservice {self.namespace}/{self.virtual_service}{route} in region {self.region}"


class TrafficRouter(Protocol):
    provider: TrafficProvider

    def get_routes(self, target: RouteTarget) -> RoutesResult: ...

    def set_routes(self, target: RouteTarget, weights: dict[str, int], *, dry_run: bool) -> SetWeightsResult: ...

    def set_header_route(
        self, target: RouteTarget, *, route_name: str, headers: dict[str, HeaderMatch], subset: str, enabled: bool, dry_run: bool
    ) -> RouteChangeResult: ...

    def set_mirror(self, target: RouteTarget, *, subset: str | None, percent: float, dry_run: bool) -> RouteChangeResult: ...


def router_for(
    *, settings: Settings, api: KubeJson, namespace: str, service: str, provider: TrafficProvider | None = None
) -> TrafficRouter:
    chosen = provider or ("none" if f"{namespace}/{service}" in settings.traffic.services_without_mesh else settings.traffic.provider)
    if chosen == "none":
        return NoMeshRouter()
    return IstioRouter(api)


# ---------------------------------------------------------------- pure VirtualService helpers


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type="Invalid", non_retryable=True)


def http_routes(vs: dict[str, Any]) -> list[dict[str, Any]]:
    return (vs.get("spec") or {}).get("http") or []


def weighted_route_index(vs: dict[str, Any], target: RouteTarget) -> int:
    """The route whose weights a step manages: the named one, else the first route without `match`."""
    routes = http_routes(vs)
    if not routes:
        raise _invalid(f"{target.describe()} has no HTTP routes")
    if target.route:
        for i, route in enumerate(routes):
            if route.get("name") == target.route:
                return i
        names = [r.get("name", "") for r in routes]
        raise _invalid(f"{target.describe()}: no HTTP route named {target.route!r} (routes: {names})")
    for i, route in enumerate(routes):
        if not route.get("match"):
            return i
    return len(routes) - 1


def route_weights(route: dict[str, Any]) -> dict[str, int]:
    destinations = route.get("route") or []
    weights: dict[str, int] = {}
    for dest in destinations:
        subset = (dest.get("destination") or {}).get("subset") or ""
        weight = dest.get("weight")
        weights[subset] = int(weight) if weight is not None else (100 if len(destinations) == 1 else 0)
    return weights


def route_host(route: dict[str, Any], target: RouteTarget) -> str:
    if target.host:
        return target.host
    for dest in route.get("route") or []:
        host = (dest.get("destination") or {}).get("host")
        if host:
            return str(host)
    raise _invalid(f"{target.describe()}: the route has no destination host; give `host`")


def with_weights(route: dict[str, Any], host: str, weights: dict[str, int]) -> dict[str, Any]:
    """The route with exactly these subset weights (ports of existing destinations are kept)."""
    ports = {
        (d.get("destination") or {}).get("subset"): (d.get("destination") or {}).get("port")
        for d in route.get("route") or []
    }
    new = copy.deepcopy(route)
    new["route"] = []
    for subset, weight in weights.items():
        destination: dict[str, Any] = {"host": host, "subset": subset}
        if ports.get(subset):
            destination["port"] = ports[subset]
        new["route"].append({"destination": destination, "weight": weight})
    return new


def summarize_routes(vs: dict[str, Any]) -> list[HttpRouteSummary]:
    out = []
    for route in http_routes(vs):
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


def _host_matches(rule_host: str, host: str, namespace: str) -> bool:
    def short(h: str) -> tuple[str, str]:
        parts = h.split(".")
        return parts[0], parts[1] if len(parts) > 1 else namespace

    return rule_host == host or short(rule_host) == short(host)


# ---------------------------------------------------------------- implementations


class IstioRouter:
    """Routes by weight, header match and mirroring in an Istio VirtualService (subsets from DestinationRules)."""

    provider: TrafficProvider = "istio"

    def __init__(self, api: KubeJson) -> None:
        self.api = api

    def _path(self, target: RouteTarget, plural: str = "virtualservices", name: str | None = None) -> str:
        base = f"/apis/{ISTIO_GROUP_VERSION}/namespaces/{target.namespace}/{plural}"
        return f"{base}/{name}" if name else base

    def _read_virtual_service(self, target: RouteTarget) -> dict[str, Any]:
        try:
            return self.api.get(self._path(target, name=target.virtual_service))
        except ApiException as exc:
            if exc.status == 404:
                raise ApplicationError(f"{target.describe()} not found", type="NotFound", non_retryable=True) from None
            raise

    def _check_subsets(self, target: RouteTarget, host: str, subsets: list[str]) -> None:
        rules = [
            r
            for r in self.api.items(self._path(target, "destinationrules"))
            if _host_matches((r.get("spec") or {}).get("host", ""), host, target.namespace)
        ]
        if not rules:
            raise _invalid(f"{target.describe()}: no DestinationRule in {target.namespace} defines subsets for host {host}")
        defined = {s.get("name") for r in rules for s in (r.get("spec") or {}).get("subsets") or []}
        missing = sorted(set(subsets) - defined)
        if missing:
            raise _invalid(
                f"{target.describe()}: subsets {missing} are not defined by a DestinationRule for {host} (defined: {sorted(defined)})"
            )

    def _update(self, target: RouteTarget, change: Any, *, dry_run: bool) -> tuple[dict[str, Any], bool, int]:
        """Read, apply `change(vs) -> vs | None` (None = nothing to do), write with resourceVersion; on 409
        re-read and re-apply. Returns (virtual service after, changed, conflicts)."""
        conflicts = 0
        while True:
            vs = self._read_virtual_service(target)
            new = change(copy.deepcopy(vs))
            if new is None or new == vs:
                return vs, False, conflicts
            if dry_run:
                return new, True, conflicts
            try:
                return self.api.put(self._path(target, name=target.virtual_service), new), True, conflicts
            except ApiException as exc:
                if exc.status != 409 or conflicts + 1 >= CONFLICT_ATTEMPTS:
                    raise
                conflicts += 1

    def get_routes(self, target: RouteTarget) -> RoutesResult:
        vs = self._read_virtual_service(target)
        routes = http_routes(vs)
        weights = route_weights(routes[weighted_route_index(vs, target)]) if routes else {}
        shown = ", ".join(f"{k or '(no subset)'} {v}" for k, v in weights.items())
        return RoutesResult(
            provider=self.provider, weights=weights, routes=summarize_routes(vs), summary=f"{target.describe()}: {shown}"
        )

    def set_routes(self, target: RouteTarget, weights: dict[str, int], *, dry_run: bool) -> SetWeightsResult:
        before: dict[str, int] = {}

        def change(vs: dict[str, Any]) -> dict[str, Any] | None:
            index = weighted_route_index(vs, target)
            route = http_routes(vs)[index]
            before.clear()
            before.update(route_weights(route))
            host = route_host(route, target)
            if before == weights and all((d.get("destination") or {}).get("host") == host for d in route.get("route") or []):
                return None
            self._check_subsets(target, host, [s for s, w in weights.items() if w > 0])
            vs["spec"]["http"][index] = with_weights(route, host, weights)
            return vs

        _, changed, conflicts = self._update(target, change, dry_run=dry_run)
        shown = " / ".join(f"{k} {v}" for k, v in weights.items())
        verb = ("would set" if dry_run else "set") if changed else "already at"
        return SetWeightsResult(
            provider=self.provider, changed=changed, previous=dict(before), weights=dict(weights), conflicts=conflicts,
            summary=f"{verb} {shown} on {target.describe()}",
        )

    def set_header_route(
        self, target: RouteTarget, *, route_name: str, headers: dict[str, HeaderMatch], subset: str, enabled: bool, dry_run: bool
    ) -> RouteChangeResult:
        def change(vs: dict[str, Any]) -> dict[str, Any] | None:
            routes = http_routes(vs)
            existing = next((i for i, r in enumerate(routes) if r.get("name") == route_name), None)
            if not enabled:
                if existing is None:
                    return None
                del routes[existing]
                return vs
            default = routes[weighted_route_index(vs, RouteTarget(**{**target.__dict__, "route": None}))] if routes else {}
            host = route_host(default, target)
            self._check_subsets(target, host, [subset])
            wanted = {
                "name": route_name,
                "match": [{"headers": {name: m.as_istio() for name, m in headers.items()}}],
                "route": [{"destination": {"host": host, "subset": subset}}],
            }
            if existing is None:
                routes.insert(0, wanted)
            elif routes[existing] == wanted:
                return None
            else:
                routes[existing] = wanted
            return vs

        vs, changed, conflicts = self._update(target, change, dry_run=dry_run)
        action = f"header route {route_name!r} -> {subset}" if enabled else f"removal of header route {route_name!r}"
        prefix = ("would apply" if dry_run else "applied") if changed else "already in place:"
        return RouteChangeResult(
            provider=self.provider, changed=changed, routes=summarize_routes(vs), conflicts=conflicts,
            summary=f"{prefix} {action} on {target.describe()}",
        )

    def set_mirror(self, target: RouteTarget, *, subset: str | None, percent: float, dry_run: bool) -> RouteChangeResult:
        def change(vs: dict[str, Any]) -> dict[str, Any] | None:
            index = weighted_route_index(vs, target)
            route = http_routes(vs)[index]
            if subset is None:
                if "mirror" not in route and "mirrorPercentage" not in route:
                    return None
                route.pop("mirror", None)
                route.pop("mirrorPercentage", None)
                return vs
            host = route_host(route, target)
            self._check_subsets(target, host, [subset])
            route["mirror"] = {"host": host, "subset": subset}
            route["mirrorPercentage"] = {"value": percent}
            return vs

        vs, changed, conflicts = self._update(target, change, dry_run=dry_run)
        action = f"mirror {percent:g}% to {subset}" if subset else "no mirroring"
        prefix = ("would set" if dry_run else "set") if changed else "already"
        return RouteChangeResult(
            provider=self.provider, changed=changed, routes=summarize_routes(vs), conflicts=conflicts,
            summary=f"{prefix} {action} on {target.describe()}",
        )


class NoMeshRouter:
    """For services without a mesh: nothing to shift, every call succeeds without changing anything."""

    provider: TrafficProvider = "none"

    def get_routes(self, target: RouteTarget) -> RoutesResult:
        return RoutesResult(provider=self.provider, summary=f"{target.describe()}: no mesh, traffic goes to all endpoints")

    def set_routes(self, target: RouteTarget, weights: dict[str, int], *, dry_run: bool) -> SetWeightsResult:
        return SetWeightsResult(
            provider=self.provider, weights=dict(weights), summary=f"no mesh for {target.describe()}: weights not applied"
        )

    def set_header_route(
        self, target: RouteTarget, *, route_name: str, headers: dict[str, HeaderMatch], subset: str, enabled: bool, dry_run: bool
    ) -> RouteChangeResult:
        return RouteChangeResult(provider=self.provider, summary=f"no mesh for {target.describe()}: header route not applied")

    def set_mirror(self, target: RouteTarget, *, subset: str | None, percent: float, dry_run: bool) -> RouteChangeResult:
        return RouteChangeResult(provider=self.provider, summary=f"no mesh for {target.describe()}: mirroring not applied")
