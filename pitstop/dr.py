"""DR drill records: what one drill measured (pure). A drill fails a region over on purpose, waits until the survivors'
SLOs hold, fails back, and records the recovery time (RTO: drill start -> survivors verified), the recovery point of
the data hook (RPO: the largest of the survivors' switches) and how long failback took. `pitstop dr report` lists the
records of past drills (the `record` outputs of completed `dr-drill` runs) as a trend per region.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, Field


class DrillRecord(BaseModel):
    region: str
    outcome: str = Field(description="recovered | skipped")
    reason: str = ""
    started_at: str = ""
    rto_seconds: float | None = None
    rpo_seconds: float | None = Field(None, description="largest RPO the data hook reported; None = unknown or no hook")
    failback_seconds: float | None = None


def _seconds(start: str, end: str) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 1)


def drill_record(*, region: str, started_at: str, restored_at: str, finished_at: str,
                 rpo_values: Iterable[float | None], skipped_reason: str = "") -> DrillRecord:
    if skipped_reason:
        return DrillRecord(region=region, outcome="skipped", reason=skipped_reason, started_at=started_at)
    known = [value for value in rpo_values if value is not None]
    return DrillRecord(region=region, outcome="recovered", started_at=started_at,
                       rto_seconds=_seconds(started_at, restored_at), rpo_seconds=max(known) if known else None,
                       failback_seconds=_seconds(restored_at, finished_at))


def report_lines(records: Iterable[DrillRecord]) -> list[str]:
    """One line per drill, oldest first, grouped by region (the trend)."""
    lines = [f"{'region':<14}{'started':<27}{'outcome':<11}{'RTO s':>8}{'RPO s':>8}{'failback s':>12}  reason"]
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"
    for record in sorted(records, key=lambda r: (r.region, r.started_at)):
        lines.append(f"{record.region:<14}{record.started_at[:25]:<27}{record.outcome:<11}{cell(record.rto_seconds):>8}"
                     f"{cell(record.rpo_seconds):>8}{cell(record.failback_seconds):>12}  {record.reason}")
    return lines
