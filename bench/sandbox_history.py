"""Benchmark: what the history backfill costs `pitstop up`'s first start, usage step by usage step.

`pitstop up` (`sandbox.lifecycle.ensure_sandbox`) backfills 14 days of history once, into a TSDB that does not
exist yet, before it starts Prometheus: `sandbox.history.backfill_history` with the live fleet pods and the
regions' live objects (kube-state-metrics series), CPU and memory usage at its default step (30 s, a real scrape
resolution) and requests / kube-state-metrics every 300 s. The step is a parameter of `backfill_history`, not a
setting: `ensure_sandbox` always uses the default.

This benchmark does the same for the default sandbox (`Settings().sandbox`: its regions and services): real kwok
clusters (unique names, a temporary state dir), the fleet applied, its pods and objects listed once; then the
clusters are deleted (they idle during a real backfill) and each round runs `backfill_history` in a fresh process
at every step given (default 30 s, the current one, and 300 s, the step before issue 14), steps interleaved.
Per round: generation seconds, promtool seconds (beyond the generation it overlaps with), wall seconds, TSDB and
OpenMetrics size, peak RSS of the generating process and of promtool, the temporary day files left behind (must
be 0), and the load average. Then the median over rounds of each step, side by side.

    nice -n 10 .venv/bin/python -m bench.sandbox_history [--rounds 3] [--steps 30,300] [--services N]

Stops and deletes everything it started (clusters, temporary files), also on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.sandbox_fleet import stop_leftover_processes
from pitstop.config import Settings
from pitstop.sandbox.binaries import ensure_binaries
from pitstop.sandbox.cluster_watch import RegionSnapshot
from pitstop.sandbox.clusters import api_client, create_sandbox_clusters, delete_sandbox_clusters
from pitstop.sandbox.fleet import ServiceSpec, apply_fleet, expand_fleet, load_fleet_spec
from pitstop.sandbox.history import HistoricalPod, backfill_history
from pitstop.sandbox.kube_state_metrics import live_snapshot
from pitstop.sandbox.lifecycle import wait_for_fleet_pods


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def live_fleet(services: Sequence[ServiceSpec], regions: list[str], state_dir: Path
               ) -> tuple[dict[str, list[HistoricalPod]], dict[str, RegionSnapshot]]:
    """Clusters with the fleet, listed as `ensure_sandbox` lists them for the backfill; the clusters are deleted."""
    binaries = ensure_binaries(progress=lambda line: None)
    arguments: dict[str, Any] = dict(regions=regions, state_dir=state_dir, bin_dir=binaries.bin_dir,
                                     cluster_prefix=f"pitstop-bench-{uuid.uuid4().hex[:6]}")
    started = time.monotonic()
    try:
        clusters = create_sandbox_clusters(**arguments)
        pods, snapshots = {}, {}
        for region in regions:
            client = api_client(clusters=clusters, region=region)
            try:
                apply_fleet(api_client=client, region=region, services=services)
                pods[region] = wait_for_fleet_pods(client, expected=sum(s.replicas for s in services),
                                                   progress=print)
                snapshots[region] = live_snapshot(client, region=region)
            finally:
                client.close()
        print(f"clusters + fleet ({len(services)} services, {', '.join(f'{r} {len(p)} pods' for r, p in pods.items())})"
              f" in {time.monotonic() - started:.0f} s; load {load()}", flush=True)
        return pods, snapshots
    finally:
        try:
            delete_sandbox_clusters(**arguments)
        finally:
            stop_leftover_processes(arguments["cluster_prefix"])


def one_round(services: Sequence[ServiceSpec], regions: list[str], pods: Mapping[str, Sequence[HistoricalPod]],
              snapshots: Mapping[str, RegionSnapshot], days: float, step: int, work: str, queue: Any) -> None:
    """In a fresh process (so peak RSS is this backfill's): one backfill as `ensure_sandbox` runs it."""
    work_dir = Path(work)
    started = time.monotonic()
    result = backfill_history(services=services, regions=regions, tsdb_dir=work_dir / "prometheus-data",
                              work_dir=work_dir, pods_by_region=pods, kube_state_by_region=snapshots, days=days,
                              step_seconds=step)
    queue.put({**result.model_dump(), "wall_seconds": time.monotonic() - started,
               "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "promtool_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
               "left_behind": sorted(p.name for p in work_dir.glob("*.om"))})


FIGURES = (("generation s", "generate_seconds", 1), ("promtool s (beyond generation)", "promtool_seconds", 1),
           ("backfill wall s", "wall_seconds", 1), ("samples (M)", "samples", 1e-6),
           ("OpenMetrics written (MiB, a day at a time)", "openmetrics_bytes", 2**-20),
           ("TSDB (MiB)", "tsdb_bytes", 2**-20), ("peak RSS generating process (MiB)", "rss_mib", 1),
           ("peak RSS promtool (MiB)", "promtool_rss_mib", 1))


def main() -> None:
    defaults = Settings().sandbox
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=defaults.services)
    parser.add_argument("--regions", default=",".join(defaults.regions))
    parser.add_argument("--steps", default="30,300", help="usage steps (seconds) to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--days", type=float, default=14.0)
    options = parser.parse_args()
    regions, steps = options.regions.split(","), [int(s) for s in options.steps.split(",")]
    services = expand_fleet(load_fleet_spec(), services=options.services)
    print(f"load average before: {load()}", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind through the finally blocks
    state = Path(tempfile.mkdtemp(prefix="pitstop-bench-history-"))
    try:
        pods, snapshots = live_fleet(services, regions, state)
        context = multiprocessing.get_context("spawn")
        runs: dict[int, list[dict[str, Any]]] = {step: [] for step in steps}
        for n in range(options.rounds):
            for step in steps:
                work = state / f"round-{n}-{step}"
                queue = context.Queue()
                child = context.Process(target=one_round, args=(services, regions, pods, snapshots, options.days,
                                                                step, str(work), queue))
                child.start()
                try:
                    figures = queue.get(timeout=3600)
                finally:
                    child.join(60)
                    if child.is_alive():
                        child.kill()
                shutil.rmtree(work, ignore_errors=True)
                runs[step].append(figures)
                print(f"round {n + 1}, usage step {step} s: generation {figures['generate_seconds']:.1f} s, promtool"
                      f" +{figures['promtool_seconds']:.1f} s, wall {figures['wall_seconds']:.1f} s,"
                      f" {figures['files']} day files {figures['openmetrics_bytes'] / 2**20:.0f} MiB,"
                      f" TSDB {figures['tsdb_bytes'] / 2**20:.0f} MiB, peak RSS {figures['rss_mib']:.0f} MiB"
                      f" (promtool {figures['promtool_rss_mib']:.0f} MiB), day files left behind:"
                      f" {len(figures['left_behind'])}; load {load()}", flush=True)
        print(f"\nmedian of {options.rounds} rounds, {len(services)} services x {len(regions)} regions x "
              f"{options.days:g} days (requests and kube-state-metrics every 300 s at every step):")
        print(f"{'':44s}" + "".join(f"{f'usage every {s} s':>22s}" for s in steps))
        for label, key, scale in FIGURES:
            print(f"{label:44s}" + "".join(
                f"{statistics.median(r[key] for r in runs[s]) * scale:>22.1f}" for s in steps))
        print(f"load average after: {load()}")
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
