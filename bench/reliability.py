"""Kill trials (issue 11): N runs of the shipped mutating runbooks, the worker kill -9'd at seeded random moments;
prints how many converged, the worker's writes counted in the kube-apiserver's own audit log (duplicated writes,
compensations) and the load average.

Everything is real: a two-region sandbox (kube-apiserver with its audit log, etcd, controller-manager, scheduler,
kwok), a Temporal dev server, the product's worker process (`python -m pitstop.workers.cli worker`, as the
`pitstop-worker` service account), and for canaries the traffic simulator and Prometheus. The harness and what
"converged" and "duplicated" mean: `sandbox/kill_trials.py`. CI runs 20 trials of the short runbooks
(tests/sandbox/test_kill_trials.py); this runs 50 including canaries by default.

    .venv/bin/python -m bench.reliability [--trials 50] [--seed 11] [--round-size 10] [--no-canary]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402

from pitstop.sandbox.binaries import ensure_binaries  # noqa: E402
from pitstop.sandbox.clusters import api_client, create_sandbox_clusters, delete_sandbox_clusters  # noqa: E402
from pitstop.sandbox.kill_trials import SHORT_KINDS, KillTrialReport, KillTrialSettings, TrialKind, run_kill_trials  # noqa: E402
from pitstop.sandbox.monitoring import MonitoringSettings, start_monitoring  # noqa: E402
from pitstop.sandbox.simulator import start_simulator_process  # noqa: E402
from pitstop.workers.devserver import DevServer, DevServerPorts  # noqa: E402

REGIONS = ["eu-central", "us-east"]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def trials(server: DevServer, settings: KillTrialSettings, clusters: object, workdir: Path) -> KillTrialReport:
    client = await Client.connect(server.address, data_converter=pydantic_data_converter)
    admin = {region: api_client(clusters=clusters, region=region) for region in REGIONS}  # type: ignore[arg-type]
    try:
        return await run_kill_trials(client=client, clusters=clusters, admin=admin, settings=settings,  # type: ignore[arg-type]
                                     work_dir=workdir, progress=lambda line: print(line, flush=True))
    finally:
        for api in admin.values():
            api.close()


def bench(settings: KillTrialSettings, workdir: Path) -> KillTrialReport:
    started = time.monotonic()
    binaries = ensure_binaries(progress=lambda line: print(line, flush=True))
    arguments = dict(regions=REGIONS, state_dir=workdir, bin_dir=binaries.bin_dir,
                     cluster_prefix=f"pitstop-bench-{uuid.uuid4().hex[:6]}")
    stack: list[object] = []
    try:
        clusters = create_sandbox_clusters(**arguments)  # type: ignore[arg-type]
        if TrialKind.CANARY in settings.kinds:
            simulator = start_simulator_process(kubeconfig=clusters.kubeconfig, contexts=REGIONS,
                                                log_path=workdir / "simulator.log", tick_seconds=0.5)
            stack.append(simulator)
            monitoring = start_monitoring(settings=MonitoringSettings(
                simulator_target=simulator.target, regions=REGIONS, scrape_interval="1s", evaluation_interval="1s"),
                state_dir=workdir / "monitoring")
            stack.append(monitoring)
            settings.prometheus_url = monitoring.prometheus_url
        server = DevServer(state_dir=workdir / "temporal", ports=DevServerPorts.free())
        server.start()
        stack.append(server)
        print(f"sandbox ready in {time.monotonic() - started:.0f}s (2 regions); load average {load()}", flush=True)
        return asyncio.run(trials(server, settings, clusters, workdir))
    finally:
        for component in reversed(stack):
            component.stop()  # type: ignore[attr-defined]
        delete_sandbox_clusters(**arguments)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--round-size", type=int, default=10, help="runs per round (one worker, killed twice per round)")
    parser.add_argument("--kills-per-round", type=int, default=2)
    parser.add_argument("--no-canary", action="store_true", help="only the short runbooks (as CI)")
    args = parser.parse_args()
    kinds = list(SHORT_KINDS) + ([] if args.no_canary else [TrialKind.CANARY])
    settings = KillTrialSettings(trials=args.trials, seed=args.seed, kinds=kinds, round_size=args.round_size,
                                 kills_per_round=args.kills_per_round, regions=REGIONS)
    print(f"load average at start: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pitstop-bench-") as tmp:
        report = bench(settings, Path(tmp))
    print(report.summary())
    print(f"load average at end: {load()}")
    sys.stdout.flush()
    os._exit(0 if report.converged == len(report.trials) and report.duplicated_writes == 0 else 1)


if __name__ == "__main__":
    main()
