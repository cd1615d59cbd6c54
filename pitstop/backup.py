"""The backup drill's pure part: which objects a namespace backup holds, how an object is normalised before it is
compared, its spec checksum, and the comparison of a restore with its backup.

A backup exports the objects that define a namespace's workloads (`BACKUP_KINDS`), never Secrets (their values
would enter the run's history; restore them from your secret store) and never what a cluster creates by itself
(the `default` ServiceAccount, the `kube-root-ca.crt` ConfigMap, Pods, ReplicaSets, Endpoints). An exported
object keeps what its author wrote: `metadata.name/namespace/labels/annotations` and every top-level field but
`status`; server-assigned fields (uid, resourceVersion, timestamps, managedFields, ownerReferences, a Service's
cluster IPs, the Deployment revision annotation) are dropped, so the same object restored elsewhere has the same
checksum (`spec_checksum`: SHA-256 of the canonical JSON of the normalised object).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class BackupKind:
    kind: str
    api_path: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str
    optional: bool = False  # a cluster without the CRD (404) simply has none

    def collection_path(self, namespace: str) -> str:
        return f"{self.api_path}/namespaces/{namespace}/{self.plural}"


BACKUP_KINDS: tuple[BackupKind, ...] = (
    BackupKind("ConfigMap", "/api/v1", "configmaps"),
    BackupKind("ServiceAccount", "/api/v1", "serviceaccounts"),
    BackupKind("Service", "/api/v1", "services"),
    BackupKind("ResourceQuota", "/api/v1", "resourcequotas"),
    BackupKind("LimitRange", "/api/v1", "limitranges"),
    BackupKind("Deployment", "/apis/apps/v1", "deployments"),
    BackupKind("PodDisruptionBudget", "/apis/policy/v1", "poddisruptionbudgets"),
    BackupKind("HorizontalPodAutoscaler", "/apis/autoscaling/v2", "horizontalpodautoscalers"),
    BackupKind("DestinationRule", "/apis/networking.istio.io/v1", "destinationrules", optional=True),
    BackupKind("VirtualService", "/apis/networking.istio.io/v1", "virtualservices", optional=True),
)
"""In restore order: what others refer to first (ConfigMaps and ServiceAccounts before the Deployments using them)."""

NEVER_EXPORTED = ("Secret", "Pod", "ReplicaSet", "Endpoints", "EndpointSlice", "Event")
CREATED_BY_THE_CLUSTER = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "ownerReferences",
                   "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers")
SERVER_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision")
SERVICE_ASSIGNED_FIELDS = ("clusterIP", "clusterIPs")


def object_ref(obj: Mapping[str, Any]) -> str:
    """`Kind/name`, how a backup names its objects (one namespace per backup)."""
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def exported(obj: Mapping[str, Any], *, kind: BackupKind) -> bool:
    """Whether a listed object belongs in the backup (not one the cluster creates by itself)."""
    return (kind.kind, (obj.get("metadata") or {}).get("name")) not in CREATED_BY_THE_CLUSTER


def normalise(obj: Mapping[str, Any], *, kind: BackupKind) -> JsonObject:
    """The object as its author wrote it: server-assigned fields and `status` removed; `apiVersion`/`kind` set
    (a list response leaves them out of its items)."""
    meta = dict(obj.get("metadata") or {})
    for key in SERVER_METADATA:
        meta.pop(key, None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in SERVER_ANNOTATIONS}
    meta = {k: v for k, v in meta.items() if k in ("name", "namespace", "labels")}
    if annotations:
        meta["annotations"] = annotations
    body = {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    if kind.kind == "Service" and isinstance(body.get("spec"), dict):
        body["spec"] = {k: v for k, v in body["spec"].items() if k not in SERVICE_ASSIGNED_FIELDS}
    api_version = kind.api_path.removeprefix("/apis/").removeprefix("/api/")
    return {"apiVersion": api_version, "kind": kind.kind, "metadata": meta, **body}


def spec_checksum(normalised: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of a normalised object."""
    canonical = json.dumps(normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class RestoreComparison:
    verified: list[str]
    missing: list[str]
    changed: list[str]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.changed


def compare_restore(*, expected: Mapping[str, str], found: Mapping[str, str]) -> RestoreComparison:
    """Checksums by object ref, backup vs restored cluster: every backed-up object must be there, unchanged.
    Objects only in the restored cluster are not the backup's concern."""
    missing = sorted(ref for ref in expected if ref not in found)
    changed = sorted(ref for ref, checksum in expected.items() if ref in found and found[ref] != checksum)
    verified = sorted(ref for ref, checksum in expected.items() if found.get(ref) == checksum)
    return RestoreComparison(verified=verified, missing=missing, changed=changed)


def kind_named(name: str) -> BackupKind:
    for kind in BACKUP_KINDS:
        if kind.kind == name:
            return kind
    raise KeyError(name)
