"""Replay of a `for_each` split across continue-as-new runs (recorded with `record_runbook_histories`), and of a
fan-out recorded before splitting existed whose single run passed its history limit mid-fan-out (recorded with
the previous interpreter, commit 1903de8): the `for-each-continue-as-new` patch keeps that one replaying.
(tests/replay/test_runbook_replay.py replays every runbook-*.json; this file checks what the histories show.)"""

from __future__ import annotations

import json
from pathlib import Path
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pitstop.runbook.request import RunbookRequest
from pitstop.workflows import RunbookWorkflow
from pitstop.workflows.runbook import FOR_EACH_CONTINUE_AS_NEW_PATCH

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
SPLIT = ["runbook-fanout-split-first", "runbook-fanout-split-second", "runbook-fanout-split-last"]


def load(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())


def request_of(history: WorkflowHistory) -> RunbookRequest:
    payload = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    return RunbookRequest.model_validate(json.loads(payload.data))


def patches(history: WorkflowHistory) -> list[str]:
    found: list[str] = []
    for event in history.events:
        marker = event.marker_recorded_event_attributes
        if event.HasField("marker_recorded_event_attributes") and marker.marker_name == "core_patch":
            found.append(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    return found


def test_split_chain_hands_the_fan_out_over() -> None:
    first, second, last = (load(name) for name in SPLIT)
    for history in (first, second):
        assert history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    assert last.events[-1].HasField("workflow_execution_completed_event_attributes")
    assert FOR_EACH_CONTINUE_AS_NEW_PATCH in patches(first) and FOR_EACH_CONTINUE_AS_NEW_PATCH in patches(second)
    assert request_of(first).carried is None
    carried = request_of(second).carried
    assert carried is not None and [f.step_id for f in carried.fan_outs] == ["fan"]
    fan = carried.fan_outs[0]
    done = fan.done_indexes()
    assert fan.items_total == 40 and done == list(range(len(done))) and 0 < len(done) < 40
    assert len(fan.outputs) == len(done) and len(fan.remaining) == 40 - len(done)
    assert [o["seconds"] for o in fan.outputs] == [round(0.01 + i / 1000, 3) for i in done]
    status = next(s for s in carried.steps if s.id == "fan")
    assert status.state.value == "running" and status.items_done == len(done) and status.items_total == 40
    assert len(carried.saga) == len(done), "each finished item's compensation is carried"


def test_fan_out_recorded_before_splitting_passed_its_limit_in_one_run() -> None:
    history = load("runbook-fanout-unsplit-v1")
    assert history.events[-1].HasField("workflow_execution_completed_event_attributes")
    assert len(history.events) > request_of(history).history_limit + 40
    assert patches(history) == []


async def test_split_chain_and_unsplit_v1_replay() -> None:
    replayer = Replayer(workflows=[RunbookWorkflow], data_converter=pydantic_data_converter)
    for name in [*SPLIT, "runbook-fanout-unsplit-v1"]:
        await replayer.replay_workflow(load(name))
