"""CLI commands for the schedules file and its Temporal Schedules: `pitstop schedules validate|schema|diff|
apply|list|trigger|pause|unpause|delete`. `apply` is what CI/CD runs (with its own API credential); it and every
other change go through the pitstop API, `validate`, `diff` and `list` only read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from temporalio.client import Client, ScheduleHandle

from pitstop.config import Settings
from pitstop.schedules.model import DEFAULT_SCHEDULES_FILE, ScheduleEntry
from pitstop.schedules.reconcile import ScheduleChange
from pitstop.runbook.reach import AuthorReach
from pitstop.schedules.validation import SchedulesInvalid, load_schedules

from . import schedules as temporal_schedules
from .api_client import IgnoredAsOption, TokenFileOption, call_api, warn_ignored_as
from .cli_runs import print_or_write_schema
from .cli_settings import load_settings
from .errors import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_USAGE, CliError

T = TypeVar("T")

FileOption = Annotated[
    Optional[Path], typer.Option("--file", "-f", help="The schedules file (default: <runbooks dir>/schedules.yaml).")
]


def schedules_path(settings: Settings, explicit: Path | None) -> Path:
    return explicit or settings.runbooks_dir / DEFAULT_SCHEDULES_FILE


def checked_entries(settings: Settings, explicit: Path | None) -> list[ScheduleEntry]:
    """The file's schedules, validated against the runbooks; CliError listing every problem (file:line)."""
    path = schedules_path(settings, explicit)
    if not path.exists():
        raise CliError(f"{path} does not exist", exit_code=EXIT_NOT_FOUND)
    try:
        return load_schedules(path, settings.runbooks_dir, reach=AuthorReach.from_settings(settings))
    except SchedulesInvalid as exc:
        raise CliError(f"{path} is not valid; nothing was applied:\n{exc}", exit_code=EXIT_USAGE) from exc


def _with_client(settings: Settings, work: Callable[[Client], Awaitable[T]]) -> T:
    async def go() -> T:
        from .temporal_connection import connect

        return await work(await connect(settings))

    return asyncio.run(go())


def _on_managed(settings: Settings, schedule_id: str, act: Callable[[ScheduleHandle], Awaitable[None]]) -> None:
    """Run one call on a schedule pitstop created (CliError if it is missing or someone else's)."""
    from .schedules import managed_handle

    async def go(client: Client) -> None:
        await act(await managed_handle(client, schedule_id))

    _with_client(settings, go)


def _print_changes(changes: list[ScheduleChange], *, done: bool) -> None:
    if not changes:
        print("no schedules in the file and none created by pitstop")
    for change in changes:
        print(change.line())
    counts = {kind: sum(1 for c in changes if c.kind == kind) for kind in ("create", "update", "delete", "unchanged", "conflict")}
    verbs = {"create": "created", "update": "updated", "delete": "deleted"} if done else {}
    print(", ".join(f"{n} {verbs.get(kind, kind)}" for kind, n in counts.items() if n) or "nothing to do")


schedules_app = typer.Typer(
    help="Temporal Schedules declared in runbooks/schedules.yaml (reviewed like code, applied by `apply`).",
    no_args_is_help=True,
)


@schedules_app.command("validate")
def validate(file: FileOption = None) -> None:
    """Check the schedules file: format, cron, time zone, known runbooks, inputs. One line per problem."""
    entries = checked_entries(load_settings(), file)
    print(f"{len(entries)} schedule(s) valid{': ' + ', '.join(e.id for e in entries) if entries else ''}")


@schedules_app.command("schema")
def schema(
    write: Annotated[bool, typer.Option("--write", help="Write runbooks/schedules.schema.json instead of printing.")] = False,
) -> None:
    """Print (or write) the JSON Schema of the schedules file, generated from the model."""
    from pitstop.config import SHIPPED_RUNBOOKS_DIR
    from pitstop.schedules.model import schedules_json_schema_text

    print_or_write_schema(schedules_json_schema_text(), SHIPPED_RUNBOOKS_DIR / "schedules.schema.json", write=write)


@schedules_app.command("diff")
def diff(file: FileOption = None) -> None:
    """Show what `apply` would do: create, update (which fields), delete, unchanged, conflict."""
    settings = load_settings()
    entries = checked_entries(settings, file)
    changes = _with_client(settings, lambda c: temporal_schedules.plan(c, entries, task_queue=settings.temporal.task_queue))
    _print_changes(changes, done=False)


@schedules_app.command("apply")
def apply(file: FileOption = None, token_file: TokenFileOption = None) -> None:
    """Make Temporal's schedules match the file (idempotent), through the pitstop API: a `schedule.change` the
    policy must allow for every schedule in the file and every one it deletes. Deletes only schedules pitstop
    created; never touches others. Exit 1 when an entry's id is taken by a schedule pitstop did not create."""
    settings = load_settings()
    checked_entries(settings, file)  # the problems with file:line before anything is sent
    path = schedules_path(settings, file)
    answer = call_api(settings, token_file, "POST", ["schedules"], {"file": str(path), "text": path.read_text()})
    changes = [ScheduleChange.model_validate(change) for change in answer.get("changes", [])]
    _print_changes(changes, done=True)
    print(f"applied as {answer.get('applied_by')}")
    if any(c.kind == "conflict" for c in changes):
        raise typer.Exit(EXIT_FAILED)


@schedules_app.command("list")
def list_schedules(
    all_schedules: Annotated[bool, typer.Option("--all", help="Also schedules pitstop did not create.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Schedules with their next run times and the last run's outcome (skipped runs with their reason)."""
    found = _with_client(load_settings(), lambda c: temporal_schedules.rows(c, include_foreign=all_schedules))
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
        return
    if not found:
        print("no schedules")
    for row in found:
        owner = f"  owner {row.owner}" if row.owner else ""
        print(f"{row.id}  runbook {row.runbook}  {row.timing or '(not from the file)'}  overlap {row.overlap}{owner}"
              + ("" if row.managed else "  [not created by pitstop]"))
        if row.paused:
            print(f"  PAUSED: {row.note or 'no note'}")
        print(f"  next: {', '.join(f'{t:%Y-%m-%d %H:%M:%S}Z' for t in row.next_runs) or '-'}"
              f"  ({row.actions} run(s) so far, {row.skipped_overlap} skipped for overlap)")
        if row.last_run:
            last = row.last_run
            print(f"  last: {last.workflow_id} at {last.started_at:%Y-%m-%d %H:%M:%S}Z -> {last.outcome}"
                  + (f": {last.reason}" if last.reason else ""))


@schedules_app.command("trigger")
def trigger(schedule_id: Annotated[str, typer.Argument(help="Schedule id.")], token_file: TokenFileOption = None,
            claimed: IgnoredAsOption = None) -> None:
    """Start the schedule's runbook now (the schedule's overlap policy applies), through the pitstop API."""
    warn_ignored_as(claimed)
    call_api(load_settings(), token_file, "POST", ["schedules", schedule_id, "trigger"], {})
    print(f"triggered {schedule_id}: see `pitstop schedules list` or `pitstop list --query \"TemporalScheduledById='{schedule_id}'\"`")


def pause_command(name: str, doc: str) -> None:
    """Register `pitstop schedules <name> ID --reason ...` (pause or unpause), sent through the pitstop API."""
    def command(
        schedule_id: Annotated[str, typer.Argument(help="Schedule id.")],
        reason: Annotated[str, typer.Option("--reason", "-m", help="Why (kept as the schedule's note).")],
        token_file: TokenFileOption = None,
        claimed: IgnoredAsOption = None,
    ) -> None:
        warn_ignored_as(claimed)
        if not reason.strip():
            raise CliError(f"{name} needs a reason (--reason)", exit_code=EXIT_USAGE)
        answer = call_api(load_settings(), token_file, "POST", ["schedules", schedule_id, name], {"reason": reason})
        print(f"{schedule_id}: {answer['result']}")

    command.__doc__ = doc + " The note names the identity your credential proves."
    schedules_app.command(name)(command)


pause_command("pause", "Pause a schedule, with a reason (`apply` leaves it paused until its entry changes).")
pause_command("unpause", "Unpause a schedule, with a reason.")


@schedules_app.command("delete")
def delete(schedule_id: Annotated[str, typer.Argument(help="Schedule id.")], token_file: TokenFileOption = None,
           claimed: IgnoredAsOption = None) -> None:
    """Delete a schedule pitstop created (running runs go on), through the pitstop API. While it is in the file,
    `apply` recreates it."""
    warn_ignored_as(claimed)
    call_api(load_settings(), token_file, "POST", ["schedules", schedule_id, "delete"], {})
    print(f"deleted {schedule_id}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `pitstop` CLI."""
    app.add_typer(schedules_app, name="schedules")


def apply_on_up(settings: Settings, env: dict[str, str]) -> None:
    """`pitstop up`: apply the schedules file to the embedded Temporal (in a child process, like any CLI call:
    through the pitstop API as the local operator of <state_dir>/cli.token); a missing or invalid file is reported
    and `up` goes on."""
    import subprocess
    import sys

    path = schedules_path(settings, None)
    if not path.exists():
        print(f"[up] schedules: {path} does not exist; no schedules applied", flush=True)
        return
    command = [sys.executable, "-m", "pitstop.workers.cli", "schedules", "apply", "--file", str(path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    print(f"[up] schedules from {path}{'' if result.returncode == 0 else ' (NOT all applied)'}:", flush=True)
    for line in (result.stdout + result.stderr).strip().splitlines():
        print(f"[up]   {line}", flush=True)
