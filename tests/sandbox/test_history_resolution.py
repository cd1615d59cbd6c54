"""The session's backfilled history has a real scrape resolution (`sandbox.history`, usage every 30 s): a rate over
2 minutes across a day in the past gives a point per step for every fleet pod (at 5-minute samples it gave none or
one), a day holds 2880 CPU and memory samples per pod, and the kube-state-metrics series are in the history too
(a week ago, every fleet pod has its owner and its requests). "Every fleet pod" is every pod the history was
generated for: by the time these tests run, others may have replaced pods by rollouts and scale-outs."""

from __future__ import annotations

import time

import pytest

from tests.fixtures.monitoring import SandboxMonitoring

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]


def test_a_short_rate_over_a_past_day_has_a_point_per_step(sandbox_monitoring: SandboxMonitoring) -> None:
    sandbox = sandbox_monitoring
    assert sandbox.history.step_seconds <= 30
    pods = sandbox.history_pod_keys()  # live pods may be newer: other tests roll and scale the fleet
    day_end = time.time() - 2 * 86400
    rows = sandbox.query("rate(container_cpu_usage_seconds_total[2m])", start=day_end - 86400, end=day_end, step=60)
    points = {(r["metric"]["region"], r["metric"]["namespace"], r["metric"]["pod"]): len(r["values"]) for r in rows}
    assert pods <= set(points), sorted(pods - set(points))[:5]
    assert all(points[p] >= 1440 for p in pods), sorted((n, p) for p, n in points.items() if p in pods)[:5]
    assert all(float(v) > 0 for r in rows for _t, v in r["values"])

    for name in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes"):
        counts = sandbox.query(f"count_over_time({name}[1d])", time=day_end)
        per_pod = {(r["metric"]["region"], r["metric"]["namespace"], r["metric"]["pod"]): float(r["value"][1])
                   for r in counts}
        assert all(per_pod[p] == 86400 / sandbox.history.step_seconds for p in pods), (name, per_pod)


def test_kube_state_metrics_are_in_the_history(sandbox_monitoring: SandboxMonitoring) -> None:
    sandbox = sandbox_monitoring
    week_ago = time.time() - 7 * 86400
    pods = sandbox.history_pod_keys()  # live pods may be newer: other tests roll and scale the fleet
    for query in ('kube_pod_owner{owner_kind="ReplicaSet"}', 'kube_pod_container_resource_requests{resource="cpu"}',
                  'kube_pod_container_resource_limits{resource="memory"}', "kube_pod_container_status_restarts_total"):
        rows = sandbox.query(query, time=week_ago)
        found = {(r["metric"]["region"], r["metric"]["namespace"], r["metric"]["pod"]) for r in rows}
        assert pods <= found, (query, sorted(pods - found)[:5])
    for query in ("kube_replicaset_owner", "kube_deployment_spec_replicas", "kube_node_info", "machine_cpu_cores",
                  "kube_node_status_allocatable", "kube_node_labels", "machine_memory_bytes"):
        rows = sandbox.query(query, time=week_ago)
        assert {r["metric"]["region"] for r in rows} == set(sandbox.api_clients), query
