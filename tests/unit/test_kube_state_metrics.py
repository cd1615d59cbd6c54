"""kube-state-metrics rendering (`sandbox.kube_state_metrics`): KSM's label names, no limit series for a resource
without a limit, node labels sanitised as KSM does, exact values."""

from __future__ import annotations

from pitstop.sandbox.cluster_watch import NodeSummary, OwnerRef, PodSummary, RegionSnapshot
from pitstop.sandbox.kube_state_metrics import kube_state_samples, render_kube_state, sanitize_label_name


def snapshot() -> RegionSnapshot:
    pod = PodSummary(namespace="team-a", name="svc-7d-x1", app="svc", version="v1", container="svc", node="n1",
                     running=True, restart_count=3, cpu_request=0.25, cpu_limit=0.25, memory_request=2**31,
                     memory_limit=2**31, created_unix=0.0, last_terminated_reason="OOMKilled", cpu_limit_set=False,
                     uid="u-1", owners=(OwnerRef("ReplicaSet", "svc-7d", True),))
    node = NodeSummary(name="n1", labels=(("node.kubernetes.io/instance-type", "m5.large"),),
                       allocatable=(("cpu", 2.0), ("memory", 8.0 * 2**30), ("pods", 110.0)),
                       capacity=(("cpu", 2.0), ("memory", 8.0 * 2**30)), info=(("kernel_version", "k"),))
    return RegionSnapshot(region="eu", deployments=[], pods=[pod], routes={}, subsets={}, faults=[], nodes=[node])


def test_samples_carry_ksm_labels_and_exact_values() -> None:
    lines = [line for _family, line in kube_state_samples(snapshot())]
    assert ('kube_pod_owner{region="eu",cluster="eu",namespace="team-a",pod="svc-7d-x1",uid="u-1",'
            'owner_kind="ReplicaSet",owner_name="svc-7d",owner_is_controller="true"} 1.0') in lines
    assert ('kube_pod_container_resource_requests{region="eu",cluster="eu",namespace="team-a",pod="svc-7d-x1",'
            'uid="u-1",container="svc",node="n1",resource="memory",unit="byte"} 2147483648.0') in lines
    limits = [line for line in lines if line.startswith("kube_pod_container_resource_limits")]
    assert len(limits) == 1 and 'resource="memory"' in limits[0]  # no CPU limit set: no CPU limit series
    assert any('reason="OOMKilled"' in line for line in lines)
    assert ('kube_node_labels{region="eu",cluster="eu",node="n1",'
            'label_node_kubernetes_io_instance_type="m5.large"} 1.0') in lines
    assert 'machine_memory_bytes{region="eu",cluster="eu",node="n1"} 8589934592.0' in lines
    assert ('kube_node_status_allocatable{region="eu",cluster="eu",node="n1",resource="pods",unit="integer"} 110.0'
            in lines)


def test_render_groups_each_family_under_its_type() -> None:
    lines = render_kube_state([snapshot()])
    text = "\n".join(lines)
    assert text.index("# TYPE kube_pod_owner gauge") < text.index("kube_pod_owner{")
    types = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(types) == len(set(types))


def test_label_names_are_sanitised_like_ksm() -> None:
    assert sanitize_label_name("topology.kubernetes.io/zone") == "label_topology_kubernetes_io_zone"
