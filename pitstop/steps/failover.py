"""Failover steps (models only): the global traffic authority (`traffic.get_weights`, `traffic.set_weights`),
region health with hysteresis (`region.health`) and the survivors' capacity (`failover.capacity_inventory`,
regional and read-only; `failover.capacity_plan`, pure). The decisions are in `pitstop.region_health` and
`pitstop.failover_capacity`, the authority interface in `pitstop.traffic_authority`; the activities in
`activities/traffic_authority.py` and `activities/failover.py`. Used by runbooks/failover-region.yaml and
runbooks/failback-region.yaml (docs/failover.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pitstop.delivery.spec import checked_window
from pitstop.failover_capacity import CapacityPlan, RegionCapacityInventory
from pitstop.kubernetes_names import KubeLabelName
from pitstop.region_health import RegionEvaluation, SignalQueries, SloThresholds
from pitstop.runbook.model import Duration
from pitstop.runbook.step_types import StepArgs, StepResult, StepType, register_step_type

# ---------------------------------------------------------------- traffic authority


class GetWeightsArgs(StepArgs):
    failing: str = Field("", description="a region to leave out of `survivors`")


class WeightsResult(StepResult):
    weights: dict[str, int] = Field(default_factory=dict, description="region -> weight")
    survivors: list[str] = Field(default_factory=list, description="regions with weight > 0, `failing` left out")


class SetWeightsArgs(StepArgs):
    weights: dict[str, int] = Field(default_factory=dict, description="region -> absolute weight (merged)")
    region: str = Field("", description="with `weight`: set this one region's weight")
    weight: int | None = Field(None, ge=0, description="the weight of `region`")

    @model_validator(mode="after")
    def _something(self) -> SetWeightsArgs:
        if bool(self.region) != (self.weight is not None):
            raise ValueError("`region` and `weight` go together")
        if not self.weights and not self.region:
            raise ValueError("give `weights` or `region` + `weight`")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("weights are integers >= 0")
        return self

    def merged(self) -> dict[str, int]:
        return {**self.weights, **({self.region: self.weight} if self.weight is not None else {})}


class SetWeightsResult(StepResult):
    previous: dict[str, int] = Field(default_factory=dict, description="weights just before (for compensation)")
    weights: dict[str, int] = Field(default_factory=dict)


@register_step_type
class TrafficGetWeights(StepType):
    name = "traffic.get_weights"
    description = "Read the per-region weights from the global traffic authority (GSLB)."
    args_model = GetWeightsArgs
    result_model = WeightsResult
    activity = "traffic.get_weights"
    default_timeout_seconds = 30.0


@register_step_type
class TrafficSetWeights(StepType):
    name = "traffic.set_weights"
    description = "Set per-region weights at the global traffic authority (merged, absolute); returns the previous ones."
    args_model = SetWeightsArgs
    result_model = SetWeightsResult
    activity = "traffic.set_weights"
    mutating = True
    default_timeout_seconds = 30.0


# ---------------------------------------------------------------- region health


class RegionHealthArgs(StepArgs):
    regions: list[KubeLabelName] = Field(min_length=1, description="every region must show `expect`")
    expect: Literal["bad", "healthy"] = Field(description="bad: confirm an outage; healthy: confirm SLOs hold")
    required: int = Field(3, ge=1, le=100, description="N evaluations in a row (hysteresis)")
    interval: Duration = Field(15.0, ge=0.5, le=3600, description="between evaluations")
    max_evaluations: int = Field(20, ge=1, le=1000, description="give up (unmet) after this many")
    window: str = Field("1m", description="PromQL range of the rates")
    critical_services: list[KubeLabelName] = Field(default_factory=list, description="Deployments whose availability counts")
    thresholds: SloThresholds = Field(default_factory=SloThresholds)
    queries: SignalQueries = Field(default_factory=SignalQueries)
    fail_unmet: bool = Field(False, description="fail the step (instead of returning met=false) when unmet")

    @field_validator("window")
    @classmethod
    def _range(cls, value: str) -> str:
        return checked_window(value, example="'1m' or '30s'")


class RegionHealthResult(StepResult):
    met: bool = False
    reason: str = ""
    evaluations: int = 0
    first_expected_at: float | None = Field(None, description="unix seconds of the first evaluation of the winning streak")
    first_bad_at: float | None = Field(None, description="unix seconds of the first BAD evaluation seen")
    met_at: float | None = Field(None, description="unix seconds of the evaluation that met the expectation")
    last: list[RegionEvaluation] = Field(default_factory=list, description="the last evaluation of each region")


@register_step_type
class RegionHealth(StepType):
    name = "region.health"
    description = "Evaluate regions' SLO signals from Prometheus until N evaluations in a row show `expect` (hysteresis)."
    args_model = RegionHealthArgs
    result_model = RegionHealthResult
    activity = "region.health"
    default_timeout_seconds = 600.0
    heartbeat_seconds = 30.0


# ---------------------------------------------------------------- capacity


class CapacityInventoryArgs(StepArgs):
    region: KubeLabelName
    namespaces: list[KubeLabelName] = Field(default_factory=list, description="empty = every namespace")
    selector: str = Field("app", max_length=256, description="label selector of the Deployments that serve traffic")


class CapacityInventoryResult(RegionCapacityInventory, StepResult):
    pass


class CapacityPlanArgs(StepArgs):
    inventories: list[RegionCapacityInventory] = Field(description="the survivors' `failover.capacity_inventory` outputs")
    weights: dict[str, int] = Field(description="the authority's weights before the failover")
    failing: KubeLabelName
    headroom: float = Field(0.0, ge=0, le=10, description="spare capacity on top of the moved load (0.2 = 20 %)")
    order: list[str] = Field(default_factory=list, description="`NAMESPACE/NAME` callees first (a `graph.order`'s `order`)")

    @field_validator("order", mode="before")
    @classmethod
    def _refs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [f"{v['namespace']}/{v['workload']}" if isinstance(v, dict) else v for v in value]
        return value


class CapacityPlanResult(CapacityPlan, StepResult):
    pass


@register_step_type
class FailoverCapacityInventory(StepType):
    name = "failover.capacity_inventory"
    description = "A region's Deployments, ResourceQuotas, HPAs and free node allocatable (read-only)."
    args_model = CapacityInventoryArgs
    result_model = CapacityInventoryResult
    activity = "failover.capacity_inventory"
    regional = True
    default_timeout_seconds = 60.0


@register_step_type
class FailoverCapacityPlan(StepType):
    name = "failover.capacity_plan"
    description = "Whether the survivors can carry a failing region's traffic, and the pre-scale plan (callees first)."
    args_model = CapacityPlanArgs
    result_model = CapacityPlanResult
    activity = "failover.capacity_plan"
    default_timeout_seconds = 30.0
