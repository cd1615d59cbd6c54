"""`pitstop graph`: the service dependency graph discovered from Istio telemetry (`istio_requests_total`).

Shows the calls per namespace with their rates, one service's dependencies and blast radius (`--service`), or
callees-first order (`--order`). The graph is read through `activities.dependency_graph.discover_graph` (the
same code as the `graph.discover` step) and cached in the state dir (`workers.graph_cache`) for `--max-age`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError

from pitstop.config import Settings
from pitstop.dependency_graph import DependencyGraph, ServiceOrder, ServiceRef
from pitstop.steps.graph import DiscoverArgs

from .errors import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_USAGE, CliError
from .graph_cache import CachedGraph, cache_path, load_fresh, store


def cached_or_discovered(settings: Settings, args: DiscoverArgs, *, refresh: bool, max_age: timedelta) -> CachedGraph:
    """The cached graph while fresh, else one read from Prometheus now (and cached unless empty)."""
    from pitstop.activities.dependency_graph import discover_graph
    from pitstop.activities.metrics import MetricsQueryError, MetricsUnavailable

    from .clients import build_metrics_provider

    url = settings.prometheus.url
    path = cache_path(settings.state_dir, args.region)
    now = datetime.now(timezone.utc)
    if not refresh and (cached := load_fresh(path, args=args, prometheus_url=url, now=now, max_age=max_age)):
        return cached
    try:
        discovery = asyncio.run(discover_graph(build_metrics_provider(settings), args))
    except MetricsUnavailable as exc:
        raise CliError(str(exc), exit_code=EXIT_UNAVAILABLE) from exc
    except MetricsQueryError as exc:
        raise CliError(str(exc), exit_code=EXIT_FAILED) from exc
    if discovery.series == 0:
        where = f' with region="{args.region}"' if args.region else ""
        raise CliError(f"no istio_requests_total series{where} in the last {args.window} at {url}",
                       exit_code=EXIT_NOT_FOUND)
    fresh = CachedGraph(fetched_at=now, prometheus_url=url, discovery=discovery)
    store(path, fresh)
    return fresh


def _rps(value: float) -> str:
    return f"{value:.3g} rps"


def graph_lines(cached: CachedGraph, now: datetime) -> list[str]:
    """The calls grouped by the caller's namespace, then the entries and cycles."""
    discovery, graph = cached.discovery, cached.discovery.graph
    scope = f"region {graph.region}" if graph.region else f"every region ({', '.join(discovery.regions) or 'no region label'})"
    age = int(cached.age(now).total_seconds())
    lines = [f"dependency graph of {scope}, rates over {graph.window}, calls >= {graph.min_rps:g} rps "
             f"(read {age}s ago from {cached.prometheus_url})"]
    for namespace in sorted({e.caller.namespace for e in graph.edges}):
        lines.append(namespace)
        lines += [f"  {e.caller.workload} -> {e.callee}  {_rps(e.rps)}" for e in graph.edges if e.caller.namespace == namespace]
    lines.append("entries (from the ingress gateway or outside the mesh):")
    lines += [f"  {e.service}  {_rps(e.rps)}" for e in graph.entries] or ["  none"]
    return lines + cycle_lines(graph.callees_first_order())


def cycle_lines(order: ServiceOrder) -> list[str]:
    lines = [f"cycle: {' <-> '.join(str(s) for s in c)}" for c in order.cycles]
    return lines + [f"  not respected by the order: {e.caller} -> {e.callee} ({_rps(e.rps)})" for e in order.broken_edges]


def service_view(graph: DependencyGraph, service: ServiceRef) -> dict[str, Any]:
    if service not in graph.services():
        known = [s.workload for s in graph.services() if s.namespace == service.namespace]
        raise CliError(f"{service} is in no call of the graph (rates over {graph.window}, >= {graph.min_rps:g} rps); "
                       f"workloads seen in {service.namespace}: {', '.join(known) or 'none'}", exit_code=EXIT_NOT_FOUND)
    return {
        "service": str(service),
        "entry_rps": sum(e.rps for e in graph.entries if e.service == service),
        "calls": {str(e.callee): e.rps for e in graph.callees_of(service)},
        "called_by": {str(e.caller): e.rps for e in graph.callers_of(service)},
        "dependencies": [str(s) for s in graph.dependencies(service)],
        "blast_radius": [str(s) for s in graph.blast_radius(service)],
    }


def service_lines(view: dict[str, Any]) -> list[str]:
    lines = [view["service"] + (f"  (entry: {_rps(view['entry_rps'])})" if view["entry_rps"] else "")]
    for title, key in (("calls", "calls"), ("called by", "called_by")):
        lines.append(f"{title}:")
        lines += [f"  {name}  {_rps(rps)}" for name, rps in view[key].items()] or ["  nobody"]
    lines.append(f"depends on (transitively, {len(view['dependencies'])}): {', '.join(view['dependencies']) or 'nothing'}")
    lines.append(f"blast radius (transitive callers, {len(view['blast_radius'])}): {', '.join(view['blast_radius']) or 'none'}")
    return lines


def order_lines(order: ServiceOrder) -> list[str]:
    lines = [f"callees first ({len(order.order)} workloads):"]
    lines += [f"  {i:3}. {s}" for i, s in enumerate(order.order, 1)]
    return lines + cycle_lines(order)


def register(app: typer.Typer) -> None:
    from .cli_settings import load_settings

    @app.command("graph")
    def graph_command(
        service: Annotated[Optional[str], typer.Option("--service", "-s", help="NAMESPACE/WORKLOAD: its calls, dependencies and blast radius.")] = None,
        order: Annotated[bool, typer.Option("--order", help="Callees before callers (with --service: it and its dependencies).")] = False,
        region: Annotated[str, typer.Option("--region", help="Only this region's calls (default: every region, summed).")] = "",
        window: Annotated[str, typer.Option("--window", help="PromQL range the rates are averaged over.")] = "1h",
        min_rps: Annotated[float, typer.Option("--min-rps", help="Leave out calls below this rate.")] = 0.01,
        max_age: Annotated[float, typer.Option("--max-age", help="Seconds a cached graph is used for.")] = 600.0,
        refresh: Annotated[bool, typer.Option("--refresh", help="Ask Prometheus now, ignoring the cache.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """The service dependency graph from Istio telemetry (istio_requests_total), cached in the state dir."""
        try:
            args = DiscoverArgs(window=window, min_rps=min_rps, region=region)
            target = ServiceRef.parse(service) if service else None
        except ValidationError as exc:
            first = exc.errors()[0]
            raise CliError(f"invalid --{str(first['loc'][0]).replace('_', '-')}: {first['msg']}", exit_code=EXIT_USAGE) from exc
        except ValueError as exc:
            raise CliError(f"invalid --service: {exc}", exit_code=EXIT_USAGE) from exc
        cached = cached_or_discovered(load_settings(), args, refresh=refresh, max_age=timedelta(seconds=max_age))
        graph = cached.discovery.graph
        view = service_view(graph, target) if target else None
        if order:
            chosen = order_of(graph, target)
            print(chosen.model_dump_json(indent=2) if as_json else "\n".join(order_lines(chosen)))
        elif view is not None:
            print(json.dumps(view, indent=2) if as_json else "\n".join(service_lines(view)))
        else:
            print(cached.model_dump_json(indent=2) if as_json else "\n".join(graph_lines(cached, datetime.now(timezone.utc))))


def order_of(graph: DependencyGraph, target: ServiceRef | None) -> ServiceOrder:
    if target is None:
        return graph.callees_first_order()
    return graph.callees_first_order([target, *graph.dependencies(target)])
