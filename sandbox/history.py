"""Backfill days of usage history into Prometheus' TSDB from the same traffic model as the simulator.

`write_history_openmetrics` evaluates `sandbox.traffic_model` at every step of the past N days (default
14 days at a 5-minute step, no faults, every region at its default weight) and writes OpenMetrics:
`container_cpu_usage_seconds_total` (counter), `container_memory_working_set_bytes` (gauge) per pod, and
`istio_requests_total` per call edge (stable version, codes 200/500), labelled like the live series.
`backfill_history` runs `promtool tsdb create-blocks-from openmetrics` into the TSDB directory;
do that before Prometheus starts (`sandbox.monitoring.start_monitoring`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, Field

from pitstop.sandbox.fleet import ServiceSpec, call_edges
from pitstop.sandbox.traffic_model import (
    INGRESS_WORKLOAD,
    diurnal_factor_at,
    pod_usage,
    propagate_request_rates,
    served_rps_by_service,
    wobble,
)

MIB = 2**20


class HistoricalPod(BaseModel):
    """A pod whose usage history is generated (usually a live pod, so its series continue)."""

    namespace: str
    pod: str
    container: str
    app: str


class HistoryResult(BaseModel):
    samples: int
    series: int
    start_unix: float
    end_unix: float
    openmetrics_bytes: int
    generate_seconds: float
    promtool_seconds: float


class HistoryError(RuntimeError):
    """promtool failed to create blocks."""


def synthetic_pods(services: Sequence[ServiceSpec]) -> list[HistoricalPod]:
    """Stable-looking pod names (`<svc>-<rs hash>-<pod hash>`) when no live pods are given."""
    pods = []
    for s in services:
        rs_hash = hashlib.sha1(f"{s.name}/{s.version}".encode()).hexdigest()[:10]
        for i in range(s.replicas):
            pod_hash = hashlib.sha1(f"{s.name}/{i}".encode()).hexdigest()[:5]
            pods.append(HistoricalPod(namespace=s.team, pod=f"{s.name}-{rs_hash}-{pod_hash}",
                                      container=s.name, app=s.name))
    return pods


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in pairs)


def write_history_openmetrics(
    out: TextIO,
    *,
    services: Sequence[ServiceSpec],
    regions: Sequence[str],
    pods_by_region: Mapping[str, Sequence[HistoricalPod]] | None = None,
    end_unix: float,
    days: float = 14.0,
    step_seconds: int = 300,
) -> tuple[int, int]:
    """Write the history as OpenMetrics (samples in time order, `# EOF` last); returns (samples, series)."""
    by_name = {s.name: s for s in services}
    edges = call_edges(services)
    share = 1.0 / max(1, len(regions))
    nominal = served_rps_by_service(propagate_request_rates(
        entry_rps={s.name: s.entry.peak_rps * share for s in services if s.entry}, edges=edges))
    start = int((end_unix - days * 86400) // step_seconds * step_seconds)
    end = int(end_unix // step_seconds * step_seconds)
    series_labels: dict[str, list[tuple[str, str, ServiceSpec, str]]] = {}
    for region in regions:
        pods = (pods_by_region or {}).get(region) or synthetic_pods(services)
        rows = []
        for p in pods:
            service = by_name.get(p.app)
            if service is None:
                continue
            rows.append((p.pod, _labels((("region", region), ("cluster", region), ("job", f"sandbox-{region}"),
                                          ("namespace", p.namespace), ("pod", p.pod),
                                          ("container", p.container))), service, p.app))
        series_labels[region] = rows
    cpu_totals: dict[str, float] = {}
    request_totals: dict[str, float] = {}
    samples = 0
    series: set[str] = set()
    for t in range(start, end + 1, step_seconds):
        lines: list[str] = []
        for region in regions:
            entry = {s.name: s.entry.peak_rps * share * diurnal_factor_at(
                unix_seconds=t, region=region, profile=s.entry.profile) for s in services if s.entry}
            edge_rps = propagate_request_rates(entry_rps=entry, edges=edges)
            served = served_rps_by_service(edge_rps)
            pods_per_app: dict[str, int] = {}
            for _pod, _l, _s, app in series_labels[region]:
                pods_per_app[app] = pods_per_app.get(app, 0) + 1
            for pod, labels, s, app in series_labels[region]:
                usage = pod_usage(
                    rps_per_pod=served.get(app, 0.0) / pods_per_app[app],
                    nominal_peak_rps_per_pod=nominal.get(app, 0.0) / max(1, s.replicas),
                    cpu_request_cores=s.cpu_request_millicores / 1000, cpu_limit_cores=s.cpu_limit_millicores / 1000,
                    memory_request_bytes=s.memory_request_mib * MIB, memory_limit_bytes=s.memory_limit_mib * MIB,
                    cpu_utilization_at_peak=s.cpu_utilization_at_peak,
                    memory_utilization_at_peak=s.memory_utilization_at_peak,
                    wobble=wobble(key=pod, unix_seconds=t),
                )
                total = cpu_totals.get(labels, 0.0) + usage.cpu_cores * step_seconds
                cpu_totals[labels] = total
                lines.append(f"container_cpu_usage_seconds_total{{{labels}}} {total:.3f} {t}")
                lines.append(f"container_memory_working_set_bytes{{{labels}}} {usage.memory_bytes:.0f} {t}")
            for (source, destination), rps in edge_rps.items():
                dest = by_name[destination]
                source_ns = by_name[source].team if source in by_name else "istio-system"
                base = (("region", region), ("cluster", region), ("job", f"sandbox-{region}"),
                        ("reporter", "destination"), ("source_workload", source),
                        ("source_workload_namespace", source_ns),
                        ("destination_service", f"{destination}.{dest.team}.svc.cluster.local"),
                        ("destination_service_name", destination), ("destination_service_namespace", dest.team),
                        ("destination_workload", destination), ("destination_workload_namespace", dest.team),
                        ("destination_version", dest.version), ("request_protocol", "http"))
                for code, ratio in (("200", 1.0 - dest.base_error_ratio), ("500", dest.base_error_ratio)):
                    labels = _labels(base + (("response_code", code),))
                    total = request_totals.get(labels, 0.0) + rps * ratio * step_seconds
                    request_totals[labels] = total
                    lines.append(f"istio_requests_total{{{labels}}} {total:.0f} {t}")
        samples += len(lines)
        out.write("\n".join(lines))
        out.write("\n")
    out.write("# EOF\n")
    series.update(cpu_totals)
    return samples, 2 * len(cpu_totals) + len(request_totals)


def backfill_history(
    *,
    services: Sequence[ServiceSpec],
    regions: Sequence[str],
    tsdb_dir: Path,
    work_dir: Path,
    pods_by_region: Mapping[str, Sequence[HistoricalPod]] | None = None,
    days: float = 14.0,
    step_seconds: int = 300,
    end_unix: float | None = None,
    keep_openmetrics: bool = False,
) -> HistoryResult:
    """Generate the history file and turn it into TSDB blocks in `tsdb_dir` (Prometheus not running)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise HistoryError("promtool not found: apt-get install -y --no-install-recommends prometheus")
    end = end_unix if end_unix is not None else time.time() - 60
    work_dir.mkdir(parents=True, exist_ok=True)
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "history.om"
    started = time.monotonic()
    with path.open("w", buffering=1 << 20) as out:
        samples, series = write_history_openmetrics(
            out, services=services, regions=regions, pods_by_region=pods_by_region,
            end_unix=end, days=days, step_seconds=step_seconds)
    generated = time.monotonic()
    size = path.stat().st_size
    # One pass over the file per block: 162 h blocks instead of 2 h ones keep a 14-day backfill to 3 passes.
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=162h",
         str(path), str(tsdb_dir)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise HistoryError(f"promtool create-blocks-from openmetrics failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout)[-2000:]}")
    if not keep_openmetrics:
        path.unlink()
    return HistoryResult(
        samples=samples, series=series, start_unix=end - days * 86400, end_unix=end,
        openmetrics_bytes=size, generate_seconds=round(generated - started, 2),
        promtool_seconds=round(time.monotonic() - generated, 2),
    )
