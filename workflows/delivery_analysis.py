"""The analysis loop of a release: wait one interval, measure every check, record, decide.

Owned by `ProgressiveRelease`; deterministic (timers, one activity per run, pure decisions). Every check
of every run is recorded (query, value, threshold, verdict, explanation) and exposed by the workflow's
`measurements` query (the latest `MAX_RECORDS`; older ones are counted in `status.measurements_dropped`);
the latest run's records appear in `status`. `carry()` / `restore()` hand the loop to the next run of a
continue-as-new chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pitstop.analysis import Verdict, evaluate, explain
    from pitstop.delivery.carried import MAX_CARRIED_RECORDS, CarriedAnalysis
    from pitstop.delivery.decisions import AnalysisPolicy, AnalysisState, Decision, next_action
    from pitstop.delivery.models import MeasureInput, MeasurementRecord, MeasureResult, ReleaseStatus
    from pitstop.delivery.promql import QueryScope, analysis_queries
    from pitstop.delivery.spec import ReleaseSpec, Strategy

from .activity_policies import ACTIVITY_TIMEOUT, MEASURE_RETRY

MAX_RECORDS = 1000
NO_DEADLINE = 10.0**12


class AnalysisLoop:
    def __init__(self, *, spec: ReleaseSpec, region: str, policy: AnalysisPolicy, status: ReleaseStatus) -> None:
        self.spec = spec
        self.region = region
        self.policy = policy
        self.status = status
        self.state = AnalysisState()
        self.records: list[MeasurementRecord] = []
        self.last: list[MeasurementRecord] = []
        self.last_verdict: Verdict | None = None
        self.total_runs = 0
        self.total_failed_runs = 0
        self.failed_checks = 0
        self.dropped_records = 0

    def start(self, *, now: float, keep_counts: bool = True) -> None:
        """A fresh decision state (after promotion: only a failure threshold can roll back, no deadline)."""
        self.state = AnalysisState(last_progress_at=now)
        if not keep_counts:
            self.policy = self.policy.model_copy(
                update={"strategy": Strategy.CANARY, "steps": [100], "progress_deadline_seconds": NO_DEADLINE}
            )

    async def run_once(
        self, *, stable_version: str, weight: int, stop: Callable[[], bool], deadline: float | None = None
    ) -> Decision | None:
        """Wait one interval (None if `stop()` turns true or `deadline` comes first), then measure and decide."""
        interval = self.spec.analysis.interval
        if deadline is not None:
            interval = min(interval, deadline - workflow.now().timestamp())
            if interval <= 0:
                return None
        try:
            await workflow.wait_condition(stop, timeout=timedelta(seconds=interval))
            return None
        except asyncio.TimeoutError:
            pass
        if deadline is not None and workflow.now().timestamp() >= deadline and interval < self.spec.analysis.interval:
            return None
        scope = QueryScope(service=self.spec.service, namespace=self.spec.namespace, version=self.spec.new_version,
                           stable_version=stable_version, region=self.region)
        checks = analysis_queries(self.spec.analysis, scope)
        result = await workflow.execute_activity(
            "delivery.measure", MeasureInput(checks=checks), result_type=MeasureResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=MEASURE_RETRY,
            summary=f"{self.region}: analysis at {weight}%",
        )
        now = workflow.now()
        run = self.total_runs + 1
        records: list[MeasurementRecord] = []
        for check, measurement in zip(checks, result.measurements, strict=True):
            verdict = evaluate(measurement, check.threshold)
            records.append(MeasurementRecord(
                run=run, at=now.isoformat(), region=self.region, weight=weight, check=check.name, query=check.query,
                value=measurement.value, error=measurement.error, threshold=check.threshold.describe(),
                verdict=verdict, explanation=explain(measurement, check.threshold, verdict),
            ))
        decision = next_action(self.state, [r.verdict for r in records], self.policy, now=now.timestamp())
        self.state = decision.state
        self.total_runs = run
        self.failed_checks += sum(1 for r in records if r.verdict is Verdict.FAIL)
        if decision.verdict is Verdict.FAIL:
            self.total_failed_runs += 1
        self.last = records
        self.last_verdict = decision.verdict
        self.records.extend(records)
        self._keep_latest(MAX_RECORDS)
        self.fill(self.status)
        return decision

    def _keep_latest(self, limit: int) -> None:
        excess = len(self.records) - limit
        if excess > 0:
            del self.records[:excess]
            self.dropped_records += excess

    def carry(self) -> CarriedAnalysis:
        """The loop's state for the next run (the latest `MAX_CARRIED_RECORDS` records)."""
        self._keep_latest(MAX_CARRIED_RECORDS)
        return CarriedAnalysis(
            policy=self.policy, state=self.state, records=list(self.records), dropped_records=self.dropped_records,
            last=list(self.last), last_verdict=self.last_verdict, total_runs=self.total_runs,
            total_failed_runs=self.total_failed_runs, failed_checks=self.failed_checks,
        )

    def restore(self, carried: CarriedAnalysis) -> None:
        """Take over the loop of the previous run of the chain (no fresh `start`: counts and step carry on)."""
        self.policy, self.state = carried.policy, carried.state
        self.records, self.dropped_records = list(carried.records), carried.dropped_records
        self.last, self.last_verdict = list(carried.last), carried.last_verdict
        self.total_runs, self.total_failed_runs = carried.total_runs, carried.total_failed_runs
        self.failed_checks = carried.failed_checks
        self.fill(self.status)

    def fill(self, status: ReleaseStatus) -> None:
        status.measurements_dropped = self.dropped_records
        status.analysis_runs = self.total_runs
        status.failed_runs = self.state.failed_runs
        status.step_index = self.state.step_index
        status.last_verdict = self.last_verdict
        status.last_verdicts = list(self.last)
