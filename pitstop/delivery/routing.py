"""Istio routing for releases, computed from the routes recorded before the first change.

Every desired state is derived from that snapshot (never from the live object), so applying it is
idempotent and a rollback writes the snapshot back exactly. Only the release's route (by default the
VirtualService's last HTTP route without `match`) and the release's own header route are touched.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, Field

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


def release_route_index(http: list[JsonObject], route_name: str | None) -> int:
    """Index of the route a release shifts: the named one, else the last route without `match`."""
    if not http:
        raise ValueError("the VirtualService has no HTTP routes")
    if route_name:
        for index, route in enumerate(http):
            if route.get("name") == route_name:
                return index
        names = [r.get("name", "") for r in http]
        raise ValueError(f"the VirtualService has no HTTP route named {route_name!r} (routes: {names})")
    for index in range(len(http) - 1, -1, -1):
        if not http[index].get("match"):
            return index
    return len(http) - 1


def route_host(http: list[JsonObject], index: int, fallback: str) -> str:
    for destination in http[index].get("route") or []:
        host = (destination.get("destination") or {}).get("host")
        if host:
            return str(host)
    return fallback


def default_host(target: ReleaseTarget) -> str:
    return f"{target.service}.{target.namespace}.svc.cluster.local"


def header_route_name(target: ReleaseTarget) -> str:
    return f"{HEADER_ROUTE_PREFIX}{target.service}"


def desired_http(snapshot_http: list[JsonObject], target: ReleaseTarget, state: RouteState) -> list[JsonObject]:
    """The VirtualService `http` list for `state`, derived from the snapshot."""
    http = [copy.deepcopy(r) for r in snapshot_http if r.get("name") != header_route_name(target)]
    index = release_route_index(http, target.route)
    host = route_host(http, index, default_host(target))
    route = http[index]
    route["route"] = [
        {"destination": {"host": host, "subset": target.stable_subset}, "weight": 100 - state.canary_weight},
        {"destination": {"host": host, "subset": target.canary_subset}, "weight": state.canary_weight},
    ]
    route.pop("mirror", None)
    route.pop("mirrorPercentage", None)
    if state.mirror_percent is not None:
        route["mirror"] = {"host": host, "subset": target.canary_subset}
        route["mirrorPercentage"] = {"value": state.mirror_percent}
    if state.header_match:
        http.insert(
            index,
            {
                "name": header_route_name(target),
                "match": [{"headers": {k: dict(v) for k, v in state.header_match.items()}}],
                "route": [{"destination": {"host": host, "subset": target.canary_subset}, "weight": 100}],
            },
        )
    return http


def weights_of(http: list[JsonObject], route_name: str | None) -> dict[str, int]:
    """subset -> weight of the release route (a lone destination without weight has 100)."""
    if not http:
        return {}
    route = http[release_route_index(http, route_name)].get("route") or []
    weights: dict[str, int] = {}
    for destination in route:
        subset = (destination.get("destination") or {}).get("subset") or ""
        weights[subset] = weights.get(subset, 0) + int(destination.get("weight", 100 if len(route) == 1 else 0))
    return weights


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
