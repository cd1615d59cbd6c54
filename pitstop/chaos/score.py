"""The resilience score as Krkn defines it: every SLO check over the chaos window has a severity (critical weighs 3,
warning 1); score = weight of the checks that passed / weight of all checks. None when there is no check.

pitstop's checks: each steady-state probe after the method (critical), and each dead-man switch check at each of its
measurements (success rate critical, p95 latency warning); an inconclusive measurement ("no data") does not pass."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .model import SloCheckResult

WEIGHTS = {"critical": 3, "warning": 1}


def resilience_score(checks: Iterable[SloCheckResult]) -> float | None:
    total = passed = 0
    for check in checks:
        weight = WEIGHTS[check.severity]
        total += weight
        passed += weight if check.passed else 0
    return None if total == 0 else passed / total


def hypothesis_checks(state: dict[str, Any] | None) -> list[SloCheckResult]:
    """The steady-state probes after the method as critical checks (tolerance met = passed)."""
    if state is None:
        return []
    return [
        SloCheckResult(
            name=f"steady-state: {(p.get('activity') or {}).get('name', '?')}", severity="critical",
            passed=bool(p.get("tolerance_met")), detail=str(p.get("status", "")),
        )
        for p in state.get("probes") or []
    ]


def score_trend(scores: Sequence[tuple[str, float | None]]) -> str:
    """`0.75 -> 1.00 -> 0.50` oldest first ('-' for a run without a score)."""
    return " -> ".join("-" if s is None else f"{s:.2f}" for _, s in scores)
