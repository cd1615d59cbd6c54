"""Time-to-promote and time-to-rollback of a canary for a given analysis interval, next to Flagger's figures.

Runs the real `ProgressiveRelease` workflow on a real Temporal dev server, analysing against a real
Prometheus (scrape 1 s) that scrapes Istio request metrics split by the live route weights
(tests/integration/delivery_support.py: the cluster side is in memory, everything else is the product).

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
import tempfile
import threading
import time
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter

from pitstop.delivery.models import ReleaseOutcome
from pitstop.delivery.promql import QueryScope, success_rate_query
from pitstop.delivery.spec import RELEASE_WORKFLOW, ReleaseInput, ReleaseSpec
from tests.integration.delivery_support import NAMESPACE, SERVICE, mesh
from tests.integration.test_delivery_workflows import delivery_workers
from workers.devserver import DevServer, DevServerPorts

REGION = "eu-central"


def spec(interval: float, threshold: int, steps: list[int], version: str) -> ReleaseSpec:
    return ReleaseSpec.model_validate({
        "service": SERVICE, "namespace": NAMESPACE, "image": f"registry/{SERVICE}:{version}", "steps": steps,
        "warm_window": 0, "progress_deadline": 600,
        "analysis": {"interval": interval, "failure_threshold": threshold, "window": "5s"},
    })


async def bench(interval: float, threshold: int, steps: list[int], workdir: Path) -> None:
    server = DevServer(state_dir=workdir / "temporal", ports=DevServerPorts.free())
    server.start()
    try:
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        queue = f"bench-{uuid.uuid4().hex[:6]}"
        with mesh([REGION], workdir) as (fakes, metrics, prom):
            async with delivery_workers(client, queue, fakes, prom):
                fake = fakes[REGION]
                # --- a good release: time from the first canary weight to the promotion
                handle = await client.start_workflow(
                    RELEASE_WORKFLOW, ReleaseInput(release=spec(interval, threshold, steps, "v2"), region=REGION),
                    id=f"bench-good-{uuid.uuid4().hex[:6]}", task_queue=queue, result_type=ReleaseOutcome)
                outcome = await handle.result()
                first = next(t for t, n, _ in fake.calls if n == "set_routes")
                promoted = next(t for t, n, d in fake.calls if n == "set_routes" and "'canary': 100" in d)
                time_to_promote = promoted - first
                # --- a bad release: the new version fails 40 % of requests from the start
                fake.calls.clear()
                metrics.inject(REGION, "v3", 0.4)
                query = success_rate_query(QueryScope(service=SERVICE, namespace=NAMESPACE, version="v3", region=REGION, window="5s"))
                visible: list[float] = []

                def watch() -> None:
                    while not visible:
                        value = prom.query(query)
                        if value is not None and value < 99.0:
                            visible.append(time.monotonic())
                        time.sleep(0.05)

                threading.Thread(target=watch, daemon=True).start()
                bad = await client.start_workflow(
                    RELEASE_WORKFLOW, ReleaseInput(release=spec(interval, threshold, steps, "v3"), region=REGION),
                    id=f"bench-bad-{uuid.uuid4().hex[:6]}", task_queue=queue, result_type=ReleaseOutcome)
                try:
                    await bad.result()
                except WorkflowFailureError:
                    pass
                first_bad = next(t for t, n, _ in fake.calls if n == "set_routes")
                restored = next(t for t, n, _ in fake.calls if n == "restore")
    finally:
        server.stop()
    flagger_promote = interval * (len(steps) + 1)
    flagger_rollback = interval * threshold
    print(f"interval {interval:g}s, threshold {threshold}, steps {steps}, Prometheus scrape 1s")
    print(f"time-to-promote  (first canary weight -> 100% on the new version): {time_to_promote:6.2f}s"
          f"   Flagger: ~interval x (steps+1) = {flagger_promote:g}s   ({outcome.analysis_runs} analysis runs, 0 failed)")
    print(f"time-to-rollback (canary traffic starts -> traffic back on stable): {restored - first_bad:6.2f}s"
          f"   Flagger: interval x threshold = {flagger_rollback:g}s (+ time for the first failing data)")
    if visible:
        print(f"fault visible in Prometheus -> traffic back on stable:             {restored - visible[0]:6.2f}s"
              f"   bound: 2 x interval + scrape = {2 * interval + 1:g}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=2.0, help="analysis interval, seconds")
    parser.add_argument("--threshold", type=int, default=2, help="failed analysis runs before rollback")
    parser.add_argument("--steps", default="10,25,50,100", help="canary weights")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pitstop-bench-") as tmp:
        asyncio.run(bench(args.interval, args.threshold, [int(s) for s in args.steps.split(",")], Path(tmp)))
    os._exit(0)  # see STACK.md: short client scripts can abort at interpreter exit


if __name__ == "__main__":
    main()
