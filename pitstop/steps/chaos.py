"""Chaos step type `chaos.experiment`: a Chaos Toolkit experiment as a child `ChaosExperiment` run (docs/chaos.md).

The step's `with:` is the run's input (`ChaosRequest`): the experiment inline or as `experiment_file` under the
worker's `chaos.experiments_dir`, its targets (lease, error budget, blast radius), the dead-man switch and the
rollback strategy. The step's output is the run's verdict without the journal (`pitstop chaos journal <run>/<step>`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from pitstop.chaos.model import CHAOS_WORKFLOW, ChaosRequest, ChaosStatus
from pitstop.runbook.step_types import StepArgs, StepResult, StepType, register_step_type


class ChaosExperimentArgs(ChaosRequest, StepArgs):  # type: ignore[misc]
    @model_validator(mode="after")
    def _one_experiment(self) -> ChaosExperimentArgs:
        if (self.experiment is None) == (self.experiment_file is None):
            raise ValueError("give exactly one of `experiment` (inline) and `experiment_file`")
        if not self.run_region():
            raise ValueError("give `targets` or `region`: the experiment's providers act on one region's cluster")
        return self


class ChaosExperimentResult(StepResult):
    title: str = ""
    status: ChaosStatus = ChaosStatus.COMPLETED
    deviated: bool = False
    reason: str = ""
    skipped: bool = False
    rollbacks_played: bool = False
    rollback_failures: list[str] = Field(default_factory=list)
    failed_activities: list[str] = Field(default_factory=list)
    score: float | None = None


@register_step_type
class ChaosExperiment(StepType):
    name = "chaos.experiment"
    description = ("Run a Chaos Toolkit experiment unchanged (lease, error budget, blast radius, dead-man switch; "
                   "rollbacks guaranteed) as a child run.")
    args_model = ChaosExperimentArgs
    result_model = ChaosExperimentResult
    native = True
    mutating = True
    child_workflow: ClassVar[str] = CHAOS_WORKFLOW
    default_timeout_seconds = 3 * 3600.0
