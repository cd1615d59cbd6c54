"""The recorded scheduled run that found its target leased (tests/histories/runbook-scheduled-skip.json) ends
completed as `skipped` behind the `scheduled-run-skips-busy-target` patch marker; the one whose error budget could
not be measured (runbook-scheduled-budget-skip.json) also behind `scheduled-run-checks-error-budget`, before any
step or lease; `test_runbook_replay` replays both with every other runbook history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory

from pitstop.workflows.runbook import SCHEDULED_SKIP_PATCH
from pitstop.workflows.runbook_lifecycle import ERROR_BUDGET_PATCH

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


def patches_and_outcome(name: str) -> tuple[list[str], dict[str, Any], list[str]]:
    history = WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())
    markers = [e.marker_recorded_event_attributes for e in history.events if e.HasField("marker_recorded_event_attributes")]
    patch_ids = [json.loads(m.details["patch-data"].payloads[0].data)["id"] for m in markers if "patch-data" in m.details]
    completed = history.events[-1].workflow_execution_completed_event_attributes
    activities = [e.activity_task_scheduled_event_attributes.activity_type.name
                  for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    return patch_ids, json.loads(completed.result.payloads[0].data), activities


def test_skipped_history_is_a_completed_run_behind_the_patch() -> None:
    patch_ids, outcome, _ = patches_and_outcome("runbook-scheduled-skip")
    assert patch_ids == [SCHEDULED_SKIP_PATCH]
    assert outcome["status"] == "skipped" and "lease/eu-central/shop/replay-scheduled is held by run" in outcome["error"]


def test_budget_skipped_history_measured_before_any_step_or_lease() -> None:
    patch_ids, outcome, activities = patches_and_outcome("runbook-scheduled-budget-skip")
    assert patch_ids == [ERROR_BUDGET_PATCH, SCHEDULED_SKIP_PATCH]
    assert activities == ["runbook.load", "delivery.measure"]
    assert outcome["status"] == "skipped" and set(outcome["steps"].values()) == {"pending"}
    assert outcome["error"].startswith("shop/replay-budget: error budget unknown: metrics unavailable"), outcome["error"]
