"""Construction of the real clients activities use (Kubernetes per region, HTTP). Only workers/ builds them."""

from __future__ import annotations

from typing import Any

from pitstop.config import Settings


def build_activity_clients(settings: Settings) -> Any:
    return settings
