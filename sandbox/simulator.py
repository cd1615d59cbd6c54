"""The traffic and usage simulator: live cluster state in, Istio/cAdvisor/kube-state-metrics out.

`FleetSimulator` keeps one `RegionWatcher` per region (watches, not polling) and, every tick, turns the
live state (Deployments and their available replicas, Pods, VirtualService weights resolved through
DestinationRule subsets, the region's faults, and the region's global traffic weight read from the global
traffic authority `sandbox.gslb`, outside every region) into monotonically
increasing counters and gauges using the pure functions of `sandbox.traffic_model`.
VirtualService routes are followed as Envoy would: header-match routes (A/B) take their cohorts' share
(`HEADER_COHORT_SHARE` per matcher), the weighted default route the rest, and `mirror` adds mirrored
requests on the mirror's version (reported like any request, as Istio does; they do not fan out downstream).
Route destinations resolve as Istio resolves them (`sandbox.istio_destinations`: a host naming another
Service goes to the pods it selects, labelled with their workload and version), and routes' `fault` blocks
delay or abort their share of requests as Envoy's fault filter would (`sandbox.istio_faults`).
`/metrics` (optionally `?region=eu-central`) serves them in the Prometheus text format. The process also keeps
the fault labels of crash-looping pods and failed nodes up to date (`sandbox.faults.keep_fault_labels`).

A region with a `region-outage` fault answers every request with 503 and its synthetic edge probe
(`probe_success{probe="edge"}`, what a blackbox exporter outside the region would report) is 0; the fault stays
in force while the region's kube-apiserver is stopped (the watcher keeps its last view), as in a hard outage.
Without `--traffic-authority` every region has weight 100.

Run: `python -m pitstop.sandbox.simulator --kubeconfig F --contexts eu-central,us-east --port P
[--traffic-authority URL --traffic-token-file F]`.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from kubernetes.client import ApiClient

from pitstop.sandbox.cluster_watch import DeploymentSummary, RegionSnapshot, RegionWatcher
from pitstop.sandbox.faults import BadRelease, CrashLoop, RegionOutage, SaturatedService, keep_fault_labels
from pitstop.sandbox.gslb import WeightsFollower
from pitstop.sandbox.istio_destinations import Endpoint, Owner, RouteContext, RouteSplit, Target, route_split
from pitstop.sandbox.istio_faults import HttpFault, RequestBatch, apply_faults
from pitstop.sandbox.traffic_model import (
    INGRESS_WORKLOAD,
    LATENCY_BUCKETS_MS,
    CallEdge,
    LatencyHistogram,
    VersionConditions,
    diurnal_factor_at,
    pod_usage,
    propagate_request_rates,
    region_traffic_share,
    request_outcome,
    served_rps_by_service,
    wobble,
)

log = logging.getLogger(__name__)

MIB = 2**20


@dataclass(frozen=True)
class ServiceModel:
    """A fleet service as the simulator sees it (from its Deployments' model annotation)."""

    name: str
    namespace: str
    stable_version: str
    entry_peak_rps: float
    entry_profile: str
    calls: tuple[tuple[str, float], ...]
    base_latency_ms: float
    base_error_ratio: float
    cpu_utilization_at_peak: float
    memory_utilization_at_peak: float
    stable_replicas: int


def services_from_deployments(
    deployments: Iterable[DeploymentSummary], subsets: dict[tuple[str, str], dict[str, str]]
) -> dict[str, ServiceModel]:
    """One ServiceModel per `app` whose Deployment carries the sandbox model annotation."""
    services: dict[str, ServiceModel] = {}
    for d in sorted(deployments, key=lambda d: (d.name != d.app, d.name)):
        if d.model is None or d.app in services:
            continue
        entry = d.model.get("entry") or {}
        stable = (subsets.get((d.namespace, d.app)) or {}).get("stable") or d.version
        services[d.app] = ServiceModel(
            name=d.app,
            namespace=d.namespace,
            stable_version=stable,
            entry_peak_rps=float(entry.get("peak_rps", 0.0)),
            entry_profile=str(entry.get("profile", "flat")),
            calls=tuple((c["service"], float(c.get("per_request", 1.0))) for c in d.model.get("calls") or []),
            base_latency_ms=float(d.model.get("base_latency_ms", 20.0)),
            base_error_ratio=float(d.model.get("base_error_ratio", 0.001)),
            cpu_utilization_at_peak=float(d.model.get("cpu_utilization_at_peak", 0.4)),
            memory_utilization_at_peak=float(d.model.get("memory_utilization_at_peak", 0.7)),
            stable_replicas=max(1, d.replicas),
        )
    return services


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_text(labels: Sequence[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels)


@dataclass
class _VersionTraffic:
    fraction: float
    conditions: VersionConditions
    workload: str
    rps_per_pod: float
    target: Target
    faults: list[tuple[float, HttpFault]] = field(default_factory=list)


def outcome_batch(rps: float, conditions: VersionConditions) -> RequestBatch:
    """The model's outcome for `rps` requests as a batch (rate and latency distribution per code)."""
    outcome = request_outcome(rps=rps, conditions=conditions)
    return RequestBatch(outcome.rps_by_code, {
        "200": (outcome.latency_median_ms, outcome.latency_sigma),
        "500": (outcome.latency_median_ms * 0.5, outcome.latency_sigma),
        "503": (outcome.error_latency_median_ms, 0.3),
    })


@dataclass
class RegionMetrics:
    """Counter and gauge state of one region (label text -> value)."""

    requests: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, LatencyHistogram] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    memory_bytes: dict[str, float] = field(default_factory=dict)
    restarts: dict[str, float] = field(default_factory=dict)
    crashlooping: dict[str, int] = field(default_factory=dict)
    pod_resources: dict[str, float] = field(default_factory=dict)  # full sample lines -> value
    deployments: dict[str, tuple[int, int]] = field(default_factory=dict)


class FleetSimulator:
    """Advances the traffic model from live cluster state and renders metrics."""

    def __init__(self, *, watchers: Sequence[RegionWatcher], tick_seconds: float = 1.0,
                 traffic_authority: WeightsFollower | None = None) -> None:
        self.watchers = list(watchers)
        self.traffic_authority = traffic_authority
        self._weights = {w.region: 100.0 for w in self.watchers}
        self._region_down: dict[str, bool] = {}
        self.tick_seconds = tick_seconds
        self._lock = threading.Lock()
        self._metrics = {w.region: RegionMetrics() for w in self.watchers}
        self._last_tick: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.tick_duration_seconds = 0.0

    # ---- lifecycle
    def start(self) -> None:
        if self.traffic_authority is not None:
            self.traffic_authority.start()
        for watcher in self.watchers:
            watcher.start()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="simulator-tick")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.traffic_authority is not None:
            self.traffic_authority.stop()
        for watcher in self.watchers:
            watcher.stop()

    @property
    def ready(self) -> bool:
        return all(w.synced for w in self.watchers) and self._last_tick is not None

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            if all(w.synced for w in self.watchers):
                try:
                    self.tick(now_unix=time.time(), now_monotonic=started)
                except Exception:
                    log.exception("simulator tick failed")
            self.tick_duration_seconds = time.monotonic() - started
            self._stop.wait(max(0.05, self.tick_seconds - self.tick_duration_seconds))

    # ---- model
    def tick(self, *, now_unix: float, now_monotonic: float) -> None:
        snapshots = [w.snapshot() for w in self.watchers]
        dt = 0.0 if self._last_tick is None else now_monotonic - self._last_tick
        self._last_tick = now_monotonic
        weights = {s.region: 100.0 for s in snapshots}
        if self.traffic_authority is not None:
            weights = self.traffic_authority.weights([s.region for s in snapshots])
        with self._lock:
            self._weights = weights
            for snapshot in snapshots:
                self._advance_region(snapshot, weights=weights, regions=len(snapshots),
                                     now_unix=now_unix, dt=dt)

    def _advance_region(self, snap: RegionSnapshot, *, weights: dict[str, float], regions: int,
                        now_unix: float, dt: float) -> None:
        region = snap.region
        state = self._metrics[region]
        services = services_from_deployments(snap.deployments, snap.subsets)
        share = region_traffic_share(weights=weights, region=region)
        region_down = any(isinstance(f.fault, RegionOutage) for f in snap.faults)
        self._region_down[region] = region_down
        edges = [CallEdge(s.name, callee, per) for s in services.values() for callee, per in s.calls
                 if callee in services]
        entry = {
            s.name: s.entry_peak_rps * share * diurnal_factor_at(
                unix_seconds=now_unix, region=region, profile=s.entry_profile)  # type: ignore[arg-type]
            for s in services.values() if s.entry_peak_rps > 0
        }
        edge_rps = propagate_request_rates(entry_rps=entry, edges=edges)
        served = served_rps_by_service(edge_rps)
        nominal_served = served_rps_by_service(propagate_request_rates(
            entry_rps={s.name: s.entry_peak_rps / max(1, regions) for s in services.values()
                       if s.entry_peak_rps > 0}, edges=edges))

        available: dict[tuple[str, str], int] = {}
        workload: dict[tuple[str, str], str] = {}
        for d in snap.deployments:
            available[(d.app, d.version)] = available.get((d.app, d.version), 0) + d.available_replicas
            workload.setdefault((d.app, d.version), d.name)
        running: dict[tuple[str, str], int] = {}
        for p in snap.pods:
            if p.running:
                running[(p.app, p.version)] = running.get((p.app, p.version), 0) + 1
        pod_template = {(p.app, p.version): p for p in snap.pods}

        context = RouteContext(
            services=snap.services, subsets=snap.subsets, workload_of=workload,
            endpoints=[Endpoint(p.namespace, p.labels, p.workload or workload.get((p.app, p.version), p.app))
                       for p in snap.pods if p.running])
        splits: dict[str, RouteSplit] = {}
        load: dict[tuple[str, str], float] = {}  # (app, version) -> rps its pods serve, whichever host routed
        for s in services.values():
            route = snap.routes.get((s.namespace, s.name))
            splits[s.name] = route_split(routes=route.http if route else None,
                                         owner=Owner(s.namespace, s.name, s.stable_version), context=context)
            for target, fraction in splits[s.name].total().items():
                app_version = (target.app, target.version)
                load[app_version] = load.get(app_version, 0.0) + served.get(s.name, 0.0) * fraction
        rps_per_pod_of = {av: rps / max(1, running.get(av, 0) or available.get(av, 0)) for av, rps in load.items()}

        traffic: dict[str, dict[Target, _VersionTraffic]] = {}
        for owner in services.values():
            per_version: dict[Target, _VersionTraffic] = {}
            for target, fraction in splits[owner.name].total().items():
                s = services.get(target.app, owner)
                version = target.version
                saturated = any(isinstance(f.fault, SaturatedService) and f.fault.service == s.name
                                for f in snap.faults)
                rps_per_pod = rps_per_pod_of.get((s.name, version), 0.0)
                template = pod_template.get((s.name, version))
                utilization = 0.3
                if template is not None:
                    utilization = pod_usage(
                        rps_per_pod=rps_per_pod,
                        nominal_peak_rps_per_pod=nominal_served.get(s.name, 0.0) / s.stable_replicas,
                        cpu_request_cores=template.cpu_request, cpu_limit_cores=template.cpu_limit,
                        memory_request_bytes=template.memory_request, memory_limit_bytes=template.memory_limit,
                        cpu_utilization_at_peak=s.cpu_utilization_at_peak,
                        memory_utilization_at_peak=s.memory_utilization_at_peak,
                        saturated=saturated,
                    ).cpu_utilization
                bad = [f.fault for f in snap.faults if isinstance(f.fault, BadRelease)
                       and f.fault.service == s.name and f.fault.version in (None, version)]
                per_version[target] = _VersionTraffic(
                    fraction=fraction, target=target, faults=splits[owner.name].faults.get(target, []),
                    conditions=VersionConditions(
                        available_replicas=available.get((s.name, version), 0),
                        base_error_ratio=s.base_error_ratio,
                        fault_error_ratio=sum(b.error_ratio for b in bad),
                        region_down=region_down,
                        base_latency_ms=s.base_latency_ms,
                        extra_latency_ms=sum(b.extra_latency_ms for b in bad),
                        cpu_utilization=utilization,
                    ),
                    workload=target.workload,
                    rps_per_pod=rps_per_pod,
                )
            traffic[owner.name] = per_version

        common = (("region", region), ("cluster", region), ("reporter", "destination"))
        for (source, destination), rps in edge_rps.items():
            source_ns = services[source].namespace if source in services else "istio-system"
            for vt in traffic.get(destination, {}).values():
                t = vt.target
                base_labels = common + (
                    ("source_workload", source), ("source_workload_namespace", source_ns),
                    ("destination_service", t.fqdn),
                    ("destination_service_name", t.service),
                    ("destination_service_namespace", t.namespace),
                    ("destination_workload", vt.workload),
                    ("destination_workload_namespace", t.namespace),
                    ("destination_version", t.version),
                    ("request_protocol", "http"),
                )
                batches = apply_faults(outcome_batch(rps * vt.fraction, vt.conditions), vt.faults)
                self._record(state, base_labels, batches, dt=dt)

        live_pods: set[str] = set()
        state.pod_resources = {}
        for p in snap.pods:
            pod_service = services.get(p.app)
            key = label_text((("region", region), ("cluster", region), ("namespace", p.namespace),
                              ("pod", p.name), ("container", p.container)))
            live_pods.add(key)
            for resource, unit, req, lim in (("cpu", "core", p.cpu_request, p.cpu_limit),
                                             ("memory", "byte", p.memory_request, p.memory_limit)):
                res_labels = f'{key},node="{p.node}",resource="{resource}",unit="{unit}"'
                state.pod_resources[f"kube_pod_container_resource_requests{{{res_labels}}}"] = req
                state.pod_resources[f"kube_pod_container_resource_limits{{{res_labels}}}"] = lim
            restarts_base = float(p.restart_count)
            crash = next((f for f in snap.faults if isinstance(f.fault, CrashLoop) and pod_service is not None
                          and f.fault.service == p.app and f.fault.version in (None, p.version)), None)
            previous_extra = state.restarts.get(key, restarts_base) - restarts_base
            if p.crash_looping:  # kwok's crash-loop Stage restarts the pod for real: export its restartCount
                previous_extra = 0.0
                state.crashlooping[key] = 1
            elif crash is not None and p.running:  # clusters without the Stages: synthetic restarts
                assert isinstance(crash.fault, CrashLoop)
                previous_extra += dt / crash.fault.restart_interval_seconds
                state.crashlooping[key] = 1
            else:
                state.crashlooping[key] = 0
            state.restarts[key] = restarts_base + max(0.0, previous_extra)
            if not p.running:
                state.memory_bytes.pop(key, None)
                continue
            sm = pod_service
            usage = pod_usage(
                rps_per_pod=rps_per_pod_of.get((p.app, p.version), 0.0),
                nominal_peak_rps_per_pod=(nominal_served.get(p.app, 0.0) / sm.stable_replicas) if sm else 1.0,
                cpu_request_cores=p.cpu_request, cpu_limit_cores=p.cpu_limit or p.cpu_request,
                memory_request_bytes=p.memory_request, memory_limit_bytes=p.memory_limit or p.memory_request,
                cpu_utilization_at_peak=sm.cpu_utilization_at_peak if sm else 0.1,
                memory_utilization_at_peak=sm.memory_utilization_at_peak if sm else 0.5,
                saturated=any(isinstance(f.fault, SaturatedService) and f.fault.service == p.app
                              for f in snap.faults),
                wobble=wobble(key=p.name, unix_seconds=now_unix),
            )
            state.cpu_seconds[key] = state.cpu_seconds.get(key, 0.0) + usage.cpu_cores * dt
            state.memory_bytes[key] = usage.memory_bytes
        for stale in set(state.cpu_seconds) - live_pods:
            state.cpu_seconds.pop(stale, None)
        for table in (state.memory_bytes, state.restarts, state.crashlooping):
            for stale in set(table) - live_pods:
                table.pop(stale, None)
        state.deployments = {
            label_text((("region", region), ("cluster", region), ("namespace", d.namespace),
                        ("deployment", d.name))): (d.replicas, d.available_replicas)
            for d in snap.deployments
        }

    @staticmethod
    def _record(state: RegionMetrics, base_labels: tuple[tuple[str, str], ...], batches: Sequence[RequestBatch],
                *, dt: float) -> None:
        """Advance the request counters and latency histograms of one edge by `dt` seconds of `batches`."""
        for batch in batches:
            for code, code_rps in batch.rps_by_code.items():
                key = label_text(base_labels + (("response_code", code),))
                state.requests[key] = state.requests.get(key, 0.0) + code_rps * dt
                count = code_rps * dt
                if count <= 0:
                    continue
                histogram = state.histograms.get(key)
                if histogram is None:
                    histogram = state.histograms[key] = LatencyHistogram()
                median, sigma = batch.latency_by_code[code]
                histogram.observe_many(count=count, median_ms=median, sigma=sigma)

    # ---- exposition
    def render(self, *, region: str | None = None) -> str:
        """Prometheus text exposition (format 0.0.4) for one region or all."""
        out: list[str] = []
        with self._lock:
            states = [(r, m) for r, m in self._metrics.items() if region in (None, r)]

            def family(name: str, kind: str, help_text: str) -> None:
                out.append(f"# HELP {name} {help_text}")
                out.append(f"# TYPE {name} {kind}")

            family("istio_requests_total", "counter", "Requests received by the destination workload.")
            for _r, m in states:
                out.extend(f"istio_requests_total{{{k}}} {v:.3f}" for k, v in m.requests.items())
            family("istio_request_duration_milliseconds", "histogram", "Request duration in milliseconds.")
            for _r, m in states:
                for k, h in m.histograms.items():
                    for le, c in zip(LATENCY_BUCKETS_MS, h.bucket_counts, strict=True):
                        out.append(f'istio_request_duration_milliseconds_bucket{{{k},le="{le:g}"}} {math.floor(c)}')
                    total = math.floor(h.total_count)
                    out.append(f'istio_request_duration_milliseconds_bucket{{{k},le="+Inf"}} {total}')
                    out.append(f"istio_request_duration_milliseconds_sum{{{k}}} {h.total_sum:.3f}")
                    out.append(f"istio_request_duration_milliseconds_count{{{k}}} {total}")
            family("container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed in seconds.")
            for _r, m in states:
                out.extend(f"container_cpu_usage_seconds_total{{{k}}} {v:.4f}" for k, v in m.cpu_seconds.items())
            family("container_memory_working_set_bytes", "gauge", "Current working set in bytes.")
            for _r, m in states:
                out.extend(f"container_memory_working_set_bytes{{{k}}} {v:.0f}" for k, v in m.memory_bytes.items())
            family("kube_pod_container_resource_requests", "gauge", "Requested resources by a container.")
            for _r, m in states:
                out.extend(f"{k} {v:g}" for k, v in m.pod_resources.items()
                           if k.startswith("kube_pod_container_resource_requests"))
            family("kube_pod_container_resource_limits", "gauge", "Resource limits of a container.")
            for _r, m in states:
                out.extend(f"{k} {v:g}" for k, v in m.pod_resources.items()
                           if k.startswith("kube_pod_container_resource_limits"))
            family("kube_pod_container_status_restarts_total", "counter", "Container restarts.")
            for _r, m in states:
                out.extend(f"kube_pod_container_status_restarts_total{{{k}}} {math.floor(v)}"
                           for k, v in m.restarts.items())
            family("kube_pod_container_status_waiting_reason", "gauge", "Why a container is waiting.")
            for _r, m in states:
                out.extend(f'kube_pod_container_status_waiting_reason{{{k},reason="CrashLoopBackOff"}} {v}'
                           for k, v in m.crashlooping.items())
            family("kube_deployment_spec_replicas", "gauge", "Desired replicas of a deployment.")
            for _r, m in states:
                out.extend(f"kube_deployment_spec_replicas{{{k}}} {v[0]}" for k, v in m.deployments.items())
            family("kube_deployment_status_replicas_available", "gauge", "Available replicas of a deployment.")
            for _r, m in states:
                out.extend(f"kube_deployment_status_replicas_available{{{k}}} {v[1]}"
                           for k, v in m.deployments.items())
            family("pitstop_sandbox_region_traffic_weight", "gauge", "Global traffic weight of the region.")
            for r, _m in states:
                out.append(f'pitstop_sandbox_region_traffic_weight{{region="{r}",cluster="{r}"}} '
                           f"{self._weights.get(r, 0.0):g}")
            family("probe_success", "gauge", "Synthetic probe of the region's edge from outside it (1 = answered).")
            for r, _m in states:
                up = 0 if self._region_down.get(r, False) else 1
                out.append(f'probe_success{{region="{r}",cluster="{r}",probe="edge"}} {up}')
        out.append(f"pitstop_sandbox_tick_duration_seconds {self.tick_duration_seconds:.4f}")
        out.append("")
        return "\n".join(out)


class _Handler(BaseHTTPRequestHandler):
    simulator: FleetSimulator

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        url = urlparse(self.path)
        if url.path == "/metrics":
            regions = parse_qs(url.query).get("region")
            region = regions[0] if regions else None
            body = self.simulator.render(region=region).encode()
            self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")
        elif url.path in ("/healthz", "/readyz"):
            ready = self.simulator.ready
            self._send(200 if ready else 503, b"ok\n" if ready else b"syncing\n", "text/plain")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


def serve_metrics(*, simulator: FleetSimulator, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("SimulatorHandler", (_Handler,), {"simulator": simulator})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics-http").start()
    return server


def region_clients(*, kubeconfig: Path, contexts: Sequence[str]) -> dict[str, ApiClient]:
    from kubernetes.config import new_client_from_config

    clients = {}
    for context in contexts:
        client = new_client_from_config(config_file=str(kubeconfig), context=context)
        client.rest_client.pool_manager.connection_pool_kw["maxsize"] = 16
        clients[context] = client
    return clients


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serve simulated Istio and container metrics for the sandbox")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--contexts", required=True, help="comma-separated region contexts (= region names)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tick-seconds", type=float, default=1.0)
    parser.add_argument("--traffic-authority", default="", help="URL of the global traffic authority (sandbox.gslb)")
    parser.add_argument("--traffic-token-file", type=Path, help="file holding the authority's bearer token")
    args = parser.parse_args(argv)
    if args.traffic_authority and args.traffic_token_file is None:
        parser.error("--traffic-authority needs --traffic-token-file")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    clients = region_clients(kubeconfig=args.kubeconfig, contexts=args.contexts.split(","))
    simulator = FleetSimulator(
        watchers=[RegionWatcher(region=r, api_client=c) for r, c in clients.items()],
        tick_seconds=args.tick_seconds,
        traffic_authority=WeightsFollower(url=args.traffic_authority, token_file=args.traffic_token_file,
                                          interval_seconds=min(1.0, args.tick_seconds))
        if args.traffic_authority else None,
    )
    simulator.start()
    stop_labels = threading.Event()
    threading.Thread(target=keep_fault_labels, kwargs={"api_clients": clients, "stop": stop_labels}, daemon=True,
                     name="fault-labels").start()
    server = serve_metrics(simulator=simulator, host=args.host, port=args.port)
    log.info("serving metrics on http://%s:%d/metrics", args.host, server.server_address[1])
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop_labels.set()
        simulator.stop()
        server.shutdown()


if __name__ == "__main__":
    main()


class SimulatorProcess:
    """A simulator running as a child process (`python -m pitstop.sandbox.simulator`)."""

    def __init__(self, *, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}"

    def stop(self, *, timeout_seconds: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_simulator_process(
    *,
    kubeconfig: Path,
    contexts: Sequence[str],
    log_path: Path,
    port: int | None = None,
    tick_seconds: float = 1.0,
    ready_timeout_seconds: float = 120.0,
    traffic_authority: tuple[str, Path] | None = None,
) -> SimulatorProcess:
    """Start the simulator on 127.0.0.1 and wait until every region's watches have synced.
    `traffic_authority`: (URL, token file) of the global traffic authority whose weights it obeys."""
    import httpx

    from pitstop.sandbox.monitoring import free_loopback_port

    port = port or free_loopback_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "pitstop.sandbox.simulator", "--kubeconfig", str(kubeconfig),
         "--contexts", ",".join(contexts), "--port", str(port), "--tick-seconds", str(tick_seconds),
         *(["--traffic-authority", traffic_authority[0], "--traffic-token-file", str(traffic_authority[1])]
           if traffic_authority else [])],
        stdout=log_path.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
    )
    handle = SimulatorProcess(process=process, port=port, log_path=log_path)
    deadline = time.monotonic() + ready_timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"simulator exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{handle.url}/healthz", timeout=2).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    handle.stop()
    raise RuntimeError(f"simulator not ready after {ready_timeout_seconds}s; log {log_path}")
