"""Progressive delivery step types: `delivery.canary`, `delivery.blue_green`, `delivery.ab`, `delivery.waves`.

Native step types run as child workflows (`child_workflow`): the step's `with:` is the workflow's input
(`ReleaseInput` for one region, `WavesSpec` for region waves). The runbook that uses them declares the
service as its `target`, so the runbook holds the service's lease; the single-region steps therefore do
not take it again (`lease: false` by default), while `delivery.waves` takes one lease per region.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from pitstop.delivery.models import ReleasePhase
from pitstop.delivery.inputs import ReleaseInput
from pitstop.delivery.spec import DEFAULT_HISTORY_LIMIT, RELEASE_WORKFLOW, WAVES_WORKFLOW, Strategy, WavesSpec
from pitstop.runbook.step_types import StepArgs, StepResult, StepType, register_step_type


def _force_strategy(data: Any, strategy: Strategy) -> Any:
    if isinstance(data, dict) and isinstance(data.get("release"), dict):
        release = dict(data["release"])
        given = release.setdefault("strategy", strategy.value)
        if given != strategy.value:
            raise ValueError(f"release.strategy is {given!r} but this step type runs {strategy.value!r}")
        data = {**data, "release": release}
    return data


class _ReleaseStepArgs(ReleaseInput, StepArgs):  # type: ignore[misc]
    strategy: ClassVar[Strategy]
    lease: bool = Field(False, description="the runbook's target lease already covers the service")
    # continue-as-new: the release's own business, not a runbook argument (and not in the published schema)
    history_limit: SkipJsonSchema[int] = Field(DEFAULT_HISTORY_LIMIT, ge=100, le=40_000)
    carried: SkipJsonSchema[None] = None

    @model_validator(mode="before")
    @classmethod
    def _strategy(cls, data: Any) -> Any:
        return _force_strategy(data, cls.strategy)


class CanaryArgs(_ReleaseStepArgs):
    strategy = Strategy.CANARY


class BlueGreenArgs(_ReleaseStepArgs):
    strategy = Strategy.BLUE_GREEN


class AbArgs(_ReleaseStepArgs):
    strategy = Strategy.AB


class WavesArgs(WavesSpec, StepArgs):  # type: ignore[misc]
    history_limit: SkipJsonSchema[int] = Field(DEFAULT_HISTORY_LIMIT, ge=100, le=40_000)


class ReleaseStepResult(StepResult):
    region: str = ""
    phase: ReleasePhase = ReleasePhase.PENDING
    promoted: bool = False
    rolled_back: bool = False
    reason: str = ""
    analysis_runs: int = 0
    failed_runs: int = 0
    failed_checks: int = 0
    new_version: str = ""


class WavesStepResult(StepResult):
    phase: str = ""
    promoted_regions: list[str] = Field(default_factory=list)
    rolled_back_regions: list[str] = Field(default_factory=list)
    failed_region: str = ""
    reason: str = ""


class _Release(StepType):
    native = True
    mutating = True
    child_workflow: ClassVar[str] = RELEASE_WORKFLOW
    result_model = ReleaseStepResult
    default_timeout_seconds = 24 * 3600.0


@register_step_type
class DeliveryCanary(_Release):
    name = "delivery.canary"
    description = "Canary release through Istio step weights (e.g. 5->10->25->50->100), analysed against Prometheus."
    args_model = CanaryArgs


@register_step_type
class DeliveryBlueGreen(_Release):
    name = "delivery.blue_green"
    description = "Blue-green release: analyse the new version (optionally on mirrored traffic), then switch all traffic."
    args_model = BlueGreenArgs


@register_step_type
class DeliveryAb(_Release):
    name = "delivery.ab"
    description = "A/B release: requests matching headers (vehicle model, fleet cohort) go to the new version first."
    args_model = AbArgs


@register_step_type
class DeliveryWaves(StepType):
    name = "delivery.waves"
    description = "Release region after region; a failure anywhere rolls back the promoted regions in reverse order."
    args_model = WavesArgs
    result_model = WavesStepResult
    native = True
    mutating = True
    child_workflow: ClassVar[str] = WAVES_WORKFLOW
    default_timeout_seconds = 7 * 24 * 3600.0
