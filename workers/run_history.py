"""The audit timeline of a run, read from its Temporal history: who started it and how, every step with its
inputs, outputs, attempts, decision and duration, every control update (pause/resume/abort/approve).

`timeline(history)` returns plain data (the `--json` output); `render(entries)` formats it for humans.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from temporalio.client import WorkflowHistory


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


def _time(event: Any) -> datetime:
    return event.event_time.ToDatetime()


def _failure(failure: Any) -> str:
    parts = []
    while failure is not None and failure.message:
        parts.append(failure.message)
        failure = failure.cause if failure.HasField("cause") else None
    return ": ".join(parts)


def timeline(history: WorkflowHistory) -> dict[str, Any]:
    """Run metadata plus one entry per step call / control action, in order of first appearance."""
    run: dict[str, Any] = {"workflow_id": history.workflow_id}
    calls: dict[int, dict[str, Any]] = {}  # scheduled event id -> entry
    entries: list[dict[str, Any]] = []
    for event in history.events:
        kind = event.WhichOneof("attributes") or ""
        attrs = getattr(event, kind) if kind else None
        if kind == "workflow_execution_started_event_attributes":
            request = _first(attrs.input) or {}
            run.update(
                runbook=request.get("runbook"), inputs=request.get("inputs"), dry_run=request.get("dry_run", False),
                trigger=request.get("trigger"), started_by=request.get("started_by") or attrs.identity,
                client_identity=attrs.identity, started_at=_time(event).isoformat(),
            )
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
                calls[attrs.scheduled_event_id]["last_failure"] = _failure(attrs.last_failure)
        elif kind == "activity_task_completed_event_attributes":
            _close(calls[attrs.scheduled_event_id], event, "succeeded", outputs=_first(attrs.result))
        elif kind in ("activity_task_failed_event_attributes", "activity_task_timed_out_event_attributes"):
            _close(calls[attrs.scheduled_event_id], event, "failed", error=_failure(attrs.failure))
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
            outcome = _first(attrs.result) or {}
            run.update(status=outcome.get("status", "completed"), error=outcome.get("error", ""), ended_at=_time(event).isoformat())
        elif kind == "workflow_execution_failed_event_attributes":
            run.update(status="failed", error=_failure(attrs.failure), ended_at=_time(event).isoformat())
        elif kind in ("workflow_execution_canceled_event_attributes", "workflow_execution_terminated_event_attributes",
                      "workflow_execution_timed_out_event_attributes", "workflow_execution_continued_as_new_event_attributes"):
            run.update(status=kind.split("_")[2], ended_at=_time(event).isoformat())
    return {"run": run, "timeline": entries}


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
        f" (client {run.get('client_identity') or '?'})",
        f"  inputs {_short(run.get('inputs') or {})}",
    ]
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
        elif kind == "signal":
            lines.append(f"  {entry['at'][11:19]} signal {entry['name']} {_short(entry.get('args'))}")
    lines.append(f"  ended {run.get('ended_at', '(still running)')}: {run.get('status', 'running')}"
                 + (f" — {run['error']}" if run.get("error") else ""))
    return "\n".join(lines)
