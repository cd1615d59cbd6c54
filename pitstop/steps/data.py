"""Data-layer step types (sandbox implementation of the failover's data hook, `pitstop.data_layer`):
`data.switch_primary` switches one region's copy of the database endpoint record. Regional, mutating, compensable
(switch back to `previous_primary`). Executed by `activities.data_layer`.
"""

from __future__ import annotations

from pydantic import Field

from pitstop.runbook.step_types import StepResult, StepType, register_step_type

from .common import KubeLabelName, KubeObjectName, RegionalArgs


class SwitchPrimaryArgs(RegionalArgs):
    namespace: KubeLabelName = Field(description="namespace of the endpoint record (ConfigMap)")
    name: KubeObjectName = Field("db-endpoint", description="the endpoint record (ConfigMap)")
    primary: KubeLabelName = Field(description="the region that becomes the primary")


class SwitchPrimaryResult(StepResult):
    previous_primary: str = Field("", description="the primary before the switch (what the compensation restores)")
    primary: str = ""
    rpo_seconds: float | None = Field(None, description="writes the new primary may lack; None = unknown or none")
    switched_at: str = ""


@register_step_type
class DataSwitchPrimary(StepType):
    name = "data.switch_primary"
    description = ("Switch a region's copy of the database endpoint record (ConfigMap `primary`) to another region, "
                   "reporting the recovery point (RPO) from the new primary's last replication time.")
    args_model = SwitchPrimaryArgs
    result_model = SwitchPrimaryResult
    activity = "data.switch_primary"
    regional = True
    mutating = True
    default_timeout_seconds = 30.0
