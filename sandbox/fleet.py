"""The sandbox fleet: a declarative spec of automotive microservices and its Kubernetes objects.

- `load_fleet_spec(path)` reads and validates `sandbox/fleet.yaml` (pydantic).
- `expand_fleet(spec, services=N)` returns exactly N services: the listed ones first, then seeded,
  reproducible generated services attached to the call graph (always a DAG).
- `fleet_manifests(service)` renders a Deployment (requests, limits and a readiness probe: a clean fleet by the
  `fleet-hygiene` checks), a PodDisruptionBudget (maxUnavailable 1 over the service's pods: drains proceed one
  pod at a time, single replicas included), Service, DestinationRule (subsets `stable`/`canary`) and
  VirtualService (100/0) per service, plus a canary Deployment when the spec names a canary version.
- `apply_fleet(api_client=..., region=..., services=...)` server-side-applies all of it (idempotent,
  threaded) and creates the `pitstop-sandbox` namespace (faults; global weights live in `sandbox.gslb`).

CLI: `python -m pitstop.sandbox.fleet --kubeconfig F --contexts eu-central,us-east --services 40`.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pitstop import bounded_yaml
from pitstop.sandbox.kube_objects import JsonObject, server_side_apply
from pitstop.sandbox.traffic_model import CallEdge, TrafficProfile

DEFAULT_FLEET_SPEC = Path(__file__).with_name("fleet.yaml")
SANDBOX_NAMESPACE = "pitstop-sandbox"
FLEET_LABEL = "pitstop.dev/fleet"
TEAM_LABEL = "pitstop.dev/team"
ROLE_LABEL = "pitstop.dev/role"  # stable | canary
SPEC_ANNOTATION = "pitstop.dev/sandbox-model"  # model parameters the simulator reads back
NODE_SELECTOR_TYPE = "type"  # kwok nodes carry type=kwok


class EntryTraffic(BaseModel):
    """A service that vehicles or users call directly (through the ingress gateway)."""

    model_config = ConfigDict(extra="forbid")
    peak_rps: float = Field(gt=0, description="global requests/s at the daily peak, all regions together")
    profile: TrafficProfile = "commute"


class Call(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str
    per_request: float = Field(default=1.0, gt=0)


class ServiceSpec(BaseModel):
    """One microservice of the fleet."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,50}[a-z0-9]$")
    team: str
    version: str
    canary_version: str | None = None
    replicas: int = Field(default=2, ge=0)
    cpu_request_millicores: int = Field(default=250, gt=0)
    cpu_limit_millicores: int = Field(default=500, gt=0)
    memory_request_mib: int = Field(default=256, gt=0)
    memory_limit_mib: int = Field(default=512, gt=0)
    entry: EntryTraffic | None = None
    calls: list[Call] = Field(default_factory=list)
    base_latency_ms: float = Field(default=20.0, gt=0)
    base_error_ratio: float = Field(default=0.001, ge=0, le=1)
    cpu_utilization_at_peak: float = Field(default=0.4, gt=0, le=2)
    memory_utilization_at_peak: float = Field(default=0.7, gt=0, le=2)

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> ServiceSpec:
        if self.cpu_limit_millicores < self.cpu_request_millicores:
            raise ValueError(f"{self.name}: cpu limit below request")
        if self.memory_limit_mib < self.memory_request_mib:
            raise ValueError(f"{self.name}: memory limit below request")
        return self

    def model_parameters(self) -> dict[str, Any]:
        """What the simulator needs to know about this service, stored as an annotation."""
        return self.model_dump(include={"entry", "calls", "base_latency_ms", "base_error_ratio",
                                        "cpu_utilization_at_peak", "memory_utilization_at_peak"})


class FleetSpec(BaseModel):
    """The whole fleet file."""

    model_config = ConfigDict(extra="forbid")
    seed: int = 7
    teams: list[str]
    services: list[ServiceSpec]
    expansion: dict[str, list[str]] = Field(default_factory=dict)
    suffixes: list[str] = Field(default_factory=lambda: ["api", "worker", "store"])

    @model_validator(mode="after")
    def _consistent(self) -> FleetSpec:
        names = [s.name for s in self.services]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate service names: {sorted(duplicates)}")
        known = set(names)
        for service in self.services:
            if service.team not in self.teams:
                raise ValueError(f"service {service.name}: team {service.team!r} not in teams {self.teams}")
            for call in service.calls:
                if call.service not in known:
                    raise ValueError(f"service {service.name}: calls unknown service {call.service!r}")
        call_edges(self.services)  # raises on cycles
        for team in self.expansion:
            if team not in self.teams:
                raise ValueError(f"expansion: unknown team {team!r}")
        return self


def load_fleet_spec(path: Path = DEFAULT_FLEET_SPEC) -> FleetSpec:
    """Read and validate a fleet spec file; errors name the file."""
    try:
        raw = bounded_yaml.load_file(path)
        return FleetSpec.model_validate(raw)
    except Exception as exc:
        raise ValueError(f"invalid fleet spec {path}: {exc}") from exc


def call_edges(services: Sequence[ServiceSpec]) -> list[CallEdge]:
    """The call graph as model edges; raises ValueError on a cycle."""
    edges = [CallEdge(s.name, c.service, c.per_request) for s in services for c in s.calls]
    graph: dict[str, list[str]] = {}
    for e in edges:
        graph.setdefault(e.caller, []).append(e.callee)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise ValueError(f"call graph cycle: {' -> '.join(path + [node])}")
        state[node] = 1
        for nxt in graph.get(node, []):
            visit(nxt, path + [node])
        state[node] = 2

    for node in list(graph):
        visit(node, [])
    return edges


def expand_fleet(spec: FleetSpec, *, services: int) -> list[ServiceSpec]:
    """Exactly `services` services, reproducible for a given spec (seeded).

    Fewer than listed: the first N, with calls to dropped services removed. More: generated services
    named `<prefix>-<suffix>` owned by the prefix's team, each called by one or two existing services
    of the same team (or the api-gateway) with a small fan-out, so the graph stays acyclic and the
    request rates stay bounded.
    """
    if services < 1:
        raise ValueError("a fleet needs at least one service")
    base = spec.services[:services]
    kept = {s.name for s in base}
    fleet = [
        s.model_copy(update={"calls": [c for c in s.calls if c.service in kept]}) for s in base
    ]
    rng = random.Random(spec.seed)
    candidates = [
        (team, f"{prefix}-{suffix}")
        for team, prefixes in sorted(spec.expansion.items())
        for prefix in prefixes
        for suffix in spec.suffixes
    ]
    rng.shuffle(candidates)
    used = set(kept)
    by_team: dict[str, list[int]] = {}
    for index, s in enumerate(fleet):
        by_team.setdefault(s.team, []).append(index)
    serial = 0
    while len(fleet) < services:
        if candidates:
            team, name = candidates.pop()
        else:
            serial += 1
            team = spec.teams[serial % len(spec.teams)]
            name = f"svc-{serial:04d}"
        if name in used:
            continue
        used.add(name)
        major, minor, patch = rng.randint(1, 6), rng.randint(0, 20), rng.randint(0, 9)
        replicas = rng.choice([1, 2, 2, 2, 3])
        cpu_request = rng.choice([100, 200, 250, 500])
        memory_request = rng.choice([128, 256, 256, 512])
        entry = None
        if rng.random() < 0.08:
            entry = EntryTraffic(
                peak_rps=round(rng.uniform(1, 20), 1),
                profile=rng.choice(["commute", "daytime", "nightly-batch"]),
            )
        new = ServiceSpec(
            name=name,
            team=team,
            version=f"v{major}.{minor}.{patch}",
            replicas=replicas,
            cpu_request_millicores=cpu_request,
            cpu_limit_millicores=cpu_request * 2,
            memory_request_mib=memory_request,
            memory_limit_mib=memory_request * 2,
            entry=entry,
            base_latency_ms=round(rng.uniform(3, 80), 1),
            cpu_utilization_at_peak=round(rng.uniform(0.08, 0.9), 2),
            memory_utilization_at_peak=round(rng.uniform(0.3, 0.9), 2),
        )
        callers = by_team.get(team) or [0]
        for caller_index in rng.sample(callers, k=min(len(callers), rng.choice([1, 1, 2]))):
            caller = fleet[caller_index]
            fleet[caller_index] = caller.model_copy(
                update={"calls": [*caller.calls, Call(service=name, per_request=round(rng.uniform(0.02, 0.3), 3))]}
            )
        by_team.setdefault(team, []).append(len(fleet))
        fleet.append(new)
    return fleet


def _labels(service: ServiceSpec, *, version: str, role: str) -> dict[str, str]:
    return {
        "app": service.name,
        "version": version,
        FLEET_LABEL: "true",
        TEAM_LABEL: service.team,
        ROLE_LABEL: role,
    }


def deployment_manifest(service: ServiceSpec, *, version: str, role: str, replicas: int) -> JsonObject:
    name = service.name if role == "stable" else f"{service.name}-{role}"
    labels = _labels(service, version=version, role=role)
    selector = {"app": service.name, ROLE_LABEL: role}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": service.team,
            "labels": labels,
            "annotations": {
                "pitstop.dev/owner-team": service.team,
                SPEC_ANNOTATION: yaml.safe_dump(service.model_parameters(), default_flow_style=True,
                                                width=10_000).strip(),
            },
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {NODE_SELECTOR_TYPE: "kwok"},
                    "tolerations": [
                        {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "containers": [
                        {
                            "name": service.name,
                            "image": f"registry.pitstop.dev/{service.team}/{service.name}:{version}",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
                            "resources": {
                                "requests": {
                                    "cpu": f"{service.cpu_request_millicores}m",
                                    "memory": f"{service.memory_request_mib}Mi",
                                },
                                "limits": {
                                    "cpu": f"{service.cpu_limit_millicores}m",
                                    "memory": f"{service.memory_limit_mib}Mi",
                                },
                            },
                        }
                    ],
                },
            },
        },
    }


def fleet_manifests(service: ServiceSpec) -> list[JsonObject]:
    """All objects for one service, in apply order (the Service gets a ClusterIP: sandbox clusters
    have a /16 service range, see `sandbox.clusters`)."""
    service_spec: JsonObject = {"selector": {"app": service.name},
                                "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    host = f"{service.name}.{service.team}.svc.cluster.local"
    canary_version = service.canary_version or service.version
    objects: list[JsonObject] = [
        deployment_manifest(service, version=service.version, role="stable", replicas=service.replicas),
    ]
    if service.canary_version:
        objects.append(deployment_manifest(service, version=service.canary_version, role="canary", replicas=1))
    objects += [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service.name, "namespace": service.team,
                         "labels": {"app": service.name, FLEET_LABEL: "true", TEAM_LABEL: service.team}},
            "spec": service_spec,
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": service.name, "namespace": service.team,
                         "labels": {"app": service.name, FLEET_LABEL: "true", TEAM_LABEL: service.team}},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": service.name}}},
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": service.name, "namespace": service.team,
                         "labels": {"app": service.name, FLEET_LABEL: "true"}},
            "spec": {
                "host": host,
                "subsets": [
                    {"name": "stable", "labels": {"version": service.version}},
                    {"name": "canary", "labels": {"version": canary_version}},
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": service.name, "namespace": service.team,
                         "labels": {"app": service.name, FLEET_LABEL: "true"}},
            "spec": {
                "hosts": [host],
                "http": [
                    {
                        "name": "primary",
                        "route": [
                            {"destination": {"host": host, "subset": "stable"}, "weight": 100},
                            {"destination": {"host": host, "subset": "canary"}, "weight": 0},
                        ],
                    }
                ],
            },
        },
    ]
    return objects


def sandbox_namespace_manifests() -> list[JsonObject]:
    """The sandbox's own namespace (its faults live there; global traffic weights live in `sandbox.gslb`)."""
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SANDBOX_NAMESPACE}}]


def team_namespace_manifests(services: Sequence[ServiceSpec]) -> list[JsonObject]:
    teams = sorted({s.team for s in services})
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": t}} for t in teams]


class FleetApplyResult(BaseModel):
    region: str
    services: int
    objects: int
    seconds: float


def apply_fleet(
    *,
    api_client: ApiClient,
    region: str,
    services: Sequence[ServiceSpec],
    workers: int = 6,
) -> FleetApplyResult:
    """Create or update every fleet object in one region's cluster (server-side apply, idempotent).

    Namespaces first, then all service objects on a small thread pool (the API server, not Python,
    is the bottleneck; 6 concurrent requests keeps a 2-core machine busy without thrashing).
    """
    started = time.monotonic()
    first = team_namespace_manifests(services) + sandbox_namespace_manifests()
    for obj in first:
        server_side_apply(api_client, obj)
    objects = [obj for s in services for obj in fleet_manifests(s)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"apply-{region}") as pool:
        list(pool.map(lambda o: server_side_apply(api_client, o), objects))
    return FleetApplyResult(
        region=region,
        services=len(services),
        objects=len(objects) + len(first),
        seconds=round(time.monotonic() - started, 2),
    )


def main(argv: Sequence[str] | None = None) -> None:
    from kubernetes.config import new_client_from_config

    parser = argparse.ArgumentParser(description="apply the sandbox fleet to region clusters")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--contexts", required=True, help="comma-separated region contexts")
    parser.add_argument("--services", type=int, default=40)
    parser.add_argument("--spec", type=Path, default=DEFAULT_FLEET_SPEC)
    args = parser.parse_args(argv)
    fleet = expand_fleet(load_fleet_spec(args.spec), services=args.services)
    for context in args.contexts.split(","):
        client = new_client_from_config(config_file=str(args.kubeconfig), context=context)
        print(apply_fleet(api_client=client, region=context, services=fleet).model_dump_json())


if __name__ == "__main__":
    main()
