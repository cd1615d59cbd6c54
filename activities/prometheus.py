"""Prometheus activities (`prometheus.*` step types) over a `MetricsProvider` (`activities.metrics`).

Async activities (httpx): they run on the worker's event loop. "No data" and an unreachable Prometheus are
values (an inconclusive verdict), never crashes and never a pass; only a query Prometheus rejects is a
(non-retryable) error. The verdict itself is `pitstop.analysis.evaluate`.
"""

from __future__ import annotations

import asyncio
import time

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.analysis import Measurement, Verdict, evaluate, explain
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.prometheus import (
    CheckResult,
    QueryArgs,
    QueryResult,
    ThresholdArgs,
    WaitForConditionArgs,
    WaitForConditionResult,
)

from .clients import ActivityClients
from .metrics import MetricsProvider, MetricsQueryError, MetricsUnavailable


async def measure(provider: MetricsProvider, query: str) -> Measurement:
    """One reading; an unavailable backend becomes a measurement with `error`, a bad query a domain error."""
    try:
        return Measurement(value=await provider.query(query))
    except MetricsUnavailable as exc:
        return Measurement(error=str(exc))
    except MetricsQueryError as exc:
        raise ApplicationError(str(exc), type="InvalidQuery", non_retryable=True) from None


class PrometheusActivities:
    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    @property
    def _provider(self) -> MetricsProvider:
        return self._clients.metrics_provider()

    @activity.defn(name="prometheus.query")
    async def query(self, invocation: StepInvocation[QueryArgs]) -> QueryResult:
        m = await measure(self._provider, invocation.args.query)
        if m.error is not None:
            return QueryResult(error=m.error, no_data=True, summary=f"no value: {m.error}")
        if not m.has_value:
            return QueryResult(no_data=True, summary="no data")
        return QueryResult(value=m.value, summary=f"value {m.value:g}")

    @activity.defn(name="prometheus.check_threshold")
    async def check_threshold(self, invocation: StepInvocation[ThresholdArgs]) -> CheckResult:
        args = invocation.args
        threshold = args.threshold()
        m = await measure(self._provider, args.query)
        verdict = evaluate(m, threshold)
        return CheckResult(
            verdict=verdict, value=m.value if m.has_value else None, error=m.error, summary=explain(m, threshold, verdict)
        )

    @activity.defn(name="prometheus.wait_for_condition")
    async def wait_for_condition(self, invocation: StepInvocation[WaitForConditionArgs]) -> WaitForConditionResult:
        """Poll until `consecutive` passing readings in a row, heartbeating every poll; deadline from args."""
        args = invocation.args
        threshold = args.threshold()
        started = time.monotonic()
        deadline = started + args.timeout_seconds
        polls = streak = 0
        while True:
            m = await measure(self._provider, args.query)
            verdict = evaluate(m, threshold)
            polls += 1
            streak = streak + 1 if verdict is Verdict.PASS else 0
            reason = explain(m, threshold, verdict)
            activity.heartbeat({"polls": polls, "streak": streak, "last": reason})
            result = WaitForConditionResult(
                met=streak >= args.consecutive, verdict=verdict, value=m.value if m.has_value else None, error=m.error,
                polls=polls, waited_seconds=round(time.monotonic() - started, 3),
            )
            if result.met:
                result.summary = f"condition met after {polls} polls: {reason}"
                return result
            if time.monotonic() + args.poll_interval_seconds > deadline:
                message = f"condition on {args.query!r} not met within {args.timeout_seconds:g}s ({polls} polls); last: {reason}"
                if args.fail_on_timeout:
                    raise ApplicationError(message, type="ConditionTimeout", non_retryable=True)
                result.summary = message
                return result
            await asyncio.sleep(args.poll_interval_seconds)
