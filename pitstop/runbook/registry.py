"""Loads every step type into the registry: the native ones and the step library (`pitstop.steps`).

Importing a module that defines step types registers them; importing this module imports both.
"""

from __future__ import annotations

import pitstop.runbook.native_steps  # noqa: F401  (registers the native step types)
import pitstop.steps  # noqa: F401  (registers the step library)

from .step_types import STEP_TYPES, StepType


def load_step_types() -> dict[str, type[StepType]]:
    """The registry, with every step type registered (by this module's imports)."""
    return STEP_TYPES
