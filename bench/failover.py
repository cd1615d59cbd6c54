"""RTO of a region failover in the sandbox: first bad evaluation -> survivors' SLO verified, median of rounds.

Everything is real, as in tests/sandbox/test_failover.py (whose helpers this reuses): two kwok-backed clusters
of its own, a small fleet, the global traffic authority, the simulator, Prometheus scraping every 1 s, a
Temporal dev server and the product's worker (as the worker's service account under deploy/rbac.yaml). Each
round fails `us-east` hard (fault + kube-apiserver stopped, `sandbox.region_outage`), runs `failover-region`,
restores the region and runs `failback-region`, with sandbox-speed inputs (1 s between evaluations, 5 s rate
windows, 3 bad evaluations to confirm).

Figures per round: RTO (the failover run's `verify.met_at - confirm.first_bad_at`), the time from the outage
to the end of the failover run, and the failback run's duration; medians at the end, with the load average.

    .venv/bin/python -m bench.failover --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402

from pitstop.sandbox.binaries import ensure_binaries  # noqa: E402
from pitstop.sandbox.clusters import create_sandbox_clusters, delete_sandbox_clusters  # noqa: E402
from pitstop.sandbox.region_outage import fail_region, restore_region  # noqa: E402
from tests.sandbox.step_library_support import WORKER_SA, impersonate, product_workers  # noqa: E402
from tests.sandbox.test_failover import (  # noqa: E402
    FAILING,
    FAILOVER_FAST,
    FAST,
    REGIONS,
    FailoverSandbox,
    build_failover_sandbox_parts,
    run,
    wait_for_request_rates,
    worker_settings,
)
from pitstop.workers.clients import build_activity_clients  # noqa: E402
from pitstop.workers.devserver import DevServer, DevServerPorts  # noqa: E402
from pitstop.workflows import ALL_WORKFLOWS  # noqa: E402


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} cores)"


async def one_round(client: Client, fs: FailoverSandbox) -> tuple[float, float, float]:
    outage = time.monotonic()
    fail_region(clusters=fs.clusters, region=FAILING, api_client=fs.admin[FAILING], simulator_url=fs.simulator.url)
    try:
        failover = await run(client, fs, "failover-region",
                             {**FAILOVER_FAST, "region": FAILING, "required_bad": 3, "max_confirm_evaluations": 10})
        failed_over = time.monotonic() - outage
    finally:
        restore_region(clusters=fs.clusters, region=FAILING, api_client=fs.admin[FAILING])
    rto = failover.outputs["verify"]["met_at"] - failover.outputs["confirm"]["first_bad_at"]
    started = time.monotonic()
    await run(client, fs, "failback-region", {
        **FAST, "region": FAILING, "weights": failover.outputs["weights"]["weights"],
        "prescaled": failover.outputs["capacity"]["items"], "required_healthy": 3, "required_verified": 2})
    return rto, failed_over, time.monotonic() - started


async def rounds(fs: FailoverSandbox, server: DevServer, count: int, workdir: Path) -> list[tuple[float, float, float]]:
    client = await Client.connect(server.address, data_converter=pydantic_data_converter)
    settings = worker_settings(fs, workdir / "worker")
    clients = impersonate(build_activity_clients(settings, temporal=client, require_clusters=True), WORKER_SA)
    await wait_for_request_rates(fs)
    figures = []
    async with product_workers(client, settings, clients, ALL_WORKFLOWS):
        for index in range(count):
            rto, failed_over, failback = await one_round(client, fs)
            figures.append((rto, failed_over, failback))
            print(f"round {index + 1}: RTO {rto:.1f}s; outage -> failover done {failed_over:.1f}s; "
                  f"failback {failback:.1f}s; load average {load()}", flush=True)
    return figures


def bench(count: int, workdir: Path) -> list[tuple[float, float, float]]:
    binaries = ensure_binaries(progress=lambda line: print(line, flush=True))
    arguments = dict(regions=REGIONS, state_dir=workdir, bin_dir=binaries.bin_dir,
                     cluster_prefix=f"pitstop-bench-fo{uuid.uuid4().hex[:4]}")
    started = time.monotonic()
    stack: list[object] = []
    try:
        clusters = create_sandbox_clusters(**arguments)  # type: ignore[arg-type]
        _services, admin, authority, simulator, monitoring = parts = build_failover_sandbox_parts(clusters, workdir)
        stack += [authority, simulator, monitoring]
        server = DevServer(state_dir=workdir / "temporal", ports=DevServerPorts.free())
        server.start()
        stack.append(server)
        fs = FailoverSandbox(clusters, *parts, task_queue=f"bench-failover-{uuid.uuid4().hex[:6]}")
        print(f"sandbox ready in {time.monotonic() - started:.0f}s (2 regions); load average {load()}", flush=True)
        try:
            return asyncio.run(rounds(fs, server, count, workdir))
        finally:
            for api in admin.values():
                api.close()
    finally:
        for component in reversed(stack):
            component.stop()  # type: ignore[attr-defined]
        delete_sandbox_clusters(**arguments)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pitstop-bench-") as tmp:
        figures = bench(args.rounds, Path(tmp))
    rto, failed_over, failback = (statistics.median(f[i] for f in figures) for i in range(3))
    print(f"median of {len(figures)} rounds: RTO {rto:.1f}s (goal <= 60 s); outage -> failover done {failed_over:.1f}s;"
          f" failback {failback:.1f}s")
    print(f"load average at end: {load()}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
