"""The dependency-graph activities (`graph.discover`, `graph.order`; shared task queue).

`discover_graph` reads who calls whom through the one `MetricsProvider` (one aggregated `istio_requests_total`
query, `pitstop.dependency_graph.discovery_query`) and builds the typed graph; `pitstop graph` calls it directly.
A Prometheus that cannot be reached is retried by Temporal; a query it rejects is a domain error; no series at
all is a value (an empty graph whose summary says so).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.dependency_graph import build_graph, discovery_query, regions_in
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.graph import DiscoverArgs, GraphDiscovery, GraphOrder, OrderArgs

from .clients import ActivityClients
from .metrics import MetricsProvider, MetricsQueryError, MetricsUnavailable


async def discover_graph(provider: MetricsProvider, args: DiscoverArgs) -> GraphDiscovery:
    """The graph over `args.window`; raises `MetricsUnavailable` / `MetricsQueryError` from the provider."""
    query = discovery_query(window=args.window, region=args.region)
    rows = [(s.labels, s.value) for s in await provider.query_series(query)]
    graph = build_graph(rows, region=args.region, window=args.window, min_rps=args.min_rps)
    if not rows:
        summary = f"no istio_requests_total series in the last {args.window}"
    else:
        cycles = graph.callees_first_order().cycles
        summary = (f"{len(graph.services())} workloads, {len(graph.edges)} calls, {len(graph.entries)} entries"
                   f" over {args.window}" + (f"; {len(cycles)} cycle(s)" if cycles else ""))
    return GraphDiscovery(graph=graph, regions=regions_in(rows), query=query, series=len(rows), summary=summary)


class DependencyGraphActivities:
    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    @activity.defn(name="graph.discover")
    async def discover(self, invocation: StepInvocation[DiscoverArgs]) -> GraphDiscovery:
        try:
            return await discover_graph(self._clients.metrics_provider(), invocation.args)
        except MetricsUnavailable as exc:
            raise ApplicationError(str(exc), type="MetricsUnavailable") from None
        except MetricsQueryError as exc:
            raise ApplicationError(str(exc), type="InvalidQuery", non_retryable=True) from None

    @activity.defn(name="graph.order")
    async def order(self, invocation: StepInvocation[OrderArgs]) -> GraphOrder:
        result = invocation.args.graph.callees_first_order(invocation.args.services)
        summary = " -> ".join(str(s) for s in result.order[:8]) + (" ..." if len(result.order) > 8 else "")
        if result.broken_edges:
            summary += f" ({len(result.broken_edges)} call(s) in cycles not respected)"
        return GraphOrder(**result.model_dump(), summary=summary or "nothing to order")
