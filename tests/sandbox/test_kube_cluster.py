"""The sandbox's Kubernetes clusters behave like real ones: rollouts, optimistic concurrency,
CRD schema validation, and independent regions. Everything runs against the real API servers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.sandbox.step_library_support import deployment_manifest, eventually, unique
from pitstop.sandbox.cluster_contents import HOURLY_PRICE_LABEL, INSTANCE_TYPE_LABEL, REGION_LABEL
from pitstop.sandbox.clusters import SandboxClusters, api_client

pytestmark = pytest.mark.sandbox

NAMESPACE = "team-platform"
ISTIO_GROUP = "networking.istio.io"


@pytest.fixture
def eu_api(kube_sandbox: SandboxClusters) -> Iterator[k8s.ApiClient]:
    api = api_client(clusters=kube_sandbox, region="eu-central")
    yield api
    api.close()


@pytest.fixture
def us_api(kube_sandbox: SandboxClusters) -> Iterator[k8s.ApiClient]:
    api = api_client(clusters=kube_sandbox, region="us-east")
    yield api
    api.close()


def rolled_out(apps: k8s.AppsV1Api, name: str, replicas: int) -> bool:
    current = apps.read_namespaced_deployment(name, NAMESPACE)
    status = current.status
    return (
        status.observed_generation == current.metadata.generation
        and status.updated_replicas == replicas
        and status.ready_replicas == replicas
        and status.available_replicas == replicas
        and status.replicas == replicas  # old ReplicaSet's pods are gone
    )


def test_deployment_image_update_rolls_out_a_second_revision(
    kube_sandbox: SandboxClusters, eu_api: k8s.ApiClient
) -> None:
    apps, core = k8s.AppsV1Api(eu_api), k8s.CoreV1Api(eu_api)
    name = unique("checkout")
    apps.create_namespaced_deployment(NAMESPACE, deployment_manifest(name, "registry.example/checkout:1.0", replicas=3))
    eventually("revision 1 to roll out", lambda: rolled_out(apps, name, 3))

    apps.patch_namespaced_deployment(
        name, NAMESPACE, {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.example/checkout:1.1"}]}}}}
    )
    eventually("revision 2 to roll out", lambda: rolled_out(apps, name, 3))

    replica_sets = apps.list_namespaced_replica_set(NAMESPACE, label_selector=f"app={name}").items
    by_revision = {rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs for rs in replica_sets}
    assert set(by_revision) == {"1", "2"}
    new_rs = by_revision["2"]
    assert new_rs.spec.template.spec.containers[0].image == "registry.example/checkout:1.1"
    assert new_rs.status.ready_replicas == 3
    assert (by_revision["1"].spec.replicas or 0) == 0

    pod_hash = new_rs.metadata.labels["pod-template-hash"]
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"app={name},pod-template-hash={pod_hash}").items
    assert len(pods) == 3
    for pod in pods:
        assert pod.spec.node_name, f"pod {pod.metadata.name} was not scheduled"
        assert pod.status.phase == "Running"
        assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
        # LimitRange defaults applied by the admission chain
        assert pod.spec.containers[0].resources.requests["cpu"] == "100m"

    result = subprocess.run(
        ["/usr/bin/kubectl", "--kubeconfig", str(kube_sandbox.kubeconfig), "--context", "eu-central",
         "get", "deploy", name, "-n", NAMESPACE, "--no-headers"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == [name, "3/3"]


def test_stale_update_gets_409_conflict(eu_api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(eu_api)
    name = unique("routing-config")
    created = core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": name}, "data": {"weight": "10"}})
    stale_version = created.metadata.resource_version
    core.replace_namespaced_config_map(
        name, NAMESPACE, {"metadata": {"name": name, "resourceVersion": stale_version}, "data": {"weight": "20"}}
    )
    with pytest.raises(ApiException) as raised:
        core.replace_namespaced_config_map(
            name, NAMESPACE, {"metadata": {"name": name, "resourceVersion": stale_version}, "data": {"weight": "30"}}
        )
    assert raised.value.status == 409
    assert core.read_namespaced_config_map(name, NAMESPACE).data == {"weight": "20"}


def virtual_service(name: str, weight: Any) -> dict[str, Any]:
    host = f"{name}.{NAMESPACE}.svc.cluster.local"
    return {
        "apiVersion": f"{ISTIO_GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": [host],
            "http": [
                {
                    "match": [{"headers": {"x-canary": {"exact": "true"}}}],
                    "route": [{"destination": {"host": host, "subset": "canary", "port": {"number": 8080}}}],
                },
                {
                    "route": [
                        {"destination": {"host": host, "subset": "stable"}, "weight": weight},
                        {"destination": {"host": host, "subset": "canary"}, "weight": 10},
                    ],
                    "mirror": {"host": host, "subset": "canary"},
                    "mirrorPercentage": {"value": 5.0},
                },
            ],
        },
    }


def test_istio_crds_validate_virtual_services(eu_api: k8s.ApiClient) -> None:
    custom = k8s.CustomObjectsApi(eu_api)
    name = unique("checkout")
    host = f"{name}.{NAMESPACE}.svc.cluster.local"
    destination_rule = {
        "apiVersion": f"{ISTIO_GROUP}/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name},
        "spec": {
            "host": host,
            "subsets": [{"name": "stable", "labels": {"version": "stable"}}, {"name": "canary", "labels": {"version": "canary"}}],
        },
    }
    custom.create_namespaced_custom_object(ISTIO_GROUP, "v1", NAMESPACE, "destinationrules", destination_rule)
    custom.create_namespaced_custom_object(ISTIO_GROUP, "v1", NAMESPACE, "virtualservices", virtual_service(name, 90))
    # every served version reads the same object
    for version in ("v1", "v1beta1", "v1alpha3"):
        stored = custom.get_namespaced_custom_object(ISTIO_GROUP, version, NAMESPACE, "virtualservices", name)
        assert stored["spec"]["http"][1]["route"][0]["weight"] == 90

    malformed = {
        "weight is not an integer": virtual_service(unique("bad"), "abc"),
        "route without destination host": {
            **virtual_service(unique("bad"), 90),
            "spec": {"hosts": ["x"], "http": [{"route": [{"destination": {"subset": "stable"}, "weight": 100}]}]},
        },
        "hosts is not a list": {**virtual_service(unique("bad"), 90), "spec": {"hosts": "x", "http": []}},
        "subset labels are not strings": {
            **destination_rule,
            "metadata": {"name": unique("bad")},
            "spec": {"host": host, "subsets": [{"name": "stable", "labels": {"version": ["a"]}}]},
        },
    }
    for reason, body in malformed.items():
        plural = "destinationrules" if body["kind"] == "DestinationRule" else "virtualservices"
        with pytest.raises(ApiException) as raised:
            custom.create_namespaced_custom_object(ISTIO_GROUP, "v1", NAMESPACE, plural, body)
        assert raised.value.status == 422, f"{reason}: {raised.value.status} {raised.value.body}"


def test_regions_are_independent_clusters(
    kube_sandbox: SandboxClusters, eu_api: k8s.ApiClient, us_api: k8s.ApiClient
) -> None:
    assert kube_sandbox.contexts == {"eu-central": "eu-central", "us-east": "us-east"}
    assert kube_sandbox.apiserver_urls["eu-central"] != kube_sandbox.apiserver_urls["us-east"]

    for region, api in (("eu-central", eu_api), ("us-east", us_api)):
        nodes = k8s.CoreV1Api(api).list_node().items
        assert nodes, f"{region} has no nodes"
        assert {node.metadata.labels[REGION_LABEL] for node in nodes} == {region}
        assert len({node.metadata.labels[INSTANCE_TYPE_LABEL] for node in nodes}) >= 3
        assert all(float(node.metadata.labels[HOURLY_PRICE_LABEL]) > 0 for node in nodes)
        namespaces = {ns.metadata.name for ns in k8s.CoreV1Api(api).list_namespace().items}
        assert {"team-telematics", "team-ota", "team-identity", "team-analytics", "team-platform"} <= namespaces
        assert k8s.CoreV1Api(api).read_namespaced_resource_quota("team-quota", NAMESPACE).spec.hard["pods"]

    name = unique("only-in-eu")
    k8s.CoreV1Api(eu_api).create_namespaced_config_map(NAMESPACE, {"metadata": {"name": name}})
    with pytest.raises(ApiException) as raised:
        k8s.CoreV1Api(us_api).read_namespaced_config_map(name, NAMESPACE)
    assert raised.value.status == 404

    for region in ("eu-central", "us-east"):
        result = subprocess.run(
            ["/usr/bin/kubectl", "--kubeconfig", str(kube_sandbox.kubeconfig), "--context", region,
             "get", "nodes", "-L", REGION_LABEL, "--no-headers"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert all(line.split()[-1] == region for line in result.stdout.splitlines())
