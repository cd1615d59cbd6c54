"""Replay recorded rightsizing-loop histories (tests/histories/rightsizing-*.json) against the current workflow code,
so a change that breaks determinism fails here: a loop rolled out, one reverted after OOM kills in its canary, one
refused by the service's lease. Recorded on the sandbox (re-record only for intentional, `workflow.patched()`
changes): `PITSTOP_RECORD_HISTORIES=1 .venv/bin/pytest tests/sandbox/test_capacity_loop.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pitstop.workflows.rightsizing import RightsizingLoop

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
FILES = sorted(HISTORIES.glob("rightsizing-*.json"))
RECORDED = {"rightsizing-rolled-out", "rightsizing-reverted", "rightsizing-refused"}


def load(path: Path) -> WorkflowHistory:
    """Under the recorded id where the loop started a release (its child id derives from it), else the stem."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    children = [e.start_child_workflow_execution_initiated_event_attributes.workflow_id for e in history.events
                if e.HasField("start_child_workflow_execution_initiated_event_attributes")]
    if children:
        return WorkflowHistory.from_json(children[0].rsplit("/", 1)[0], path.read_text())
    return history


def test_rightsizing_histories_are_recorded() -> None:
    assert RECORDED <= {p.stem for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
async def test_replay(path: Path) -> None:
    replayer = Replayer(workflows=[RightsizingLoop], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(load(path))
