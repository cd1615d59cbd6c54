"""`pitstop dr report`: the figures of past DR drills (the `record` step of completed `dr-drill` runs), as a trend
per region. The records live in the runs' results, so they last as long as the namespace retains closed runs."""

from __future__ import annotations

import asyncio
from typing import Annotated, Optional

import typer
from temporalio.client import Client

from pitstop.dr import DrillRecord, report_lines
from pitstop.runbook.request import RunbookOutcome

dr_app = typer.Typer(help="Disaster-recovery drills (runbook dr-drill; docs/disaster-recovery.md).", no_args_is_help=True)
DRILL_RUNBOOK = "dr-drill"


async def drill_records(client: Client, *, region: str | None, limit: int) -> list[DrillRecord]:
    records = []
    query = f"RunbookName = '{DRILL_RUNBOOK}' AND ExecutionStatus = 'Completed'"
    async for execution in client.list_workflows(query, limit=limit):
        outcome = await client.get_workflow_handle(execution.id, run_id=execution.run_id, result_type=RunbookOutcome).result()
        recorded = (outcome.outputs.get("record") or {}).get("record")
        if recorded is None:
            continue
        record = DrillRecord.model_validate(recorded)
        if region is None or record.region == region:
            records.append(record)
    return records


@dr_app.command("report")
def report(
    region: Annotated[Optional[str], typer.Option("--region", help="Only drills of this region.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest completed drill runs read.")] = 200,
) -> None:
    """RTO, RPO and failback time of every completed drill (skipped drills with their reason), oldest first per region."""
    from .cli_settings import load_settings
    from .temporal_connection import connect

    async def go() -> list[DrillRecord]:
        return await drill_records(await connect(load_settings()), region=region, limit=limit)

    records = asyncio.run(go())
    print("\n".join(report_lines(records)) if records else "no completed dr-drill run" + (f" for {region}" if region else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(dr_app, name="dr")
