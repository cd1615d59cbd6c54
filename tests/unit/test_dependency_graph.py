"""The dependency graph (pitstop/dependency_graph.py): series -> graph, transitive queries, callees-first order
with cycles broken deterministically. Small hand-made graphs; the sandbox test checks it against real telemetry."""

from __future__ import annotations

import itertools
import random

import pytest

from pitstop.dependency_graph import DependencyGraph, Edge, ServiceRef, build_graph, regions_in


def ref(text: str) -> ServiceRef:
    return ServiceRef.parse(text)


def series(caller: str, callee: str, rps: float, **extra: str) -> tuple[dict[str, str], float]:
    labels = dict(extra)
    if caller:
        labels["source_workload_namespace"], labels["source_workload"] = caller.split("/")
    labels["destination_workload_namespace"], labels["destination_workload"] = callee.split("/")
    return labels, rps


def graph_of(*edges: tuple[str, str, float]) -> DependencyGraph:
    return build_graph([series(a, b, rps) for a, b, rps in edges])


def position(order: list[ServiceRef]) -> dict[ServiceRef, int]:
    return {s: i for i, s in enumerate(order)}


def test_series_become_edges_and_entries_sorted_and_summed_over_regions() -> None:
    graph = build_graph([
        series("shop/web", "shop/cart", 3.0, region="eu"),
        series("shop/web", "shop/cart", 2.0, region="us"),
        series("shop/cart", "pay/billing", 0.5, region="eu"),
        series("istio-system/istio-ingressgateway", "shop/web", 10.0, region="eu"),
        series("unknown/unknown", "shop/web", 1.0, region="us"),  # from outside the mesh
        series("", "shop/cart", 1.0, region="us"),  # no source label at all
        series("shop/web", "shop/unknown", 4.0, region="eu"),  # destination outside the mesh: dropped
        series("shop/web", "shop/noise", 0.001, region="eu"),  # below min_rps
        series("shop/web", "shop/idle", 0.0, region="eu"),
        series("shop/web", "shop/nan", float("nan"), region="eu"),
    ], window="1h", min_rps=0.01)
    assert [(str(e.caller), str(e.callee), e.rps, e.regions) for e in graph.edges] == [
        ("shop/cart", "pay/billing", 0.5, ["eu"]),
        ("shop/web", "shop/cart", 5.0, ["eu", "us"]),
    ]
    assert [(str(e.service), e.rps) for e in graph.entries] == [("shop/cart", 1.0), ("shop/web", 11.0)]
    assert [str(s) for s in graph.services()] == ["pay/billing", "shop/cart", "shop/web"]
    assert (graph.window, graph.min_rps, graph.region) == ("1h", 0.01, "")


def test_a_region_graph_keeps_only_that_regions_series() -> None:
    rows = [series("a/x", "a/y", 1.0, region="eu"), series("a/x", "a/z", 2.0, region="us")]
    assert regions_in(rows) == ["eu", "us"]
    us = build_graph(rows, region="us")
    assert [(str(e.callee), e.rps) for e in us.edges] == [("a/z", 2.0)] and us.region == "us"
    assert regions_in([series("a/x", "a/y", 1.0)]) == []


def test_dependencies_and_blast_radius_are_transitive() -> None:
    graph = graph_of(("a/gw", "a/auth", 5), ("a/auth", "a/token", 1), ("a/gw", "b/trips", 2),
                     ("b/stream", "b/trips", 1), ("b/trips", "a/token", 1))
    assert [str(s) for s in graph.dependencies(ref("a/gw"))] == ["a/auth", "a/token", "b/trips"]
    assert [str(s) for s in graph.blast_radius(ref("a/token"))] == ["a/auth", "a/gw", "b/stream", "b/trips"]
    assert graph.blast_radius(ref("a/gw")) == [] and graph.dependencies(ref("a/token")) == []
    assert graph.dependencies(ref("z/not-there")) == []
    assert [str(e.caller) for e in graph.callers_of(ref("b/trips"))] == ["a/gw", "b/stream"]


def test_callees_first_order_respects_every_edge_of_a_dag_with_ties_by_name() -> None:
    graph = graph_of(("a/gw", "a/auth", 5), ("a/auth", "a/token", 1), ("a/gw", "b/trips", 2),
                     ("b/trips", "a/token", 1))
    result = graph.callees_first_order()
    assert [str(s) for s in result.order] == ["a/token", "a/auth", "b/trips", "a/gw"]
    assert result.cycles == [] and result.broken_edges == []


def test_a_cycle_is_reported_and_broken_at_its_lightest_edge() -> None:
    # auth -> token -> session -> auth: the lightest edge (session -> auth, 0.2 rps) is broken
    graph = graph_of(("a/gw", "a/auth", 5), ("a/auth", "a/token", 3), ("a/token", "a/session", 1),
                     ("a/session", "a/auth", 0.2), ("a/session", "a/db", 1))
    result = graph.callees_first_order()
    assert [[str(s) for s in c] for c in result.cycles] == [["a/auth", "a/session", "a/token"]]
    assert [(str(e.caller), str(e.callee)) for e in result.broken_edges] == [("a/session", "a/auth")]
    where = position(result.order)
    for e in graph.edges:
        if e not in result.broken_edges:
            assert where[e.callee] < where[e.caller], e
    assert [str(s) for s in result.order] == ["a/db", "a/session", "a/token", "a/auth", "a/gw"]


def test_mutual_calls_of_equal_weight_break_deterministically_and_self_calls_are_ignored() -> None:
    one = graph_of(("a/x", "a/y", 1), ("a/y", "a/x", 1), ("a/x", "a/x", 9))
    other = graph_of(("a/y", "a/x", 1), ("a/x", "a/x", 9), ("a/x", "a/y", 1))
    assert one.callees_first_order() == other.callees_first_order()
    result = one.callees_first_order()
    assert len(result.broken_edges) == 1 and [len(c) for c in result.cycles] == [2]


def test_order_of_a_subset_follows_dependencies_through_services_not_asked_for() -> None:
    graph = graph_of(("a/web", "a/middle", 1), ("a/middle", "a/db", 1), ("a/other", "a/web", 1))
    result = graph.callees_first_order([ref("a/web"), ref("a/db"), ref("z/ghost")])
    assert [str(s) for s in result.order] == ["a/db", "a/web"]
    assert [str(s) for s in result.not_in_graph] == ["z/ghost"]


def test_random_graphs_every_kept_edge_is_respected_and_every_cycle_has_a_broken_edge() -> None:
    rng = random.Random(15)
    names = [f"ns/s{i}" for i in range(12)]
    for _ in range(50):
        edges = [(a, b, rng.choice([0.5, 1.0, 2.0])) for a, b in itertools.permutations(names, 2) if rng.random() < 0.15]
        graph = graph_of(*edges)
        result = graph.callees_first_order()
        assert sorted(result.order, key=ServiceRef.key) == graph.services()
        where = position(result.order)
        kept = [e for e in graph.edges if e not in result.broken_edges]
        assert all(where[e.callee] < where[e.caller] for e in kept)
        for broken in result.broken_edges:  # a broken edge is one that really closes a cycle
            assert broken.caller in graph.dependencies(broken.callee)


def test_service_ref_parsing() -> None:
    assert ref("team-ota/ota-update") == ServiceRef(namespace="team-ota", workload="ota-update")
    for bad in ("ota-update", "/x", "a/", "a/b/c"):
        with pytest.raises(ValueError, match="NAMESPACE/WORKLOAD"):
            ServiceRef.parse(bad)


def test_the_graph_round_trips_through_json() -> None:
    graph = graph_of(("a/x", "a/y", 1.5))
    assert DependencyGraph.model_validate_json(graph.model_dump_json()) == graph
    assert isinstance(graph.edges[0], Edge)
