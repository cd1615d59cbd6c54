"""The step library v1: every built-in step type (`uses:` name, `with:` model, result model, activity name).

Importing this package registers all of them in `pitstop.runbook.step_types.STEP_TYPES`. Models only — the
activities that execute the steps live in `activities/` and import their models from here.
"""

from __future__ import annotations

from . import (backup, capacity, chaos, data, delivery, dr, failover, gitops, graph, http, hygiene, istio, kubernetes, notify,
               prometheus)

__all__ = ["backup", "capacity", "chaos", "data", "delivery", "dr", "failover", "gitops", "graph", "http", "hygiene", "istio",
           "kubernetes", "notify", "prometheus"]
