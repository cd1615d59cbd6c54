"""The service dependency graph: who calls whom, from Istio telemetry (`istio_requests_total`), and what follows.

Input is pure data: the labels and value of each series of one aggregated query (source and destination
workload + namespace, optionally `region`; value = requests per second over the window). Requests from outside
the mesh (source `unknown` or empty) and from the ingress namespace (`istio-system`) are the graph's *entries*,
not edges: the ingress gateway is where traffic comes in, not a service to order. Edges below `min_rps` are
dropped (a stray health check is no dependency).

What the graph answers (all deterministic, names sorted where nothing else decides):
- `dependencies(s)`: every workload `s` calls, transitively (what must be up for `s` to work);
- `blast_radius(s)`: every workload that calls `s`, transitively (who is affected when `s` fails);
- `callees_first_order(services)`: callees before callers (pre-scale the callees first). Meshes have cycles:
  inside each strongly connected component edges are kept heaviest first and an edge that would close a cycle
  is *broken* (reported with the cycle), so the order respects every edge but the broken ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

OUTSIDE_MESH_WORKLOADS = frozenset({"", "unknown"})
DEFAULT_INGRESS_NAMESPACES = ("istio-system",)
REGION_LABEL = "region"  # one Prometheus for every region, as the delivery analysis assumes
GRAPH_LABELS = ("source_workload", "source_workload_namespace", "destination_workload", "destination_workload_namespace")


def discovery_query(*, window: str, region: str = "") -> str:
    """Requests per second per (source, destination) workload over `window`, per region, as the destination's
    sidecar reports them (`reporter="destination"`: one report per request, the callee's workload labels)."""
    selector = 'reporter="destination"' + (f',{REGION_LABEL}="{region}"' if region else "")
    by = ", ".join((REGION_LABEL, *GRAPH_LABELS))
    return f"sum by ({by}) (rate(istio_requests_total{{{selector}}}[{window}]))"


class ServiceRef(BaseModel):
    """A workload in a namespace (the Deployment a mesh reports as `*_workload`)."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    workload: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.workload}"

    @classmethod
    def parse(cls, text: str) -> Self:
        """`NAMESPACE/WORKLOAD`; ValueError otherwise."""
        namespace, _, workload = text.partition("/")
        if not namespace or not workload or "/" in workload:
            raise ValueError(f"{text!r} is not NAMESPACE/WORKLOAD")
        return cls(namespace=namespace, workload=workload)

    def key(self) -> tuple[str, str]:
        return self.namespace, self.workload


class Edge(BaseModel):
    """`caller` sends `rps` requests per second to `callee` (averaged over the window, summed over `regions`)."""

    caller: ServiceRef
    callee: ServiceRef
    rps: float
    regions: list[str] = Field(default_factory=list, description="regions the calls were seen in (empty: no region label)")


class Entry(BaseModel):
    """Requests entering the mesh at `service` (from the ingress gateway or from outside the mesh)."""

    service: ServiceRef
    rps: float


class ServiceOrder(BaseModel):
    """A callees-first order and what had to give: cycles found and the edges broken to order them."""

    order: list[ServiceRef]
    cycles: list[list[ServiceRef]] = Field(default_factory=list, description="strongly connected components, >1 workload")
    broken_edges: list[Edge] = Field(default_factory=list, description="edges the order does not respect (one per cycle at least)")
    not_in_graph: list[ServiceRef] = Field(default_factory=list, description="asked for but seen in no call: placed last")


class DependencyGraph(BaseModel):
    """Call edges between workloads, and the entries from outside; built by `build_graph`."""

    region: str = Field("", description="the region this graph covers; empty = every region, summed")
    window: str = ""
    min_rps: float = 0.0
    edges: list[Edge] = Field(default_factory=list)
    entries: list[Entry] = Field(default_factory=list)

    def services(self) -> list[ServiceRef]:
        found = {e.caller for e in self.edges} | {e.callee for e in self.edges} | {e.service for e in self.entries}
        return sorted(found, key=ServiceRef.key)

    def callees_of(self, service: ServiceRef) -> list[Edge]:
        return [e for e in self.edges if e.caller == service]

    def callers_of(self, service: ServiceRef) -> list[Edge]:
        return [e for e in self.edges if e.callee == service]

    def dependencies(self, service: ServiceRef) -> list[ServiceRef]:
        """Every workload `service` calls, directly or not (itself excluded)."""
        return _reachable(service, _adjacency(self.edges, forward=True))

    def blast_radius(self, service: ServiceRef) -> list[ServiceRef]:
        """Every workload that calls `service`, directly or not: affected when it fails (itself excluded)."""
        return _reachable(service, _adjacency(self.edges, forward=False))

    def callees_first_order(self, services: Iterable[ServiceRef] | None = None) -> ServiceOrder:
        """`services` (default: all) callees before callers, by the whole graph's order (so a dependency through a
        workload not asked for still counts); cycles broken as the module docstring says."""
        full = callees_first(self.services(), self.edges)
        if services is None:
            return full
        wanted = set(services)
        known = set(full.order)
        return ServiceOrder(
            order=[s for s in full.order if s in wanted],
            cycles=[c for c in full.cycles if wanted & set(c)],
            broken_edges=[e for e in full.broken_edges if e.caller in wanted or e.callee in wanted],
            not_in_graph=sorted(wanted - known, key=ServiceRef.key),
        )


def build_graph(
    series: Iterable[tuple[Mapping[str, str], float]],
    *,
    region: str = "",
    window: str = "",
    min_rps: float = 0.0,
    ingress_namespaces: Sequence[str] = DEFAULT_INGRESS_NAMESPACES,
) -> DependencyGraph:
    """The graph of `series` (labels, requests per second), limited to `region` when given, regions summed."""
    edge_rps: dict[tuple[ServiceRef, ServiceRef], float] = {}
    edge_regions: dict[tuple[ServiceRef, ServiceRef], set[str]] = {}
    entry_rps: dict[ServiceRef, float] = {}
    for labels, rps in series:
        series_region = labels.get(REGION_LABEL, "")
        if region and series_region != region or not rps > 0:  # NaN and 0 carry no call
            continue
        callee = _ref(labels, "destination")
        if callee is None:
            continue
        caller = _ref(labels, "source")
        if caller is None or caller.namespace in ingress_namespaces:
            entry_rps[callee] = entry_rps.get(callee, 0.0) + rps
            continue
        edge_rps[(caller, callee)] = edge_rps.get((caller, callee), 0.0) + rps
        edge_regions.setdefault((caller, callee), set()).update([series_region] if series_region else [])
    edges = [
        Edge(caller=caller, callee=callee, rps=round(rps, 6), regions=sorted(edge_regions[(caller, callee)]))
        for (caller, callee), rps in edge_rps.items()
        if rps >= min_rps
    ]
    entries = [Entry(service=s, rps=round(rps, 6)) for s, rps in entry_rps.items() if rps >= min_rps]
    return DependencyGraph(
        region=region, window=window, min_rps=min_rps,
        edges=sorted(edges, key=lambda e: (e.caller.key(), e.callee.key())),
        entries=sorted(entries, key=lambda e: e.service.key()),
    )


def regions_in(series: Iterable[tuple[Mapping[str, str], float]]) -> list[str]:
    """The region labels the series carry (empty when they carry none)."""
    return sorted({labels[REGION_LABEL] for labels, _ in series if labels.get(REGION_LABEL)})


def callees_first(services: Sequence[ServiceRef], edges: Sequence[Edge]) -> ServiceOrder:
    """Every service, callees before callers; within a cycle edges are kept heaviest first, the rest broken."""
    calls = [e for e in edges if e.caller != e.callee]  # a workload calling itself orders nothing
    components = _strongly_connected(services, calls)
    component_of = {s: i for i, c in enumerate(components) for s in c}
    kept: list[Edge] = [e for e in calls if component_of[e.caller] != component_of[e.callee]]
    broken: list[Edge] = []
    inside = [e for e in calls if component_of[e.caller] == component_of[e.callee]]
    for edge in sorted(inside, key=lambda e: (-e.rps, e.caller.key(), e.callee.key())):
        if edge.caller in _reachable(edge.callee, _adjacency(kept, forward=True)):
            broken.append(edge)
        else:
            kept.append(edge)
    return ServiceOrder(
        order=_topological(services, kept),
        cycles=[sorted(c, key=ServiceRef.key) for c in components if len(c) > 1],
        broken_edges=sorted(broken, key=lambda e: (e.caller.key(), e.callee.key())),
    )


def _ref(labels: Mapping[str, str], side: str) -> ServiceRef | None:
    workload = labels.get(f"{side}_workload", "")
    if workload in OUTSIDE_MESH_WORKLOADS:
        return None
    return ServiceRef(namespace=labels.get(f"{side}_workload_namespace", "") or "unknown", workload=workload)


def _adjacency(edges: Iterable[Edge], *, forward: bool) -> dict[ServiceRef, list[ServiceRef]]:
    graph: dict[ServiceRef, list[ServiceRef]] = {}
    for e in edges:
        source, target = (e.caller, e.callee) if forward else (e.callee, e.caller)
        graph.setdefault(source, []).append(target)
    return graph


def _reachable(start: ServiceRef, graph: Mapping[ServiceRef, list[ServiceRef]]) -> list[ServiceRef]:
    seen: set[ServiceRef] = set()
    stack = [start]
    while stack:
        for nxt in graph.get(stack.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    seen.discard(start)
    return sorted(seen, key=ServiceRef.key)


def _topological(services: Sequence[ServiceRef], edges: Sequence[Edge]) -> list[ServiceRef]:
    """Kahn's algorithm over an acyclic edge set, callees first; ties by name."""
    pending_callees = {s: 0 for s in services}
    callers: dict[ServiceRef, list[ServiceRef]] = {}
    for e in edges:
        pending_callees[e.caller] = pending_callees.get(e.caller, 0) + 1
        pending_callees.setdefault(e.callee, 0)
        callers.setdefault(e.callee, []).append(e.caller)
    ready = [(s.key(), s) for s, n in pending_callees.items() if n == 0]
    heapq.heapify(ready)
    order: list[ServiceRef] = []
    while ready:
        _, service = heapq.heappop(ready)
        order.append(service)
        for caller in callers.get(service, []):
            pending_callees[caller] -= 1
            if pending_callees[caller] == 0:
                heapq.heappush(ready, (caller.key(), caller))
    return order


def _strongly_connected(services: Sequence[ServiceRef], edges: Sequence[Edge]) -> list[list[ServiceRef]]:
    """Tarjan's algorithm, iterative (deep call chains must not hit the recursion limit)."""
    graph = _adjacency(edges, forward=True)
    nodes = sorted(set(services) | set(graph) | {t for ts in graph.values() for t in ts}, key=ServiceRef.key)
    index: dict[ServiceRef, int] = {}
    low: dict[ServiceRef, int] = {}
    on_stack: set[ServiceRef] = set()
    stack: list[ServiceRef] = []
    components: list[list[ServiceRef]] = []
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[ServiceRef, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = graph.get(node, [])
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component: list[ServiceRef] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components
