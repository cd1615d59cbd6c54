"""The Chaos Toolkit journal, assembled from durable phase results in the shape `chaos run --journal-path` writes
(chaoslib's `initialize_run_journal` + `end`/`duration`), and its one-line summary for `pitstop history`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .model import ChaosStatus


def assemble_journal(
    *,
    experiment: dict[str, Any],
    started: datetime,
    ended: datetime,
    status: ChaosStatus,
    deviated: bool,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    runs: list[dict[str, Any]],
    rollbacks: list[dict[str, Any]],
    versions: dict[str, str],
) -> dict[str, Any]:
    """`versions`: chaoslib-version, platform and node as the phase child processes reported them."""
    return {
        "chaoslib-version": versions.get("chaoslib_version", ""),
        "platform": versions.get("platform", ""),
        "node": versions.get("node", ""),
        "experiment": experiment,
        "start": started.isoformat(),
        "status": status.value,
        "deviated": deviated,
        "steady_states": {"before": before, "after": after, "during": []},
        "run": runs,
        "rollbacks": rollbacks,
        "end": ended.isoformat(),
        "duration": (ended - started).total_seconds(),
    }


def journal_summary(journal: dict[str, Any], *, score: float | None = None, rollback_failures: int = 0) -> str:
    """One line: status, deviation, counts of runs and rollbacks (failed ones named by count), score."""
    runs = journal.get("run") or []
    rollbacks = journal.get("rollbacks") or []
    failed = sum(1 for r in runs if r.get("status") != "succeeded")
    status = "deviated" if journal.get("deviated") else journal.get("status", "?")
    parts = [
        f"{(journal.get('experiment') or {}).get('title', '?')!r} {status}",
        f"{len(runs)} activit(ies)" + (f" ({failed} failed)" if failed else ""),
        f"{len(rollbacks)} rollback(s)" + (f" ({rollback_failures} FAILED)" if rollback_failures else ""),
    ]
    if score is not None:
        parts.append(f"resilience {score:.2f}")
    return ", ".join(parts)


def is_status(value: str) -> bool:
    return value in {s.value for s in ChaosStatus}
