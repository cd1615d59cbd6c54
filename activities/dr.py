"""DR drill activities without a client: `dr.mark` (the clock) and `dr.record` (the figures, pure `pitstop.dr`).
The lease check `dr.region_leases` needs Temporal and lives with the lease activities (`activities.leases`)."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from pitstop.dr import drill_record
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.dr import Mark, MarkArgs, RecordArgs, RecordResult


class DrActivities:
    @activity.defn(name="dr.mark")
    async def mark(self, invocation: StepInvocation[MarkArgs]) -> Mark:
        at = datetime.now(UTC).isoformat()
        return Mark(at=at, summary=f"{invocation.args.label or 'mark'} at {at}")

    @activity.defn(name="dr.record")
    async def record(self, invocation: StepInvocation[RecordArgs]) -> RecordResult:
        args = invocation.args
        record = drill_record(region=args.region, started_at=args.started_at, restored_at=args.restored_at,
                              finished_at=args.finished_at, rpo_values=args.rpo_values, skipped_reason=args.skipped_reason)
        summary = (f"drill of {args.region} skipped: {record.reason}" if record.outcome == "skipped" else
                   f"drill of {args.region}: RTO {record.rto_seconds}s, RPO {record.rpo_seconds}s, failback {record.failback_seconds}s")
        return RecordResult(record=record, summary=summary)
