"""Temporal workflow code: orchestration only, deterministic. `ALL_WORKFLOWS` is what workers register."""

from __future__ import annotations

from .lease import TargetLease
from .runbook import RunbookWorkflow

ALL_WORKFLOWS: list[type] = [RunbookWorkflow, TargetLease]
