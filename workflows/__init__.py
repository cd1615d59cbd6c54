"""Temporal workflow code: orchestration only, deterministic. `ALL_WORKFLOWS` is what workers register.

Workflow classes are imported lazily (PEP 562): the workflow sandbox re-imports this package for every run,
so an eager import of every workflow module here would be paid again by each run of each workflow.
To register a workflow, add `"ClassName": ".module"` to `_WORKFLOWS`.
"""

from __future__ import annotations

import importlib
from typing import Any

_WORKFLOWS: dict[str, str] = {
    "RunbookWorkflow": ".runbook",
    "TargetLease": ".lease",
    "ProgressiveRelease": ".delivery",
    "RegionWaves": ".delivery_waves",
    "IncidentWorkflow": ".incident",
    "RemediationBudget": ".remediation_budget",
    "ChaosExperimentWorkflow": ".chaos",
    "RightsizingLoop": ".rightsizing",
    "GitReleaseWatch": ".git_release_watch",
}


def __getattr__(name: str) -> Any:
    # Deliberately lazy (unlike the plain imports elsewhere): Temporal's workflow sandbox re-imports this package
    # for every workflow run, so only the module of the workflow that runs is imported. The wiring stays
    # readable in `_WORKFLOWS` above.
    if name == "ALL_WORKFLOWS":
        return [__getattr__(cls) for cls in _WORKFLOWS]
    if name in _WORKFLOWS:
        return getattr(importlib.import_module(_WORKFLOWS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ALL_WORKFLOWS", *_WORKFLOWS]
