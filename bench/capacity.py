"""Benchmark: the capacity report end to end at fleet scale - range queries + compute + report.

2 regions x 500 services (defaults; `sandbox.fleet.expand_fleet`, ~970 pods per region) with 14 days of usage
history: the benchmark writes the fleet's CPU and memory series (`sandbox.history.write_history_openmetrics`,
Istio series left out) at a COARSER step than a real scrape and the sandbox's own backfill (30 s): default 1800 s,
--history-step, as issue 14 allows for this bench (at 30 s the OpenMetrics would be ~30 GiB; it prints the step,
why, and the extrapolated size), into a Prometheus TSDB of its own with `promtool tsdb create-blocks-from
openmetrics`, starts a real Prometheus on it, then per round, in a fresh process: for each region
`activities.capacity.collect_usage` (the `capacity.collect` step's code after its Kubernetes lists: per-namespace
batched range queries through `PrometheusProvider`, streaming into the accumulator, strategies, forecasts) and
`write_report` (node plans, chargeback, Markdown, JSON, HTML).

The Deployments, nodes and quotas are the sandbox's manifests (`sandbox.fleet.deployment_manifest`,
`sandbox.cluster_contents`) parsed by the same pure functions the step uses (`pitstop.capacity.cluster`), without
an API server: 4 paged lists per region are not what this measures. Prints: history generation and TSDB size,
per round seconds (per region and report) and peak RSS of the round's process, the median over rounds,
Prometheus' peak RSS, load average before and after.

    .venv/bin/python -m bench.capacity [--services 500] [--regions eu-central,us-east] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import math
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pitstop.activities.capacity import ClusterObjects, collect_usage, write_report  # noqa: E402
from pitstop.activities.metrics import PrometheusProvider  # noqa: E402
from pitstop.capacity import cluster  # noqa: E402
from pitstop.capacity.collection import RegionCapacity  # noqa: E402
from pitstop.steps.capacity import CollectArgs, ReportArgs  # noqa: E402
from pitstop.sandbox.cluster_contents import TeamQuota, node_manifests, team_namespace_manifests  # noqa: E402
from pitstop.sandbox.fleet import ServiceSpec, deployment_manifest, expand_fleet, load_fleet_spec  # noqa: E402
from pitstop.sandbox.history import backfill_history, write_history_openmetrics  # noqa: E402
from pitstop.sandbox.monitoring import free_loopback_port  # noqa: E402


class UsageOnly:
    """A text sink passing only the container usage series (and the EOF) to the file."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def write(self, text: str) -> int:
        kept = "\n".join(line for line in text.split("\n") if not line.startswith("istio_"))
        return int(self.out.write(kept))


SANDBOX_STEP = inspect.signature(backfill_history).parameters["step_seconds"].default  # usage step of `pitstop up`


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def generate_tsdb(services: list[ServiceSpec], regions: list[str], work: Path, step: int) -> float:
    promtool = shutil.which("promtool")
    if promtool is None:
        sys.exit("promtool not found: apt-get install -y --no-install-recommends prometheus")
    end = time.time() - 120
    path, tsdb = work / "history.om", work / "tsdb"
    started = time.monotonic()
    with path.open("w", buffering=1 << 20) as out:
        samples, _ = write_history_openmetrics(UsageOnly(out), services=services, regions=regions,  # type: ignore[arg-type]
                                               end_unix=end, days=14, step_seconds=step)
    generated = time.monotonic()
    done = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=162h",
                           str(path), str(tsdb)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"promtool failed: {done.stderr[-2000:]}")
    size = sum(p.stat().st_size for p in tsdb.rglob("*") if p.is_file())
    written = path.stat().st_size
    print(f"history: {len(services)} services x {len(regions)} regions, 14 days at a {step} s step: generated"
          f" {written / 2**20:.0f} MiB OpenMetrics in {generated - started:.1f} s, promtool"
          f" {time.monotonic() - generated:.1f} s, TSDB {size / 2**20:.0f} MiB", flush=True)
    if step > SANDBOX_STEP:
        print(f"history step: {step} s, coarser than the {SANDBOX_STEP} s of the sandbox's backfill (`pitstop up`, a real"
              f" scrape resolution), as issue 14 allows for this bench: at {SANDBOX_STEP} s this fleet's history would be"
              f" ~{written * step / SANDBOX_STEP / 2**30:.0f} GiB of OpenMetrics (extrapolated from the file above) and"
              f" {step // SANDBOX_STEP} x the samples per range query; the collection queries at the same {step} s step"
              f" (rate window {2 * step} s), whose windows cover the whole history either way", flush=True)
    path.unlink()
    return end


def start_prometheus(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_loopback_port()
    config = work / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1m}\nscrape_configs: []\n")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
         "--storage.tsdb.retention.time=60d", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    sys.exit(f"Prometheus not ready within 120 s; log {work / 'prometheus.log'}")


def cluster_objects(services: list[ServiceSpec], region: str) -> ClusterObjects:
    deployments = [deployment_manifest(s, version=s.version, role="stable", replicas=s.replicas) for s in services]
    nodes = node_manifests(region=region)
    needed = sum(s.replicas * s.cpu_request_millicores for s in services) / 1000
    template = next(n for n in nodes if "m6i-2xlarge" in n["metadata"]["name"])
    for i in range(math.ceil(needed * 1.2 / 8)):  # like bench/sandbox_fleet.py: extra 8-CPU nodes so the fleet fits
        extra = {**template, "metadata": {**template["metadata"], "name": f"{region}-bench-{i}"}}
        nodes.append(extra)
    quotas = [m for m in team_namespace_manifests(quota=TeamQuota()) if m["kind"] == "ResourceQuota"]
    for q in quotas:
        q["metadata"]["namespace"] = q["metadata"].get("namespace", "")
    return ClusterObjects(workloads=cluster.workloads(deployments, []), nodes=cluster.nodes(nodes),
                          quotas=cluster.quotas(quotas))


def one_round(url: str, services: list[ServiceSpec], regions: list[str], end: float, step: int, out: Path,
              queue: Any) -> None:
    """In a fresh process: every region's collection, then the report; seconds and this process' peak RSS."""
    provider = PrometheusProvider(base_url=url, timeout_seconds=120)
    figures: dict[str, Any] = {}
    collected: list[RegionCapacity] = []
    for region in regions:
        objects = cluster_objects(services, region)
        args = CollectArgs(region=region, step_seconds=step, end_unix=end)
        started = time.monotonic()
        result = asyncio.run(collect_usage(objects, provider, args, progress=lambda line: None, started=started))
        figures[region] = (time.monotonic() - started, result.figures.range_queries, result.figures.samples,
                           len(result.workloads), len(result.model_dump_json()))
        collected.append(result)
    started = time.monotonic()
    report = write_report(ReportArgs(regions=collected), out)
    figures["report"] = time.monotonic() - started
    figures["html_bytes"] = report.html_bytes
    figures["gap"] = [(r.region, r.recommended.best.gap_percent if r.recommended.best else None) for r in report.report.regions]
    figures["mape"] = {f"{r.region}/{k}": v for r in report.report.regions for k, v in r.mape_percent.items() if k.endswith("/cpu")}
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--regions", default="eu-central,us-east")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--history-step", type=int, default=1800, help="seconds between generated samples")
    options = parser.parse_args()
    regions = options.regions.split(",")
    services = expand_fleet(load_fleet_spec(), services=options.services)
    print(f"load average before: {load()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="pitstop-bench-capacity-"))
    process = None
    try:
        end = generate_tsdb(services, regions, work, options.history_step)
        process, url = start_prometheus(work)
        context = multiprocessing.get_context("spawn")
        totals, peaks = [], []
        for n in range(options.rounds):
            queue = context.Queue()
            started = time.monotonic()
            child = context.Process(target=one_round, args=(url, services, regions, end, options.history_step,
                                                            work / f"report-{n}", queue))
            child.start()
            figures = queue.get(timeout=3600)
            child.join(60)
            total = time.monotonic() - started
            totals.append(total)
            peaks.append(figures["peak_rss_mib"])
            per_region = ", ".join(f"{r} {figures[r][0]:.1f} s ({figures[r][1]} range queries, {figures[r][2]} samples,"
                                   f" {figures[r][3]} workloads, step output {figures[r][4] / 1024:.0f} KiB)" for r in regions)
            print(f"round {n + 1}: {total:.1f} s end to end incl. process start; {per_region}; report {figures['report']:.1f} s"
                  f" (HTML {figures['html_bytes'] / 1024:.0f} KiB); peak RSS {figures['peak_rss_mib']:.0f} MiB;"
                  f" load {load()}", flush=True)
        print(f"node plan gap to lower bound (recommended requests): {figures['gap']}")
        mapes = sorted(figures["mape"].items())
        print("forecast back-test MAPE (cpu): " + ", ".join(f"{k} {v:.1f} %" for k, v in mapes))
        with open(f"/proc/{process.pid}/status") as status:
            hwm = next(line.split()[1] for line in status if line.startswith("VmHWM"))
        print(f"median of {options.rounds} rounds: {statistics.median(totals):.1f} s; peak RSS of the capacity process"
              f" {max(peaks):.0f} MiB; Prometheus peak RSS {int(hwm) / 1024:.0f} MiB; load average after: {load()}")
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
