"""Where a VirtualService's HTTP routes send requests, resolved as Istio resolves them (pure functions).

A route destination names a `host` and optionally a `subset`:

- `host` is a Kubernetes Service: a short name (`geo-service`, relative to the VirtualService's namespace,
  as Istio reads it), `name.namespace`, `name.namespace.svc` or `name.namespace.svc.cluster.local`
  (`resolve_host`). Requests go to the pods that Service selects (`spec.selector` against the pod labels),
  spread over the ready endpoints (so over workloads in proportion to their running pods), and are
  reported with those pods' `version` label and workload name (the Deployment, as Istio derives it from
  the pod's ReplicaSet owner).
- `subset` narrows the endpoints to the pods carrying the DestinationRule subset's labels (the sandbox's
  DestinationRules select by `version`).

A route back to the VirtualService's own host keeps the traffic model's rules
(`sandbox.traffic_model.route_version_weights`: no subset = the stable version, so an idle canary
Deployment receives nothing until a route names it). A host that no Service matches, or a subset no
running pod carries, resolves to a target without endpoints: the simulator answers 503 for it, as Envoy
does ("no healthy upstream").

`route_split` combines this with the routes' capture shares (header cohorts, default route) and their
`fault` blocks (`sandbox.istio_faults`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pitstop.sandbox.istio_faults import HttpFault, fault_shares
from pitstop.sandbox.traffic_model import HEADER_COHORT_SHARE, HttpRoute, route_capture_shares

CLUSTER_DOMAIN = "cluster.local"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class ServiceSummary:
    """A Kubernetes Service as routing needs it: which pod labels it selects."""

    namespace: str
    name: str
    selector: tuple[tuple[str, str], ...]


def summarize_service(obj: Mapping[str, Any]) -> ServiceSummary | None:
    """None for a Service without a selector (its endpoints are managed by hand: not modelled)."""
    meta = obj.get("metadata") or {}
    selector = (obj.get("spec") or {}).get("selector") or {}
    if not selector:
        return None
    return ServiceSummary(namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                          selector=tuple(sorted((str(k), str(v)) for k, v in selector.items())))


def resolve_host(host: str, *, namespace: str) -> tuple[str, str] | None:
    """(namespace, name) of the Service a route's host names; None for a host outside the cluster domain
    (an external host, a ServiceEntry, a wildcard)."""
    text = host.strip().rstrip(".")
    if not text or "*" in text:
        return None
    parts = text.split(".")
    if len(parts) == 1:
        return namespace, parts[0]
    if len(parts) == 2:
        return parts[1], parts[0]
    if len(parts) == 3 and parts[2] == "svc":
        return parts[1], parts[0]
    if len(parts) > 3 and parts[2] == "svc" and ".".join(parts[3:]) == CLUSTER_DOMAIN:
        return parts[1], parts[0]
    return None


@dataclass(frozen=True)
class Endpoint:
    """A running pod as a routing endpoint."""

    namespace: str
    labels: tuple[tuple[str, str], ...]
    workload: str

    @property
    def app(self) -> str:
        return dict(self.labels).get("app", UNKNOWN)

    @property
    def version(self) -> str:
        return dict(self.labels).get("version", UNKNOWN)


@dataclass(frozen=True)
class Target:
    """Where requests land: the destination Service, the pods' app/version labels and their workload."""

    namespace: str
    service: str
    app: str
    version: str
    workload: str

    @property
    def fqdn(self) -> str:
        return f"{self.service}.{self.namespace}.svc.{CLUSTER_DOMAIN}"


@dataclass(frozen=True)
class Owner:
    """The service whose VirtualService is being resolved."""

    namespace: str
    name: str
    stable_version: str


def selects(selector: Sequence[tuple[str, str]], labels: Sequence[tuple[str, str]]) -> bool:
    present = dict(labels)
    return all(present.get(k) == v for k, v in selector)


def host_targets(
    *, service: ServiceSummary | None, namespace: str, name: str, subset_version: str | None,
    endpoints: Sequence[Endpoint],
) -> dict[Target, float]:
    """Fractions per target for a route to another Service (by endpoint count); `endpoints` may be all
    endpoints or any superset of the ones the Service selects."""
    counts: dict[Target, int] = {}
    if service is not None:
        for e in endpoints:
            if e.namespace != namespace or not selects(service.selector, e.labels):
                continue
            if subset_version is not None and e.version != subset_version:
                continue
            target = Target(namespace, name, e.app, e.version, e.workload)
            counts[target] = counts.get(target, 0) + 1
    if not counts:
        app = dict(service.selector).get("app", name) if service else name
        return {Target(namespace, name, app, subset_version or UNKNOWN, UNKNOWN): 1.0}
    total = sum(counts.values())
    return {t: c / total for t, c in counts.items()}


@dataclass
class RouteContext:
    """What route resolution reads from a region's snapshot."""

    services: Mapping[tuple[str, str], ServiceSummary]
    subsets: Mapping[tuple[str, str], Mapping[str, str]]
    endpoints: Sequence[Endpoint]
    workload_of: Mapping[tuple[str, str], str]  # (app, version) -> workload, for the owner's own host
    _by_label: dict[tuple[str, str, str], list[Endpoint]] | None = field(default=None, repr=False)

    def candidates(self, namespace: str, selector: Sequence[tuple[str, str]]) -> Sequence[Endpoint]:
        """The endpoints in `namespace` carrying the selector's first label (an index built once per context),
        a superset of what the selector selects."""
        if not selector:
            return []
        if self._by_label is None:
            self._by_label = {}
            for e in self.endpoints:
                for key, value in e.labels:
                    self._by_label.setdefault((e.namespace, key, value), []).append(e)
        key, value = selector[0]
        return self._by_label.get((namespace, key, value), [])


def destination_targets(
    *, host: str, subset: str, owner: Owner, context: RouteContext
) -> dict[Target, float]:
    """Fractions per target for one route destination."""
    resolved = resolve_host(host, namespace=owner.namespace) if host else (owner.namespace, owner.name)
    if resolved == (owner.namespace, owner.name):
        own_subsets = context.subsets.get(resolved) or {}
        version = owner.stable_version if not subset else (own_subsets.get(subset) or UNKNOWN)
        return {Target(owner.namespace, owner.name, owner.name, version,
                       context.workload_of.get((owner.name, version), UNKNOWN)): 1.0}
    if resolved is None:
        return {Target(owner.namespace, host, host, UNKNOWN, UNKNOWN): 1.0}
    namespace, name = resolved
    subset_version = None
    if subset:
        subset_version = (context.subsets.get(resolved) or {}).get(subset) or UNKNOWN
    service = context.services.get(resolved)
    return host_targets(service=service, namespace=namespace, name=name, subset_version=subset_version,
                        endpoints=context.candidates(namespace, service.selector) if service else [])


def route_targets(route: HttpRoute, *, owner: Owner, context: RouteContext) -> dict[Target, float]:
    """How one HTTP route splits its requests over targets (weights, then endpoints)."""
    hosts = route.hosts or ("",) * len(route.weights)
    weighted = [(host, subset, max(0.0, w)) for host, (subset, w) in zip(hosts, route.weights, strict=True)]
    if not weighted:
        weighted = [("", "", 100.0)]
    total = sum(w for _, _, w in weighted)
    out: dict[Target, float] = {}
    if total <= 0.0:
        return out
    for host, subset, weight in weighted:
        if weight <= 0.0:
            continue
        for target, fraction in destination_targets(host=host, subset=subset, owner=owner, context=context).items():
            out[target] = out.get(target, 0.0) + weight / total * fraction
    return out


@dataclass
class RouteSplit:
    """Fractions of a service's requests per target (served, mirrored) and the faults on the way."""

    served: dict[Target, float] = field(default_factory=dict)
    mirrored: dict[Target, float] = field(default_factory=dict)
    faults: dict[Target, list[tuple[float, HttpFault]]] = field(default_factory=dict)

    def total(self) -> dict[Target, float]:
        out = dict(self.served)
        for target, fraction in self.mirrored.items():
            out[target] = out.get(target, 0.0) + fraction
        return out


def route_split(
    *, routes: Sequence[HttpRoute] | None, owner: Owner, context: RouteContext,
    cohort_share: float = HEADER_COHORT_SHARE,
) -> RouteSplit:
    """Per-target fractions of the owner's requests under its VirtualService (None: no VirtualService).

    Faults apply to served requests only (Envoy does not inject faults into mirrored copies)."""
    if not routes:
        routes = (HttpRoute(weights=(("", 100.0),)),)
    shares = route_capture_shares(routes, cohort_share=cohort_share)
    targets = [route_targets(r, owner=owner, context=context) for r in routes]
    split = RouteSplit()
    for route, share, per_target in zip(routes, shares, targets, strict=True):
        if share <= 0.0:
            continue
        for target, fraction in per_target.items():
            split.served[target] = split.served.get(target, 0.0) + share * fraction
        if route.mirror_subset is not None and route.mirror_percent > 0.0:
            mirror = destination_targets(host="", subset=route.mirror_subset, owner=owner, context=context)
            for target, fraction in mirror.items():
                split.mirrored[target] = (split.mirrored.get(target, 0.0)
                                          + share * min(100.0, route.mirror_percent) / 100.0 * fraction)
    split.faults = fault_shares(route_shares=shares, route_targets=targets, faults=[r.fault for r in routes])
    return split
