"""Replay the engine's recorded histories (tests/histories/runbook-*.json, lease-*.json) against the current
workflow code: a change that breaks determinism fails here. Re-record with
`python -m tests.replay.record_runbook_histories` only for intentional, `workflow.patched()` changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pitstop.workflows import RunbookWorkflow, TargetLease

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
FILES = sorted([*HISTORIES.glob("runbook-*.json"), *HISTORIES.glob("lease-*.json")])


def test_histories_are_recorded() -> None:
    names = {p.stem for p in FILES}
    assert {"runbook-hello", "runbook-saga-failure", "runbook-abort", "runbook-approval", "lease-target"} <= names
    assert {"runbook-escalation", "runbook-continued-first", "runbook-continued"} <= names


def test_continued_history_is_a_chain() -> None:
    """The first run ends in continue-as-new; the last run starts from the carried state and completes."""
    first = WorkflowHistory.from_json("first", (HISTORIES / "runbook-continued-first.json").read_text())
    last = WorkflowHistory.from_json("last", (HISTORIES / "runbook-continued.json").read_text())
    assert first.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    assert last.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    assert last.events[-1].HasField("workflow_execution_completed_event_attributes")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
async def test_replay(path: Path) -> None:
    # recorded runs use the file's stem as workflow id (the lease's own id never appears in its commands)
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[RunbookWorkflow, TargetLease], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
