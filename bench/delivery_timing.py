"""Time-to-promote and time-to-rollback of a canary for a given analysis interval, next to Flagger's figures.

Everything is real: a one-region sandbox (kube-apiserver + kwok with Istio CRDs, a small fleet), the traffic
simulator splitting Istio request metrics by the live VirtualService weights, Prometheus scraping it every 1 s,
a Temporal dev server and the product's worker (`activities.build_activities`, `workers.worker.build_workers`)
running `ProgressiveRelease`. One good release, then one bad release (the new version fails 40 % of requests,
a `sandbox.faults.BadRelease`). Times are read from the live VirtualService, sampled every 50 ms.

Flagger's documented behaviour (docs.flagger.app, "Canary analysis"): the canary advances one step weight
per interval when the checks pass, so promotion takes about interval x (steps + 1) (the last iteration
promotes); a failing canary is rolled back once the failed checks reach the threshold, i.e. after
interval x threshold.

    .venv/bin/python -m bench.delivery_timing --interval 2 --threshold 2 --steps 10,25,50,100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from kubernetes.config import new_client_from_config  # noqa: E402
from temporalio.client import Client, WorkflowFailureError  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402

from pitstop.delivery.models import ReleaseOutcome  # noqa: E402
from pitstop.delivery.promql import QueryScope, success_rate_query  # noqa: E402
from pitstop.delivery.inputs import ReleaseInput  # noqa: E402
from pitstop.delivery.spec import RELEASE_WORKFLOW  # noqa: E402
from pitstop.sandbox.binaries import ensure_binaries  # noqa: E402
from pitstop.sandbox.clusters import create_sandbox_clusters, delete_sandbox_clusters  # noqa: E402
from pitstop.sandbox.faults import BadRelease, clear_fault, inject_fault  # noqa: E402
from pitstop.sandbox.fleet import apply_fleet, expand_fleet, load_fleet_spec  # noqa: E402
from pitstop.sandbox.monitoring import MonitoringSettings, start_monitoring  # noqa: E402
from pitstop.sandbox.simulator import start_simulator_process  # noqa: E402
from tests.fixtures.monitoring import wait_for_fleet_available  # noqa: E402
from tests.sandbox.test_delivery_resilience import WeightRecorder  # noqa: E402
from tests.sandbox.test_delivery_sandbox import product_worker, spec_for  # noqa: E402
from pitstop.workers.devserver import DevServer, DevServerPorts  # noqa: E402

REGION = "eu-central"
SERVICES = 12


def first_after(samples: list[tuple[float, int | None]], after: float, predicate: object) -> float:
    return next(t for t, w in samples if t > after and predicate(w))  # type: ignore[operator]


async def releases(sandbox: SimpleNamespace, server: DevServer, interval: float, threshold: int, steps: list[int]) -> None:
    client = await Client.connect(server.address, data_converter=pydantic_data_converter)
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    good_service = next(s for s in sandbox.services if s.name == "telematics-ingest")
    bad_service = next(s for s in sandbox.services if s.name == "api-gateway")
    analysis = {"interval": interval, "failure_threshold": threshold, "window": "5s", "latency_p95_max_ms": 1000}
    async with product_worker(client, sandbox, queue):
        # --- a good release: time from the first canary weight to 100 % on the new version
        recorder = WeightRecorder(sandbox, REGION, good_service)
        handle = await client.start_workflow(
            RELEASE_WORKFLOW, ReleaseInput(release=spec_for(good_service, "v2.0.0", steps=steps, progress_deadline=600,
                                                            analysis=analysis), region=REGION),
            id=f"bench-good-{uuid.uuid4().hex[:6]}", task_queue=queue, result_type=ReleaseOutcome)
        outcome = await handle.result()
        recorder.stop()
        first = first_after(recorder.samples, 0, lambda w: (w or 0) > 0)
        time_to_promote = first_after(recorder.samples, first, lambda w: w == 100) - first
        # --- a bad release: the new version fails 40 % of requests from the start
        api = sandbox.api_clients[REGION]
        fault = inject_fault(api_client=api, fault=BadRelease(service=bad_service.name, version="v9.9.9", error_ratio=0.4)).id
        query = success_rate_query(QueryScope(service=bad_service.name, namespace=bad_service.team, version="v9.9.9",
                                              region=REGION, window="5s"))
        visible: list[float] = []
        stop = threading.Event()

        def watch() -> None:  # when does Prometheus first show the fault?
            while not visible and not stop.is_set():
                try:
                    result = httpx.get(f"{sandbox.monitoring.prometheus_url}/api/v1/query", params={"query": query},
                                       timeout=2).json()["data"]["result"]
                    if result and float(result[0]["value"][1]) < 99.0:
                        visible.append(time.monotonic())
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()
        recorder = WeightRecorder(sandbox, REGION, bad_service)
        try:
            bad = await client.start_workflow(
                RELEASE_WORKFLOW, ReleaseInput(release=spec_for(bad_service, "v9.9.9", steps=steps, progress_deadline=600,
                                                                analysis=analysis), region=REGION),
                id=f"bench-bad-{uuid.uuid4().hex[:6]}", task_queue=queue, result_type=ReleaseOutcome)
            try:
                await bad.result()
            except WorkflowFailureError:
                pass
        finally:
            stop.set()
            recorder.stop()
            clear_fault(api_client=api, fault_id=fault)
        first_bad = first_after(recorder.samples, 0, lambda w: (w or 0) > 0)
        restored = first_after(recorder.samples, first_bad, lambda w: w == 0)
    flagger_promote = interval * (len(steps) + 1)
    flagger_rollback = interval * threshold
    print(f"interval {interval:g}s, threshold {threshold}, steps {steps}, Prometheus scrape 1s, sandbox region {REGION}")
    print(f"time-to-promote  (first canary weight -> 100% on the new version): {time_to_promote:6.2f}s"
          f"   Flagger: ~interval x (steps+1) = {flagger_promote:g}s   ({outcome.analysis_runs} analysis runs,"
          f" {outcome.failed_runs} failed)")
    print(f"time-to-rollback (canary traffic starts -> traffic back on stable): {restored - first_bad:6.2f}s"
          f"   Flagger: interval x threshold = {flagger_rollback:g}s (+ time for the first failing data)")
    if visible:
        print(f"fault visible in Prometheus -> traffic back on stable:             {restored - visible[0]:6.2f}s"
              f"   bound: 2 x interval + scrape = {2 * interval + 1:g}s")


@contextmanager
def one_region_sandbox(workdir: Path, *, services: int = SERVICES) -> Iterator[tuple[SimpleNamespace, DevServer]]:
    """A one-region sandbox (cluster, fleet, simulator, Prometheus scraping every 1 s) and a Temporal dev server;
    everything is stopped and the cluster deleted on the way out (also bench/gitops.py's)."""
    started = time.monotonic()
    binaries = ensure_binaries(progress=lambda line: print(line, flush=True))
    arguments = dict(regions=[REGION], state_dir=workdir, bin_dir=binaries.bin_dir,
                     cluster_prefix=f"pitstop-bench-{uuid.uuid4().hex[:6]}")
    stack: list[object] = []
    try:
        clusters = create_sandbox_clusters(**arguments)  # type: ignore[arg-type]
        api = new_client_from_config(config_file=str(clusters.kubeconfig), context=clusters.contexts[REGION])
        fleet = expand_fleet(load_fleet_spec(), services=services)
        apply_fleet(api_client=api, region=REGION, services=fleet)
        wait_for_fleet_available(api_client=api, expected_deployments=len(fleet) + sum(1 for s in fleet if s.canary_version))
        simulator = start_simulator_process(kubeconfig=clusters.kubeconfig, contexts=[REGION],
                                            log_path=workdir / "simulator.log", tick_seconds=0.5)
        stack.append(simulator)
        monitoring = start_monitoring(settings=MonitoringSettings(
            simulator_target=simulator.target, regions=[REGION], scrape_interval="1s", evaluation_interval="1s"),
            state_dir=workdir / "monitoring")
        stack.append(monitoring)
        server = DevServer(state_dir=workdir / "temporal", ports=DevServerPorts.free())
        server.start()
        stack.append(server)
        time.sleep(3)  # a few scrapes, so rate() has data
        print(f"sandbox ready in {time.monotonic() - started:.0f}s ({services} services, 1 region)", flush=True)
        yield SimpleNamespace(clusters=clusters, monitoring=monitoring, api_clients={REGION: api}, services=fleet), server
    finally:
        for component in reversed(stack):
            component.stop()  # type: ignore[attr-defined]
        delete_sandbox_clusters(**arguments)  # type: ignore[arg-type]


def bench(interval: float, threshold: int, steps: list[int], workdir: Path) -> None:
    with one_region_sandbox(workdir) as (sandbox, server):
        asyncio.run(releases(sandbox, server, interval, threshold, steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=2.0, help="analysis interval, seconds")
    parser.add_argument("--threshold", type=int, default=2, help="failed analysis runs before rollback")
    parser.add_argument("--steps", default="10,25,50,100", help="canary weights")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pitstop-bench-") as tmp:
        bench(args.interval, args.threshold, [int(s) for s in args.steps.split(",")], Path(tmp))
    sys.stdout.flush()
    os._exit(0)  # see STACK.md: short client scripts can abort at interpreter exit


if __name__ == "__main__":
    main()
