"""CLI commands for runbook runs: run, status, list, history. (Foundation version; the engine extends it.)"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from pitstop.config import Settings
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest

from .errors import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_USAGE, CliError


def parse_input_pairs(pairs: list[str]) -> dict[str, Any]:
    """`-i key=value` pairs -> dict; values are parsed as YAML scalars (numbers, booleans, lists)."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"malformed input {pair!r}: expected key=value", exit_code=EXIT_USAGE)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        inputs[key.strip()] = value
    return inputs


def find_runbook_file(settings: Settings, name: str) -> Path:
    """A runbook name (`canary`) or a path to a YAML file -> the file, or CliError naming where it looked."""
    as_path = Path(name)
    if as_path.suffix in (".yaml", ".yml") and as_path.exists():
        return as_path
    for suffix in (".yaml", ".yml"):
        candidate = settings.runbooks_dir / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    raise CliError(f"no runbook named {name!r} in {settings.runbooks_dir}", exit_code=EXIT_NOT_FOUND)


def new_run_id(runbook: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{runbook}-{stamp}-{secrets.token_hex(3)}"


def ui_link(settings: Settings, workflow_id: str) -> str:
    host = settings.temporal.address.rsplit(":", 1)[0]
    return f"http://{host}:{settings.temporal.ui_port}/namespaces/{settings.temporal.namespace}/workflows/{workflow_id}"


def _client(settings: Settings) -> Client:
    from .temporal_connection import connect

    return asyncio.run(connect(settings))


def _not_found(exc: RPCError, workflow_id: str) -> CliError:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return CliError(f"no run with id {workflow_id!r}", exit_code=EXIT_NOT_FOUND)
    return CliError(f"Temporal refused the request for {workflow_id!r}: {exc.message}")


def register(app: typer.Typer) -> None:
    from .cli import load_settings

    @app.command()
    def run(
        runbook: Annotated[str, typer.Argument(help="Runbook name (file in the runbooks dir) or path to a YAML file.")],
        inputs: Annotated[
            Optional[list[str]], typer.Option("-i", "--input", help="Runbook input as key=value (repeatable).")
        ] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change; change nothing.")] = False,
        detach: Annotated[bool, typer.Option("--detach", "-d", help="Print the run id and return at once.")] = False,
        run_id: Annotated[Optional[str], typer.Option("--id", help="Workflow id (default: <runbook>-<time>-<rand>).")] = None,
    ) -> None:
        """Start a runbook run and (unless --detach) wait for its outcome."""
        settings = load_settings()
        parsed = parse_input_pairs(inputs or [])
        path = find_runbook_file(settings, runbook)
        name = path.stem
        request = RunbookRequest(runbook=name, inputs=parsed, dry_run=dry_run, trigger="cli", started_by=_whoami())
        workflow_id = run_id or new_run_id(name)

        async def go() -> int:
            from .temporal_connection import connect

            client = await connect(settings)
            handle = await client.start_workflow(
                RUNBOOK_WORKFLOW, request, id=workflow_id, task_queue=settings.temporal.task_queue,
                result_type=RunbookOutcome,
            )
            print(f"started {workflow_id}\n  {ui_link(settings, workflow_id)}", flush=True)
            if detach:
                return 0
            try:
                outcome = await handle.result()
            except WorkflowFailureError as exc:
                cause = exc.cause
                print(f"run {workflow_id} failed: {getattr(cause, 'message', None) or cause}", flush=True)
                return EXIT_FAILED
            print(f"run {workflow_id} {outcome.status}")
            if outcome.outputs:
                print(json.dumps(outcome.outputs, indent=2, default=str))
            return 0 if outcome.status == "succeeded" else EXIT_FAILED

        code = asyncio.run(go())
        if code:
            raise typer.Exit(code)

    @app.command()
    def status(workflow_id: Annotated[str, typer.Argument(help="Run (workflow) id.")]) -> None:
        """Show a run's state."""
        settings = load_settings()

        async def go() -> None:
            from .temporal_connection import connect

            client = await connect(settings)
            try:
                desc = await client.get_workflow_handle(workflow_id).describe()
            except RPCError as exc:
                raise _not_found(exc, workflow_id) from exc
            state = desc.status.name if desc.status else "UNKNOWN"
            print(f"{workflow_id}: {state}  type={desc.workflow_type}  started={desc.start_time:%Y-%m-%d %H:%M:%S}Z")
            if desc.close_time:
                print(f"  closed={desc.close_time:%Y-%m-%d %H:%M:%S}Z")

        asyncio.run(go())

    @app.command("list")
    def list_runs(
        limit: Annotated[int, typer.Option(help="At most this many runs.")] = 20,
        query: Annotated[Optional[str], typer.Option(help="Temporal visibility query, e.g. \"RunbookName='canary'\".")] = None,
    ) -> None:
        """List recent runs (newest first)."""
        settings = load_settings()

        async def go() -> None:
            from .temporal_connection import connect

            client = await connect(settings)
            rows = []
            async for execution in client.list_workflows(query=query, limit=limit):
                rows.append(execution)
            rows.sort(key=lambda e: e.start_time, reverse=True)
            if not rows:
                print("no runs")
            for e in rows[:limit]:
                state = e.status.name if e.status else "?"
                print(f"{e.id:<48} {state:<11} {e.workflow_type:<12} {e.start_time:%Y-%m-%d %H:%M:%S}Z")

        asyncio.run(go())

    @app.command()
    def history(
        workflow_id: Annotated[str, typer.Argument(help="Run (workflow) id.")],
        as_json: Annotated[bool, typer.Option("--json", help="Raw Temporal history as JSON.")] = False,
    ) -> None:
        """Show a run's audit history."""
        settings = load_settings()

        async def go() -> None:
            from .temporal_connection import connect

            client = await connect(settings)
            try:
                hist = await client.get_workflow_handle(workflow_id).fetch_history()
            except RPCError as exc:
                raise _not_found(exc, workflow_id) from exc
            if as_json:
                print(hist.to_json())
                return
            for event in hist.events:
                kind = event.WhichOneof("attributes") or ""
                print(f"{event.event_time.ToDatetime():%H:%M:%S} #{event.event_id:<4} {kind.removesuffix('_event_attributes')}")

        asyncio.run(go())


def _whoami() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
