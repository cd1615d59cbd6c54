"""CLI commands for incidents and the alert webhook: `pitstop incident show|list|approve`, `pitstop webhook`.

`incident show ID` prints the live timeline (the workflow's `status` query; the result once closed), with
MTTR; `--postmortem` prints a blameless Markdown postmortem draft instead.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Optional

import typer
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from pitstop.incidents import INCIDENT_WORKFLOW, IncidentStatus, postmortem_markdown

from .api_client import TokenFileOption, call_api, warn_ignored_as
from .cli_settings import load_settings
from .errors import EXIT_NOT_FOUND, CliError


async def fetch_incident(client: Client, incident_id: str) -> IncidentStatus:
    """The incident's state: its result when closed, else the live `status` query."""
    handle = client.get_workflow_handle(incident_id, result_type=IncidentStatus)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"no incident with id {incident_id!r}", exit_code=EXIT_NOT_FOUND) from exc
        raise CliError(f"Temporal refused the request for {incident_id!r}: {exc.message}") from exc
    if desc.workflow_type != INCIDENT_WORKFLOW:
        raise CliError(f"{incident_id!r} is a {desc.workflow_type} run, not an incident", exit_code=EXIT_NOT_FOUND)
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        return await handle.result()
    return await handle.query("status", result_type=IncidentStatus)


def render_timeline(status: IncidentStatus) -> str:
    alert = status.alert
    lines = [
        f"{status.incident_id}: {status.phase.value}" + (f" — {status.outcome}" if status.outcome else ""),
        f"  alert: {alert.name if alert else '?'} ({alert.severity if alert else '?'}), "
        f"{status.notifications} notification(s); rule: {status.rule or '-'}; "
        f"target: {status.target.key if status.target else '-'}",
    ]
    if status.mttr_seconds is not None:
        lines.append(f"  MTTR (alert start -> resolved): {status.mttr_seconds:.1f}s")
    if status.delivered_to_first_action_seconds is not None:
        lines.append(f"  alert delivered -> first action: {status.delivered_to_first_action_seconds:.1f}s")
    lines.append("")
    for entry in status.timeline:
        lines.append(f"  {entry.at:%Y-%m-%d %H:%M:%S}Z  {entry.kind:<12} {entry.message}")
    return "\n".join(lines)


incident_app = typer.Typer(help="Incidents opened by Alertmanager alerts: timeline, postmortem, approvals.",
                           no_args_is_help=True)


@incident_app.command("show")
def show(
    incident_id: Annotated[str, typer.Argument(help="Incident id (incident-<fingerprint>-<start>).")],
    postmortem: Annotated[bool, typer.Option("--postmortem", help="Print a Markdown postmortem draft.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show an incident's timeline (alert, decisions, actions, recovery) with its MTTR."""
    settings = load_settings()

    async def go() -> None:
        from .temporal_connection import connect

        status = await fetch_incident(await connect(settings), incident_id)
        if as_json:
            data = status.model_dump(mode="json")
            data["mttr_seconds"] = status.mttr_seconds
            print(json.dumps(data, indent=2))
        elif postmortem:
            print(postmortem_markdown(status), end="")
        else:
            print(render_timeline(status))

    asyncio.run(go())


@incident_app.command("list")
def list_incidents(
    limit: Annotated[int, typer.Option(help="At most this many incidents.")] = 20,
    open_only: Annotated[bool, typer.Option("--open", help="Only incidents still running.")] = False,
) -> None:
    """List recent incidents (newest first)."""
    settings = load_settings()

    async def go() -> None:
        from .temporal_connection import connect

        client = await connect(settings)
        query = f"WorkflowType = '{INCIDENT_WORKFLOW}'" + (" AND ExecutionStatus = 'Running'" if open_only else "")
        rows = [e async for e in client.list_workflows(query=query, limit=max(limit, 1) * 2)]
        rows.sort(key=lambda e: e.start_time, reverse=True)
        if not rows:
            print("no incidents")
        for e in rows[:limit]:
            state = e.status.name if e.status else "?"
            print(f"{e.id:<48} {state:<10} {e.start_time:%Y-%m-%d %H:%M:%S}Z")

    asyncio.run(go())


@incident_app.command("approve")
def approve(
    incident_id: Annotated[str, typer.Argument(help="Incident id.")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject the action instead (the incident escalates).")] = False,
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    token_file: TokenFileOption = None,
    claimed: Annotated[Optional[str], typer.Option("--identity", "--as", hidden=True,
                                                   help="Ignored: the identity is the one your credential proves.")] = None,
) -> None:
    """Approve (or reject) the remediation action an incident is waiting for, through the pitstop API as the
    identity your credential proves."""
    warn_ignored_as(claimed)
    answer = call_api(load_settings(), token_file, "POST", ["incidents", incident_id, "approve"],
                      {"approved": not reject, "comment": comment})
    print(f"{incident_id}: {answer['result']}")


def webhook() -> None:
    """Serve the Alertmanager webhook receiver (settings.webhook.listen) until Ctrl-C."""
    from .webhook import serve

    settings = load_settings()
    asyncio.run(serve(settings))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `pitstop` CLI."""
    app.add_typer(incident_app, name="incident")
    app.command()(webhook)
