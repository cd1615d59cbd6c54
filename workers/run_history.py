"""The audit timeline of a run, read from its Temporal history: who started it and how, every step with its
inputs, outputs, attempts, decision and duration, every control update (pause/resume/abort/approve).

`timeline(history)` returns plain data (the `--json` output); `render(entries)` formats it for humans.
A run that continued-as-new is a chain of Temporal runs under one workflow id: `fetch_chain` reads all of
them (oldest first) and `timeline` covers the whole chain, marking where each run continued the previous one.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from temporalio.client import Client, WorkflowHistory

from pitstop.failures import failure_text

from .payload_codec import decode_history

MAX_CHAIN = 1000  # runs followed back through continue-as-new


async def fetch_chain(client: Client, workflow_id: str, run_id: str | None = None) -> list[WorkflowHistory]:
    """The histories of a run and of the runs it continued from (continue-as-new), oldest first; encrypted
    payloads are decoded with the client's codec."""
    histories: list[WorkflowHistory] = []
    current: str | None = run_id
    codec = client.data_converter.payload_codec
    while len(histories) < MAX_CHAIN:
        history = await client.get_workflow_handle(workflow_id, run_id=current).fetch_history()
        if codec is not None:
            await decode_history(history, codec)
        histories.append(history)
        first = history.events[0] if history.events else None
        previous = first.workflow_execution_started_event_attributes.continued_execution_run_id if first else ""
        if not previous:
            break
        current = previous
    histories.reverse()
    return histories


def _payloads(payloads: Any) -> list[Any]:
    values = []
    for payload in getattr(payloads, "payloads", []):
        try:
            values.append(json.loads(payload.data) if payload.data else None)
        except ValueError:
            values.append(payload.data.decode(errors="replace"))
    return values


def _first(payloads: Any) -> Any:
    values = _payloads(payloads)
    return values[0] if values else None


def _scheduled_by(started: Any) -> str:
    """The id of the Temporal Schedule that started the run (its `TemporalScheduledById` search attribute)."""
    payload = started.search_attributes.indexed_fields.get("TemporalScheduledById")
    try:
        value = json.loads(payload.data) if payload is not None and payload.data else ""
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


def _time(event: Any) -> datetime:
    return event.event_time.ToDatetime()


def timeline(history: WorkflowHistory | list[WorkflowHistory]) -> dict[str, Any]:
    """Run metadata plus one entry per step call / control action, in order of first appearance.

    Given a continue-as-new chain (oldest first), the timeline covers every run; a `continued` entry marks
    each new run. Given only the latest run of a chain, the run metadata says it continued from earlier runs."""
    histories = history if isinstance(history, list) else [history]
    run: dict[str, Any] = {"workflow_id": histories[0].workflow_id, "runs": len(histories)}
    entries: list[dict[str, Any]] = []
    for index, one in enumerate(histories):
        _events(one, index, run, entries)
    return {"run": run, "timeline": entries}


def _events(history: WorkflowHistory, index: int, run: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    calls: dict[int, dict[str, Any]] = {}  # scheduled event id -> entry (event ids restart in every run)
    for event in history.events:
        kind = event.WhichOneof("attributes") or ""
        attrs: Any = getattr(event, kind) if kind else None
        if kind == "workflow_execution_started_event_attributes":
            request = _first(attrs.input) or {}
            carried = request.get("carried") or {}
            if index > 0:
                entries.append({"kind": "continued", "at": _time(event).isoformat(),
                                "from_run_id": attrs.continued_execution_run_id, "run_id": attrs.original_execution_run_id})
                continue
            run.update(
                runbook=request.get("runbook") or _chaos_title(request), inputs=request.get("inputs"), dry_run=request.get("dry_run", False),
                trigger=request.get("trigger"), started_by=request.get("started_by") or attrs.identity,
                client_identity=attrs.identity, started_at=_time(event).isoformat(),
                schedule_id=_scheduled_by(attrs),
            )
            if attrs.continued_execution_run_id:  # only the latest run(s) of a chain were read
                run.update(continued_from=attrs.continued_execution_run_id,
                           earlier_runs=len(carried.get("earlier_runs") or []),
                           started_at=carried.get("started_at") or run["started_at"])
        elif kind == "activity_task_scheduled_event_attributes":
            invocation = _first(attrs.input) or {}
            entry = {"kind": "step", "call": attrs.activity_id, "type": attrs.activity_type.name,
                     "args": invocation.get("args", invocation) if isinstance(invocation, dict) else invocation,
                     "scheduled_at": _time(event).isoformat(), "attempts": 0, "state": "scheduled"}
            calls[event.event_id] = entry
            entries.append(entry)
        elif kind == "activity_task_started_event_attributes":
            calls[attrs.scheduled_event_id].update(attempts=attrs.attempt, state="running")
            if attrs.HasField("last_failure"):
                calls[attrs.scheduled_event_id]["last_failure"] = failure_text(attrs.last_failure)
        elif kind == "activity_task_completed_event_attributes":
            _close(calls[attrs.scheduled_event_id], event, "succeeded", outputs=_first(attrs.result))
        elif kind in ("activity_task_failed_event_attributes", "activity_task_timed_out_event_attributes"):
            _close(calls[attrs.scheduled_event_id], event, "failed", error=failure_text(attrs.failure))
        elif kind == "activity_task_canceled_event_attributes":
            _close(calls[attrs.scheduled_event_id], event, "cancelled")
        elif kind == "timer_started_event_attributes":
            entries.append({"kind": "timer", "at": _time(event).isoformat(),
                            "seconds": attrs.start_to_fire_timeout.ToTimedelta().total_seconds()})
        elif kind == "start_child_workflow_execution_initiated_event_attributes":
            entries.append({"kind": "child", "at": _time(event).isoformat(), "workflow_id": attrs.workflow_id,
                            "request": _first(attrs.input)})
        elif kind == "workflow_execution_update_accepted_event_attributes":
            request = attrs.accepted_request
            entries.append({"kind": "update", "at": _time(event).isoformat(), "name": request.input.name,
                            "args": _first(request.input.args), "client_identity": request.meta.identity})
        elif kind == "workflow_execution_signaled_event_attributes":
            entries.append({"kind": "signal", "at": _time(event).isoformat(), "name": attrs.signal_name,
                            "args": _first(attrs.input), "client_identity": attrs.identity})
        elif kind == "workflow_execution_completed_event_attributes":
            run.update(_completed(_first(attrs.result) or {}), ended_at=_time(event).isoformat())
        elif kind == "workflow_execution_failed_event_attributes":
            run.update(status="failed", error=failure_text(attrs.failure), ended_at=_time(event).isoformat())
        elif kind in ("workflow_execution_canceled_event_attributes", "workflow_execution_terminated_event_attributes",
                      "workflow_execution_timed_out_event_attributes", "workflow_execution_continued_as_new_event_attributes"):
            run.update(status=kind.split("_")[2], ended_at=_time(event).isoformat())


def _completed(outcome: dict[str, Any]) -> dict[str, Any]:
    """A completed run's status and error; for a chaos run also its journal's summary (the journal itself:
    `pitstop chaos journal`) and its rollback failures."""
    ended = {"status": outcome.get("status", "completed"), "error": outcome.get("error", "")}
    if isinstance(outcome.get("journal"), dict):
        ended.update(chaos=outcome.get("summary", ""), error=outcome.get("reason", ""),
                     rollback_failures=outcome.get("rollback_failures") or [])
    return ended


def _chaos_title(request: dict[str, Any]) -> str | None:
    experiment = request.get("experiment")
    if isinstance(experiment, dict):
        return f"chaos: {experiment.get('title', '?')}"
    return f"chaos: {request['experiment_file']}" if request.get("experiment_file") else None


def _close(entry: dict[str, Any], event: Any, state: str, **extra: Any) -> None:
    ended = _time(event)
    started = datetime.fromisoformat(entry["scheduled_at"])
    entry.update(state=state, ended_at=ended.isoformat(), duration_seconds=round((ended - started).total_seconds(), 3), **extra)


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(data: dict[str, Any]) -> str:
    run = data["run"]
    lines = [
        f"run {run['workflow_id']}: runbook {run.get('runbook')!r}{' (dry run)' if run.get('dry_run') else ''}",
        f"  started {run.get('started_at', '?')} by {run.get('started_by') or '?'} via {run.get('trigger') or '?'}"
        + (f" (Temporal Schedule {run['schedule_id']})" if run.get("schedule_id") else "")
        + f" (client {run.get('client_identity') or '?'})",
        f"  inputs {_short(run.get('inputs') or {})}",
    ]
    if run.get("continued_from"):
        lines.append(f"  (continued from {run.get('earlier_runs') or 'earlier'} earlier run(s), last {run['continued_from']};"
                     " their steps are not shown)")
    elif run.get("runs", 1) > 1:
        lines.append(f"  ({run['runs']} Temporal runs: the run continued-as-new {run['runs'] - 1} time(s))")
    for entry in data["timeline"]:
        kind = entry["kind"]
        if kind == "step":
            outputs = entry.get("outputs") or {}
            summary = outputs.get("summary") if isinstance(outputs, dict) else ""
            lines.append(
                f"  {entry['scheduled_at'][11:19]} {entry['call']:<28} {entry['type']:<26} {entry['state']:<10}"
                f" attempts={entry['attempts']} {entry.get('duration_seconds', '-')}s"
            )
            lines.append(f"      with {_short(entry['args'])}")
            if summary:
                lines.append(f"      -> {summary}")
            elif entry.get("outputs") is not None:
                lines.append(f"      -> {_short(entry['outputs'])}")
            if entry.get("error") or entry.get("last_failure"):
                lines.append(f"      !! {entry.get('error') or entry.get('last_failure')}")
        elif kind == "update":
            args = entry.get("args") or {}
            who = args.get("identity") if isinstance(args, dict) else ""
            lines.append(f"  {entry['at'][11:19]} {entry['name']} by {who or entry.get('client_identity')} {_short(args)}")
        elif kind == "timer":
            lines.append(f"  {entry['at'][11:19]} timer {entry['seconds']:g}s")
        elif kind == "child":
            lines.append(f"  {entry['at'][11:19]} child run {entry['workflow_id']}")
        elif kind == "continued":
            lines.append(f"  {entry['at'][11:19]} continued as new run {entry['run_id']} (history limit reached)")
        elif kind == "signal":
            lines.append(f"  {entry['at'][11:19]} signal {entry['name']} {_short(entry.get('args'))}")
    if run.get("chaos"):
        lines.append(f"  journal: {run['chaos']} (pitstop chaos journal {run['workflow_id']})")
        lines += [f"  ROLLBACK FAILED: {failure}" for failure in run.get("rollback_failures") or []]
    lines.append(f"  ended {run.get('ended_at', '(still running)')}: {run.get('status', 'running')}"
                 + (f" — {run['error']}" if run.get("error") else ""))
    return "\n".join(lines)
