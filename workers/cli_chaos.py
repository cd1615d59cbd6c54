"""`pitstop chaos`: run Chaos Toolkit experiments, unchanged, as durable runs (docs/chaos.md).

- `validate FILE`: chaoslib's validation plus the worker's allowlists (provider modules, process providers,
  secrets only as references), nothing runs;
- `run FILE --target REGION/NAMESPACE/SERVICE [...]`: start a `ChaosExperiment` run through the pitstop API
  (workers/api_workflow_actions.py), wait for it, print its summary (`--journal-path` writes the journal
  `chaos run --journal-path` would write); exit 1 unless it completed without deviation and every rollback
  succeeded;
- `abort RUN`: stop the method and roll back (through the pitstop API);
- `status RUN`: the live phase, runs so far and the dead-man switch's checks;
- `journal RUN`: the journal of a finished run (JSON);
- `report [--service NS/NAME]`: the resilience score per service and experiment over the recent runs (oldest
  first); scores are read from the runs' results, kept as long as Temporal retains closed runs.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from temporalio.client import Client, WorkflowFailureError

from pitstop import bounded_yaml
from pitstop.chaos.model import (
    CHAOS_WORKFLOW, ChaosOutcome, ChaosRequest, ChaosTarget, RollbackStrategy, SloGuard, experiment_summary,
    inline_secrets, provider_refusals,
)
from pitstop.chaos.score import score_trend
from pitstop.config import Settings
from pitstop.delivery.spec import ErrorBudgetGate
from pitstop.failures import failure_text

from .api_client import TokenFileOption, call_api
from .errors import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_USAGE, CliError

chaos_app = typer.Typer(help="Chaos experiments (Chaos Toolkit format, unchanged) with guaranteed rollbacks.",
                        no_args_is_help=True)


def load_experiment(path: Path) -> dict[str, Any]:
    """A Chaos Toolkit experiment file (JSON, or YAML for .yaml/.yml)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = bounded_yaml.load_text(text, source=str(path)) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except OSError as exc:
        raise CliError(f"{path}: cannot be read: {exc.strerror}", exit_code=EXIT_NOT_FOUND) from exc
    except (ValueError, bounded_yaml.YamlRefused) as exc:
        raise CliError(f"{path}: not a valid experiment document: {exc}", exit_code=EXIT_USAGE) from exc
    if not isinstance(data, dict):
        raise CliError(f"{path}: an experiment is a mapping at the top level", exit_code=EXIT_USAGE)
    return data


def validation_problems(experiment: dict[str, Any], settings: Settings) -> list[str]:
    """chaoslib's verdict (`ensure_experiment_is_valid`, with this process' environment) and the allowlists."""
    from pitstop.chaos_toolkit.runner import run_phase

    security = settings.security
    problems = provider_refusals(experiment, modules=security.chaos_provider_modules,
                                 processes=security.chaos_process_providers)
    problems += [f"{name} is a secret value: reference it (type: env) instead" for name in inline_secrets(experiment)]
    error = run_phase("validate", experiment, 0, False, Path("/dev/null")).get("error")
    return ([f"chaoslib: {error}"] if error else []) + problems


def _run(coro_factory: Any) -> Any:
    from .cli_settings import load_settings
    from .temporal_connection import connect

    async def go() -> Any:
        client = await connect(load_settings())
        return await coro_factory(client)

    return asyncio.run(go())


def _settings() -> Settings:
    from .cli_settings import load_settings

    return load_settings()


@chaos_app.command("validate")
def validate(file: Annotated[Path, typer.Argument(help="Experiment file (JSON or YAML).")]) -> None:
    """Validate an experiment (chaoslib's rules and this worker configuration's allowlists); runs nothing."""
    experiment = load_experiment(file)
    problems = validation_problems(experiment, _settings())
    if problems:
        raise CliError(f"{file}: invalid experiment: " + "; ".join(problems), exit_code=EXIT_USAGE)
    print(f"{file}: valid: {experiment_summary(experiment)}")


def _targets(values: list[str]) -> list[ChaosTarget]:
    try:
        return [ChaosTarget.parse(v) for v in values]
    except ValueError as exc:
        raise CliError(str(exc), exit_code=EXIT_USAGE) from exc


def render_outcome(run_id: str, outcome: ChaosOutcome) -> str:
    lines = [f"chaos run {run_id}: {outcome.summary}"]
    if outcome.reason:
        lines.append(f"  reason: {outcome.reason}")
    lines += [f"  activity failed (the experiment goes on, as in Chaos Toolkit): {n}" for n in outcome.failed_activities]
    lines.append(f"  rollbacks: {'played' if outcome.rollbacks_played else 'not played (rollback strategy)'}")
    lines += [f"  ROLLBACK FAILED: {f}" for f in outcome.rollback_failures]
    lines += [f"  check {'pass' if c.passed else 'FAIL'} ({c.severity}) {c.name}: {c.detail}" for c in outcome.checks]
    return "\n".join(lines)


@chaos_app.command("run")
def run(
    file: Annotated[Path, typer.Argument(help="Experiment file (JSON or YAML), run unchanged.")],
    target: Annotated[list[str], typer.Option("--target", "-t", help="REGION/NAMESPACE/SERVICE acted on (lease, "
                                              "error budget, blast radius); repeatable.")] = [],  # noqa: B006
    region: Annotated[str, typer.Option(help="Region whose cluster the providers use; default the first target's.")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="chaoslib's dry mode: no activity or probe is executed.")] = False,
    rollback_strategy: Annotated[str, typer.Option(help="default | always | never | deviated (Chaos Toolkit's).")] = "default",
    deadline: Annotated[float, typer.Option(help="Seconds before the method is aborted and rolled back.")] = 600.0,
    success_rate_min: Annotated[Optional[float], typer.Option(help="Dead-man switch: abort below this % of non-5xx.")] = None,
    latency_p95_max_ms: Annotated[Optional[float], typer.Option(help="Dead-man switch: abort above this p95 (ms).")] = None,
    guard_interval: Annotated[float, typer.Option(help="Seconds between dead-man switch measurements.")] = 10.0,
    budget_slo: Annotated[Optional[float], typer.Option(help="Refuse when the targets' error budget for this SLO "
                                                         "(e.g. 99.9) over 30d is spent.")] = None,
    max_pod_share: Annotated[float, typer.Option(help="Largest share of a target's pods the method may act on.")] = 0.5,
    journal_path: Annotated[Optional[Path], typer.Option(help="Write the run's journal here.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the run to end.")] = True,
    token_file: TokenFileOption = None,
) -> None:
    """Run an experiment as a durable run: gates, phases, guaranteed rollbacks; prints the journal's summary.
    Started through the pitstop API: the policy must allow `start` of runbook `ChaosExperiment` on every --target
    (on --region alone without one) for the identity your credential proves."""
    experiment = load_experiment(file)
    problems = validation_problems(experiment, _settings())
    if problems:
        raise CliError(f"{file}: invalid experiment, nothing ran: " + "; ".join(problems), exit_code=EXIT_USAGE)
    if rollback_strategy not in ("default", "always", "never", "deviated"):
        raise CliError(f"--rollback-strategy {rollback_strategy!r}: use default, always, never or deviated", exit_code=EXIT_USAGE)
    strategy: RollbackStrategy = rollback_strategy  # type: ignore[assignment]
    guard = None
    if success_rate_min is not None or latency_p95_max_ms is not None:
        guard = SloGuard(interval=guard_interval, success_rate_min=success_rate_min, latency_p95_max_ms=latency_p95_max_ms)
    request = ChaosRequest(
        experiment=experiment, targets=_targets(target), region=region, rollback_strategy=strategy,
        deadline_seconds=deadline, guard=guard, max_pod_share=max_pod_share, dry_run=dry_run,
        error_budget=ErrorBudgetGate(slo_percent=budget_slo) if budget_slo is not None else None,
    )
    if not request.run_region():
        raise CliError("give --target REGION/NAMESPACE/SERVICE or --region", exit_code=EXIT_USAGE)
    slug = re.sub(r"[^a-z0-9]+", "-", str(experiment.get("title", "experiment")).lower()).strip("-")[:40]
    run_id = f"chaos-{slug}-{uuid.uuid4().hex[:8]}"
    answer = call_api(_settings(), token_file, "POST", ["chaos"], {"request": request.model_dump(mode="json"), "id": run_id})
    if not wait:
        print(f"started {run_id} as {answer.get('started_by')}", flush=True)
        return
    outcome = wait_for_outcome(run_id)
    if journal_path is not None:
        journal_path.write_text(json.dumps(outcome.journal, indent=2, default=str), encoding="utf-8")
    if not outcome.ok:
        raise typer.Exit(EXIT_FAILED)


def wait_for_outcome(run_id: str) -> ChaosOutcome:
    """Wait for a run's end (reading needs no API) and print its summary."""

    async def go(client: Client) -> ChaosOutcome:
        try:
            outcome: ChaosOutcome = await client.get_workflow_handle(run_id, result_type=ChaosOutcome).result()
        except WorkflowFailureError as exc:
            raise CliError(f"chaos run {run_id} refused or failed: {failure_text(exc)}") from exc
        return outcome

    outcome: ChaosOutcome = _run(go)
    print(render_outcome(run_id, outcome), flush=True)
    return outcome


@chaos_app.command("abort")
def abort(
    run_id: Annotated[str, typer.Argument(help="Chaos run id.")],
    reason: Annotated[str, typer.Option("--reason", "-m")] = "aborted from the CLI",
    token_file: TokenFileOption = None,
) -> None:
    """Abort a chaos run: the method is stopped (its child processes killed) and the rollbacks run. Through the
    pitstop API: the policy must allow `abort` of runbook `ChaosExperiment` on the run's targets; the abort reason
    names the identity your credential proves."""
    answer = call_api(_settings(), token_file, "POST", ["chaos", run_id, "abort"], {"reason": reason})
    print(answer["result"], flush=True)


@chaos_app.command("status")
def status(run_id: Annotated[str, typer.Argument(help="Chaos run id.")]) -> None:
    """Where a run is: phase, runs and rollbacks so far, the dead-man switch's checks, rollback failures."""
    from pitstop.chaos.phases import ChaosView

    async def go(client: Client) -> str:
        view = await client.get_workflow_handle(run_id).query("status", result_type=ChaosView)
        if view is None:
            return f"{run_id}: not started yet"
        lines = [f"{run_id}: {view.title!r} phase {view.phase.value}, {view.runs} method run(s), "
                 f"{view.rollbacks} rollback run(s)" + (f", aborting: {view.abort_reason}" if view.abort_reason else "")]
        lines += [f"  check {'pass' if c.passed else 'FAIL'} ({c.severity}) {c.name}: {c.detail}" for c in view.checks[-10:]]
        return "\n".join(lines + [f"  ROLLBACK FAILED: {f}" for f in view.rollback_failures])

    print(_run(go), flush=True)


@chaos_app.command("journal")
def journal(run_id: Annotated[str, typer.Argument(help="Chaos run id.")]) -> None:
    """The journal of a finished run, in the shape `chaos run --journal-path` writes."""

    async def go(client: Client) -> str:
        outcome = await client.get_workflow_handle(run_id, result_type=ChaosOutcome).result()
        return json.dumps(outcome.journal, indent=2, default=str)

    print(_run(go), flush=True)


async def recent_outcomes(client: Client, limit: int) -> list[tuple[str, ChaosOutcome]]:
    """Closed chaos runs (oldest first) with their outcomes."""
    found = []
    async for execution in client.list_workflows(f'WorkflowType="{CHAOS_WORKFLOW}" AND ExecutionStatus="Completed"',
                                                 limit=limit):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id, result_type=ChaosOutcome)
        outcome = await handle.result()
        found.append((execution.start_time.isoformat(), outcome))
    return sorted(found, key=lambda pair: pair[0])


def report_lines(outcomes: list[tuple[str, ChaosOutcome]], service: str | None) -> list[str]:
    trends: dict[tuple[str, str], list[tuple[str, float | None]]] = defaultdict(list)
    for started, outcome in outcomes:
        for t in outcome.targets or [ChaosTarget(region="-", namespace="-", service="-")]:
            key = f"{t.namespace}/{t.service}"
            if service is None or service == key:
                trends[(key, outcome.title)].append((started, outcome.score))
    lines = [f"{svc:<32} {title[:40]!r:<42} runs={len(s)}  {score_trend(s)}" for (svc, title), s in sorted(trends.items())]
    return lines or ["no finished chaos run" + (f" for {service}" if service else "")]


@chaos_app.command("report")
def report(
    service: Annotated[Optional[str], typer.Option(help="Only NAMESPACE/SERVICE.")] = None,
    limit: Annotated[int, typer.Option(help="Read at most this many recent runs.")] = 200,
) -> None:
    """Resilience score (Krkn: critical 3, warning 1, passed / total) per service and experiment, oldest first."""

    async def go(client: Client) -> str:
        return "\n".join(report_lines(await recent_outcomes(client, limit), service))

    print(_run(go), flush=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `pitstop` CLI."""
    app.add_typer(chaos_app, name="chaos")
