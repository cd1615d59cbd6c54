"""Replay recorded release histories (tests/histories/release-*.json) against the current workflow code.

- `release-v1-*`: recorded by the code before releases continued-as-new (a canary with a warm window, and
  region waves with both regions' children). They must replay, also when their history is longer than the
  history limit: the continue-as-new is guarded by `workflow.patched`, so an old run never switches midway.
- `release-continued-*`: a canary chain and a waves region chain recorded with `history_limit=100`: each run
  ends in continue-as-new except the last, and each continued run resumes from `ReleaseInput.carried`.

Recorded on the sandbox (real kwok clusters, Prometheus, Temporal) by running a release and saving
`fetch_chain(...)` of each workflow with `WorkflowHistory.to_json()`; re-record only for intentional,
`workflow.patched()` changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pitstop.delivery.inputs import ReleaseInput
from pitstop.workflows import ProgressiveRelease, RegionWaves
from pitstop.workflows.delivery_chain import CONTINUE_AS_NEW_PATCH

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
FILES = sorted(HISTORIES.glob("release-*.json"))
OLD = [p for p in FILES if p.stem.startswith("release-v1-")]


def load(path: Path) -> WorkflowHistory:
    """A waves history replays under its recorded id (its children's ids derive from it); others under the stem."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    children = [e.start_child_workflow_execution_initiated_event_attributes.workflow_id for e in history.events
                if e.HasField("start_child_workflow_execution_initiated_event_attributes")]
    if children:
        return WorkflowHistory.from_json(children[0].rsplit("/", 1)[0], path.read_text())
    return history


def chain(prefix: str) -> list[WorkflowHistory]:
    paths = sorted(HISTORIES.glob(f"{prefix}-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return [load(p) for p in paths]


def started_input(history: WorkflowHistory) -> dict[str, object]:
    started = history.events[0].workflow_execution_started_event_attributes
    value = json.loads(started.input.payloads[0].data)
    assert isinstance(value, dict)
    return value


@pytest.fixture
def low_default_history_limit() -> Iterator[int]:
    """Histories recorded before `history_limit` existed get the field's default: make it tiny for a test."""
    field = ReleaseInput.model_fields["history_limit"]
    saved = field.default
    field.default = 100
    ReleaseInput.model_rebuild(force=True)
    try:
        yield 100
    finally:
        field.default = saved
        ReleaseInput.model_rebuild(force=True)


async def replay(history: WorkflowHistory) -> None:
    replayer = Replayer(workflows=[ProgressiveRelease, RegionWaves], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


def test_histories_are_recorded() -> None:
    names = {p.stem for p in FILES}
    assert {"release-v1-canary", "release-v1-waves", "release-continued-canary-1", "release-continued-canary-2",
            "release-continued-waves-region-1", "release-continued-waves-region-2"} <= names, names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
async def test_replay(path: Path) -> None:
    await replay(load(path))


@pytest.mark.parametrize("path", [p for p in OLD if p.stem != "release-v1-waves"], ids=lambda p: p.stem)
async def test_old_history_replays_where_a_continue_as_new_would_now_be_due(
    path: Path, low_default_history_limit: int
) -> None:
    history = load(path)
    assert "history_limit" not in started_input(history)  # recorded before the field existed
    assert ReleaseInput.model_validate(started_input(history)).history_limit == low_default_history_limit
    assert len(history.events) > low_default_history_limit + 30, "the history must be long enough to matter"
    markers = [e for e in history.events if e.HasField("marker_recorded_event_attributes")]
    assert not markers
    await replay(history)  # the new code would continue-as-new here, but `patched` is False in this replay


@pytest.mark.parametrize("prefix", ["release-continued-canary", "release-continued-waves-region"])
def test_continued_chain_resumes_from_carried_state(prefix: str) -> None:
    runs = chain(prefix)
    assert len(runs) >= 2
    for history in runs[:-1]:
        assert history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
        markers = [e.marker_recorded_event_attributes for e in history.events if e.HasField("marker_recorded_event_attributes")]
        assert markers, "the continue-as-new patch marker is recorded"
        assert CONTINUE_AS_NEW_PATCH.encode() in markers[0].details["patch-data"].payloads[0].data
    for history in runs[1:]:
        assert history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        carried = started_input(history)["carried"]
        assert isinstance(carried, dict) and carried["resume_at"] in ("analysis", "hold", "warm_window")
        assert carried["snapshot"] == started_input(runs[1])["carried"]["snapshot"]  # type: ignore[index]
    assert runs[-1].events[-1].HasField("workflow_execution_completed_event_attributes")
