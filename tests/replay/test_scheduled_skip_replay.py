"""The recorded scheduled run that found its target leased (tests/histories/runbook-scheduled-skip.json) ends
completed as `skipped` behind the `scheduled-run-skips-busy-target` patch marker; `test_runbook_replay`
replays it with every other runbook history."""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import WorkflowHistory

from workflows.runbook import SCHEDULED_SKIP_PATCH

HISTORY = Path(__file__).resolve().parents[1] / "histories" / "runbook-scheduled-skip.json"


def test_skipped_history_is_a_completed_run_behind_the_patch() -> None:
    history = WorkflowHistory.from_json("runbook-scheduled-skip", HISTORY.read_text())
    markers = [e.marker_recorded_event_attributes for e in history.events if e.HasField("marker_recorded_event_attributes")]
    patch_ids = [json.loads(m.details["patch-data"].payloads[0].data)["id"] for m in markers if "patch-data" in m.details]
    assert patch_ids == [SCHEDULED_SKIP_PATCH]
    completed = history.events[-1].workflow_execution_completed_event_attributes
    outcome = json.loads(completed.result.payloads[0].data)
    assert outcome["status"] == "skipped" and "lease/eu-central/shop/replay-scheduled is held by run" in outcome["error"]
