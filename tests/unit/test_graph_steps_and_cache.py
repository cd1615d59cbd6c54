"""The graph steps' arguments (`pitstop.steps.graph`), the `graph.order` activity (pure) and the CLI's graph
cache (`workers.graph_cache`): freshness, the question it answers, atomic writes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from pitstop.activities.clients import ActivityClients
from pitstop.activities.dependency_graph import DependencyGraphActivities
from pitstop.config import Settings
from pitstop.dependency_graph import ServiceRef, build_graph, discovery_query
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.graph import DiscoverArgs, GraphDiscovery, OrderArgs
from pitstop.workers.graph_cache import CachedGraph, cache_path, load_fresh, store

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc)
URL = "http://prometheus:9090"


def labels(caller: str, callee: str, **extra: str) -> dict[str, str]:
    (sn, sw), (dn, dw) = caller.split("/"), callee.split("/")
    return {"source_workload_namespace": sn, "source_workload": sw,
            "destination_workload_namespace": dn, "destination_workload": dw, **extra}


GRAPH = build_graph([(labels("a/web", "a/db"), 2.0), (labels("a/api", "a/web"), 1.0)], window="1h", min_rps=0.01)


def test_discovery_query_reads_destination_reports_per_region() -> None:
    assert discovery_query(window="1h") == (
        "sum by (region, source_workload, source_workload_namespace, destination_workload, "
        'destination_workload_namespace) (rate(istio_requests_total{reporter="destination"}[1h]))')
    assert 'reporter="destination",region="eu-central"}[30m]' in discovery_query(window="30m", region="eu-central")


def test_discover_args_are_checked() -> None:
    assert DiscoverArgs().window == "1h"
    for bad in ({"window": "1 hour"}, {"min_rps": -1}, {"region": "EU"}, {"windw": "1h"}):
        with pytest.raises(ValidationError):
            DiscoverArgs.model_validate(bad)


async def test_graph_order_accepts_namespace_slash_workload_and_orders_callees_first() -> None:
    args = OrderArgs.model_validate({"graph": GRAPH.model_dump(), "services": ["a/api", "a/db", "z/none"]})
    assert args.services == [ServiceRef.parse("a/api"), ServiceRef.parse("a/db"), ServiceRef.parse("z/none")]
    activities = DependencyGraphActivities(ActivityClients(settings=Settings()))
    result = await ActivityEnvironment().run(activities.order, StepInvocation[OrderArgs](args=args))
    assert [str(s) for s in result.order] == ["a/db", "a/api"]
    assert [str(s) for s in result.not_in_graph] == ["z/none"]
    assert result.summary == "a/db -> a/api"


def cached(at: datetime, *, url: str = URL) -> CachedGraph:
    return CachedGraph(fetched_at=at, prometheus_url=url, discovery=GraphDiscovery(graph=GRAPH, series=2))


def test_the_cache_is_used_only_while_fresh_and_for_the_same_question(tmp_path: Path) -> None:
    path = cache_path(tmp_path, "")
    assert path.name == "graph-all.json" and cache_path(tmp_path, "us-east").name == "graph-us-east.json"
    args = DiscoverArgs(window="1h", min_rps=0.01)
    assert load_fresh(path, args=args, prometheus_url=URL, now=NOW, max_age=timedelta(minutes=10)) is None
    store(path, cached(NOW - timedelta(minutes=5)))
    assert [p.name for p in tmp_path.iterdir()] == ["graph-all.json"]  # no temporary file left behind
    hit = load_fresh(path, args=args, prometheus_url=URL, now=NOW, max_age=timedelta(minutes=10))
    assert hit is not None and hit.discovery.graph == GRAPH
    assert load_fresh(path, args=args, prometheus_url=URL, now=NOW, max_age=timedelta(minutes=4)) is None
    assert load_fresh(path, args=args, prometheus_url="http://other:9090", now=NOW, max_age=timedelta(hours=1)) is None
    for other in (DiscoverArgs(window="2h", min_rps=0.01), DiscoverArgs(window="1h", min_rps=1)):
        assert load_fresh(path, args=other, prometheus_url=URL, now=NOW, max_age=timedelta(hours=1)) is None
    store(path, cached(NOW + timedelta(minutes=5)))  # written "in the future" (clock skew): not trusted
    assert load_fresh(path, args=args, prometheus_url=URL, now=NOW, max_age=timedelta(hours=1)) is None
    path.write_text("{not json")
    assert load_fresh(path, args=args, prometheus_url=URL, now=NOW, max_age=timedelta(hours=1)) is None
