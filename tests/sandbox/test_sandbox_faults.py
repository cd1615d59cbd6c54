"""Sandbox faults show in the Kubernetes API, through kwok Stages, as they would on a real cluster:
a crash-loop fault puts the service's pods in CrashLoopBackOff with a growing restartCount (and
`kubectl get pods` says so), clearing it makes them Ready again; a node-not-ready fault turns a node
NotReady. Every Service of a sandbox cluster gets a ClusterIP from its /16 range. Real API servers."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from tests.sandbox.step_library_support import eventually
from pitstop.sandbox.clusters import SandboxClusters, api_client
from pitstop.sandbox.faults import (
    FAULT_LABEL,
    CrashLoop,
    NodeNotReady,
    clear_all_faults,
    clear_fault,
    inject_fault,
    keep_fault_labels,
    list_faults,
    reconcile_fault_labels,
)

pytestmark = pytest.mark.sandbox

NAMESPACE = "team-telematics"
REGION = "us-east"


@pytest.fixture
def api(kube_sandbox: SandboxClusters) -> Iterator[k8s.ApiClient]:
    client = api_client(clusters=kube_sandbox, region=REGION)
    yield client
    clear_all_faults(api_client=client)
    client.close()


def create_service(api: k8s.ApiClient, *, name: str, version: str, replicas: int = 2) -> None:
    labels = {"app": name, "version": version}
    k8s.AppsV1Api(api).create_namespaced_deployment(NAMESPACE, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{name}-{version.replace('.', '-')}", "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"nodeSelector": {"type": "kwok"},
                     "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                     "containers": [{"name": name, "image": f"registry.example/{name}:{version}"}]},
        }},
    })


def pods(api: k8s.ApiClient, name: str, version: str) -> list[k8s.V1Pod]:
    return [p for p in k8s.CoreV1Api(api).list_namespaced_pod(
        NAMESPACE, label_selector=f"app={name},version={version}").items if p.metadata.deletion_timestamp is None]


def all_ready(api: k8s.ApiClient, name: str, version: str, replicas: int = 2) -> bool:
    found = pods(api, name, version)
    return len(found) == replicas and all(
        p.status.container_statuses and all(c.ready and c.state.running for c in p.status.container_statuses)
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        for p in found)


def crash_looping(pod: k8s.V1Pod) -> bool:
    statuses = pod.status.container_statuses or []
    return bool(statuses) and all(
        not c.ready and c.state.waiting is not None and c.state.waiting.reason == "CrashLoopBackOff"
        and c.last_state.terminated is not None and c.last_state.terminated.exit_code == 1
        for c in statuses
    ) and any(c.type == "Ready" and c.status == "False" for c in pod.status.conditions or [])


def restarts(pod: k8s.V1Pod) -> int:
    return sum(c.restart_count for c in pod.status.container_statuses or [])


def kubectl(kube_sandbox: SandboxClusters, *args: str) -> str:
    result = subprocess.run(
        ["/usr/bin/kubectl", "--kubeconfig", str(kube_sandbox.kubeconfig), "--context", REGION, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_crash_loop_fault_crash_loops_the_versions_pods_until_cleared(
    kube_sandbox: SandboxClusters, api: k8s.ApiClient
) -> None:
    name = f"telemetry-{uuid.uuid4().hex[:5]}"
    create_service(api, name=name, version="v1.0.0")
    create_service(api, name=name, version="v2.0.0")
    eventually("both versions Ready", lambda: all_ready(api, name, "v1.0.0") and all_ready(api, name, "v2.0.0"))

    record = inject_fault(api_client=api, fault=CrashLoop(service=name, version="v2.0.0",
                                                          restart_interval_seconds=1))
    bad = eventually("v2.0.0 pods in CrashLoopBackOff",
                     lambda: (lambda found: found if found and all(map(crash_looping, found)) else None)(
                         pods(api, name, "v2.0.0")), timeout=30)
    first = {p.metadata.name: restarts(p) for p in bad}
    assert all(count >= 1 for count in first.values()), first
    eventually("restartCount to keep growing", lambda: all(
        restarts(p) > first[p.metadata.name] + 1 for p in pods(api, name, "v2.0.0")), timeout=30)

    # what an operator (and pitstop's evidence) sees
    table = kubectl(kube_sandbox, "get", "pods", "-n", NAMESPACE, "-l", f"app={name}", "--no-headers")
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    for pod_name in first:
        assert rows[pod_name][1] == "0/1" and rows[pod_name][2] == "CrashLoopBackOff", rows[pod_name]
    events = k8s.CoreV1Api(api).list_namespaced_event(NAMESPACE, field_selector="reason=BackOff").items
    assert {e.involved_object.name for e in events} >= set(first)
    deployment = k8s.AppsV1Api(api).read_namespaced_deployment(f"{name}-v2-0-0", NAMESPACE)
    eventually("the Deployment to count no available replica",
               lambda: not k8s.AppsV1Api(api).read_namespaced_deployment(
                   deployment.metadata.name, NAMESPACE).status.available_replicas)

    # the other version is untouched
    assert all_ready(api, name, "v1.0.0")
    assert all(restarts(p) == 0 for p in pods(api, name, "v1.0.0"))

    assert clear_fault(api_client=api, fault_id=record.id)
    eventually("v2.0.0 pods Ready again", lambda: all_ready(api, name, "v2.0.0"), timeout=30)
    recovered = pods(api, name, "v2.0.0")
    assert all(FAULT_LABEL not in (p.metadata.labels or {}) for p in recovered)
    assert all(restarts(p) >= first[p.metadata.name] for p in recovered), "restartCount must not reset"
    assert all(p.status.container_statuses[0].last_state.terminated.reason == "Error" for p in recovered)
    time.sleep(2.5)  # no further restarts once cleared
    assert all(all_ready(api, name, "v2.0.0") for _ in range(3))
    eventually("the Deployment available again", lambda: k8s.AppsV1Api(api).read_namespaced_deployment(
        deployment.metadata.name, NAMESPACE).status.available_replicas == 2)


def test_pods_created_during_a_crash_loop_fault_crash_loop_too(api: k8s.ApiClient) -> None:
    """The labeller the simulator runs (`keep_fault_labels`) labels pods created after the injection (a scale-up,
    a restart), so they crash-loop too, and unlabels them once the fault is cleared."""
    stop = threading.Event()
    labeller = threading.Thread(target=keep_fault_labels, daemon=True,
                                kwargs={"api_clients": {REGION: api}, "stop": stop, "interval_seconds": 1.0})
    labeller.start()
    try:
        name = f"ota-{uuid.uuid4().hex[:5]}"
        create_service(api, name=name, version="v1.0.0", replicas=1)
        eventually("the pod Ready", lambda: all_ready(api, name, "v1.0.0", replicas=1))
        record = inject_fault(api_client=api, fault=CrashLoop(service=name, restart_interval_seconds=1))
        k8s.AppsV1Api(api).patch_namespaced_deployment(f"{name}-v1-0-0", NAMESPACE, {"spec": {"replicas": 3}})
        eventually("3 pods", lambda: len(pods(api, name, "v1.0.0")) == 3)
        eventually("all 3 pods crash-looping, without a manual reconcile",
                   lambda: all(map(crash_looping, pods(api, name, "v1.0.0"))), timeout=30)
        assert all((p.metadata.labels or {}).get(FAULT_LABEL) == "crash-loop" for p in pods(api, name, "v1.0.0"))
        assert [r.id for r in list_faults(api_client=api)] == [record.id]
        assert clear_all_faults(api_client=api) == 1
        eventually("all 3 pods Ready", lambda: all_ready(api, name, "v1.0.0", replicas=3), timeout=30)
        assert reconcile_fault_labels(api_client=api) == 0  # nothing left to change
    finally:
        stop.set()
        labeller.join(timeout=10)


def test_node_not_ready_fault(kube_sandbox: SandboxClusters, api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    node = core.list_node(label_selector="type=kwok").items[-1].metadata.name

    def ready() -> str:
        return next(c.status for c in core.read_node(node).status.conditions if c.type == "Ready")

    record = inject_fault(api_client=api, fault=NodeNotReady(node=node))
    eventually("the node NotReady", lambda: ready() == "False", timeout=30)
    time.sleep(3)
    assert ready() == "False", "kwok made the faulty node Ready again"
    assert "NotReady" in kubectl(kube_sandbox, "get", "node", node, "--no-headers").split()[1]
    clear_fault(api_client=api, fault_id=record.id)
    eventually("the node Ready again", lambda: ready() == "True", timeout=30)


def test_services_get_cluster_ips_beyond_the_default_range(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    prefix = f"svc-{uuid.uuid4().hex[:4]}"
    created = []
    for index in range(300):  # kube-apiserver's default /24 range runs out at ~250
        created.append(core.create_namespaced_service(NAMESPACE, {
            "metadata": {"name": f"{prefix}-{index}"},
            "spec": {"selector": {"app": prefix}, "ports": [{"port": 80}]},
        }))
    try:
        ips = {service.spec.cluster_ip for service in created}
        assert len(ips) == 300 and all(ip.startswith("10.96.") for ip in ips), sorted(ips)[:5]
    finally:
        for service in created:
            core.delete_namespaced_service(service.metadata.name, NAMESPACE)
