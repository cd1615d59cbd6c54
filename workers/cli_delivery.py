"""CLI commands for releases: `pitstop release status|promote|rollback|abort ID`, and `pitstop release watch-git`
(starts the `GitReleaseWatch` workflow: releases started by a commit, docs/gitops.md).

ID is a `ProgressiveRelease` (one region), a `RegionWaves` run (every region), or a runbook run whose
release step runs as a child workflow (`<run>/release` or `<run>/waves`). Status shows the phase, the
route weights per region and the latest analysis verdicts (query, value, threshold, verdict).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from pitstop.delivery.models import MeasurementRecord, ReleaseStatus, WavesStatus
from pitstop.delivery.spec import RELEASE_WORKFLOW, WAVES_WORKFLOW

from .api_client import IgnoredAsOption, TokenFileOption, call_api, warn_ignored_as
from .errors import EXIT_NOT_FOUND, CliError

CHILD_STEP_IDS = ("release", "waves")


async def resolve_release(client: Client, workflow_id: str) -> tuple[str, str]:
    """(workflow id, type) of the release behind `workflow_id` (itself, or a runbook run's release child)."""
    for candidate in (workflow_id, *(f"{workflow_id}/{step}" for step in CHILD_STEP_IDS)):
        try:
            desc = await client.get_workflow_handle(candidate).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue
            raise CliError(f"Temporal refused the request for {candidate!r}: {exc.message}") from exc
        if desc.workflow_type in (RELEASE_WORKFLOW, WAVES_WORKFLOW):
            return candidate, desc.workflow_type
    raise CliError(f"no release found for {workflow_id!r} (a {RELEASE_WORKFLOW} or {WAVES_WORKFLOW} run, "
                   f"or a runbook run with a step {' / '.join(CHILD_STEP_IDS)})", exit_code=EXIT_NOT_FOUND)


def render_verdicts(records: list[MeasurementRecord]) -> list[str]:
    lines = []
    for r in records:
        value = "no data" if r.value is None else f"{r.value:.4g}"
        lines.append(f"    {r.verdict.value:<12} {r.check:<24} {value:>10}  ({r.threshold})  {r.explanation}")
        lines.append(f"    {'':<12} {r.query}")
    return lines


def render_release(status: ReleaseStatus, *, events: int = 8) -> str:
    weights = ", ".join(f"{k or 'default'}={v}%" for k, v in status.weights.items()) or "-"
    lines = [
        f"{status.region}: {status.phase.value}  {status.service}.{status.namespace}  {status.strategy}  "
        f"{status.stable_version or '?'} -> {status.new_version}",
        f"  weights: {weights}   step {status.step_index + 1}/{len(status.steps)} {status.steps}   "
        f"analysis runs {status.analysis_runs}, failed {status.failed_runs}/{status.failure_threshold}",
        f"  {status.message}",
    ]
    if status.awaiting_approval:
        lines.append("  waiting for: pitstop release promote <id>")
    if status.rollback_reason:
        lines.append(f"  rollback reason: {status.rollback_reason}")
    if status.last_verdicts:
        lines.append(f"  last analysis ({status.last_verdict.value if status.last_verdict else '?'}):")
        lines += render_verdicts(status.last_verdicts)
    if status.events:
        lines.append("  recent events:")
        lines += [f"    {e.at[:19]}Z {e.phase.value:<18} {e.message}" for e in status.events[-events:]]
    return "\n".join(lines)


async def release_status(client: Client, workflow_id: str) -> dict[str, Any]:
    release_id, kind = await resolve_release(client, workflow_id)
    handle = client.get_workflow_handle(release_id)
    if kind == RELEASE_WORKFLOW:
        return {"id": release_id, "type": kind, "release": await handle.query("status", result_type=ReleaseStatus)}
    waves = await handle.query("status", result_type=WavesStatus)
    children = await handle.query("children", result_type=dict)
    regions: dict[str, ReleaseStatus] = {}
    for region, child_id in children.items():
        try:
            regions[region] = await client.get_workflow_handle(child_id).query("status", result_type=ReleaseStatus)
        except Exception:  # noqa: BLE001 - a child without a worker to answer: show what the parent knows
            continue
    return {"id": release_id, "type": kind, "waves": waves, "regions": regions}


def _run(coro_factory: Any) -> Any:
    from .cli_settings import load_settings
    from .temporal_connection import connect

    async def go() -> Any:
        client = await connect(load_settings())
        return await coro_factory(client)

    return asyncio.run(go())


release_app = typer.Typer(help="Progressive delivery: live status, manual promotion, instant rollback, abort.",
                          no_args_is_help=True)


@release_app.command("status")
def status(
    workflow_id: Annotated[str, typer.Argument(help="Release, waves or runbook run id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    history: Annotated[bool, typer.Option("--measurements", help="Every recorded check, not only the latest run.")] = False,
) -> None:
    """Phase, route weights per region and the latest analysis verdicts."""

    async def go(client: Client) -> str:
        state = await release_status(client, workflow_id)
        releases = [state["release"]] if "release" in state else list(state["regions"].values())
        if as_json:
            return json.dumps({k: (v.model_dump(mode="json") if hasattr(v, "model_dump") else
                                   {r: s.model_dump(mode="json") for r, s in v.items()} if isinstance(v, dict) else v)
                               for k, v in state.items()}, indent=2)
        out = [f"{state['id']} ({state['type']})"]
        if "waves" in state:
            w: WavesStatus = state["waves"]
            out.append(f"waves: {w.phase}  order {w.regions}  promoted {w.promoted_regions}  "
                       f"rolled back {w.rolled_back_regions}  {w.message}")
        out += [render_release(r) for r in releases]
        if history:
            ids = [state["id"]] if "release" in state else list((await client.get_workflow_handle(state["id"]).query(
                "children", result_type=dict)).values())
            for child in ids:
                records = await client.get_workflow_handle(child).query("measurements", 0, result_type=list[MeasurementRecord])
                out.append(f"measurements of {child}:")
                out += render_verdicts(records)
        return "\n".join(out)

    print(_run(go), flush=True)


@release_app.command("promote")
def promote(
    workflow_id: Annotated[str, typer.Argument(help="Release or waves id.")],
    comment: Annotated[str, typer.Option("--comment", "-m")] = "",
    token_file: TokenFileOption = None,
    claimed: IgnoredAsOption = None,
) -> None:
    """Pass the manual gate: promote a release waiting for approval (or start the next region), through the
    pitstop API as the identity your credential proves."""
    warn_ignored_as(claimed)
    print(_act(workflow_id, "promote", {"comment": comment}, token_file), flush=True)


@release_app.command("rollback")
def rollback(
    workflow_id: Annotated[str, typer.Argument(help="Release id (one region).")],
    reason: Annotated[str, typer.Option("--reason", "-m")] = "manual rollback",
    token_file: TokenFileOption = None,
    claimed: IgnoredAsOption = None,
) -> None:
    """Instant rollback: traffic back to the warm previous version in one step; waits until done (pitstop API)."""
    warn_ignored_as(claimed)
    print(_act(workflow_id, "rollback", {"reason": reason}, token_file), flush=True)


@release_app.command("abort")
def abort(
    workflow_id: Annotated[str, typer.Argument(help="Release or waves id.")],
    reason: Annotated[str, typer.Option("--reason", "-m")] = "aborted",
    token_file: TokenFileOption = None,
    claimed: IgnoredAsOption = None,
) -> None:
    """Abort a release: roll back to the exact prior routes and scale (every promoted region for waves);
    sent through the pitstop API."""
    warn_ignored_as(claimed)
    print(_act(workflow_id, "abort", {"reason": reason}, token_file), flush=True)


@release_app.command("watch-git")
def watch_git(
    regions: Annotated[list[str] | None, typer.Option("--region", help="Region to watch (repeat); default every configured region.")] = None,
) -> None:
    """Start releases from git: the `GitReleaseWatch` workflow (id `git-release-watch`; already running: left as is)
    polls the regions every `gitops.releases.poll_seconds` and starts a release for each new template from git."""
    from temporalio.common import WorkflowIDConflictPolicy

    from pitstop.git_releases import GIT_RELEASE_WATCH_WORKFLOW, GitReleaseWatchInput

    from .cli_settings import load_settings

    settings = load_settings()
    watched = regions or sorted(settings.kubernetes.regions)
    if not watched:
        raise CliError("no region to watch: configure kubernetes.regions or pass --region")

    async def go(client: Client) -> str:
        handle = await client.start_workflow(
            GIT_RELEASE_WATCH_WORKFLOW,
            GitReleaseWatchInput(regions=watched, poll_seconds=settings.gitops.releases.poll_seconds),
            id=WATCH_ID, task_queue=settings.temporal.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        return f"{WATCH_ID} watching {', '.join(watched)} (run {handle.result_run_id})"

    print(_run(go), flush=True)


WATCH_ID = "git-release-watch"


def _act(workflow_id: str, op: str, body: dict[str, str], token_file: Path | None) -> str:
    from .cli_settings import load_settings

    return str(call_api(load_settings(), token_file, "POST", ["releases", workflow_id, op], body)["result"])


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `pitstop` CLI."""
    app.add_typer(release_app, name="release")
