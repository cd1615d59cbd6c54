"""The step graph, as pure functions: cycle detection (returns the cycle) and the ready set.

`needs` edges point from a step to the steps it waits for. A step is ready when every step it needs is
finished (succeeded or skipped) and it has not started.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Graph = Mapping[str, Sequence[str]]  # step id -> ids it needs


def find_cycle(graph: Graph) -> list[str] | None:
    """A dependency cycle as a closed path (`[a, b, c, a]`), or None. Unknown ids are ignored."""
    white, grey, black = 0, 1, 2
    color = {node: white for node in graph}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for dep in graph[node]:
            if dep not in color:
                continue
            if color[dep] == grey:
                return stack[stack.index(dep):] + [dep]
            if color[dep] == white:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        color[node] = black
        return None

    for node in graph:
        if color[node] == white:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def ready(graph: Graph, finished: Iterable[str], started: Iterable[str]) -> list[str]:
    """Steps whose needs are all finished and that have not started, in declaration order."""
    done = set(finished)
    begun = set(started) | done
    return [node for node, deps in graph.items() if node not in begun and all(d in done for d in deps)]


def ancestors(graph: Graph, node: str) -> set[str]:
    """Every step `node` transitively needs (its outputs are visible to it)."""
    seen: set[str] = set()
    todo = list(graph.get(node, ()))
    while todo:
        current = todo.pop()
        if current in seen or current not in graph:
            continue
        seen.add(current)
        todo.extend(graph[current])
    return seen


def topological_order(graph: Graph) -> list[str]:
    """Kahn's order (declaration order among peers); requires an acyclic graph."""
    order: list[str] = []
    while len(order) < len(graph):
        batch = ready(graph, order, ())
        if not batch:
            raise ValueError("graph has a cycle")
        order.extend(batch)
    return order
