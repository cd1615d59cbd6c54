"""Replay recorded chaos run histories (tests/histories/chaos-*.json) against the current workflow code, so a change
that breaks determinism fails here. Re-record (intentional, `workflow.patched()` changes only):
`PITSTOP_RECORD_HISTORIES=1 .venv/bin/pytest tests/integration/test_chaos_experiments.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pitstop.workflows.chaos import ChaosExperimentWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
FILES = sorted(HISTORIES.glob("chaos-*.json"))


def test_chaos_histories_are_recorded() -> None:
    assert {"chaos-completed", "chaos-aborted", "chaos-rollback-failed", "chaos-invalid", "chaos-skipped"} <= {p.stem for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[ChaosExperimentWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
