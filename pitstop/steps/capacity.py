"""The capacity steps: `capacity.collect` (one per region, read-only) reads a region's usage history from
Prometheus and its Deployments, HPAs, nodes and quotas, and recommends requests per container by the team's
strategy; `capacity.report` combines regions into node plans, forecasts' flags, chargeback and savings, as
JSON, Markdown and a self-contained HTML page. Models only: the logic is pure, in `pitstop.capacity`; the
activities are in `activities.capacity`.
"""

from __future__ import annotations

from pydantic import Field

from pitstop.capacity.collection import RegionCapacity
from pitstop.capacity.forecast import ForecastSettings
from pitstop.capacity.policy import CapacityPolicy
from pitstop.capacity.report import CapacityReport
from pitstop.capacity.strategies import Strategy
from pitstop.hygiene.inventory import SYSTEM_NAMESPACES
from pitstop.runbook.step_types import StepArgs, StepResult, StepType, register_step_type

from .common import RegionalArgs


class CollectArgs(RegionalArgs):
    strategy: Strategy = Field(Strategy.SIMPLE, description="simple (KRR's defaults) or vpa (the VPA recommender's)")
    history_hours: float = Field(336.0, gt=0, le=24 * 90, description="usage history read (KRR's default 336 h)")
    step_seconds: int = Field(300, ge=15, le=3600, description="resolution of the usage samples")
    rate_window_seconds: int = Field(0, ge=0, description="CPU rate window; 0 = twice the step")
    points_per_query: int = Field(1440, ge=60, le=11000, description="range queries are split into this many steps")
    region_label: str = Field("region", pattern=r"^([a-zA-Z_][a-zA-Z0-9_]*)?$",
                              description="Prometheus label naming the region on the series; empty: none")
    namespaces: list[str] = Field(default_factory=list, description="only these namespaces (default every one)")
    exclude_namespaces: list[str] = Field(default_factory=lambda: list(SYSTEM_NAMESPACES))
    policy: CapacityPolicy = Field(default_factory=CapacityPolicy, description="per-team strategy and settings")
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    prices: dict[str, float] = Field(default_factory=dict, description="hourly USD per instance type (wins over labels)")
    price_label: str = Field("pitstop.dev/hourly-price-usd", description="node label holding the hourly price")
    end_unix: float | None = Field(None, description="end of the window (default now)")


class CollectResult(RegionCapacity, StepResult):
    pass


class ReportArgs(StepArgs):
    regions: list[RegionCapacity] = Field(min_length=1, description="outputs of `capacity.collect`, one per region")
    inline_html_max_bytes: int = Field(400_000, ge=0, description="the HTML goes into the output up to this size")


class ReportResult(StepResult):
    report: CapacityReport
    html: str = Field("", description="the self-contained HTML report, when it fits `inline_html_max_bytes`")
    html_path: str = Field("", description="where the worker wrote the HTML report")
    html_bytes: int = 0


@register_step_type
class CollectStep(StepType):
    name = "capacity.collect"
    description = "A region's usage history, nodes and quotas, and a recommendation per container (read-only)."
    args_model = CollectArgs
    result_model = CollectResult
    activity = "capacity.collect"
    regional = True
    default_timeout_seconds = 1800.0
    heartbeat_seconds = 120.0


@register_step_type
class ReportStep(StepType):
    name = "capacity.report"
    description = "Node plans, forecast flags, chargeback and savings over regions: JSON, Markdown and HTML."
    args_model = ReportArgs
    result_model = ReportResult
    activity = "capacity.report"
    default_timeout_seconds = 300.0
