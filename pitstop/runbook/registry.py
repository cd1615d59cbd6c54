"""Loads every step type into the registry: the native ones and the step library (`pitstop.steps`)."""

from __future__ import annotations

import importlib

from .step_types import STEP_TYPES, StepType

_LOADED = False


def load_step_types() -> dict[str, type[StepType]]:
    """Import the modules that register step types (idempotent) and return the registry."""
    global _LOADED
    if not _LOADED:
        importlib.import_module("pitstop.runbook.native_steps")
        try:
            importlib.import_module("pitstop.steps")
        except ModuleNotFoundError as exc:  # the step library is optional for the engine itself
            if exc.name != "pitstop.steps":
                raise
        _LOADED = True
    return STEP_TYPES
