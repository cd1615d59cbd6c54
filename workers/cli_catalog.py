"""CLI commands of the `runbooks` group: the catalog (`list`, `show NAME`) and the file checks (`validate`,
`schema`). Reads the runbooks directory and its schedules file; needs no Temporal. The rendering is pure, in
`pitstop/runbook/catalog.py`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Optional

import typer

from pitstop.config import Settings
from pitstop.runbook import catalog
from pitstop.runbook.model import Runbook
from pitstop.runbook.reach import AuthorReach
from pitstop.runbook.registry import load_step_types
from pitstop.runbook.validation import RunbookInvalid, load_runbook_file, runbook_files, validate_catalog
from pitstop.schedules.model import ScheduleEntry
from pitstop.schedules.validation import parse_schedules

from .cli_runs import find_runbook_file, print_or_write_schema, ui_link
from .cli_settings import load_settings
from .errors import EXIT_NOT_FOUND, EXIT_USAGE, CliError


def catalog_runbooks(settings: Settings) -> tuple[dict[str, Runbook], int]:
    """The valid runbooks of the runbooks directory by name, and how many files did not validate."""
    if not settings.runbooks_dir.is_dir():
        raise CliError(f"{settings.runbooks_dir} does not exist", exit_code=EXIT_NOT_FOUND)
    catalog, _ = validate_catalog(settings.runbooks_dir, reach=AuthorReach.from_settings(settings))
    broken = len(runbook_files(settings.runbooks_dir)) - len(catalog)
    return {name: runbook for name, (_, runbook) in catalog.items()}, broken


def scheduled_entries(settings: Settings, runbooks: Mapping[str, Runbook]) -> tuple[list[ScheduleEntry], str]:
    """The schedules file's entries, and a note when it is missing or has problems (then no entries)."""
    from .cli_schedules import schedules_path

    path = schedules_path(settings, None)
    if not path.exists():
        return [], ""
    entries, problems = parse_schedules(path.read_text(), str(path), runbooks)
    if problems:
        return [], f"{path} has {len(problems)} problem(s), so its schedules are not shown: see `pitstop schedules validate`"
    return entries, ""


runbooks_app = typer.Typer(help="The runbook catalog (list, show) and file checks (validate, schema).",
                           no_args_is_help=True)


@runbooks_app.command("list")
def list_runbooks(
    tag: Annotated[Optional[str], typer.Option("--tag", help="Only runbooks carrying this tag.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The runbooks: description, owner, mutating or read-only, lease policy, schedules that start them."""
    settings = load_settings()
    runbooks, broken = catalog_runbooks(settings)
    entries, note = scheduled_entries(settings, runbooks)
    rows = catalog.catalog_rows(runbooks, entries, catalog.mutating_step_types(load_step_types()), tag=tag)
    if as_json:
        print(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
        return
    for line in catalog.render_rows(rows) if rows else [f"no runbooks{f' tagged {tag!r}' if tag else ''}"]:
        print(line)
    if broken:
        print(f"({broken} runbook file(s) in {settings.runbooks_dir} are not valid: see `pitstop runbooks validate`)")
    if note:
        print(f"({note})")


@runbooks_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Runbook name (or a runbook file).")],
    start_form: Annotated[
        bool, typer.Option("--start-form", help="Print only the JSON input for the Web UI's start form.")
    ] = False,
) -> None:
    """One runbook: inputs (type, default, description), the step DAG as a tree, the Web UI start-form JSON."""
    settings = load_settings()
    path = find_runbook_file(settings, name)
    try:
        runbook = load_runbook_file(path, reach=AuthorReach.from_settings(settings))
    except RunbookInvalid as exc:
        raise CliError(f"{path} is not valid:\n{exc}", exit_code=EXIT_USAGE) from exc
    if start_form:
        print(catalog.start_form_json(runbook))
        return
    runbooks, _ = catalog_runbooks(settings)
    entries, note = scheduled_entries(settings, runbooks)
    print(catalog.show_runbook(
        runbook, file=str(path), runbooks={**runbooks, runbook.name: runbook}, schedules=entries,
        mutating_types=catalog.mutating_step_types(load_step_types()), task_queue=settings.temporal.task_queue,
        start_form_url=ui_link(settings, "start-workflow"),
    ))
    if note:
        print(f"\n({note})")


@runbooks_app.command("validate")
def validate(
    path: Annotated[Optional[Path], typer.Argument(help="A runbook file or directory (default: the runbooks dir).")] = None,
) -> None:
    """Validate runbooks: types, arguments, references, cycles, ids, and the env vars, hosts and step types the
    configuration (`security.*`, `worker.enable_debug_steps`) allows. One line per problem (file:line)."""
    settings = load_settings()
    root = path or settings.runbooks_dir
    if not root.exists():
        raise CliError(f"{root} does not exist", exit_code=EXIT_NOT_FOUND)
    found, problems = validate_catalog(root, reach=AuthorReach.from_settings(settings))
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s); {len(found)} runbook(s) valid")
        raise typer.Exit(EXIT_USAGE)
    print(f"{len(found)} runbook(s) valid: {', '.join(sorted(found))}")


@runbooks_app.command("schema")
def schema(
    write: Annotated[bool, typer.Option("--write", help="Write runbooks/runbook.schema.json instead of printing.")] = False,
) -> None:
    """Print (or write) the JSON Schema of runbook files, generated from the models and step types."""
    from pitstop.config import SHIPPED_RUNBOOKS_DIR
    from pitstop.runbook.schema import runbook_json_schema_text

    print_or_write_schema(runbook_json_schema_text(), SHIPPED_RUNBOOKS_DIR / "runbook.schema.json", write=write)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `pitstop` CLI."""
    app.add_typer(runbooks_app, name="runbooks")
