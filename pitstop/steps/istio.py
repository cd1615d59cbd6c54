"""Traffic step types (Istio VirtualServices, or nothing for services without a mesh): routes, weights,
header-match (A/B) routes and mirroring. Regional; executed by `activities.istio` through a `TrafficRouter`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from pitstop.kubernetes_names import HeaderMatch
from pitstop.runbook.step_types import StepResult, StepType, register_step_type

from .common import KubeLabelName, NamespacedArgs

TrafficProvider = Literal["istio", "none"]


class RouteArgs(NamespacedArgs):
    """`name` is the VirtualService (usually the service's name)."""

    route: str | None = Field(
        None,
        description="name of the HTTP route in the VirtualService; default the service's route: the first route without"
        " `match` (all unmatched traffic goes there), or the last route if every route has one",
    )
    provider: TrafficProvider | None = Field(None, description="traffic router; default from configuration")


class SetWeightsArgs(RouteArgs):
    weights: dict[KubeLabelName, int] = Field(description="subset -> percent, e.g. {stable: 90, canary: 10}")
    host: str | None = Field(None, description="destination host; default the route's current host")

    @field_validator("weights")
    @classmethod
    def _sum_100(cls, weights: dict[str, int]) -> dict[str, int]:
        if not weights:
            raise ValueError("weights: at least one subset")
        bad = {k: v for k, v in weights.items() if not 0 <= v <= 100}
        if bad:
            raise ValueError(f"weights must be between 0 and 100, got {bad}")
        if sum(weights.values()) != 100:
            raise ValueError(f"weights must sum to 100, got {sum(weights.values())} ({weights})")
        return weights


class SetHeaderRouteArgs(RouteArgs):
    subset: KubeLabelName = Field(description="subset that requests matching the headers go to")
    headers: dict[str, HeaderMatch] = Field(min_length=1, description="header name -> match")
    route_name: str = Field("pitstop-header-route", min_length=1, description="name of the match route to manage")
    enabled: bool = Field(True, description="False removes the header route")
    host: str | None = None


class SetMirrorArgs(RouteArgs):
    subset: KubeLabelName | None = Field(None, description="subset receiving mirrored traffic; None removes mirroring")
    percent: float = Field(100.0, ge=0, le=100)
    host: str | None = None


class Destination(BaseModel):
    host: str
    subset: str | None = None
    weight: int | None = None


class HttpRouteSummary(BaseModel):
    name: str = ""
    has_match: bool = False
    destinations: list[Destination] = Field(default_factory=list)
    mirror: Destination | None = None
    mirror_percent: float | None = None


class RoutesResult(StepResult):
    provider: TrafficProvider
    weights: dict[str, int] = Field(default_factory=dict, description="subset -> weight of the service's route")
    routes: list[HttpRouteSummary] = Field(default_factory=list)


class SetWeightsResult(StepResult):
    provider: TrafficProvider
    previous: dict[str, int] = Field(default_factory=dict)
    weights: dict[str, int] = Field(default_factory=dict)
    conflicts: int = Field(0, description="409 conflicts resolved by re-reading")


class RouteChangeResult(StepResult):
    provider: TrafficProvider
    routes: list[HttpRouteSummary] = Field(default_factory=list, description="routes after the change")
    conflicts: int = 0


class _Traffic(StepType):
    regional = True
    default_timeout_seconds = 60.0


@register_step_type
class IstioGetRoutes(_Traffic):
    name = "istio.get_routes"
    description = "Read a VirtualService's HTTP routes and the weight per subset."
    args_model = RouteArgs
    result_model = RoutesResult
    activity = "istio.get_routes"


@register_step_type
class IstioSetWeights(_Traffic):
    name = "istio.set_weights"
    description = "Set absolute route weights per subset (e.g. stable 90 / canary 10; must sum to 100)."
    args_model = SetWeightsArgs
    result_model = SetWeightsResult
    activity = "istio.set_weights"
    mutating = True


@register_step_type
class IstioSetHeaderRoute(_Traffic):
    name = "istio.set_header_route"
    description = "Add, update or remove a header-match route to one subset (A/B testing)."
    args_model = SetHeaderRouteArgs
    result_model = RouteChangeResult
    activity = "istio.set_header_route"
    mutating = True


@register_step_type
class IstioSetMirror(_Traffic):
    name = "istio.set_mirror"
    description = "Mirror a percentage of the route's traffic to a subset, or stop mirroring."
    args_model = SetMirrorArgs
    result_model = RouteChangeResult
    activity = "istio.set_mirror"
    mutating = True
