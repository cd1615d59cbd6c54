"""Replay recorded histories of releases from git (tests/histories/gitrelease-*.json) against the current code: the
`GitReleaseWatch` watcher (polls, pause, two releases started, terminated at the test's end) and the two releases it
started (one promoted, one rolled back with its revert in git). Recorded on the sandbox under a real Flux (re-record
only for intentional, `workflow.patched()` changes):
`PITSTOP_RECORD_HISTORIES=1 .venv/bin/pytest tests/sandbox/test_gitops_release_from_git.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pitstop.workflows.delivery import ProgressiveRelease
from pitstop.workflows.git_release_watch import GitReleaseWatch

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
FILES = sorted(HISTORIES.glob("gitrelease-*.json"))
RECORDED = {"gitrelease-watch", "gitrelease-promoted", "gitrelease-rolled-back"}


def test_git_release_histories_are_recorded() -> None:
    assert RECORDED <= {p.stem for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
async def test_replay(path: Path) -> None:
    replayer = Replayer(workflows=[GitReleaseWatch, ProgressiveRelease], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))
