"""Pure DAG functions: cycles, ready sets, ancestors, order."""

from __future__ import annotations

from pitstop.runbook import dag

GRAPH = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_ready_set_progression() -> None:
    assert dag.ready(GRAPH, [], []) == ["a"]
    assert dag.ready(GRAPH, ["a"], []) == ["b", "c"]
    assert dag.ready(GRAPH, ["a", "b"], ["c"]) == []
    assert dag.ready(GRAPH, ["a", "b", "c"], []) == ["d"]


def test_cycle_is_returned_as_a_path() -> None:
    assert dag.find_cycle(GRAPH) is None
    assert dag.find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]}) == ["a", "c", "b", "a"]
    assert dag.find_cycle({"a": ["a"]}) == ["a", "a"]


def test_ancestors_and_order() -> None:
    assert dag.ancestors(GRAPH, "d") == {"a", "b", "c"}
    assert dag.topological_order(GRAPH) == ["a", "b", "c", "d"]
