"""Benchmark: the traffic simulator's per-region tick at fleet scale, without clusters.

Builds one region's snapshot from the fleet's own manifests (`sandbox.fleet.fleet_manifests`, N services,
every Deployment available, one Running pod per replica, summarised by `sandbox.cluster_watch` exactly as
the watcher does) and times `FleetSimulator._advance_region` on it: plain routes, then with an Istio fault
(delay + abort) on every VirtualService route and, with --host-routes, part of every route sent to another
Service by host. Prints the median of the rounds in milliseconds and the load average.

    .venv/bin/python -m bench.simulator_tick [--services 500] [--rounds 15]

Run it with PYTHONPATH at another checkout to compare (snapshots are built only through functions both
versions have; the fault and host-route figures need this checkout's simulator).

Measured 2026-12-05 on the shared 2-core machine (load 4.9-6.3 from other work), 500 services, 969 pods,
15 rounds, medians of two runs each: plain routes 32-37 ms before Istio fault/host resolution
(PYTHONPATH=main), 42-59 ms with it; a fault on every route 71-150 ms; a fault plus a 10 % host route on
every route 134-201 ms (more series). The simulator ticks every 0.5-2 s per region.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from typing import Any

from pitstop.sandbox import cluster_watch
from pitstop.sandbox.cluster_watch import RegionSnapshot, summarize_deployment, summarize_destination_rule, summarize_pod
from pitstop.sandbox.fleet import expand_fleet, fleet_manifests, load_fleet_spec
from pitstop.sandbox.simulator import FleetSimulator

REGION = "eu-central"


class _Watcher:
    region = REGION


def _pods(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    meta, spec = deployment["metadata"], deployment["spec"]
    pods = []
    for i in range(spec["replicas"]):
        pods.append({
            "metadata": {"namespace": meta["namespace"], "name": f"{meta['name']}-5d9f7-{i:05d}",
                         "labels": {**spec["template"]["metadata"]["labels"], "pod-template-hash": "5d9f7"},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": f"{meta['name']}-5d9f7",
                                              "controller": True}],
                         "creationTimestamp": "2026-12-01T00:00:00Z"},
            "spec": {**spec["template"]["spec"], "nodeName": "node-0"},
            "status": {"phase": "Running", "containerStatuses": [{"restartCount": 0, "state": {"running": {}}}]},
        })
    return pods


def build_snapshot(*, services: int, faults: bool, host_routes: bool) -> RegionSnapshot:
    specs = expand_fleet(load_fleet_spec(), services=services)
    deployments: list[Any] = []
    pods: list[Any] = []
    routes: dict[tuple[str, str], Any] = {}
    subsets: dict[tuple[str, str], dict[str, str]] = {}
    kube_services: dict[tuple[str, str], Any] = {}
    names = [s.name for s in specs]
    for index, service in enumerate(specs):
        for obj in fleet_manifests(service):
            kind, meta = obj["kind"], obj["metadata"]
            key = (meta["namespace"], meta["name"])
            if kind == "Deployment":
                obj = copy.deepcopy(obj)
                obj["status"] = {"availableReplicas": obj["spec"]["replicas"]}
                deployments.append(summarize_deployment(obj))
                pods.extend(summarize_pod(p) for p in _pods(obj))
            elif kind == "DestinationRule":
                subsets[key] = summarize_destination_rule(obj)
            elif kind == "Service" and hasattr(cluster_watch, "summarize_service"):
                kube_services[key] = cluster_watch.summarize_service(obj)  # type: ignore[attr-defined]
            elif kind == "VirtualService":
                obj = copy.deepcopy(obj)
                route = obj["spec"]["http"][0]
                if faults:
                    route["fault"] = {"delay": {"fixedDelay": "200ms", "percentage": {"value": 20}},
                                      "abort": {"httpStatus": 503, "percentage": {"value": 5}}}
                if host_routes:
                    other = specs[(index + 1) % len(specs)]
                    route["route"][0]["weight"] = 90
                    route["route"].append({"destination": {"host": f"{other.name}.{other.team}"}, "weight": 10})
                routes[key] = cluster_watch.summarize_virtual_service(obj)
    snapshot = RegionSnapshot(region=REGION, deployments=[d for d in deployments if d], pods=[p for p in pods if p],
                              routes=routes, subsets=subsets, faults=[], services=kube_services)
    assert len(names) == services
    return snapshot


def time_ticks(snapshot: RegionSnapshot, *, rounds: int) -> float:
    simulator = FleetSimulator(watchers=[_Watcher()])  # type: ignore[list-item]
    durations = []
    for i in range(rounds):
        started = time.perf_counter()
        simulator._advance_region(snapshot, weights={REGION: 100.0}, regions=1,  # noqa: SLF001
                                  now_unix=1_764_900_000.0 + i, dt=1.0)
        durations.append(time.perf_counter() - started)
    return statistics.median(durations) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--plain-only", action="store_true", help="only the plain-route figure (older checkouts)")
    args = parser.parse_args()
    cases = [("plain routes", False, False)]
    if not args.plain_only:
        cases += [("fault on every route", True, False), ("fault + 10 % host route on every route", True, True)]
    print(f"services {args.services}, rounds {args.rounds}, load average before {os.getloadavg()}")
    for name, faults, host_routes in cases:
        snapshot = build_snapshot(services=args.services, faults=faults, host_routes=host_routes)
        median_ms = time_ticks(snapshot, rounds=args.rounds)
        print(f"  {name:<40} tick median {median_ms:7.1f} ms  ({len(snapshot.pods)} pods)")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
