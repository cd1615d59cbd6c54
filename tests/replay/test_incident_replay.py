"""Replay recorded Incident histories (tests/histories/incident-*.json) against the current workflow code,
so a change that breaks determinism fails here. Re-record (intentional, `workflow.patched()` changes only):
`PITSTOP_RECORD_HISTORIES=1 .venv/bin/pytest tests/integration/test_webhook.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pitstop.workflows.incident import IncidentWorkflow
from pitstop.workflows.remediation_budget import RemediationBudget

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
FILES = sorted(HISTORIES.glob("incident-*.json"))


def test_incident_histories_are_recorded() -> None:
    names = {p.stem for p in FILES}
    assert {"incident-resolved-before-action", "incident-lease-wait-recovered", "incident-circuit-open"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[IncidentWorkflow, RemediationBudget], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
