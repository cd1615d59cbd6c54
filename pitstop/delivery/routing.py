"""Istio routing for releases, computed from the routes recorded before the first change.

Every desired state is derived from that snapshot (never from the live object), so applying it is
idempotent and a rollback writes the snapshot back exactly. Only the service's route and the release's own
header route are touched; which route is the service's route (the named one, else the first HTTP route
without `match`) is decided by `pitstop.traffic_routes`, the same rule the traffic steps use. The activities
write the result through the traffic router (`activities.traffic.TrafficRouter.set_http`).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, Field

from pitstop.traffic_routes import header_route, route_host, service_route_index, with_mirror, with_weights, without_mirror

from .spec import ReleaseTarget

JsonObject = dict[str, Any]
HEADER_ROUTE_PREFIX = "pitstop-ab-"


class RouteState(BaseModel):
    """What the release wants from traffic: canary weight, mirroring, header (A/B) route."""

    canary_weight: int = Field(default=0, ge=0, le=100)
    mirror_percent: float | None = Field(default=None, description="mirror this share of the route to the new version")
    header_match: dict[str, dict[str, str]] | None = Field(default=None, description="header -> Istio StringMatch")

    def describe(self) -> str:
        parts = [f"weight {100 - self.canary_weight}/{self.canary_weight}"]
        if self.mirror_percent is not None:
            parts.append(f"mirror {self.mirror_percent:g}%")
        if self.header_match:
            parts.append(f"header route {sorted(self.header_match)}")
        return ", ".join(parts)


def default_host(target: ReleaseTarget) -> str:
    return f"{target.service}.{target.namespace}.svc.cluster.local"


def header_route_name(target: ReleaseTarget) -> str:
    return f"{HEADER_ROUTE_PREFIX}{target.service}"


def desired_http(snapshot_http: list[JsonObject], target: ReleaseTarget, state: RouteState) -> list[JsonObject]:
    """The VirtualService `http` list for `state`, derived from the snapshot: the service's route
    (`pitstop.traffic_routes.service_route_index`) gets the weights and mirror, the release's header route
    goes right before it."""
    http = [copy.deepcopy(r) for r in snapshot_http if r.get("name") != header_route_name(target)]
    index = service_route_index(http, target.route)
    host = route_host(http[index]) or default_host(target)
    route = with_weights(http[index], host, {target.stable_subset: 100 - state.canary_weight, target.canary_subset: state.canary_weight})
    route = without_mirror(route)
    if state.mirror_percent is not None:
        route = with_mirror(route, host=host, subset=target.canary_subset, percent=state.mirror_percent)
    http[index] = route
    if state.header_match:
        http.insert(index, header_route(name=header_route_name(target), headers=state.header_match, host=host, subset=target.canary_subset))
    return http


def subsets_with_version(subsets: list[JsonObject], *, subset: str, version_label: str, version: str) -> list[JsonObject]:
    """DestinationRule subsets with `subset` selecting pods whose version label is `version` (added if absent)."""
    result = [copy.deepcopy(s) for s in subsets]
    for entry in result:
        if entry.get("name") == subset:
            entry["labels"] = {**(entry.get("labels") or {}), version_label: version}
            return result
    result.append({"name": subset, "labels": {version_label: version}})
    return result


def subset_version(subsets: list[JsonObject], *, subset: str, version_label: str) -> str | None:
    for entry in subsets:
        if entry.get("name") == subset:
            value = (entry.get("labels") or {}).get(version_label)
            return str(value) if value is not None else None
    return None
