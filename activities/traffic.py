"""`TrafficRouter`: the one interface for changing traffic between subsets of a service (flagger pkg/router
style), an Istio implementation over VirtualServices, and a do-nothing one for services without a mesh.
Both the traffic steps (`activities.istio`, `istio.*` step types) and releases (`activities.delivery`,
`delivery.snapshot`/`set_routes`/`restore`) change VirtualServices only through it.

`router_for(...)` picks the implementation from configuration (`settings.traffic.provider`, the service's
entry in `settings.traffic.services_without_mesh`) or an explicit `provider`. Which HTTP route is the
service's route, and how weights, header routes and mirrors are written, is decided by the pure functions of
`pitstop.traffic_routes` (the named route, else the first route without `match`).

Istio writes are read-modify-write with the object's `resourceVersion`: a concurrent change makes the API
answer 409, and the router re-reads and re-applies (the only retry done inside an activity); anything else
propagates for Temporal to retry. Synchronous (kubernetes client): called from sync activities.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError

from pitstop.config import Settings
from pitstop.steps.istio import HeaderMatch, RouteChangeResult, RoutesResult, SetWeightsResult, TrafficProvider
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
    service_route_index,
    service_route_weights,
    summarize_routes,
    with_mirror,
    with_weights,
    without_mirror,
)
from pitstop.undo_values import EARLIER_ATTEMPT, UNDO_VALUES_ANNOTATION, recorded_previous, with_previous

from .kube_api import KubeJson
from .kube_errors import retry_on_conflict

ISTIO_GROUP_VERSION = "networking.istio.io/v1"
JsonObject = dict[str, Any]


@dataclass(frozen=True)
class RouteTarget:
    """Which routes: a VirtualService (named like the service), optionally one named HTTP route in it."""

    region: str
    namespace: str
    virtual_service: str
    route: str | None = None
    host: str | None = None

    @property
    def what(self) -> str:
        """The object, as error messages name it: `virtualservice ns/name` (and the route, if one is named)."""
        route = f" route {self.route!r}" if self.route else ""
        return f"virtualservice {self.namespace}/{self.virtual_service}{route}"

    def describe(self) -> str:
        return f"{self.what} in region {self.region}"


class TrafficRouter(Protocol):
    provider: TrafficProvider

    def get_routes(self, target: RouteTarget) -> RoutesResult: ...

    def get_http(self, target: RouteTarget) -> list[JsonObject]: ...

    def set_routes(
        self, target: RouteTarget, weights: dict[str, int], *, dry_run: bool, record_key: str = ""
    ) -> SetWeightsResult: ...

    def set_http(self, target: RouteTarget, http: list[JsonObject], *, dry_run: bool) -> RouteChangeResult: ...

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


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type="Invalid", non_retryable=True)


@contextmanager
def _route_errors(target: RouteTarget) -> Iterator[None]:
    """A `RouteError` from the pure route functions, as a non-retryable error naming the VirtualService."""
    try:
        yield
    except RouteError as exc:
        raise _invalid(f"{target.describe()}: {exc}") from None


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

    @staticmethod
    def _host(route: JsonObject, target: RouteTarget) -> str:
        host = target.host or route_host(route)
        if not host:
            raise _invalid(f"{target.describe()}: the route has no destination host; give `host`")
        return host

    def _check_subsets(self, target: RouteTarget, host: str, subsets: list[str]) -> None:
        defined = defined_subsets(self.api.items(self._path(target, "destinationrules")), host=host, namespace=target.namespace)
        if defined is None:
            raise _invalid(f"{target.describe()}: no DestinationRule in {target.namespace} defines subsets for host {host}")
        missing = sorted(set(subsets) - defined)
        if missing:
            raise _invalid(
                f"{target.describe()}: subsets {missing} are not defined by a DestinationRule for {host} (defined: {sorted(defined)})"
            )

    def _update(
        self, target: RouteTarget, change: Callable[[JsonObject], JsonObject | None], *, dry_run: bool
    ) -> tuple[JsonObject, bool, int]:
        """Read, apply `change(vs) -> vs | None` (None = nothing to do), write with resourceVersion; on 409
        re-read and re-apply. Returns (virtual service after, changed, conflicts)."""
        attempts = 0

        def attempt() -> tuple[JsonObject, bool]:
            nonlocal attempts
            attempts += 1
            vs = self._read_virtual_service(target)
            with _route_errors(target):
                new = change(copy.deepcopy(vs))
            if new is None or new == vs:
                return vs, False
            if dry_run:
                return new, True
            return self.api.put(self._path(target, name=target.virtual_service), new), True

        after, changed = retry_on_conflict(attempt)
        return after, changed, attempts - 1

    def get_routes(self, target: RouteTarget) -> RoutesResult:
        routes = http_routes(self._read_virtual_service(target))
        with _route_errors(target):
            weights = service_route_weights(routes, target.route)
        shown = ", ".join(f"{k or '(no subset)'} {v}" for k, v in weights.items())
        return RoutesResult(
            provider=self.provider, weights=weights, routes=summarize_routes(routes), summary=f"{target.describe()}: {shown}"
        )

    def get_http(self, target: RouteTarget) -> list[JsonObject]:
        """The VirtualService's HTTP routes as they are (what a release snapshots and restores)."""
        return copy.deepcopy(http_routes(self._read_virtual_service(target)))

    def set_routes(
        self, target: RouteTarget, weights: dict[str, int], *, dry_run: bool, record_key: str = ""
    ) -> SetWeightsResult:
        """Set the service route's weights. With a `record_key` (the step's `undo_key`) the weights found are
        recorded on the VirtualService in the same update (`pitstop.undo_values`), so a retry after the update
        went through still answers the original `previous` weights."""
        before: dict[str, int] = {}
        earlier = False

        def change(vs: JsonObject) -> JsonObject | None:
            nonlocal earlier
            routes = http_routes(vs)
            index = service_route_index(routes, target.route)
            route = routes[index]
            annotations = (vs.get("metadata") or {}).get("annotations") or {}
            recorded = recorded_previous(annotations, record_key, dict[str, int]) if record_key else None
            earlier = recorded is not None
            before.clear()
            before.update(route_weights(route) if recorded is None else recorded.value)
            host = self._host(route, target)
            if has_weights(route, host, weights):
                return None
            self._check_subsets(target, host, [s for s, w in weights.items() if w > 0])
            routes[index] = with_weights(route, host, weights)
            if record_key:
                vs.setdefault("metadata", {})["annotations"] = {
                    **annotations, UNDO_VALUES_ANNOTATION: with_previous(annotations, record_key, dict(before))
                }
            return vs

        _, written, conflicts = self._update(target, change, dry_run=dry_run)
        shown = " / ".join(f"{k} {v}" for k, v in weights.items())
        verb = ("would set" if dry_run else "set") if written or earlier else "already at"
        return SetWeightsResult(
            provider=self.provider, changed=written or earlier, previous=dict(before), weights=dict(weights),
            conflicts=conflicts, summary=f"{verb} {shown} on {target.describe()}{EARLIER_ATTEMPT if earlier and not written else ''}",
        )

    def set_http(self, target: RouteTarget, http: list[JsonObject], *, dry_run: bool) -> RouteChangeResult:
        """Make the VirtualService's `spec.http` exactly `http` (a release's desired routes, or its snapshot)."""

        def change(vs: JsonObject) -> JsonObject | None:
            if (vs.get("spec") or {}).get("http") == http:
                return None
            vs.setdefault("spec", {})["http"] = copy.deepcopy(http)
            return vs

        vs, changed, conflicts = self._update(target, change, dry_run=dry_run)
        prefix = ("would set" if dry_run else "set") if changed else "already at"
        return RouteChangeResult(
            provider=self.provider, changed=changed, routes=summarize_routes(http_routes(vs)), conflicts=conflicts,
            summary=f"{prefix} the requested {len(http)} HTTP routes on {target.describe()}",
        )

    def set_header_route(
        self, target: RouteTarget, *, route_name: str, headers: dict[str, HeaderMatch], subset: str, enabled: bool, dry_run: bool
    ) -> RouteChangeResult:
        def change(vs: JsonObject) -> JsonObject | None:
            routes = http_routes(vs)
            existing = route_named(routes, route_name)
            if not enabled:
                if existing is None:
                    return None
                del routes[existing]
                return vs
            default = routes[service_route_index(routes, None)] if routes else {}
            host = self._host(default, target)
            self._check_subsets(target, host, [subset])
            wanted = header_route(name=route_name, headers={n: m.as_istio() for n, m in headers.items()}, host=host, subset=subset)
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
            provider=self.provider, changed=changed, routes=summarize_routes(http_routes(vs)), conflicts=conflicts,
            summary=f"{prefix} {action} on {target.describe()}",
        )

    def set_mirror(self, target: RouteTarget, *, subset: str | None, percent: float, dry_run: bool) -> RouteChangeResult:
        def change(vs: JsonObject) -> JsonObject | None:
            routes = http_routes(vs)
            index = service_route_index(routes, target.route)
            route = routes[index]
            if subset is None:
                if not is_mirrored(route):
                    return None
                routes[index] = without_mirror(route)
                return vs
            host = self._host(route, target)
            self._check_subsets(target, host, [subset])
            routes[index] = with_mirror(route, host=host, subset=subset, percent=percent)
            return vs

        vs, changed, conflicts = self._update(target, change, dry_run=dry_run)
        action = f"mirror {percent:g}% to {subset}" if subset else "no mirroring"
        prefix = ("would set" if dry_run else "set") if changed else "already"
        return RouteChangeResult(
            provider=self.provider, changed=changed, routes=summarize_routes(http_routes(vs)), conflicts=conflicts,
            summary=f"{prefix} {action} on {target.describe()}",
        )


class NoMeshRouter:
    """For services without a mesh: nothing to shift, every call succeeds without changing anything."""

    provider: TrafficProvider = "none"

    def get_routes(self, target: RouteTarget) -> RoutesResult:
        return RoutesResult(provider=self.provider, summary=f"{target.describe()}: no mesh, traffic goes to all endpoints")

    def get_http(self, target: RouteTarget) -> list[JsonObject]:
        return []

    def set_routes(
        self, target: RouteTarget, weights: dict[str, int], *, dry_run: bool, record_key: str = ""
    ) -> SetWeightsResult:
        return SetWeightsResult(
            provider=self.provider, weights=dict(weights), summary=f"no mesh for {target.describe()}: weights not applied"
        )

    def set_http(self, target: RouteTarget, http: list[JsonObject], *, dry_run: bool) -> RouteChangeResult:
        return RouteChangeResult(provider=self.provider, summary=f"no mesh for {target.describe()}: routes not applied")

    def set_header_route(
        self, target: RouteTarget, *, route_name: str, headers: dict[str, HeaderMatch], subset: str, enabled: bool, dry_run: bool
    ) -> RouteChangeResult:
        return RouteChangeResult(provider=self.provider, summary=f"no mesh for {target.describe()}: header route not applied")

    def set_mirror(self, target: RouteTarget, *, subset: str | None, percent: float, dry_run: bool) -> RouteChangeResult:
        return RouteChangeResult(provider=self.provider, summary=f"no mesh for {target.describe()}: mirroring not applied")
