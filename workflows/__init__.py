"""Temporal workflow code: orchestration only, deterministic. `ALL_WORKFLOWS` is what workers register."""

from __future__ import annotations

from .delivery import ProgressiveRelease
from .delivery_waves import RegionWaves
from .incident import IncidentWorkflow, RemediationBudget
from .lease import TargetLease
from .runbook import RunbookWorkflow

ALL_WORKFLOWS: list[type] = [RunbookWorkflow, TargetLease, ProgressiveRelease, RegionWaves, IncidentWorkflow, RemediationBudget]
