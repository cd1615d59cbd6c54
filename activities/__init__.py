"""Activities: every side effect pitstop performs, one class per external system holding injected clients.

`build_activities(clients)` returns what the worker registers: activities for the main task queue and,
per region, activities that touch that region's cluster (served on task queue `pitstop-<region>`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ActivitySet:
    shared: list[Callable[..., Any]] = field(default_factory=list)
    regional: dict[str, list[Callable[..., Any]]] = field(default_factory=dict)


def build_activities(clients: Any) -> ActivitySet:
    return ActivitySet()
