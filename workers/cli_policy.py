"""`pitstop policy`: check a policy file, explain a decision, write the policy file's JSON Schema (docs/policy.md).
Reads files only; needs no Temporal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import EXIT_USAGE, CliError

policy_app = typer.Typer(help="The access policy file: check, explain, schema (docs/policy.md).", no_args_is_help=True)

FileOption = Annotated[Optional[Path], typer.Argument(help="Policy file; default security.policy_file, else the shipped runbooks/policy.yaml.")]


def _policy_path(file: Path | None) -> Path:
    from pitstop.config import SHIPPED_RUNBOOKS_DIR

    from .cli_settings import load_settings

    return file or load_settings().security.policy_file or SHIPPED_RUNBOOKS_DIR / "policy.yaml"


def _load(path: Path):  # type: ignore[no-untyped-def]
    from pitstop.policy import PolicyError, load_policy

    try:
        return load_policy(path)
    except PolicyError as exc:
        raise CliError(str(exc), exit_code=EXIT_USAGE) from None


@policy_app.command("check")
def check(file: FileOption = None) -> None:
    """Validate a policy file; errors name the file, the rule (index and id) and the field."""
    path = _policy_path(file)
    policy = _load(path)
    print(f"{path}: valid, {len(policy.rules)} rule(s), groups: {', '.join(sorted(policy.groups)) or 'none'}")


@policy_app.command("explain")
def explain(
    user: Annotated[str, typer.Option("--user", help="The subject asking.")],
    action: Annotated[str, typer.Option("--action", help="start, approve, pause, resume, abort, release.promote, ...")],
    runbook: Annotated[str, typer.Option("--runbook", help="Runbook name (`release` for releases, `incident`, `ChaosExperiment` for chaos runs, `RightsizingLoop`).")],
    group: Annotated[Optional[list[str]], typer.Option("--group", help="A group of the subject (repeatable).")] = None,
    namespace: Annotated[Optional[str], typer.Option("--namespace")] = None,
    service: Annotated[Optional[str], typer.Option("--service")] = None,
    region: Annotated[Optional[str], typer.Option("--region")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", help="Policy file (default as for `check`).")] = None,
) -> None:
    """Print the decision the policy takes for one request and the rule that took it (exit 1 when denied).
    A what-if tool: nothing here verifies who you are."""
    from pitstop.access import Action, Target

    try:
        parsed = Action(action)
    except ValueError:
        raise CliError(f"unknown action {action!r}; known: {', '.join(a.value for a in Action)}",
                       exit_code=EXIT_USAGE) from None
    policy = _load(_policy_path(file))
    decision = policy.decide_for(subject=user, groups=group or [], action=parsed, runbook=runbook,
                                 target=Target(namespace=namespace, service=service, region=region))
    print(("allowed: " if decision.allowed else "denied: ") + decision.reason)
    if not decision.allowed:
        raise typer.Exit(1)


@policy_app.command("schema")
def schema(
    write: Annotated[bool, typer.Option("--write", help="Write runbooks/policy.schema.json instead of printing.")] = False,
) -> None:
    """Print (or write) the JSON Schema of the policy file."""
    from pitstop.config import SHIPPED_RUNBOOKS_DIR
    from pitstop.policy.schema import SCHEMA_FILE_NAME, policy_json_schema_text

    from .cli_runs import print_or_write_schema

    print_or_write_schema(policy_json_schema_text(), SHIPPED_RUNBOOKS_DIR / SCHEMA_FILE_NAME, write=write)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
