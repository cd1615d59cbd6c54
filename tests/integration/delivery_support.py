"""Support for release workflow tests on real Temporal and a real Prometheus.

The cluster side is replaced at pitstop's own boundary (the `delivery.*` regional activities) by
`FakeRegion`: an in-memory VirtualService/DestinationRule/Deployments per region that records every
mutating call. `MeshMetrics` is a real HTTP server exporting Istio's standard metrics per destination
version, split by each region's *current* route weights (header routes get `ab_share` of traffic), with
per-version faults; a real `/usr/bin/prometheus` scrapes it every second. The workflows, the analysis
activity and PromQL are the product's own.
"""

from __future__ import annotations

import copy
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio import activity

from pitstop.delivery.models import (
    CandidateStatus,
    DeployCandidateInput,
    DeploymentSnapshot,
    FinalizeInput,
    FinalizeResult,
    ReleaseSnapshot,
    RestoreInput,
    RestoreResult,
    RetireInput,
    RoutesInput,
    RoutesResult,
    ScaleCandidateInput,
    SubsetsInput,
    TargetInput,
)
from pitstop.delivery.routing import weights_of

SERVICE, NAMESPACE = "ota-update", "team-ota"
HOST = f"{SERVICE}.{NAMESPACE}.svc.cluster.local"
LATENCY_BUCKETS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500)


def _template(version: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": SERVICE, "version": version, "pitstop.dev/role": "stable"}},
            "spec": {"containers": [{"name": SERVICE, "image": f"registry/{SERVICE}:{version}"}]}}


class FakeRegion:
    """One region's objects of the service, in memory (thread-safe), with a log of mutating calls."""

    def __init__(self, region: str, *, stable_version: str = "v1", replicas: int = 3) -> None:
        self.region = region
        self.lock = threading.Lock()
        self.http: list[dict[str, Any]] = [{"name": "primary", "route": [
            {"destination": {"host": HOST, "subset": "stable"}, "weight": 100},
            {"destination": {"host": HOST, "subset": "canary"}, "weight": 0}]}]
        self.subsets: list[dict[str, Any]] = [{"name": "stable", "labels": {"version": stable_version}},
                                              {"name": "canary", "labels": {"version": stable_version}}]
        self.deployments: dict[str, dict[str, Any]] = {SERVICE: {"replicas": replicas, "template": _template(stable_version)}}
        self.calls: list[tuple[float, str, str]] = []  # (monotonic, activity, detail)
        self.weight_changes: list[tuple[float, dict[str, int]]] = []

    def _log(self, name: str, detail: str = "") -> None:
        self.calls.append((time.monotonic(), name, detail))

    def weights(self) -> dict[str, int]:
        with self.lock:
            return weights_of(self.http, None)

    def version_shares(self) -> tuple[dict[str, float], dict[str, float]]:
        """(default-route share per version, header-route share per version)."""
        with self.lock:
            subset_version = {s["name"]: s["labels"]["version"] for s in self.subsets}
            default: dict[str, float] = {}
            header: dict[str, float] = {}
            for route in self.http:
                target = header if route.get("match") else default
                for dest in route.get("route") or []:
                    version = subset_version.get(dest["destination"].get("subset", "stable"), "unknown")
                    target[version] = target.get(version, 0.0) + dest.get("weight", 100) / 100.0
                mirror = route.get("mirror")
                if mirror and not route.get("match"):  # mirrored requests are reported by the mirror's sidecar
                    version = subset_version.get(mirror.get("subset", "stable"), "unknown")
                    percent = (route.get("mirrorPercentage") or {}).get("value", 100.0)
                    target[version] = target.get(version, 0.0) + percent / 100.0
            return default, header

    def activities(self) -> list[Any]:
        region = self

        @activity.defn(name="delivery.snapshot")
        def snapshot(request: TargetInput) -> ReleaseSnapshot:
            with region.lock:
                region._log("snapshot")
                stable = region.deployments[SERVICE]
                cand = region.deployments.get(f"{SERVICE}-canary")
                def snap(name: str, d: dict[str, Any]) -> DeploymentSnapshot:
                    labels = d["template"]["metadata"]["labels"]
                    return DeploymentSnapshot(name=name, replicas=d["replicas"], template=copy.deepcopy(d["template"]),
                                              version=labels["version"], image=d["template"]["spec"]["containers"][0]["image"])
                return ReleaseSnapshot(http=copy.deepcopy(region.http), subsets=copy.deepcopy(region.subsets),
                                       stable=snap(SERVICE, stable), candidate=snap(f"{SERVICE}-canary", cand) if cand else None,
                                       weights=weights_of(region.http, None))

        @activity.defn(name="delivery.deploy_candidate")
        def deploy_candidate(request: DeployCandidateInput) -> CandidateStatus:
            with region.lock:
                region._log("deploy_candidate", request.version)
                template = _template(request.version)
                template["metadata"]["labels"]["pitstop.dev/role"] = "canary"
                template["spec"]["containers"][0]["image"] = request.image
                region.deployments[f"{SERVICE}-canary"] = {"replicas": request.replicas, "template": template}
                region.subsets = copy.deepcopy(request.subsets)
            return CandidateStatus(name=f"{SERVICE}-canary", replicas=request.replicas, ready_replicas=request.replicas, created=True)

        @activity.defn(name="delivery.set_routes")
        def set_routes(request: RoutesInput) -> RoutesResult:
            with region.lock:
                changed = region.http != request.http
                region._log("set_routes", str(weights_of(request.http, None)))
                region.http = copy.deepcopy(request.http)
                region.weight_changes.append((time.monotonic(), weights_of(request.http, None)))
            return RoutesResult(changed=changed, weights=weights_of(request.http, None))

        @activity.defn(name="delivery.set_subsets")
        def set_subsets(request: SubsetsInput) -> bool:
            with region.lock:
                region._log("set_subsets")
                changed = region.subsets != request.subsets
                region.subsets = copy.deepcopy(request.subsets)
            return changed

        @activity.defn(name="delivery.scale_candidate")
        def scale_candidate(request: ScaleCandidateInput) -> CandidateStatus:
            with region.lock:
                region._log("scale_candidate", str(request.replicas))
                region.deployments[f"{SERVICE}-canary"]["replicas"] = request.replicas
            return CandidateStatus(name=f"{SERVICE}-canary", replicas=request.replicas, ready_replicas=request.replicas)

        @activity.defn(name="delivery.restore")
        def restore(request: RestoreInput) -> RestoreResult:
            snap = request.snapshot
            with region.lock:
                region._log("restore")
                region.http = copy.deepcopy(snap.http)
                region.weight_changes.append((time.monotonic(), weights_of(snap.http, None)))
                region.subsets = copy.deepcopy(snap.subsets)
                if snap.candidate is None:
                    region.deployments.pop(f"{SERVICE}-canary", None)
                region.deployments[SERVICE] = {"replicas": snap.stable.replicas, "template": copy.deepcopy(snap.stable.template)}
            return RestoreResult(routes_changed=True, weights=weights_of(snap.http, None), candidate="deleted")

        @activity.defn(name="delivery.finalize_stable")
        def finalize_stable(request: FinalizeInput) -> FinalizeResult:
            with region.lock:
                region._log("finalize_stable")
                template = copy.deepcopy(region.deployments[f"{SERVICE}-canary"]["template"])
                template["metadata"]["labels"]["pitstop.dev/role"] = "stable"
                region.deployments[SERVICE]["template"] = template
                version = template["metadata"]["labels"]["version"]
                return FinalizeResult(image=template["spec"]["containers"][0]["image"], version=version,
                                      ready_replicas=region.deployments[SERVICE]["replicas"])

        @activity.defn(name="delivery.retire_candidate")
        def retire_candidate(request: RetireInput) -> str:
            with region.lock:
                region._log("retire_candidate")
                region.deployments.pop(f"{SERVICE}-canary", None)
            return "deleted"

        return [snapshot, deploy_candidate, set_routes, set_subsets, scale_candidate, restore, finalize_stable, retire_candidate]

    def mutations(self) -> list[str]:
        return [f"{name}:{detail}" if detail else name for _, name, detail in self.calls if name != "snapshot"]


class MeshMetrics:
    """Istio request metrics per region/version from the fake regions' live routes; faults per version."""

    def __init__(self, regions: dict[str, FakeRegion], *, rps: float = 100.0, ab_share: float = 0.2) -> None:
        self.regions = regions
        self.rps = rps
        self.ab_share = ab_share
        self.faults: dict[tuple[str, str], float] = {}  # (region, version) -> error ratio
        self.fault_started: dict[tuple[str, str], float] = {}
        self._requests: dict[tuple[str, str, str], float] = {}
        self._buckets: dict[tuple[str, str], list[float]] = {}
        self._sums: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last = time.monotonic()
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = metrics.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        threading.Thread(target=self._tick_loop, daemon=True).start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def inject(self, region: str, version: str, error_ratio: float) -> None:
        with self._lock:
            self.faults[(region, version)] = error_ratio
            self.fault_started[(region, version)] = time.monotonic()

    def _tick_loop(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            dt, self._last = now - self._last, now
            for name, region in self.regions.items():
                default, header = region.version_shares()
                shares: dict[str, float] = {}
                for version, share in default.items():
                    shares[version] = shares.get(version, 0.0) + share * (1 - (self.ab_share if header else 0.0))
                for version, share in header.items():
                    shares[version] = shares.get(version, 0.0) + share * self.ab_share
                with self._lock:
                    for version, share in shares.items():
                        count = self.rps * share * dt
                        if count <= 0:
                            continue
                        error = self.faults.get((name, version), 0.0)
                        for code, part in (("200", 1 - error), ("500", error)):
                            key = (name, version, code)
                            self._requests[key] = self._requests.get(key, 0.0) + count * part
                        latency = 20.0 + (400.0 if error else 0.0)
                        buckets = self._buckets.setdefault((name, version), [0.0] * (len(LATENCY_BUCKETS) + 1))
                        for index, bound in enumerate(LATENCY_BUCKETS):
                            if latency <= bound:
                                buckets[index] += count
                        buckets[-1] += count
                        self._sums[(name, version)] = self._sums.get((name, version), 0.0) + latency * count

    def render(self) -> str:
        lines = ["# TYPE istio_requests_total counter"]
        common = f'reporter="destination",destination_service_name="{SERVICE}",destination_service_namespace="{NAMESPACE}"'
        with self._lock:
            for (region, version, code), value in sorted(self._requests.items()):
                lines.append(f'istio_requests_total{{{common},region="{region}",destination_version="{version}",'
                             f'response_code="{code}"}} {value}')
            lines.append("# TYPE istio_request_duration_milliseconds histogram")
            for (region, version), buckets in sorted(self._buckets.items()):
                labels = f'{common},region="{region}",destination_version="{version}"'
                for bound, value in zip([*map(str, LATENCY_BUCKETS), "+Inf"], buckets, strict=True):
                    lines.append(f'istio_request_duration_milliseconds_bucket{{{labels},le="{bound}"}} {value}')
                lines.append(f"istio_request_duration_milliseconds_count{{{labels}}} {buckets[-1]}")
                lines.append(f"istio_request_duration_milliseconds_sum{{{labels}}} {self._sums[(region, version)]}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusProcess:
    """A real Prometheus scraping `target` every `scrape_seconds`."""

    def __init__(self, *, target: str, state_dir: Path, scrape_seconds: float = 1.0) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).exists():
            raise RuntimeError("prometheus is missing: apt-get install prometheus (see STACK.md)")
        state_dir.mkdir(parents=True, exist_ok=True)
        config = state_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": f"{scrape_seconds:g}s", "evaluation_interval": f"{scrape_seconds:g}s"},
            "scrape_configs": [{"job_name": "mesh", "static_configs": [{"targets": [target]}]}],
        }))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = [binary, f"--config.file={config}", f"--storage.tsdb.path={state_dir / 'data'}",
                      f"--web.listen-address=127.0.0.1:{self.port}"]
        self._log = state_dir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(self._args, stdout=self._log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready; see {self._log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def query(self, promql: str) -> float | None:
        try:
            body = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=2).json()
        except httpx.HTTPError:
            return None
        result = body.get("data", {}).get("result") or []
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if value != value else value


@contextmanager
def mesh(regions: list[str], tmp_path: Path) -> Iterator[tuple[dict[str, FakeRegion], MeshMetrics, PrometheusProcess]]:
    fakes = {r: FakeRegion(r) for r in regions}
    metrics = MeshMetrics(fakes)
    prom = PrometheusProcess(target=metrics.target, state_dir=tmp_path / "prom")
    try:
        yield fakes, metrics, prom
    finally:
        prom.stop()
        metrics.close()
