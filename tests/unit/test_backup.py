"""The backup drill's pure part: what is exported, normalisation (server-assigned fields dropped, so the same object
restored elsewhere has the same checksum), and the comparison of a restore with its backup."""

from __future__ import annotations

from typing import Any

from pitstop.backup import compare_restore, exported, kind_named, normalise, object_ref, spec_checksum

SERVICE = kind_named("Service")
DEPLOYMENT = kind_named("Deployment")


def live_service(*, uid: str, cluster_ip: str, resource_version: str) -> dict[str, Any]:
    """A Service as a list response returns it: no apiVersion/kind, server fields set."""
    return {
        "metadata": {"name": "trip", "namespace": "team-a", "uid": uid, "resourceVersion": resource_version,
                     "creationTimestamp": "2026-12-01T00:00:00Z", "labels": {"app": "trip"},
                     "managedFields": [{"manager": "pitstop"}],
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"}},
        "spec": {"selector": {"app": "trip"}, "ports": [{"port": 80}], "clusterIP": cluster_ip,
                 "clusterIPs": [cluster_ip], "type": "ClusterIP"},
        "status": {"loadBalancer": {}},
    }


def test_the_same_service_in_two_clusters_has_the_same_checksum() -> None:
    a = normalise(live_service(uid="1", cluster_ip="10.96.0.10", resource_version="5"), kind=SERVICE)
    b = normalise(live_service(uid="2", cluster_ip="10.96.7.7", resource_version="99"), kind=SERVICE)
    assert a == b
    assert spec_checksum(a) == spec_checksum(b)
    assert a["apiVersion"] == "v1" and a["kind"] == "Service"
    assert a["metadata"] == {"name": "trip", "namespace": "team-a", "labels": {"app": "trip"}, "annotations": {"team": "a"}}
    assert "status" not in a and "clusterIP" not in a["spec"]


def test_a_changed_spec_changes_the_checksum() -> None:
    base = live_service(uid="1", cluster_ip="10.96.0.10", resource_version="5")
    changed = live_service(uid="1", cluster_ip="10.96.0.10", resource_version="5")
    changed["spec"]["ports"] = [{"port": 8080}]
    assert spec_checksum(normalise(base, kind=SERVICE)) != spec_checksum(normalise(changed, kind=SERVICE))


def test_deployment_revision_annotation_is_server_state() -> None:
    obj = {"metadata": {"name": "d", "annotations": {"deployment.kubernetes.io/revision": "3"}}, "spec": {"replicas": 2}}
    clean = normalise(obj, kind=DEPLOYMENT)
    assert clean["apiVersion"] == "apps/v1" and "annotations" not in clean["metadata"]
    assert object_ref(clean) == "Deployment/d"


def test_what_the_cluster_creates_itself_is_not_exported() -> None:
    assert not exported({"metadata": {"name": "default"}}, kind=kind_named("ServiceAccount"))
    assert not exported({"metadata": {"name": "kube-root-ca.crt"}}, kind=kind_named("ConfigMap"))
    assert exported({"metadata": {"name": "trip"}}, kind=kind_named("ServiceAccount"))


def test_compare_restore_names_missing_and_changed_objects() -> None:
    result = compare_restore(expected={"Service/a": "1", "Service/b": "2", "ConfigMap/c": "3"},
                             found={"Service/a": "1", "Service/b": "X", "Service/extra": "9"})
    assert result.verified == ["Service/a"]
    assert result.changed == ["Service/b"]
    assert result.missing == ["ConfigMap/c"]
    assert not result.ok
    assert compare_restore(expected={"Service/a": "1"}, found={"Service/a": "1"}).ok
