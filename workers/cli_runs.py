"""CLI commands for runbook runs: `run` (with `--dry-run`), `status`, `list`, `history`, and the control commands
`approve`, `pause`, `resume`, `abort`. The `runbooks` group (validate, schema, list, show) is in `cli_catalog`."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from pitstop.config import Settings
from pitstop.runbook.reach import AuthorReach
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.runbook.run_state import RunStatus
from pitstop.runbook.validation import RunbookInvalid, load_runbook_file, refusal_message, resolve_inputs

from .api_client import IgnoredAsOption, TokenFileOption, call_api, warn_ignored_as
from .cli_settings import load_settings
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


def _checked_request(settings: Settings, runbook: str, inputs: dict[str, Any], dry_run: bool) -> RunbookRequest:
    """Validate the runbook file and the inputs locally before starting anything."""
    path = find_runbook_file(settings, runbook)
    try:
        parsed = load_runbook_file(path, reach=AuthorReach.from_settings(settings))
        resolve_inputs(parsed, inputs, str(path))
    except RunbookInvalid as exc:
        raise CliError(refusal_message(runbook, exc), exit_code=EXIT_USAGE) from exc
    if path.parent.resolve() != settings.runbooks_dir.resolve():
        raise CliError(
            f"{path} is valid, but workers load runbooks by name from {settings.runbooks_dir}; copy it there to run it",
            exit_code=EXIT_USAGE,
        )
    return RunbookRequest(runbook=parsed.name, inputs=inputs, dry_run=dry_run, trigger="cli", started_by=_whoami())


def print_or_write_schema(text: str, target: Path, *, write: bool) -> None:
    """A generated JSON Schema: printed, or written to its file beside the shipped runbooks."""
    if write:
        target.write_text(text)
        print(f"wrote {target}")
    else:
        print(text, end="")


def _print_outcome(workflow_id: str, outcome: RunbookOutcome) -> None:
    print(f"run {workflow_id} {outcome.status}{' (dry run: nothing was changed)' if outcome.dry_run else ''}")
    for step_id, state in outcome.steps.items():
        line = outcome.summaries.get(step_id, "")
        print(f"  {step_id:<24} {state:<20} {line}")
    if outcome.error:
        print(f"  {outcome.error}")


def _print_status(current: RunStatus) -> None:
    target = "/".join(v for v in (current.target.get("namespace"), current.target.get("service")) if v)
    flags = " (paused)" if current.paused and current.phase.value != "paused" else ""
    print(f"{current.workflow_id}: {current.runbook} {current.phase.value}{flags}"
          f"{' on ' + target if target else ''}{' [dry run]' if current.dry_run else ''}")
    for step in current.steps:
        took = f"{(step.ended_at - step.started_at).total_seconds():.1f}s" if step.started_at and step.ended_at else ""
        items = f" {step.items_done}/{step.items_total}" if step.items_total else ""
        detail = step.error or step.summary
        print(f"  {step.id:<24} {step.state.value:<20}{items} {took:>7} {detail}")
    for approval in current.approvals:
        who = ", ".join(approval.approvers) or "anyone"
        print(f"  waiting for approval of {approval.key!r} by {who}: {approval.message}"
              f"  ->  pitstop approve {current.workflow_id} --step {approval.key}")
    if current.error:
        print(f"  {current.error}")
    if current.run_number > 1:
        print(f"  (continued-as-new {current.run_number - 1} time(s) to keep its history short; same run id)")


def run(
    runbook: Annotated[str, typer.Argument(help="Runbook name (file in the runbooks dir).")],
    inputs: Annotated[
        Optional[list[str]], typer.Option("-i", "--input", help="Runbook input as key=value (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change; change nothing.")] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Print the run id and return at once.")] = False,
    run_id: Annotated[Optional[str], typer.Option("--id", help="Workflow id (default: <runbook>-<time>-<rand>).")] = None,
    token_file: TokenFileOption = None,
    claimed: IgnoredAsOption = None,
) -> None:
    """Validate, start a runbook run through the pitstop API (as the identity your credential proves, if the
    access policy allows it) and (unless --detach) wait for its outcome."""
    warn_ignored_as(claimed)
    settings = load_settings()
    request = _checked_request(settings, runbook, parse_input_pairs(inputs or []), dry_run)
    started = call_api(settings, token_file, "POST", ["runs"], {
        "runbook": request.runbook, "inputs": request.inputs, "dry_run": dry_run,
        "id": run_id or new_run_id(request.runbook)})
    workflow_id = str(started["workflow_id"])
    print(f"started {workflow_id} as {started['started_by']}\n  {ui_link(settings, workflow_id)}", flush=True)
    if detach:
        return

    async def go() -> int:
        from .temporal_connection import connect

        handle = (await connect(settings)).get_workflow_handle(workflow_id, result_type=RunbookOutcome)
        try:
            outcome = await handle.result()
        except WorkflowFailureError as exc:
            cause = exc.cause
            print(f"run {workflow_id} failed: {getattr(cause, 'message', None) or cause}", flush=True)
            return EXIT_FAILED
        _print_outcome(workflow_id, outcome)
        return 0 if outcome.status == "succeeded" else EXIT_FAILED

    code = asyncio.run(go())
    if code:
        raise typer.Exit(code)


def status(workflow_id: Annotated[str, typer.Argument(help="Run (workflow) id.")]) -> None:
    """Show a run's live state: phase, each step's state, timing, outputs summary, waiting approvals."""
    settings = load_settings()

    async def go() -> None:
        from .temporal_connection import connect

        client = await connect(settings)
        handle = client.get_workflow_handle(workflow_id)
        try:
            desc = await handle.describe()
        except RPCError as exc:
            raise _not_found(exc, workflow_id) from exc
        state = desc.status.name if desc.status else "UNKNOWN"
        try:
            current = await handle.query("status", result_type=RunStatus)
        except Exception as exc:  # not a runbook run, or no worker to answer the query
            print(f"{workflow_id}: {state}  type={desc.workflow_type}  started={desc.start_time:%Y-%m-%d %H:%M:%S}Z"
                  f"  (live status unavailable: {str(exc).splitlines()[0][:120]})")
            return
        print(f"Temporal: {state}  started={desc.start_time:%Y-%m-%d %H:%M:%S}Z"
              + (f"  closed={desc.close_time:%Y-%m-%d %H:%M:%S}Z" if desc.close_time else ""))
        _print_status(current)

    asyncio.run(go())


def list_runs(
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 20,
    query: Annotated[Optional[str], typer.Option(help="Temporal visibility query, e.g. \"RunbookName='hello'\".")] = None,
) -> None:
    """List recent runs (newest first) with runbook, phase and target."""
    settings = load_settings()

    async def go() -> None:
        from .temporal_connection import connect

        client = await connect(settings)
        rows = []
        async for execution in client.list_workflows(query=query or f"WorkflowType='{RUNBOOK_WORKFLOW}'", limit=limit):
            rows.append(execution)
        rows.sort(key=lambda e: e.start_time, reverse=True)
        if not rows:
            print("no runs")
        for e in rows[:limit]:
            state = e.status.name if e.status else "?"
            sa = e.search_attributes or {}
            phase = (sa.get("Phase") or [""])[0]
            name = (sa.get("RunbookName") or [e.workflow_type])[0]
            service = (sa.get("TargetService") or [""])[0]
            print(f"{e.id:<48} {state:<11} {name:<22} {phase:<20} {service:<16} {e.start_time:%Y-%m-%d %H:%M:%S}Z")

    asyncio.run(go())


def history(
    workflow_id: Annotated[str, typer.Argument(help="Run (workflow) id.")],
    as_json: Annotated[bool, typer.Option("--json", help="The timeline as JSON, for machines.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="The raw Temporal history JSON (replayable).")] = False,
) -> None:
    """The audit timeline of a run: who started it and how, each step with inputs, outputs, attempts, duration.

    A run that continued-as-new is shown whole (every Temporal run of its chain); --raw prints the latest run."""
    from .run_history import fetch_chain, render, timeline

    settings = load_settings()

    async def go() -> None:
        from .temporal_connection import connect

        client = await connect(settings)
        try:
            if raw:
                print((await client.get_workflow_handle(workflow_id).fetch_history()).to_json())
                return
            chain = await fetch_chain(client, workflow_id)
        except RPCError as exc:
            raise _not_found(exc, workflow_id) from exc
        if as_json:
            print(json.dumps(timeline(chain), indent=2, default=str))
        else:
            print(render(timeline(chain)))

    asyncio.run(go())


def approve(
    workflow_id: Annotated[str, typer.Argument(help="Run (workflow) id.")],
    step: Annotated[str, typer.Option("--step", "-s", help="The approval step id (`step[i]` in a for_each).")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approving.")] = False,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Recorded with the decision.")] = "",
    token_file: TokenFileOption = None,
    claimed: IgnoredAsOption = None,
) -> None:
    """Approve (or reject) a waiting approval step through the pitstop API, as the identity your credential
    proves; refused unless the access policy and the runbook's approvers allow it."""
    warn_ignored_as(claimed)
    answer = call_api(load_settings(), token_file, "POST", ["runs", workflow_id, "approve"],
                      {"step": step, "approved": not reject, "comment": comment})
    print(answer["result"])


CONTROL_COMMANDS = {
    "pause": "Pause a run: running steps finish, no new step starts until `resume`.",
    "resume": "Resume a paused run.",
    "abort": "Abort a run: cancel running steps, run compensations of completed steps in reverse order.",
}


def control_command(name: str, doc: str) -> Callable[..., None]:
    """The command `pitstop <name> RUN_ID`: the control update `name` (pause, resume, abort) through the API."""
    def command(
        workflow_id: Annotated[str, typer.Argument(help="Run (workflow) id.")],
        reason: Annotated[str, typer.Option("--reason", "-m", help="Recorded in the history.")] = "",
        token_file: TokenFileOption = None,
        claimed: IgnoredAsOption = None,
    ) -> None:
        warn_ignored_as(claimed)
        answer = call_api(load_settings(), token_file, "POST", ["runs", workflow_id, name], {"reason": reason})
        print(f"{name}: accepted as {answer['identity']} (run was {answer['result']})")

    command.__doc__ = doc + " Sent through the pitstop API as the identity your credential proves."
    return command


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `pitstop` CLI."""
    app.command()(run)
    app.command()(status)
    app.command("list")(list_runs)
    app.command()(history)
    app.command()(approve)
    for name, doc in CONTROL_COMMANDS.items():
        app.command(name)(control_command(name, doc))


def _whoami() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
