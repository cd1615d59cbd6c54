"""Declarative, live faults for the sandbox, stored in each region's cluster.

A region's faults live in the ConfigMap `pitstop-sandbox/faults` of that region's cluster, one data key
per fault id, the value a JSON `FaultRecord`. The simulator watches the ConfigMap and applies the faults
to the metrics it serves within a second; clearing a fault removes its key.

Kinds:
- `bad-release`: one service version answers `error_ratio` of requests with 500 and adds latency
- `region-outage`: every request in the region fails with 503
- `saturated-service`: the service's containers are pinned at their CPU limit, latency rises
- `crash-loop`: the service's containers restart every `restart_interval_seconds`
- `node-not-ready`: one node's Ready condition turns False

Faults that real clusters show in object status are also made visible in the Kubernetes API, through
kwok Stages (`sandbox/kwok/stages.yaml`): `reconcile_fault_labels` labels the pods of a crash-looping
service (`pitstop.dev/fault=crash-loop`, restart interval in the `pitstop.dev/crash-loop-interval`
annotation) and a failed node (`pitstop.dev/fault=node-not-ready`), and removes the label once no
active fault covers the object. kwok then reports those pods as CrashLoopBackOff (ready=false, growing
restartCount) and that node as NotReady; without the label they are Ready again. `inject_fault` and
`clear_fault` reconcile; pods created later by a crash-looping Deployment (a restart, a scale-up) get
their label from `keep_fault_labels`, which the simulator runs every 2 s while a region has such a fault.

CLI: `python -m pitstop.sandbox.faults --kubeconfig F --context eu-central inject bad-release --service ota-update
--version v3.5.0 --error-ratio 0.4`, `... clear <id>`, `... list`.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pitstop.sandbox.kube_objects import FIELD_MANAGER, get_object, list_objects, merge_patch, server_side_apply

log = logging.getLogger("pitstop.sandbox.faults")

FAULTS_NAMESPACE = "pitstop-sandbox"
FAULTS_CONFIGMAP = "faults"
FAULT_LABEL = "pitstop.dev/fault"
CRASH_LOOP_INTERVAL_ANNOTATION = "pitstop.dev/crash-loop-interval"
FAULT_IDS_ANNOTATION = "pitstop.dev/fault-ids"


class BadRelease(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["bad-release"] = "bad-release"
    service: str
    version: str | None = Field(default=None, description="None: every version of the service")
    error_ratio: float = Field(default=0.3, ge=0, le=1)
    extra_latency_ms: float = Field(default=150.0, ge=0)


class RegionOutage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["region-outage"] = "region-outage"


class SaturatedService(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["saturated-service"] = "saturated-service"
    service: str


class CrashLoop(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["crash-loop"] = "crash-loop"
    service: str
    version: str | None = None
    restart_interval_seconds: float = Field(default=20.0, gt=0)


class NodeNotReady(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["node-not-ready"] = "node-not-ready"
    node: str


Fault = Annotated[BadRelease | RegionOutage | SaturatedService | CrashLoop | NodeNotReady, Field(discriminator="kind")]


class FaultRecord(BaseModel):
    """A fault as stored: its id, when it started and what it does."""

    id: str
    started_at: datetime
    fault: Fault


_RECORD = TypeAdapter(FaultRecord)


def parse_fault_configmap(data: dict[str, str] | None) -> list[FaultRecord]:
    """Fault records from a ConfigMap's data; unparsable entries raise with the key named."""
    records = []
    for key, value in sorted((data or {}).items()):
        try:
            records.append(_RECORD.validate_json(value))
        except ValueError as exc:
            raise ValueError(f"fault {FAULTS_NAMESPACE}/{FAULTS_CONFIGMAP}[{key}] is invalid: {exc}") from exc
    return records


def _ensure_configmap(api_client: ApiClient) -> None:
    server_side_apply(
        api_client,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FAULTS_NAMESPACE}},
    )
    existing = get_object(api_client, kind="ConfigMap", name=FAULTS_CONFIGMAP, namespace=FAULTS_NAMESPACE)
    if existing is None:
        server_side_apply(
            api_client,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": FAULTS_CONFIGMAP, "namespace": FAULTS_NAMESPACE,
                             "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER}},
            },
        )


def inject_fault(*, api_client: ApiClient, fault: Fault, fault_id: str | None = None,
                 now: datetime | None = None) -> FaultRecord:
    """Start a fault in the cluster behind `api_client`; returns its record (id for `clear_fault`)."""
    _ensure_configmap(api_client)
    record = FaultRecord(
        id=fault_id or f"{fault.kind}-{secrets.token_hex(3)}",
        started_at=now or datetime.now(UTC),
        fault=fault,
    )
    merge_patch(api_client, kind="ConfigMap", name=FAULTS_CONFIGMAP, namespace=FAULTS_NAMESPACE,
                patch={"data": {record.id: record.model_dump_json()}})
    reconcile_fault_labels(api_client=api_client)
    return record


def clear_fault(*, api_client: ApiClient, fault_id: str) -> bool:
    """Stop a fault; False if it was not active."""
    configmap = get_object(api_client, kind="ConfigMap", name=FAULTS_CONFIGMAP, namespace=FAULTS_NAMESPACE)
    if configmap is None or fault_id not in (configmap.get("data") or {}):
        return False
    merge_patch(api_client, kind="ConfigMap", name=FAULTS_CONFIGMAP, namespace=FAULTS_NAMESPACE,
                patch={"data": {fault_id: None}})
    reconcile_fault_labels(api_client=api_client)
    return True


def clear_all_faults(*, api_client: ApiClient) -> int:
    records = list_faults(api_client=api_client)
    for record in records:
        clear_fault(api_client=api_client, fault_id=record.id)
    reconcile_fault_labels(api_client=api_client, records=[])  # also drops labels a lost fault left behind
    return len(records)


def list_faults(*, api_client: ApiClient) -> list[FaultRecord]:
    configmap = get_object(api_client, kind="ConfigMap", name=FAULTS_CONFIGMAP, namespace=FAULTS_NAMESPACE)
    return parse_fault_configmap((configmap or {}).get("data"))


def _interval(seconds: float) -> str:
    """A Go duration kwok parses (`time.ParseDuration`)."""
    return f"{max(1, round(seconds * 1000))}ms"


def desired_pod_fault(pod: dict[str, Any], records: list[FaultRecord]) -> dict[str, str] | None:
    """The fault labels/annotations a pod should carry under the active faults (None: none)."""
    labels = pod["metadata"].get("labels") or {}
    crashes = [r for r in records if isinstance(r.fault, CrashLoop) and r.fault.service == labels.get("app")
               and r.fault.version in (None, labels.get("version"))]
    if not crashes:
        return None
    interval = min(r.fault.restart_interval_seconds for r in crashes if isinstance(r.fault, CrashLoop))
    return {FAULT_LABEL: "crash-loop", CRASH_LOOP_INTERVAL_ANNOTATION: _interval(interval),
            FAULT_IDS_ANNOTATION: ",".join(sorted(r.id for r in crashes))}


def _current_fault(obj: dict[str, Any]) -> dict[str, str] | None:
    meta = obj["metadata"]
    label = (meta.get("labels") or {}).get(FAULT_LABEL)
    if label is None:
        return None
    annotations = meta.get("annotations") or {}
    current = {FAULT_LABEL: label}
    for key in (CRASH_LOOP_INTERVAL_ANNOTATION, FAULT_IDS_ANNOTATION):
        if key in annotations:
            current[key] = annotations[key]
    return current


def _fault_patch(desired: dict[str, str] | None) -> dict[str, Any]:
    desired = desired or {}
    return {"metadata": {
        "labels": {FAULT_LABEL: desired.get(FAULT_LABEL)},
        "annotations": {key: desired.get(key) for key in (CRASH_LOOP_INTERVAL_ANNOTATION, FAULT_IDS_ANNOTATION)},
    }}


def labels_needed(records: list[FaultRecord]) -> bool:
    """Whether any active fault is shown through object labels (crash-loop pods, not-ready nodes)."""
    return any(isinstance(r.fault, (CrashLoop, NodeNotReady)) for r in records)


def keep_fault_labels(*, api_clients: dict[str, ApiClient], stop: threading.Event, interval_seconds: float = 2.0
                      ) -> None:
    """Until `stop`: reconcile each region's fault labels while it has a labelled fault, and once after the last
    one is cleared, so new pods of a crash-looping service crash too. Errors are logged and retried."""
    active: dict[str, bool] = {}
    while not stop.wait(interval_seconds):
        for region, api_client in api_clients.items():
            try:
                records = list_faults(api_client=api_client)
                needed = labels_needed(records)
                if needed or active.get(region, False):
                    changed = reconcile_fault_labels(api_client=api_client, records=records)
                    if changed:
                        log.info("%s: fault labels reconciled on %d object(s)", region, changed)
                active[region] = needed
            except Exception as exc:  # noqa: BLE001 - a cluster restarting must not stop the labeller
                log.warning("%s: could not reconcile fault labels: %s", region, exc)


def reconcile_fault_labels(*, api_client: ApiClient, records: list[FaultRecord] | None = None) -> int:
    """Label the pods and nodes the active faults cover, unlabel the others; returns objects changed.

    Idempotent; pods being deleted are left alone. Only services' pods (label `app`) are considered.
    """
    if records is None:
        records = list_faults(api_client=api_client)
    changed = 0
    crash_services = {r.fault.service for r in records if isinstance(r.fault, CrashLoop)}
    candidates: dict[tuple[str, str], dict[str, Any]] = {}
    labelled, _ = list_objects(api_client, kind="Pod", label_selector=FAULT_LABEL)
    for pod in labelled:
        candidates[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = pod
    if crash_services:
        selector = f"app in ({','.join(sorted(crash_services))})"
        for pod in list_objects(api_client, kind="Pod", label_selector=selector)[0]:
            candidates[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = pod
    for (namespace, name), pod in sorted(candidates.items()):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        desired = desired_pod_fault(pod, records)
        if desired == _current_fault(pod):
            continue
        try:
            merge_patch(api_client, kind="Pod", name=name, namespace=namespace, patch=_fault_patch(desired))
            changed += 1
        except ApiException as exc:
            if exc.status != 404:  # a pod that went away needs no label
                raise
    failed_nodes = {r.fault.node for r in records if isinstance(r.fault, NodeNotReady)}
    nodes, _ = list_objects(api_client, kind="Node")
    for node in nodes:
        name = node["metadata"]["name"]
        want = "node-not-ready" if name in failed_nodes else None
        if (node["metadata"].get("labels") or {}).get(FAULT_LABEL) != want:
            merge_patch(api_client, kind="Node", name=name, namespace=None,
                        patch={"metadata": {"labels": {FAULT_LABEL: want}}})
            changed += 1
    return changed


def main(argv: Sequence[str] | None = None) -> None:
    from kubernetes.config import new_client_from_config

    parser = argparse.ArgumentParser(description="inject, clear and list sandbox faults")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--context", required=True, help="the region's kube context")
    commands = parser.add_subparsers(dest="command", required=True)
    inject = commands.add_parser("inject")
    inject.add_argument("kind", choices=["bad-release", "region-outage", "saturated-service", "crash-loop",
                                               "node-not-ready"])
    inject.add_argument("--service")
    inject.add_argument("--node")
    inject.add_argument("--version")
    inject.add_argument("--error-ratio", type=float, default=0.3)
    inject.add_argument("--extra-latency-ms", type=float, default=150.0)
    inject.add_argument("--restart-interval-seconds", type=float, default=20.0)
    inject.add_argument("--id")
    clear = commands.add_parser("clear")
    clear.add_argument("fault_id")
    commands.add_parser("list")
    args = parser.parse_args(argv)
    client = new_client_from_config(config_file=str(args.kubeconfig), context=args.context)
    if args.command == "list":
        for record in list_faults(api_client=client):
            print(record.model_dump_json())
    elif args.command == "clear":
        if not clear_fault(api_client=client, fault_id=args.fault_id):
            raise SystemExit(f"no active fault {args.fault_id!r} in {args.context}")
    else:
        fault_fields = {k: v for k, v in {
            "kind": args.kind, "service": args.service, "version": args.version, "node": args.node,
            "error_ratio": args.error_ratio if args.kind == "bad-release" else None,
            "extra_latency_ms": args.extra_latency_ms if args.kind == "bad-release" else None,
            "restart_interval_seconds": args.restart_interval_seconds if args.kind == "crash-loop" else None,
        }.items() if v is not None}
        fault: Fault = TypeAdapter(Fault).validate_python(fault_fields)  # type: ignore[arg-type]
        print(json.dumps(json.loads(inject_fault(api_client=client, fault=fault, fault_id=args.id)
                                    .model_dump_json())))


if __name__ == "__main__":
    main()
