"""`pitstop capacity report`: the capacity report (rightsizing, node plans, forecasts, chargeback) written locally.

Runs the same code as the `capacity.collect` and `capacity.report` steps (`activities.capacity.collect_region`,
`write_report`) from this machine: every region's Kubernetes API (the configured clusters, or the sandbox's) and
the configured Prometheus, read-only. Progress (namespaces read, queries, samples) goes to stderr; the files
`capacity.html`, `capacity.md` and `capacity.json` go to `--out`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from pydantic import ValidationError

from pitstop.capacity.policy import CapacityPolicy, PolicyError, load_policy
from pitstop.capacity.strategies import Strategy
from pitstop.config import Settings
from pitstop.capacity.collection import RegionCapacity
from pitstop.steps.capacity import CollectArgs, ReportArgs

from .api_client import TokenFileOption
from .errors import EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE, CliError

capacity_app = typer.Typer(help="Rightsizing, node plans, forecasts and cost; `apply`: the closed loop. See docs/capacity.md.",
                           no_args_is_help=True)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_prices(path: Path | None) -> dict[str, float]:
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError("expected a mapping of instance type -> hourly USD")
        return {str(k): float(v) for k, v in raw.items()}
    except (OSError, yaml.YAMLError, TypeError, ValueError) as exc:
        raise CliError(f"--prices {path}: {exc}", exit_code=EXIT_USAGE) from None


def collect_all(settings: Settings, regions: list[str], template: dict[str, Any]) -> list[RegionCapacity]:
    from pitstop.activities.capacity import collect_region
    from pitstop.activities.kube_api import KubeJson
    from pitstop.activities.metrics import MetricsQueryError, MetricsUnavailable

    from .clients import build_kube_client, build_metrics_provider, region_clusters

    clusters = region_clusters(settings)
    unknown = [r for r in regions if r not in clusters]
    if unknown:
        raise CliError(f"unknown region(s) {', '.join(unknown)}; configured: {', '.join(sorted(clusters)) or 'none'}",
                       exit_code=EXIT_USAGE)
    provider = build_metrics_provider(settings)
    results: list[RegionCapacity] = []
    for region in regions:
        api_client = build_kube_client(region, clusters[region])
        try:
            args = CollectArgs(region=region, **template)
            results.append(asyncio.run(collect_region(KubeJson(api_client), provider, args, progress=_progress)))
        except MetricsUnavailable as exc:
            raise CliError(str(exc), exit_code=EXIT_UNAVAILABLE) from exc
        except MetricsQueryError as exc:
            raise CliError(str(exc), exit_code=EXIT_FAILED) from exc
        finally:
            api_client.close()
    return results


def apply_cmd(
    service: Annotated[str, typer.Argument(help="The Deployment (service) to rightsize.")],
    region: Annotated[str, typer.Option("--region", help="The region whose Deployment is changed.")],
    namespace: Annotated[Optional[str], typer.Option("--namespace", help="Its namespace (default: found by name).")] = None,
    strategy: Annotated[Strategy, typer.Option("--strategy", help="simple or vpa (the policy file may override per team).")] = Strategy.SIMPLE,
    policy: Annotated[Optional[Path], typer.Option("--policy", help="Capacity policy file: strategy, settings and the closed-loop opt-in per team.")] = None,
    history_hours: Annotated[float, typer.Option("--history-hours", help="Usage history read.")] = 336.0,
    step_seconds: Annotated[int, typer.Option("--step", help="Seconds between usage samples.")] = 300,
    dry_run: Annotated[bool, typer.Option("--dry-run/--apply", help="Dry run (the default): show what would change. --apply starts the closed loop (team opt-in required).")] = True,
    wait: Annotated[bool, typer.Option("--wait", help="With --apply: wait for the loop's outcome (exit 0 rolled out, 1 reverted/refused).")] = False,
    patches: Annotated[Optional[Path], typer.Option("--patches", help="Write kustomize patches (one per Deployment + kustomization.yaml) to this directory instead; changes nothing.")] = None,
    kustomize_resource: Annotated[Optional[list[str]], typer.Option("--kustomize-resource", help="What the written kustomization.yaml patches (repeatable; default ../base).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Also print the plan as JSON.")] = False,
    token_file: TokenFileOption = None,
) -> None:
    """Rightsize one service: show the change (default), write kustomize patches, or apply it safely (--apply,
    started through the pitstop API as the identity your credential proves)."""
    from .cli_capacity_apply import apply_command, collect_one, recommendation_for
    from .cli_settings import load_settings

    settings = load_settings()
    try:
        chosen_policy = load_policy(policy) if policy else CapacityPolicy()
    except PolicyError as exc:
        raise CliError(f"--policy {exc}", exit_code=EXIT_USAGE) from None
    template = dict(strategy=strategy, history_hours=history_hours, step_seconds=step_seconds, policy=chosen_policy)
    rec = recommendation_for(collect_one(settings, region, namespace, template), service, namespace)
    apply_command(settings, chosen_policy, rec, region=region, apply=not dry_run, wait=wait, patches=patches,
                  kustomize_resources=list(kustomize_resource or ["../base"]), as_json=as_json, token_file=token_file)



def register(app: typer.Typer) -> None:
    from .cli_settings import load_settings

    @capacity_app.command("report")
    def report_command(
        region: Annotated[Optional[list[str]], typer.Option("--region", help="A region to read (repeatable; default every configured one).")] = None,
        strategy: Annotated[Strategy, typer.Option("--strategy", help="simple (KRR's defaults) or vpa (the VPA recommender's).")] = Strategy.SIMPLE,
        out: Annotated[Path, typer.Option("--out", help="Directory for capacity.html, capacity.md, capacity.json.")] = Path("capacity-report"),
        policy: Annotated[Optional[Path], typer.Option("--policy", help="Capacity policy file (per-team strategy and settings).")] = None,
        prices: Annotated[Optional[Path], typer.Option("--prices", help="YAML: instance type -> hourly USD (wins over node labels).")] = None,
        history_hours: Annotated[float, typer.Option("--history-hours", help="Usage history read.")] = 336.0,
        step_seconds: Annotated[int, typer.Option("--step", help="Seconds between usage samples.")] = 300,
    ) -> None:
        """Read usage history, nodes and quotas; write the capacity report (HTML, Markdown, JSON) to --out."""
        from pitstop.activities.capacity import write_report

        settings = load_settings()
        try:
            chosen_policy = load_policy(policy) if policy else CapacityPolicy()
        except PolicyError as exc:
            raise CliError(f"--policy {exc}", exit_code=EXIT_USAGE) from None
        regions = list(region or settings.kubernetes.regions or settings.sandbox.regions)
        template = dict(strategy=strategy, history_hours=history_hours, step_seconds=step_seconds,
                        policy=chosen_policy, prices=load_prices(prices))
        try:
            collected = collect_all(settings, regions, template)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise CliError(f"invalid --{str(first['loc'][0]).replace('_', '-')}: {first['msg']}", exit_code=EXIT_USAGE) from exc
        _progress("computing node plans, chargeback and the report")
        result = write_report(ReportArgs(regions=collected), out)
        for line in result.report.markdown.split("\n\n")[1:2]:
            print(line)
        for flag in result.report.flags:
            print(f"flag: {flag.kind} {flag.region} {flag.subject}: {flag.detail}")
        for r in result.report.regions:
            best = r.recommended.best
            if best is not None:
                print(f"{r.region}: recommended plan {best.nodes} x {best.instance_type} ({best.algorithm.value}),"
                      f" lower bound {best.lower_bound}, gap {best.gap_percent:.1f} %; cluster today {r.current.nodes} nodes")
        print(f"wrote {out / 'capacity.html'} ({result.html_bytes} bytes), {out / 'capacity.md'}, {out / 'capacity.json'}")

    capacity_app.command("apply")(apply_cmd)
    app.add_typer(capacity_app, name="capacity")
