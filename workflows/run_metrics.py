"""pitstop's own metrics recorded by workflow code: runbook runs started/finished, step durations, lease waits.

Through Temporal's workflow metric meter (`workflow.metric_meter()`): it records nothing while a workflow
replays, so a run counts once however often its history is replayed, and it adds no command to the history
(no patch needed). The worker exports them with the SDK's own metrics on its Prometheus endpoint
(`workers/metrics.py`: names, buckets; docs/observability.md). Every series also carries the meter's
`namespace`, `task_queue` and `workflow_type` labels. Durations are workflow time (`workflow.now()`).
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

RUNS_STARTED = "pitstop_runbook_runs_started_total"
RUNS_FINISHED = "pitstop_runbook_runs_finished_total"
STEP_DURATION = "pitstop_step_duration_seconds"
LEASE_WAIT = "pitstop_lease_wait_seconds"


def run_started(*, runbook: str, trigger: str) -> None:
    workflow.metric_meter().create_counter(RUNS_STARTED, "runbook runs started").add(
        1, {"runbook": runbook, "trigger": trigger})


def run_finished(*, runbook: str, trigger: str, outcome: str) -> None:
    """`outcome`: the run's final phase (succeeded, failed, aborted, skipped)."""
    workflow.metric_meter().create_counter(RUNS_FINISHED, "runbook runs finished, by outcome").add(
        1, {"runbook": runbook, "trigger": trigger, "outcome": outcome})


def step_finished(*, runbook: str, step_type: str, state: str, started_at: datetime | None) -> None:
    """One step's duration from its start to now, by step type and final state."""
    if started_at is None:
        return
    seconds = max((workflow.now() - started_at).total_seconds(), 0.0)
    workflow.metric_meter().create_histogram_float(STEP_DURATION, "runbook step duration", "s").record(
        seconds, {"runbook": runbook, "step_type": step_type, "state": state})


def lease_waited(*, since: datetime, outcome: str) -> None:
    """How long a holder waited for a target's lease, by how the wait ended (granted, refused, ...)."""
    seconds = max((workflow.now() - since).total_seconds(), 0.0)
    workflow.metric_meter().create_histogram_float(LEASE_WAIT, "time waiting for a target's lease", "s").record(
        seconds, {"outcome": outcome})
