"""Container limits in the sandbox act as the kernel would (`sandbox.container_usage`): a memory limit below the
service's working set gets its container OOM-killed (kwok's `pitstop-pod-oom-kill` Stage: restartCount grows,
`lastState.terminated.reason` is OOMKilled) and Prometheus sees it (`kube_pod_container_status_last_terminated_reason`,
`kube_pod_container_status_restarts_total`, the working set pinned at the limit); a CPU limit below its demand caps
its CPU usage at the limit and throttles (`container_cpu_cfs_throttled_periods_total` rises with
`container_cpu_cfs_periods_total`).

The test runs its own service (a fleet-style Deployment with the simulator's model annotation, outside the fleet
label so the session's fleet and its history are untouched) on the session's clusters, simulator and Prometheus.

Also: the kube-state-metrics series (`sandbox.kube_state_metrics`) carry KSM's names and labels and match the
live objects (pods and their owners, ReplicaSets, Deployments, an HPA, nodes), and Prometheus scrapes itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pitstop.quantities import parse_quantity
from pitstop.sandbox.fleet import FLEET_LABEL, ServiceSpec, deployment_manifest
from pitstop.sandbox.kube_state_metrics import sanitize_label_name
from pitstop.sandbox.kube_objects import list_objects, sandbox_kube, server_side_apply
from tests.fixtures.monitoring import SandboxMonitoring

from .step_library_support import eventually, unique

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

REGION = "eu-central"
MIB = 2**20


def manifest(service: ServiceSpec, *, cpu_limit: str, memory_request: str, memory_limit: str) -> dict[str, Any]:
    obj = deployment_manifest(service, version=service.version, role="stable", replicas=2)
    for labels in (obj["metadata"]["labels"], obj["spec"]["template"]["metadata"]["labels"]):
        labels.pop(FLEET_LABEL, None)  # (one dict, shared by both)
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["limits"] = {"cpu": cpu_limit, "memory": memory_limit}
    container["resources"]["requests"]["memory"] = memory_request
    if cpu_limit.endswith("m") and int(cpu_limit[:-1]) < service.cpu_request_millicores:
        container["resources"]["requests"]["cpu"] = cpu_limit
    return obj


@pytest.fixture(scope="module")
def service(sandbox_monitoring: SandboxMonitoring) -> Iterator[ServiceSpec]:
    """A service idling at 5 % of 1 CPU (50m) with a working set of 60 % x 0.8 x 256 MiB (~123 MiB)."""
    spec = ServiceSpec(name=unique("limits"), team=sandbox_monitoring.services[0].team, version="v1.0.0",
                       cpu_request_millicores=1000, cpu_limit_millicores=2000, memory_request_mib=256,
                       memory_limit_mib=512, cpu_utilization_at_peak=0.5, memory_utilization_at_peak=0.8)
    api = sandbox_monitoring.api_clients[REGION]
    yield spec
    if sandbox_kube(api).get_optional(f"/apis/apps/v1/namespaces/{spec.team}/deployments/{spec.name}"):
        sandbox_kube(api).request("DELETE", f"/apis/apps/v1/namespaces/{spec.team}/deployments/{spec.name}")


def pods(sandbox: SandboxMonitoring, service: ServiceSpec) -> list[dict[str, Any]]:
    items, _ = list_objects(sandbox.api_clients[REGION], kind="Pod", namespace=service.team,
                            label_selector=f"app={service.name}")
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def apply_and_wait(sandbox: SandboxMonitoring, obj: dict[str, Any], *, memory_limit: str) -> list[dict[str, Any]]:
    server_side_apply(sandbox.api_clients[REGION], obj)
    service_name = obj["metadata"]["name"]

    def rolled_out() -> list[dict[str, Any]] | None:
        items, _ = list_objects(sandbox.api_clients[REGION], kind="Pod", namespace=obj["metadata"]["namespace"],
                                label_selector=f"app={service_name}")
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        ok = len(live) == 2 and all(
            p["spec"]["containers"][0]["resources"]["limits"]["memory"] == memory_limit
            and (p.get("status") or {}).get("phase") == "Running" for p in live)
        return live if ok else None

    return eventually(f"{service_name}'s pods running with memory limit {memory_limit}", rolled_out, timeout=120)


def test_a_cpu_limit_below_demand_throttles(sandbox_monitoring: SandboxMonitoring, service: ServiceSpec) -> None:
    sandbox = sandbox_monitoring
    apply_and_wait(sandbox, manifest(service, cpu_limit="20m", memory_request="256Mi", memory_limit="512Mi"),
                   memory_limit="512Mi")
    selector = f'namespace="{service.team}",pod=~"{service.name}-.*",region="{REGION}"'

    def throttled() -> list[dict[str, Any]] | None:
        rows = sandbox.query(f"rate(container_cpu_cfs_throttled_periods_total{{{selector}}}[5s]) "
                             f"/ rate(container_cpu_cfs_periods_total{{{selector}}}[5s])")
        return rows if len(rows) == 2 and all(float(r["value"][1]) > 0.9 for r in rows) else None

    # demand 50m against a 20m quota: 2 x (1 - 20/50) > 1, every period throttled
    eventually("both pods' CFS periods throttled in Prometheus", throttled, timeout=60)
    usage = sandbox.query(f"rate(container_cpu_usage_seconds_total{{{selector}}}[5s])")
    assert len(usage) == 2 and all(float(r["value"][1]) <= 0.020 * 1.05 for r in usage), usage
    assert all(container_status(p).get("restartCount", 0) == 0 for p in pods(sandbox, service))


def test_a_memory_limit_below_usage_is_oom_killed(sandbox_monitoring: SandboxMonitoring,
                                                   service: ServiceSpec) -> None:
    sandbox = sandbox_monitoring
    killed = wait_oom_killed(sandbox, service)
    assert all(p["metadata"]["labels"].get("pitstop.dev/oom-kill") == "true" for p in killed)
    names = sorted(p["metadata"]["name"] for p in killed)
    selector = f'namespace="{service.team}",pod=~"{service.name}-.*",region="{REGION}"'

    def in_prometheus() -> bool:
        reasons = sandbox.query(f'kube_pod_container_status_last_terminated_reason{{{selector},reason="OOMKilled"}}')
        restarts = sandbox.query(f"kube_pod_container_status_restarts_total{{{selector}}} >= 1")
        return (sorted(r["metric"]["pod"] for r in reasons) == names
                and sorted(r["metric"]["pod"] for r in restarts) == names)

    eventually("OOMKilled and the restarts in Prometheus", in_prometheus, timeout=30)
    working_set = sandbox.query(f"container_memory_working_set_bytes{{{selector}}}")
    assert sorted(r["metric"]["pod"] for r in working_set) == names
    assert all(float(r["value"][1]) == 64 * MIB for r in working_set), working_set
    # still above the limit: the kills go on
    first = {p["metadata"]["name"]: container_status(p)["restartCount"] for p in killed}
    eventually("a further OOM kill of each pod", lambda: all(
        container_status(p).get("restartCount", 0) > first.get(p["metadata"]["name"], 99)
        for p in pods(sandbox, service)), timeout=60)


def wait_oom_killed(sandbox: SandboxMonitoring, service: ServiceSpec) -> list[dict[str, Any]]:
    """The service's pods once each was OOM-killed under a 64 MiB limit (applied here if not yet)."""
    if any(p["spec"]["containers"][0]["resources"]["limits"]["memory"] != "64Mi" for p in pods(sandbox, service)) \
            or not pods(sandbox, service):
        apply_and_wait(sandbox, manifest(service, cpu_limit="2", memory_request="64Mi", memory_limit="64Mi"),
                       memory_limit="64Mi")

    def oom_killed() -> list[dict[str, Any]] | None:
        live = pods(sandbox, service)
        statuses = [container_status(p) for p in live]
        ok = len(live) == 2 and all(
            s.get("restartCount", 0) >= 1
            and ((s.get("lastState") or {}).get("terminated") or {}).get("reason") == "OOMKilled"
            and ((s.get("lastState") or {}).get("terminated") or {}).get("exitCode") == 137 for s in statuses)
        return live if ok else None

    return eventually("both pods OOMKilled and restarted", oom_killed, timeout=90)  # type: ignore[no-any-return]


def test_the_default_fleet_runs_within_its_limits(sandbox_monitoring: SandboxMonitoring) -> None:
    """Limits twice the requests: no fleet pod is OOM-killed or throttled."""
    sandbox = sandbox_monitoring
    for region, api in sandbox.api_clients.items():
        labelled, _ = list_objects(api, kind="Pod", label_selector=f"{FLEET_LABEL}=true,pitstop.dev/oom-kill")
        assert labelled == [], (region, [p["metadata"]["name"] for p in labelled])
    periods = sandbox.query(f'container_cpu_cfs_periods_total{{namespace=~"{"|".join({s.team for s in sandbox.services})}"}}')
    assert len(periods) >= sum(s.replicas for s in sandbox.services) * len(sandbox.api_clients)
    throttled = sandbox.query("sum(container_cpu_cfs_throttled_periods_total{pod!~\"limits-.*\"})")
    assert throttled and float(throttled[0]["value"][1]) == 0, throttled


def series(sandbox: SandboxMonitoring, name: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], dict[str, str]]:
    """The region's scraped samples of `name` (the backfilled history ends a minute before Prometheus started and
    has no `instance`), by the values of `keys` (each key once)."""
    rows = sandbox.query(f'{name}{{region="{REGION}",instance!=""}}')
    out: dict[tuple[str, ...], dict[str, str]] = {}
    for row in rows:
        metric = {**row["metric"], "__value__": row["value"][1]}
        key = tuple(metric.get(k, "") for k in keys)
        assert key not in out, (name, key)
        out[key] = metric
    return out


def test_kube_state_metrics_match_the_live_objects(sandbox_monitoring: SandboxMonitoring,
                                                   service: ServiceSpec) -> None:
    sandbox = sandbox_monitoring
    api = sandbox.api_clients[REGION]
    wait_oom_killed(sandbox, service)  # a container with a last terminated state
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": service.name, "namespace": service.team},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service.name},
                    "minReplicas": 2, "maxReplicas": 7}}
    server_side_apply(api, hpa)
    hpa_key = (service.team, service.name)
    eventually("the HPA's series", lambda: hpa_key in series(
        sandbox, "kube_horizontalpodautoscaler_spec_max_replicas", ("namespace", "horizontalpodautoscaler")), 30)
    hpas = series(sandbox, "kube_horizontalpodautoscaler_spec_max_replicas", ("namespace", "horizontalpodautoscaler"))
    assert hpas[hpa_key]["__value__"] == "7"

    owners = series(sandbox, "kube_pod_owner", ("namespace", "pod", "owner_kind"))
    requests = series(sandbox, "kube_pod_container_resource_requests", ("namespace", "pod", "container", "resource"))
    limits = series(sandbox, "kube_pod_container_resource_limits", ("namespace", "pod", "container", "resource"))
    restarts = series(sandbox, "kube_pod_container_status_restarts_total", ("namespace", "pod", "container"))
    last = series(sandbox, "kube_pod_container_status_last_terminated_reason", ("namespace", "pod", "container"))
    # listed after the query: the module's service is OOM-killed every 15 s, so its restartCount may be one ahead
    live_pods = [p for p in list_objects(api, kind="Pod", label_selector="app")[0]
                 if not p["metadata"].get("deletionTimestamp")]
    terminated_pods = 0
    for pod in live_pods:
        meta, container = pod["metadata"], pod["spec"]["containers"][0]
        (owner,) = meta["ownerReferences"]
        row = owners[(meta["namespace"], meta["name"], "ReplicaSet")]
        assert (row["owner_name"], row["owner_is_controller"], row["uid"]) == (owner["name"], "true", meta["uid"])
        status = container_status(pod)
        c_key = (meta["namespace"], meta["name"], container["name"])
        assert status.get("restartCount", 0) - int(restarts[c_key]["__value__"]) in (0, 1), (c_key, status)
        assert restarts[c_key]["uid"] == meta["uid"]
        reason = ((status.get("lastState") or {}).get("terminated") or {}).get("reason")
        if reason:
            terminated_pods += 1
            assert last[c_key]["reason"] == reason and last[c_key]["uid"] == meta["uid"]
        for resource, unit in (("cpu", "core"), ("memory", "byte")):
            for table, amounts in ((requests, container["resources"]["requests"]),
                                   (limits, container["resources"]["limits"])):
                row = table[(*c_key, resource)]
                assert float(row["__value__"]) == parse_quantity(amounts[resource]), (c_key, resource, row)
                assert (row["unit"], row["node"], row["uid"]) == (unit, pod["spec"]["nodeName"], meta["uid"])
    assert terminated_pods >= 2

    replicasets = series(sandbox, "kube_replicaset_owner", ("namespace", "replicaset"))
    live_rs = list_objects(api, kind="ReplicaSet", label_selector="app")[0]
    assert set(replicasets) == {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in live_rs}
    for rs in live_rs:
        (owner,) = rs["metadata"]["ownerReferences"]
        row = replicasets[(rs["metadata"]["namespace"], rs["metadata"]["name"])]
        assert (row["owner_kind"], row["owner_name"], row["owner_is_controller"]) == ("Deployment", owner["name"], "true")
    deployments = series(sandbox, "kube_deployment_spec_replicas", ("namespace", "deployment"))
    live_deployments = list_objects(api, kind="Deployment", label_selector="app")[0]
    assert {k: v["__value__"] for k, v in deployments.items()} == {
        (d["metadata"]["namespace"], d["metadata"]["name"]): str(d["spec"]["replicas"]) for d in live_deployments}

    nodes = list_objects(api, kind="Node")[0]
    info = series(sandbox, "kube_node_info", ("node",))
    node_labels = series(sandbox, "kube_node_labels", ("node",))
    allocatable = series(sandbox, "kube_node_status_allocatable", ("node", "resource"))
    cores = series(sandbox, "machine_cpu_cores", ("node",))
    memory = series(sandbox, "machine_memory_bytes", ("node",))
    assert set(info) == set(node_labels) == set(cores) == set(memory) == {(n["metadata"]["name"],) for n in nodes}
    for node in nodes:
        name, status = node["metadata"]["name"], node["status"]
        assert info[(name,)]["kernel_version"] == status["nodeInfo"]["kernelVersion"]
        assert info[(name,)]["kubelet_version"] == status["nodeInfo"]["kubeletVersion"]
        for key, value in node["metadata"]["labels"].items():
            assert node_labels[(name,)][sanitize_label_name(key)] == value
        for resource, unit in (("cpu", "core"), ("memory", "byte"), ("pods", "integer")):
            row = allocatable[(name, resource)]
            assert (float(row["__value__"]), row["unit"]) == (parse_quantity(status["allocatable"][resource]), unit)
        assert float(cores[(name,)]["__value__"]) == parse_quantity(status["capacity"]["cpu"])
        assert float(memory[(name,)]["__value__"]) == parse_quantity(status["capacity"]["memory"])

    own = sandbox.query('up{job="prometheus"}')
    assert [r["value"][1] for r in own] == ["1"], own
    assert sandbox.query('prometheus_build_info{job="prometheus"}')
