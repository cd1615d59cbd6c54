"""Backfill days of usage history into Prometheus' TSDB from the same traffic model as the simulator.

`HistoryWriter` evaluates `sandbox.traffic_model` at every step of the past N days (no faults, every region at
its default weight) and writes OpenMetrics labelled like the live series: `container_cpu_usage_seconds_total`
(counter) and `container_memory_working_set_bytes` (gauge) per pod at a real scrape resolution (default every
30 s, so `rate(...[1m])` and `rate(...[2m])` see history as rightsizing tools expect), and at a coarser step
(default 5 minutes) `istio_requests_total` per call edge (stable version, codes 200/500) and, given the regions'
live objects (`sandbox.kube_state_metrics.live_snapshot`), their kube-state-metrics and machine series as they
are now. `backfill_history` writes a UTC day per file (promtool maps its whole input) and runs
`promtool tsdb create-blocks-from openmetrics` on each into the TSDB directory; do that before Prometheus starts
(`sandbox.monitoring.start_monitoring`). `HistoryResult.summary()` gives the times and the TSDB size.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel

from pitstop.sandbox.cluster_watch import RegionSnapshot
from pitstop.sandbox.fleet import ServiceSpec, call_edges
from pitstop.sandbox.kube_state_metrics import kube_state_samples, restart_samples
from pitstop.sandbox.traffic_model import (
    INGRESS_WORKLOAD,
    diurnal_factor_at,
    pod_usage,
    propagate_request_rates,
    served_rps_by_service,
    wobble,
)

MIB = 2**20
DAY = 86400


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
    promtool_seconds: float  # waiting for promtool beyond the generation it overlaps with
    step_seconds: int = 300  # CPU and memory usage series
    coarse_step_seconds: int = 300  # request counters and kube-state-metrics series
    files: int = 1  # OpenMetrics files (a day each) promtool converted
    tsdb_bytes: int = 0  # size of the TSDB directory afterwards

    def summary(self) -> str:
        """One line for people: what was written, how long it took, how big it is."""
        return (f"{self.series} series, {self.samples} samples (usage every {self.step_seconds} s, requests and "
                f"kube-state-metrics every {self.coarse_step_seconds} s) in {self.files} day files "
                f"({self.openmetrics_bytes / 2**20:.0f} MiB OpenMetrics): generated in {self.generate_seconds:.1f} s, "
                f"promtool {self.promtool_seconds:.1f} s, TSDB {self.tsdb_bytes / 2**20:.1f} MiB")


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


class _Fleet:
    """The fleet's traffic as a linear function of its entry services' rates: each entry's unit rate propagated
    once (`propagate_request_rates` is linear), so a step costs a few multiplications instead of a propagation."""

    def __init__(self, services: Sequence[ServiceSpec], regions: Sequence[str]) -> None:
        self.by_name = {s.name: s for s in services}
        self.edges = call_edges(services)
        self.share = 1.0 / max(1, len(regions))
        self.entries = [s for s in services if s.entry]
        self.nominal = served_rps_by_service(propagate_request_rates(
            entry_rps={s.name: s.entry.peak_rps * self.share for s in self.entries if s.entry}, edges=self.edges))
        self.unit_edges = {e.name: propagate_request_rates(entry_rps={e.name: 1.0}, edges=self.edges)
                           for e in self.entries}
        self.unit_served = {name: served_rps_by_service(rates) for name, rates in self.unit_edges.items()}

    def entry_rps(self, *, region: str, t: int) -> dict[str, float]:
        return {s.name: s.entry.peak_rps * self.share * diurnal_factor_at(
            unix_seconds=t, region=region, profile=s.entry.profile) for s in self.entries if s.entry}

    def served(self, entry: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, rps in entry.items():
            for service, unit in self.unit_served[name].items():
                out[service] = out.get(service, 0.0) + rps * unit
        return out

    def edge_rps(self, entry: dict[str, float]) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for name, rps in entry.items():
            for edge, unit in self.unit_edges[name].items():
                out[edge] = out.get(edge, 0.0) + rps * unit
        return out


class HistoryWriter:
    """Writes the history window by window (e.g. a day per file), series by series, each in time order; counters
    continue across windows. Usage series (`container_cpu_usage_seconds_total`, `container_memory_working_set_bytes`)
    at `step_seconds`, the request counters and kube-state-metrics series at `coarse_step_seconds`."""

    def __init__(self, *, services: Sequence[ServiceSpec], regions: Sequence[str],
                 pods_by_region: Mapping[str, Sequence[HistoricalPod]] | None = None, step_seconds: int = 30,
                 coarse_step_seconds: int = 300, kube_state_by_region: Mapping[str, RegionSnapshot] | None = None
                 ) -> None:
        self.fleet = _Fleet(services, regions)
        self.regions = list(regions)
        self.step = step_seconds
        self.coarse = max(coarse_step_seconds, step_seconds) // step_seconds * step_seconds
        self.kube_state = dict(kube_state_by_region or {})
        self.cpu_totals: dict[str, float] = {}
        self.request_totals: dict[str, float] = {}
        self.kube_state_series: set[str] = set()
        self.samples = 0
        self.rows: dict[str, list[tuple[str, str, ServiceSpec]]] = {}
        for region in regions:
            pods = (pods_by_region or {}).get(region) or synthetic_pods(services)
            self.rows[region] = [
                (p.pod, _labels((("region", region), ("cluster", region), ("job", f"sandbox-{region}"),
                                 ("namespace", p.namespace), ("pod", p.pod), ("container", p.container))),
                 self.fleet.by_name[p.app]) for p in pods if p.app in self.fleet.by_name]

    @property
    def series(self) -> int:
        return 2 * len(self.cpu_totals) + len(self.request_totals) + len(self.kube_state_series)

    def write_window(self, out: TextIO, *, start: int, end: int) -> int:
        """Samples of [start, end) (both multiples of the step); returns how many were written."""
        times = list(range(start, end, self.step))
        coarse_times = [t for t in times if t % self.coarse == 0]
        written = 0
        for region in self.regions:
            entries = [self.fleet.entry_rps(region=region, t=t) for t in times]
            served = [self.fleet.served(e) for e in entries]
            written += self._usage(out, region, times, served)
            coarse_entries = [e for t, e in zip(times, entries, strict=True) if t % self.coarse == 0]
            written += self._requests(out, region, coarse_times, coarse_entries)
            written += self._kube_state(out, region, coarse_times)
        self.samples += written
        return written

    def _usage(self, out: TextIO, region: str, times: list[int], served: list[dict[str, float]]) -> int:
        pods_per_app: dict[str, int] = {}
        for _pod, _labels_text, s in self.rows[region]:
            pods_per_app[s.name] = pods_per_app.get(s.name, 0) + 1
        written = 0
        for pod, labels, s in self.rows[region]:
            nominal = self.fleet.nominal.get(s.name, 0.0) / max(1, s.replicas)
            total = self.cpu_totals.get(labels, 0.0)
            cpu_lines, memory_lines = [], []
            for t, rps in zip(times, served, strict=True):
                usage = pod_usage(
                    rps_per_pod=rps.get(s.name, 0.0) / pods_per_app[s.name], nominal_peak_rps_per_pod=nominal,
                    cpu_request_cores=s.cpu_request_millicores / 1000, cpu_limit_cores=s.cpu_limit_millicores / 1000,
                    memory_request_bytes=s.memory_request_mib * MIB, memory_limit_bytes=s.memory_limit_mib * MIB,
                    cpu_utilization_at_peak=s.cpu_utilization_at_peak,
                    memory_utilization_at_peak=s.memory_utilization_at_peak,
                    wobble=wobble(key=pod, unix_seconds=t),
                )
                total += usage.cpu_cores * self.step
                cpu_lines.append(f"{total:.3f} {t}")
                memory_lines.append(f"{usage.memory_bytes:.0f} {t}")
            self.cpu_totals[labels] = total
            cpu_prefix = f"container_cpu_usage_seconds_total{{{labels}}} "
            memory_prefix = f"container_memory_working_set_bytes{{{labels}}} "
            out.write("".join(f"{cpu_prefix}{v}\n" for v in cpu_lines))
            out.write("".join(f"{memory_prefix}{v}\n" for v in memory_lines))
            written += 2 * len(times)
        return written

    def _requests(self, out: TextIO, region: str, times: list[int], entries: list[dict[str, float]]) -> int:
        by_name = self.fleet.by_name
        per_time = [self.fleet.edge_rps(e) for e in entries]
        written = 0
        for source, destination in sorted({edge for rates in per_time for edge in rates}):
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
                total = self.request_totals.get(labels, 0.0)
                lines = []
                for t, rates in zip(times, per_time, strict=True):
                    total += rates.get((source, destination), 0.0) * ratio * self.coarse
                    lines.append(f"istio_requests_total{{{labels}}} {total:.0f} {t}\n")
                self.request_totals[labels] = total
                out.write("".join(lines))
                written += len(lines)
        return written

    def _kube_state(self, out: TextIO, region: str, times: list[int]) -> int:
        snapshot = self.kube_state.get(region)
        if snapshot is None or not times:
            return 0
        lines = [line for _family, line in kube_state_samples(snapshot, extra=(("job", f"sandbox-{region}"),))]
        lines += restart_samples(snapshot, extra=(("job", f"sandbox-{region}"),))
        self.kube_state_series.update(lines)
        for line in lines:
            out.write("".join(f"{line} {t}\n" for t in times))
        return len(lines) * len(times)


def write_history_openmetrics(
    out: TextIO,
    *,
    services: Sequence[ServiceSpec],
    regions: Sequence[str],
    pods_by_region: Mapping[str, Sequence[HistoricalPod]] | None = None,
    end_unix: float,
    days: float = 14.0,
    step_seconds: int = 300,
    coarse_step_seconds: int = 300,
    kube_state_by_region: Mapping[str, RegionSnapshot] | None = None,
) -> tuple[int, int]:
    """Write the whole history as one OpenMetrics stream (each series in time order, `# EOF` last);
    returns (samples, series). `backfill_history` writes it a day per file instead."""
    writer = HistoryWriter(services=services, regions=regions, pods_by_region=pods_by_region,
                           step_seconds=step_seconds, coarse_step_seconds=coarse_step_seconds,
                           kube_state_by_region=kube_state_by_region)
    start, end = _window(end_unix=end_unix, days=days, step=step_seconds)
    writer.write_window(out, start=start, end=end)
    out.write("# EOF\n")
    return writer.samples, writer.series


def _finish(converting: tuple[subprocess.Popen[str], Path], *, keep: bool) -> None:
    process, path = converting
    output, _ = process.communicate()
    if process.returncode != 0:
        raise HistoryError(f"promtool create-blocks-from openmetrics {path} failed ({process.returncode}): "
                           f"{output[-2000:]}")
    if not keep:
        path.unlink()


def _window(*, end_unix: float, days: float, step: int) -> tuple[int, int]:
    start = int((end_unix - days * 86400) // step * step)
    return start, int(end_unix // step * step) + step


def backfill_history(
    *,
    services: Sequence[ServiceSpec],
    regions: Sequence[str],
    tsdb_dir: Path,
    work_dir: Path,
    pods_by_region: Mapping[str, Sequence[HistoricalPod]] | None = None,
    days: float = 14.0,
    step_seconds: int = 30,
    coarse_step_seconds: int = 300,
    kube_state_by_region: Mapping[str, RegionSnapshot] | None = None,
    end_unix: float | None = None,
    keep_openmetrics: bool = False,
) -> HistoryResult:
    """Generate the history a UTC day per OpenMetrics file and turn each into TSDB blocks in `tsdb_dir`
    (Prometheus not running). promtool maps its input file, so a day per file bounds its memory (and the disk
    used: each file, `<work_dir>/history-YYYYMMDD.om`, is deleted once converted, and every one written is deleted when
    promtool fails or the backfill is interrupted, unless `keep_openmetrics`)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise HistoryError("promtool not found: apt-get install -y --no-install-recommends prometheus")
    end = end_unix if end_unix is not None else time.time() - 60
    work_dir.mkdir(parents=True, exist_ok=True)
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    writer = HistoryWriter(services=services, regions=regions, pods_by_region=pods_by_region,
                           step_seconds=step_seconds, coarse_step_seconds=coarse_step_seconds,
                           kube_state_by_region=kube_state_by_region)
    start, stop = _window(end_unix=end, days=days, step=step_seconds)
    generate = 0.0
    size = files = 0
    converting: tuple[subprocess.Popen[str], Path] | None = None  # promtool on the previous day, while we write this one
    started = time.monotonic()
    day = start - start % DAY
    written: list[Path] = []
    try:
        while day < stop:
            path = work_dir / f"history-{time.strftime('%Y%m%d', time.gmtime(day))}.om"
            written.append(path)
            writing = time.monotonic()
            with path.open("w", buffering=1 << 20) as out:
                writer.write_window(out, start=max(start, day), end=min(stop, day + DAY))
                out.write("# EOF\n")
            generate += time.monotonic() - writing
            size += path.stat().st_size
            files += 1
            if converting is not None:
                _finish(converting, keep=keep_openmetrics)
            # a day-aligned file with 24 h blocks makes one block per day
            converting = (subprocess.Popen(
                [promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h", str(path),
                 str(tsdb_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), path)
            day += DAY
        if converting is not None:
            _finish(converting, keep=keep_openmetrics)
    except BaseException:  # promtool failed, or interrupted: no promtool left running, no day file left behind
        if converting is not None and converting[0].poll() is None:
            converting[0].kill()
            converting[0].wait()
        if not keep_openmetrics:
            for path in written:
                path.unlink(missing_ok=True)
        raise
    return HistoryResult(
        samples=writer.samples, series=writer.series, start_unix=end - days * 86400, end_unix=end,
        openmetrics_bytes=size, generate_seconds=round(generate, 2),
        promtool_seconds=round(time.monotonic() - started - generate, 2),
        step_seconds=step_seconds, coarse_step_seconds=writer.coarse, files=files,
        tsdb_bytes=sum(f.stat().st_size for f in tsdb_dir.rglob("*") if f.is_file()),
    )
