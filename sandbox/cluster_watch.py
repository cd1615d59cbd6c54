"""Live, watch-based view of one region's cluster, as the simulator needs it.

`RegionWatcher` lists then watches (no per-object polling) Deployments, Pods, Services (for route hosts,
`sandbox.istio_destinations`), VirtualServices, DestinationRules and the `pitstop-sandbox` ConfigMaps (faults) of one cluster, and
keeps small summaries of them in memory. On a 410 Gone or a broken connection it re-lists.
"""

from __future__ import annotations

import calendar
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from pitstop.activities.kube_errors import api_error_detail
from pitstop.quantities import parse_quantity
from pitstop.sandbox.faults import FAULTS_CONFIGMAP, FaultRecord, parse_fault_configmap
from pitstop.sandbox.fleet import SANDBOX_NAMESPACE, SPEC_ANNOTATION
from pitstop.sandbox.istio_destinations import ServiceSummary, summarize_service
from pitstop.sandbox.istio_faults import parse_http_fault
from pitstop.sandbox.kube_objects import JsonObject, list_objects, watch_events
from pitstop.sandbox.traffic_model import HttpRoute

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeploymentSummary:
    namespace: str
    name: str
    app: str
    version: str
    replicas: int
    available_replicas: int
    model: dict[str, Any] | None


@dataclass(frozen=True)
class PodSummary:
    namespace: str
    name: str
    app: str
    version: str
    container: str
    node: str
    running: bool
    restart_count: int
    cpu_request: float
    cpu_limit: float
    memory_request: float
    memory_limit: float
    created_unix: float
    crash_looping: bool = False  # the container's real status says CrashLoopBackOff (kwok Stage)
    labels: tuple[tuple[str, str], ...] = ()
    workload: str = ""  # the owning Deployment's name, as Istio derives it (ReplicaSet owner minus the hash)


def pod_workload(meta: JsonObject) -> str:
    """Istio's workload name of a pod: its ReplicaSet owner without the pod-template-hash suffix
    (the Deployment), else its controller's name, else the pod's own name."""
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    if owner is None:
        return str(meta.get("name", ""))
    name = str(owner.get("name", ""))
    suffix = f"-{(meta.get('labels') or {}).get('pod-template-hash', '')}"
    if owner.get("kind") == "ReplicaSet" and suffix != "-" and name.endswith(suffix):
        return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class RouteSummary:
    """A VirtualService's HTTP routes in order (header matches, weights, mirroring), as the model needs them."""

    namespace: str
    name: str
    http: tuple[HttpRoute, ...] = ()

    @property
    def weights(self) -> tuple[tuple[str, float], ...]:
        """(subset, weight) pairs of the default route: the last route without `match` (or the last route)."""
        default = next((r for r in reversed(self.http) if not r.has_match), self.http[-1] if self.http else None)
        return default.weights if default else ()


def summarize_deployment(obj: JsonObject) -> DeploymentSummary | None:
    meta = obj["metadata"]
    labels = (obj.get("spec", {}).get("template", {}).get("metadata", {}) or {}).get("labels") or {}
    if "app" not in labels:
        return None
    annotation = (meta.get("annotations") or {}).get(SPEC_ANNOTATION)
    model = None
    if annotation:
        try:
            model = yaml.safe_load(annotation)
        except yaml.YAMLError:
            log.warning("ignoring unparsable %s on %s/%s", SPEC_ANNOTATION, meta["namespace"], meta["name"])
    status = obj.get("status") or {}
    return DeploymentSummary(
        namespace=meta["namespace"],
        name=meta["name"],
        app=labels["app"],
        version=labels.get("version", "unknown"),
        replicas=int(obj.get("spec", {}).get("replicas", 1)),
        available_replicas=int(status.get("availableReplicas") or 0),
        model=model,
    )


def summarize_pod(obj: JsonObject) -> PodSummary | None:
    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    if "app" not in labels:
        return None
    spec = obj.get("spec") or {}
    containers = spec.get("containers") or [{}]
    container = containers[0]
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    status = obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    restarts = int(statuses[0].get("restartCount", 0)) if statuses else 0
    waiting = ((statuses[0].get("state") or {}).get("waiting") or {}) if statuses else {}
    created = meta.get("creationTimestamp")
    created_unix = time.time()
    if created:
        created_unix = float(calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")))
    return PodSummary(
        namespace=meta["namespace"],
        name=meta["name"],
        app=labels["app"],
        version=labels.get("version", "unknown"),
        container=container.get("name", labels["app"]),
        node=spec.get("nodeName") or "",
        running=status.get("phase") == "Running" and meta.get("deletionTimestamp") is None,
        restart_count=restarts,
        crash_looping=waiting.get("reason") == "CrashLoopBackOff",
        cpu_request=parse_quantity(requests.get("cpu")),
        cpu_limit=parse_quantity(limits.get("cpu") or requests.get("cpu")),
        memory_request=parse_quantity(requests.get("memory")),
        memory_limit=parse_quantity(limits.get("memory") or requests.get("memory")),
        created_unix=created_unix,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        workload=pod_workload(meta),
    )


def summarize_http_route(route: JsonObject) -> HttpRoute:
    """One `spec.http[]` entry: destinations with weights, header matchers, mirror."""
    destinations = route.get("route") or []
    weights, hosts = [], []
    for entry in destinations:
        destination = entry.get("destination") or {}
        weight = entry.get("weight", 100 if len(destinations) == 1 else 0)
        weights.append((destination.get("subset") or "", float(weight)))
        hosts.append(str(destination.get("host") or ""))
    matches = route.get("match") or []
    mirror = route.get("mirror")
    percent = (route.get("mirrorPercentage") or {}).get("value", 100.0)
    return HttpRoute(
        weights=tuple(weights),
        header_matchers=sum(1 for m in matches if isinstance(m, dict) and m.get("headers")),
        has_match=bool(matches),
        mirror_subset=((mirror.get("subset") or "") if isinstance(mirror, dict) else None),
        mirror_percent=float(percent),
        hosts=tuple(hosts),
        fault=parse_http_fault(route),
    )


def summarize_virtual_service(obj: JsonObject) -> RouteSummary:
    """Every HTTP route, in order (Envoy evaluates them first match wins)."""
    meta = obj["metadata"]
    http = (obj.get("spec") or {}).get("http") or []
    routes = []
    for index, route in enumerate(http):
        if not isinstance(route, dict):
            continue
        try:
            routes.append(summarize_http_route(route))
        except ValueError as exc:  # Istio's validation would refuse it; the route then injects no fault
            log.warning("VirtualService %s/%s http[%d]: %s", meta["namespace"], meta["name"], index, exc)
            routes.append(summarize_http_route({k: v for k, v in route.items() if k != "fault"}))
    return RouteSummary(namespace=meta["namespace"], name=meta["name"], http=tuple(routes))


def summarize_destination_rule(obj: JsonObject) -> dict[str, str]:
    """subset name -> the `version` label it selects."""
    subsets = (obj.get("spec") or {}).get("subsets") or []
    return {s["name"]: (s.get("labels") or {}).get("version", "") for s in subsets if "name" in s}


@dataclass
class RegionSnapshot:
    """A consistent copy of a region's state for one simulator tick."""

    region: str
    deployments: list[DeploymentSummary]
    pods: list[PodSummary]
    routes: dict[tuple[str, str], RouteSummary]
    subsets: dict[tuple[str, str], dict[str, str]]
    faults: list[FaultRecord]
    services: dict[tuple[str, str], ServiceSummary] = field(default_factory=dict)


@dataclass
class _Store:
    items: dict[tuple[str, str], Any] = field(default_factory=dict)
    synced: bool = False


class RegionWatcher:
    """Watches one region's cluster and serves snapshots of it."""

    KINDS = ("Deployment", "Pod", "Service", "VirtualService", "DestinationRule", "ConfigMap")

    def __init__(self, *, region: str, api_client: ApiClient) -> None:
        self.region = region
        self._client = api_client
        self._lock = threading.Lock()
        self._stores = {kind: _Store() for kind in self.KINDS}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: dict[str, str] = {}

    def _summarize(self, kind: str, obj: JsonObject) -> Any:
        if kind == "Deployment":
            return summarize_deployment(obj)
        if kind == "Pod":
            return summarize_pod(obj)
        if kind == "VirtualService":
            return summarize_virtual_service(obj)
        if kind == "DestinationRule":
            return summarize_destination_rule(obj)
        if kind == "Service":
            return summarize_service(obj)
        return (obj.get("data") or {})

    def _query(self, kind: str) -> dict[str, Any]:
        if kind == "ConfigMap":
            return {"namespace": SANDBOX_NAMESPACE}
        if kind in ("Deployment", "Pod"):
            return {"label_selector": "app"}
        return {}

    def _apply(self, kind: str, event: str, obj: JsonObject) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            items = self._stores[kind].items
            if event == "DELETED":
                items.pop(key, None)
                return
            summary = self._summarize(kind, obj)
            if summary is None:
                items.pop(key, None)
            else:
                items[key] = summary

    def _run(self, kind: str) -> None:
        query = self._query(kind)
        while not self._stop.is_set():
            try:
                objects, version = list_objects(self._client, kind=kind, **query)
                fresh = {}
                for obj in objects:
                    summary = self._summarize(kind, obj)
                    if summary is not None:
                        meta = obj["metadata"]
                        fresh[(meta.get("namespace", ""), meta["name"])] = summary
                with self._lock:
                    self._stores[kind].items = fresh
                    self._stores[kind].synced = True
                self.errors.pop(kind, None)
                while not self._stop.is_set():
                    for event, obj in watch_events(self._client, kind=kind, resource_version=version,
                                                   timeout_seconds=240, **query):
                        if event == "BOOKMARK":
                            version = obj["metadata"]["resourceVersion"]
                            continue
                        version = obj["metadata"].get("resourceVersion", version)
                        self._apply(kind, event, obj)
                        if self._stop.is_set():
                            return
            except ApiException as exc:
                if exc.status != 410:
                    self.errors[kind] = f"HTTP {exc.status}: {api_error_detail(exc)}"
                    log.warning("%s %s watch failed: %s", self.region, kind, exc)
                    self._stop.wait(1.0)
            except Exception as exc:  # connection reset, API server restarting, ...
                self.errors[kind] = repr(exc)
                log.warning("%s %s watch failed: %r", self.region, kind, exc)
                self._stop.wait(1.0)

    def start(self) -> None:
        for kind in self.KINDS:
            thread = threading.Thread(target=self._run, args=(kind,), daemon=True,
                                      name=f"watch-{self.region}-{kind}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    @property
    def synced(self) -> bool:
        with self._lock:
            return all(store.synced for store in self._stores.values())

    def snapshot(self, *, parse_faults: Callable[[dict[str, str] | None], list[FaultRecord]]
                 = parse_fault_configmap) -> RegionSnapshot:
        with self._lock:
            configmaps = dict(self._stores["ConfigMap"].items)
            snapshot = RegionSnapshot(
                region=self.region,
                deployments=list(self._stores["Deployment"].items.values()),
                pods=list(self._stores["Pod"].items.values()),
                routes=dict(self._stores["VirtualService"].items),
                subsets=dict(self._stores["DestinationRule"].items),
                faults=[],
                services=dict(self._stores["Service"].items),
            )
        try:
            snapshot.faults = parse_faults(configmaps.get((SANDBOX_NAMESPACE, FAULTS_CONFIGMAP)))
        except ValueError as exc:
            log.warning("%s: %s", self.region, exc)
        return snapshot
