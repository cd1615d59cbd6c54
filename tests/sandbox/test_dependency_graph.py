"""The service dependency graph discovered from the sandbox's real telemetry: the traffic simulator's
`istio_requests_total` (live, plus 14 days of backfilled history) scraped by a real Prometheus, read through the
`graph.discover` activity and the `pitstop graph` CLI (a subprocess). Ground truth is the fleet spec's call edges
(`sandbox.fleet.call_edges`, what the simulator's traffic model follows); the product never reads them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from pitstop.activities.clients import ActivityClients
from pitstop.activities.dependency_graph import DependencyGraphActivities
from pitstop.activities.metrics import PrometheusProvider
from pitstop.config import Settings
from pitstop.dependency_graph import DependencyGraph, ServiceRef
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.graph import DiscoverArgs, GraphDiscovery
from pitstop.sandbox.fleet import ServiceSpec, call_edges
from tests.fixtures.monitoring import SandboxMonitoring

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]


def spec_edges(services: list[ServiceSpec]) -> set[tuple[ServiceRef, ServiceRef]]:
    """The fleet's calls as (caller, callee) workloads: a service's stable Deployment is named after it."""
    team = {s.name: s.team for s in services}
    return {(ServiceRef(namespace=team[e.caller], workload=e.caller), ServiceRef(namespace=team[e.callee], workload=e.callee))
            for e in call_edges(services)}


def service_of(workload: ServiceRef, services: list[ServiceSpec]) -> ServiceRef:
    """The service a workload belongs to (`NAME` is the stable Deployment, `NAME-<role>` the others)."""
    for s in services:
        if s.team == workload.namespace and (workload.workload == s.name or workload.workload.startswith(s.name + "-")):
            return ServiceRef(namespace=s.team, workload=s.name)
    raise AssertionError(f"{workload} belongs to no fleet service")


def transitive_callers(edges: set[tuple[ServiceRef, ServiceRef]], service: ServiceRef) -> set[ServiceRef]:
    found: set[ServiceRef] = set()
    frontier = {service}
    while frontier:
        frontier = {caller for caller, callee in edges if callee in frontier} - found
        found |= frontier
    return found


async def discover(sandbox: SandboxMonitoring, **args: object) -> GraphDiscovery:
    clients = ActivityClients(settings=Settings(), metrics=PrometheusProvider(base_url=sandbox.monitoring.prometheus_url))
    invocation = StepInvocation[DiscoverArgs](args=DiscoverArgs.model_validate(args))
    return await ActivityEnvironment().run(DependencyGraphActivities(clients).discover, invocation)


def assert_matches_fleet(graph: DependencyGraph, services: list[ServiceSpec]) -> None:
    expected = spec_edges(services)
    discovered = {(e.caller, e.callee) for e in graph.edges}
    assert expected <= discovered, sorted(map(str, p) for p in expected - discovered)
    # anything else is a call to a non-stable workload (a canary some other test sent traffic to) of a called service
    assert {(caller, service_of(callee, services)) for caller, callee in discovered} == expected
    entries = {e.service for e in graph.entries}
    assert {service_of(s, services).workload for s in entries} == {s.name for s in services if s.entry is not None}


async def test_discovered_graph_matches_the_fleets_call_edges(sandbox_monitoring: SandboxMonitoring) -> None:
    sandbox, services = sandbox_monitoring, sandbox_monitoring.services
    result = await discover(sandbox, window="1h")
    graph = result.graph
    assert result.regions == sorted(sandbox.api_clients) and result.series > 0, result.summary
    assert_matches_fleet(graph, services)
    assert all(e.rps > 0 for e in graph.edges)
    # the fleet's own edges carry traffic in every region; a call to a canary another test made may be in one only
    fleet_edges = spec_edges(services)
    assert all(e.regions == result.regions for e in graph.edges if (e.caller, e.callee) in fleet_edges)

    token = ServiceRef(namespace="team-identity", workload="token-service")
    gateway = ServiceRef(namespace="team-platform", workload="api-gateway")
    assert set(graph.blast_radius(token)) == transitive_callers(spec_edges(services), token)
    assert {gateway, ServiceRef(namespace="team-telematics", workload="telematics-ingest")} <= set(graph.blast_radius(token))
    assert token in graph.dependencies(gateway)

    order = graph.callees_first_order()
    assert order.cycles == [] and order.broken_edges == []  # the fleet's graph is a DAG
    where = {s: i for i, s in enumerate(order.order)}
    assert all(where[callee] < where[caller] for caller, callee in spec_edges(services))

    one_region = (await discover(sandbox, window="1h", region=result.regions[0])).graph
    assert_matches_fleet(one_region, services)
    assert all(e.regions == [result.regions[0]] for e in one_region.edges)
    assert sum(e.rps for e in one_region.edges) < sum(e.rps for e in graph.edges)


def pitstop(*args: str, prometheus_url: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PITSTOP_PROMETHEUS__URL": prometheus_url, "PITSTOP_STATE_DIR": str(state_dir),
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pitstop.workers.cli", "graph", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_pitstop_graph_prints_calls_order_and_blast_radius_from_a_cache(
        sandbox_monitoring: SandboxMonitoring, tmp_path: Path) -> None:
    services = sandbox_monitoring.services
    url = sandbox_monitoring.monitoring.prometheus_url
    shown = pitstop(prometheus_url=url, state_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "  api-gateway -> team-identity/vehicle-auth  " in shown.stdout
    assert "  vehicle-auth -> team-identity/token-service  " in shown.stdout
    assert "  team-platform/api-gateway  " in shown.stdout.split("entries")[1]
    cache = tmp_path / "graph-all.json"
    written = cache.read_text()

    as_json = pitstop("--json", prometheus_url=url, state_dir=tmp_path)  # answered from the cache
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == json.loads(written)
    assert_matches_fleet(DependencyGraph.model_validate(json.loads(written)["discovery"]["graph"]), services)

    token = ServiceRef(namespace="team-identity", workload="token-service")
    one = pitstop("--service", str(token), "--json", prometheus_url=url, state_dir=tmp_path)
    assert one.returncode == 0, one.stderr
    view = json.loads(one.stdout)
    assert set(view["blast_radius"]) == {str(s) for s in transitive_callers(spec_edges(services), token)}
    assert list(view["called_by"]) == ["team-identity/vehicle-auth"] and view["dependencies"] == []

    ordered = pitstop("--order", "--refresh", prometheus_url=url, state_dir=tmp_path)
    assert ordered.returncode == 0, ordered.stderr
    lines = [line.split(". ", 1)[1] for line in ordered.stdout.splitlines() if ". " in line]
    for caller, callee in spec_edges(services):
        assert lines.index(str(callee)) < lines.index(str(caller)), (caller, callee)
    assert cache.read_text() != written  # --refresh read Prometheus again

    missing = pitstop("--service", "team-identity/nope", prometheus_url=url, state_dir=tmp_path)
    assert missing.returncode == 4 and "team-identity/nope is in no call of the graph" in missing.stderr
    nowhere = pitstop("--region", "nowhere", prometheus_url=url, state_dir=tmp_path)
    assert nowhere.returncode == 4, nowhere.stderr
    assert nowhere.stderr.strip() == (f'pitstop: error: no istio_requests_total series with region="nowhere" '
                                      f"in the last 1h at {url}")
    down_url = closed_port_url()
    down = pitstop("--refresh", prometheus_url=down_url, state_dir=tmp_path)
    assert down.returncode == 3 and f"Prometheus at {down_url} unreachable" in down.stderr
