"""What a release is: the typed input of `ProgressiveRelease` (one region) and `RegionWaves` (region after region).

All durations are seconds (or strings like `30s`, `5m`), so tests run a 30-minute canary in seconds by
passing small intervals; nothing here reads a clock.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pitstop.analysis import Threshold
from pitstop.kubernetes_names import HeaderMatch, KubeLabelName, KubeLabelNameOrEmpty, KubeObjectName
from pitstop.runbook.model import Duration

RELEASE_WORKFLOW = "ProgressiveRelease"
DEFAULT_HISTORY_LIMIT = 8_000  # events; Temporal warns at 10,240 and terminates at 51,200
WAVES_WORKFLOW = "RegionWaves"

_PROMQL_RANGE = re.compile(r"^\d+(ms|s|m|h|d)$")


def checked_window(value: str, *, example: str) -> str:
    """`value` if it is a PromQL range (`30s`, `5m`, `1h`, `30d`), else ValueError naming `example`."""
    if not _PROMQL_RANGE.match(value):
        raise ValueError(f"window {value!r} is not a PromQL duration like {example}")
    return value


class Strategy(StrEnum):
    CANARY = "canary"  # step weights 5 -> 10 -> 25 -> 50 -> 100, analysis at each step
    BLUE_GREEN = "blue_green"  # analysis on the new version (optionally mirrored traffic), then switch all
    AB = "ab"  # requests matching headers go to the new version; analysis on them; then promote


class NoDataPolicy(StrEnum):
    HOLD = "hold"  # inconclusive: do not advance; the progress deadline eventually rolls back
    FAIL = "fail"  # inconclusive counts as a failed check


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricCheck(_Strict):
    """A custom PromQL check. The query may use `{service}`, `{namespace}`, `{version}`, `{stable_version}`,
    `{region}`, `{region_selector}` (`,region="eu-central"` or empty) and `{window}` placeholders."""

    name: str = Field(min_length=1, max_length=63)
    query: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> MetricCheck:
        self.threshold()
        return self

    def threshold(self) -> Threshold:
        return Threshold(min=self.min, max=self.max)


class AnalysisSpec(_Strict):
    interval: Duration = Field(60.0, gt=0, description="time between analysis runs")
    failure_threshold: int = Field(2, ge=1, le=100, description="failed analysis runs before rolling back")
    iterations: int = Field(1, ge=1, le=1000, description="passing runs needed per step (canary) or in total")
    success_rate_min: float | None = Field(99.0, ge=0, le=100, description="percent of non-5xx; None = no check")
    latency_p95_max_ms: float | None = Field(500.0, gt=0, description="p95 latency bound; None = no check")
    window: str = Field("1m", description="PromQL range of the default checks' rate()")
    checks: list[MetricCheck] = Field(default_factory=list, description="custom PromQL checks")
    no_data: NoDataPolicy = Field(NoDataPolicy.HOLD, description="what an inconclusive run means: hold or fail")
    region_label: str | None = Field(
        "region", description="label scoping metrics to the region (one Prometheus for all regions); None = none"
    )

    @field_validator("window")
    @classmethod
    def _range(cls, value: str) -> str:
        return checked_window(value, example="'1m' or '30s'")

    @model_validator(mode="after")
    def _some_check(self) -> AnalysisSpec:
        if self.success_rate_min is None and self.latency_p95_max_ms is None and not self.checks:
            raise ValueError("analysis needs at least one check (success_rate_min, latency_p95_max_ms or checks)")
        names = [c.name for c in self.checks]
        if len(names) != len(set(names)) or {"request-success-rate", "request-duration-p95"} & set(names):
            raise ValueError(f"check names must be unique and not reuse the default names: {names}")
        return self


class ErrorBudgetGate(_Strict):
    """Refuse to start while the service's SLO error budget is exhausted."""

    slo_percent: float = Field(99.9, gt=0, lt=100, description="availability objective, e.g. 99.9")
    window: str = Field("30d", description="SLO window (PromQL range)")
    min_remaining_percent: float = Field(0.0, ge=0, le=100, description="refuse below this share of budget left")
    query: str | None = Field(
        None, description="custom PromQL for the error ratio over the window (0..1); default from Istio metrics"
    )

    @field_validator("window")
    @classmethod
    def _range(cls, value: str) -> str:
        return checked_window(value, example="'30d'")


ROUTE_DESCRIPTION = (
    "VirtualService HTTP route name; default the service's route: the first route without `match` (all unmatched"
    " traffic goes there), or the last route if every route has one — the same route the istio.* steps change"
)


_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"


class ContainerResources(_Strict):
    """A container's resources as Kubernetes quantities (`250m`, `512Mi`); only the names given are set."""

    requests: dict[Literal["cpu", "memory"], str] = Field(default_factory=dict)
    limits: dict[Literal["cpu", "memory"], str] = Field(default_factory=dict)

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, values: dict[str, str]) -> dict[str, str]:
        bad = {k: v for k, v in values.items() if not re.match(_QUANTITY, v)}
        if bad:
            raise ValueError(f"not Kubernetes quantities: {bad}")
        return values

    def as_json(self) -> dict[str, dict[str, str]]:
        return {key: {str(k): v for k, v in value.items()} for key, value in (("requests", self.requests), ("limits", self.limits)) if value}


class ReleaseTarget(_Strict):
    """The service being released, in one region, and the objects pitstop manipulates."""

    service: KubeObjectName
    namespace: KubeLabelName = "default"
    region: KubeLabelNameOrEmpty = ""
    deployment: KubeObjectName | None = Field(None, description="stable Deployment; default the service name")
    container: KubeLabelName | None = Field(None, description="container to update; default the first")
    virtual_service: KubeObjectName | None = None
    destination_rule: KubeObjectName | None = None
    route: str | None = Field(None, description=ROUTE_DESCRIPTION)
    stable_subset: KubeLabelName = "stable"
    canary_subset: KubeLabelName = "canary"
    version_label: str = "version"
    role_label: str | None = Field("pitstop.dev/role", description="pod label telling stable from canary, if used")

    @property
    def deployment_name(self) -> str:
        return self.deployment or self.service

    @property
    def candidate_name(self) -> str:
        return f"{self.deployment_name}-canary"

    @property
    def virtual_service_name(self) -> str:
        return self.virtual_service or self.service

    @property
    def destination_rule_name(self) -> str:
        return self.destination_rule or self.service

    @property
    def lease_key(self) -> str:
        return f"{self.region}/{self.namespace}/{self.service}"


class ReleaseSpec(_Strict):
    """One release of one service: new image, strategy, analysis, gates and timings."""

    service: KubeObjectName
    namespace: KubeLabelName = "default"
    image: str = Field(min_length=1, max_length=512, pattern=r"^\S+$")
    version: str | None = Field(None, description="value of the version label; default the image tag")
    strategy: Strategy = Strategy.CANARY
    steps: list[int] = Field(default_factory=lambda: [5, 10, 25, 50, 100], description="canary weights, percent")
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    headers: dict[str, HeaderMatch] = Field(default_factory=dict, description="A/B: header -> match")
    mirror: bool = Field(False, description="blue-green: mirror traffic to the new version while analysing")
    mirror_percent: float = Field(100.0, ge=0, le=100)
    progress_deadline: Duration = Field(600.0, gt=0, description="roll back after this long without progress")
    warm_window: Duration = Field(300.0, ge=0, description="old version kept warm after promotion (instant rollback)")
    approval: bool = Field(False, description="wait for a manual promote before promotion")
    approvers: list[str] = Field(default_factory=list, description="who may promote: `group:NAME` (a group of the access policy), `user:NAME` or a user name; empty = anyone the access policy allows")
    error_budget: ErrorBudgetGate | None = None
    replicas: int | None = Field(None, ge=1, description="candidate replicas during analysis; default 1 (canary)")
    resources: dict[KubeLabelName, ContainerResources] = Field(
        default_factory=dict,
        description="container -> requests/limits the candidate gets (a rightsizing release: same image, new "
        "resources); names not given keep the stable Deployment's",
    )
    activity_timeout: Duration = Field(60.0, gt=0, description="per-attempt timeout of the cluster activities")
    deployment: KubeObjectName | None = None
    container: KubeLabelName | None = None
    virtual_service: KubeObjectName | None = None
    destination_rule: KubeObjectName | None = None
    route: str | None = Field(None, description=ROUTE_DESCRIPTION)
    stable_subset: KubeLabelName = "stable"
    canary_subset: KubeLabelName = "canary"
    version_label: str = "version"
    role_label: str | None = "pitstop.dev/role"

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[int]) -> list[int]:
        if not steps:
            raise ValueError("steps: at least one weight")
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError(f"steps must be between 1 and 100 percent, got {steps}")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"steps must increase strictly, got {steps}")
        return steps

    @model_validator(mode="after")
    def _strategy_fields(self) -> ReleaseSpec:
        if self.strategy is Strategy.AB and not self.headers:
            raise ValueError("strategy ab needs `headers` (header -> {exact|prefix|regex})")
        if self.strategy is not Strategy.AB and self.headers:
            raise ValueError("`headers` only applies to strategy ab")
        if self.mirror and self.strategy is not Strategy.BLUE_GREEN:
            raise ValueError("`mirror` only applies to strategy blue_green")
        return self

    @property
    def new_version(self) -> str:
        if self.version:
            return self.version
        tail = self.image.rsplit("/", 1)[-1]
        if "@" in tail:
            return tail.rsplit("@", 1)[1].replace(":", "-")[:63]
        return tail.rsplit(":", 1)[1] if ":" in tail else "latest"

    def target(self, region: str) -> ReleaseTarget:
        return ReleaseTarget(
            service=self.service,
            namespace=self.namespace,
            region=region,
            deployment=self.deployment,
            container=self.container,
            virtual_service=self.virtual_service,
            destination_rule=self.destination_rule,
            route=self.route,
            stable_subset=self.stable_subset,
            canary_subset=self.canary_subset,
            version_label=self.version_label,
            role_label=self.role_label,
        )


class WavesSpec(_Strict):
    """Input of `RegionWaves`: one release, region after region."""

    release: ReleaseSpec
    regions: list[KubeLabelName] = Field(min_length=1, description="release order")
    approval_between_regions: bool = False
    task_queue: str = ""
    history_limit: int = Field(
        DEFAULT_HISTORY_LIMIT, ge=100, le=40_000, description="each region's release: `ReleaseInput.history_limit`"
    )

    @field_validator("regions")
    @classmethod
    def _unique(cls, regions: list[str]) -> list[str]:
        if len(regions) != len(set(regions)):
            raise ValueError(f"regions must be unique, got {regions}")
        return regions


ApprovalDecision = Literal["approve", "reject"]

