"""Prometheus step types: instant query, threshold check (pass/fail/inconclusive), wait for a condition.

Not regional (one Prometheus API per installation); executed by `activities.prometheus`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from pitstop.analysis import Threshold, Verdict
from pitstop.runbook.step_types import StepArgs, StepResult, StepType, register_step_type


class QueryArgs(StepArgs):
    query: str = Field(min_length=1, description="PromQL returning one series or a scalar")


class ThresholdArgs(QueryArgs):
    min: float | None = Field(None, description="lowest acceptable value (inclusive)")
    max: float | None = Field(None, description="highest acceptable value (inclusive)")

    @model_validator(mode="after")
    def _bounds(self) -> ThresholdArgs:
        self.threshold()  # raises with a readable message
        return self

    def threshold(self) -> Threshold:
        return Threshold(min=self.min, max=self.max)


class WaitForConditionArgs(ThresholdArgs):
    timeout_seconds: float = Field(300.0, gt=0, le=3300)
    poll_interval_seconds: float = Field(5.0, gt=0, le=300)
    consecutive: int = Field(1, ge=1, le=100, description="passing polls in a row needed")
    fail_on_timeout: bool = Field(True, description="False returns met=false instead of failing the step")


class QueryResult(StepResult):
    value: float | None = Field(None, description="None = no data")
    no_data: bool = False
    error: str | None = Field(None, description="set when Prometheus could not be asked")


class CheckResult(StepResult):
    verdict: Verdict
    value: float | None = None
    error: str | None = None


class WaitForConditionResult(CheckResult):
    met: bool
    polls: int = 0
    waited_seconds: float = 0.0


@register_step_type
class PrometheusQuery(StepType):
    name = "prometheus.query"
    description = "Instant PromQL query: a number, or no data."
    args_model = QueryArgs
    result_model = QueryResult
    activity = "prometheus.query"
    default_timeout_seconds = 30.0


@register_step_type
class PrometheusCheckThreshold(StepType):
    name = "prometheus.check_threshold"
    description = "Query and compare with min/max: pass, fail, or inconclusive (no data / Prometheus down)."
    args_model = ThresholdArgs
    result_model = CheckResult
    activity = "prometheus.check_threshold"
    default_timeout_seconds = 30.0


@register_step_type
class PrometheusWaitForCondition(StepType):
    name = "prometheus.wait_for_condition"
    description = "Poll a query until its value is within min/max (optionally N times in a row) or time runs out."
    args_model = WaitForConditionArgs
    result_model = WaitForConditionResult
    activity = "prometheus.wait_for_condition"
    default_timeout_seconds = 3600.0
    heartbeat_seconds = 30.0
