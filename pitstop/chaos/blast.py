"""Blast-radius decisions before an experiment runs (pure).

- Share of pods: the method's pod actions (`chaosk8s.pod.actions.terminate_pods` and friends: `qty`, `all`,
  `mode: percentage`) may act on at most `max_pod_share` of a target's pods.
- Call paths: two targets of one run must not be on one call path (one calls the other, directly or not), by the
  dependency graph (`pitstop.dependency_graph`); the nightly run uses the same rule to run one at a time per path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pitstop.dependency_graph import DependencyGraph, ServiceRef

POD_ACTION_MODULES = ("chaosk8s.pod.actions",)


def pods_acted_on(arguments: dict[str, Any], pods: int) -> int:
    """How many of `pods` a pod action with these arguments acts on (Chaos Toolkit's `terminate_pods` rules)."""
    if arguments.get("all"):
        return pods
    qty = int(arguments.get("qty", 1) or 1)
    if arguments.get("mode") == "percentage":
        return math.ceil(pods * qty / 100)
    return min(qty, pods)


def pod_actions(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    """The method's activities that act on a share of a service's pods (the blast-radius limit applies)."""
    return [a for a in experiment.get("method") or []
            if ((a or {}).get("provider") or {}).get("type") == "python"
            and (a.get("provider") or {}).get("module") in POD_ACTION_MODULES]


def pod_share_refusals(experiment: dict[str, Any], *, pods: int, max_share: float, target: str) -> list[str]:
    """The method's pod actions that would act on more than `max_share` of `target`'s `pods`."""
    refusals = []
    for activity in pod_actions(experiment):
        provider = activity["provider"]
        acted = pods_acted_on(provider.get("arguments") or {}, pods)
        if pods == 0 or acted / pods > max_share:
            refusals.append(
                f"activity {activity.get('name', '?')!r} acts on {acted} of {target}'s {pods} pod(s), more than "
                f"max_pod_share {max_share:.0%}"
            )
    return refusals


def same_call_path(graph: DependencyGraph, a: ServiceRef, b: ServiceRef) -> bool:
    return b in graph.dependencies(a) or a in graph.dependencies(b)


def call_path_conflicts(graph: DependencyGraph, services: Sequence[ServiceRef]) -> list[tuple[ServiceRef, ServiceRef]]:
    """Pairs of `services` on one call path (never two at once)."""
    return [
        (a, b) for i, a in enumerate(services) for b in services[i + 1:] if same_call_path(graph, a, b)
    ]


def one_per_call_path(graph: DependencyGraph, services: Sequence[ServiceRef]) -> list[list[ServiceRef]]:
    """Batches of `services` to run together: in each batch no two share a call path (greedy, in order)."""
    batches: list[list[ServiceRef]] = []
    for service in services:
        for batch in batches:
            if not any(same_call_path(graph, service, other) for other in batch):
                batch.append(service)
                break
        else:
            batches.append([service])
    return batches
