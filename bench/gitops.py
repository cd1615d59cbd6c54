"""Benchmark: commit -> applied latency under a real Flux, and one canary release of a git-managed service.

A one-region sandbox (`bench.delivery_timing.one_region_sandbox`: kube-apiserver + kwok, a 12-service fleet, the
traffic simulator, Prometheus scraping every 1 s, a Temporal dev server), then Flux syncing team-analytics from the
sandbox's git server (`sandbox.flux.start_gitops`, the same code as the `flux_gitops` test fixture and
`pitstop sandbox up --gitops`: source-controller + kustomize-controller, GitRepository and Kustomization at
--interval, prune on, no webhook receiver, so Flux learns of a commit by polling).

- commit -> applied: per round, after a pause drawn uniformly from [0, interval) (seeded; without it every commit
  would follow the previous apply by the same phase of Flux's polling), a commit changing an annotation of a
  git-managed Deployment is pushed, then the cluster's Deployment is read every 0.1 s until it carries the new
  value (bounded: 3 x interval + 30 s); seconds from the push returning to the object changed, and to the
  Kustomization reporting the revision applied. Median and p90 over the rounds.
- a canary release (steps 10, 50, 100; analysis every 2 s) of that service through the product's worker with the
  `gitops` settings: seconds from the start to the workflow's result (the promotion is committed to git first),
  and from the start to Flux reporting the promotion commit applied.

    nice -n 10 .venv/bin/python -m bench.gitops [--interval 10s] [--rounds 5]

Stops everything it started (Flux, the git server, worker, dev server, simulator, Prometheus, the cluster), also on
errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import yaml
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.delivery_timing import REGION, one_region_sandbox
from pitstop.activities.kube_api import KubeJson
from pitstop.delivery.inputs import ReleaseInput
from pitstop.delivery.models import ReleaseOutcome
from pitstop.delivery.spec import RELEASE_WORKFLOW
from pitstop.sandbox.flux import service_path, start_gitops, wait_applied
from pitstop.sandbox.fleet import ServiceSpec
from pitstop.workers.devserver import DevServer
from tests.fixtures.flux import GIT_TOKEN_ENV, GITOPS_TEAM, FluxGitops
from tests.sandbox.test_delivery_sandbox import spec_for
from tests.sandbox.test_gitops_flux import gitops_worker

ANNOTATION = "bench.pitstop.dev/round"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def seconds(interval: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(interval[:-1]) * units[interval[-1]]


def annotated(text: str, name: str, value: str) -> str:
    """The service's multi-document manifest with `value` as ANNOTATION on its Deployment `name`."""
    documents = list(yaml.safe_load_all(text))
    for doc in documents:
        if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == name:
            doc["metadata"].setdefault("annotations", {})[ANNOTATION] = value
    return yaml.safe_dump_all(documents, sort_keys=False)


def commit_to_applied(flux: FluxGitops, service: ServiceSpec, value: str, timeout: float) -> tuple[float, float]:
    """(seconds to the cluster object, seconds to the Kustomization's applied revision) after pushing a commit."""
    workspace = flux.workspace(REGION)
    path = service_path(service)
    head = workspace.commit(lambda read: {path: annotated(read(path) or "", service.name, value)},
                            message=f"bench: {ANNOTATION}={value}", sign_off="pitstop bench")
    if head is None:
        raise RuntimeError(f"no commit made for {value}")
    pushed = time.monotonic()
    kube = KubeJson(flux.home_api)
    url = f"/apis/apps/v1/namespaces/{service.team}/deployments/{service.name}"
    while (kube.get(url)["metadata"].get("annotations") or {}).get(ANNOTATION) != value:
        if time.monotonic() - pushed > timeout:
            raise TimeoutError(f"{service.name} did not get {ANNOTATION}={value} within {timeout:g}s of the push")
        time.sleep(0.1)
    in_cluster = time.monotonic() - pushed
    wait_applied(flux.home_api, REGION, head, timeout=max(1.0, timeout - in_cluster))
    return in_cluster, time.monotonic() - pushed


async def release(flux: FluxGitops, sandbox: SimpleNamespace, server: DevServer, service: ServiceSpec,
                  timeout: float) -> tuple[float, float, ReleaseOutcome]:
    """(seconds to the workflow's result, seconds to Flux reporting the promotion commit applied, outcome)."""
    client = await Client.connect(server.address, data_converter=pydantic_data_converter)
    queue = f"bench-gitops-{uuid.uuid4().hex[:6]}"
    version = "v1.20.0"
    async with gitops_worker(client, sandbox, flux, queue):
        started = time.monotonic()
        handle = await client.start_workflow(
            RELEASE_WORKFLOW, ReleaseInput(release=spec_for(service, version, steps=[10, 50, 100]), region=REGION),
            id=f"bench-gitops-{uuid.uuid4().hex[:6]}", task_queue=queue, result_type=ReleaseOutcome)
        outcome = await handle.result()
        finished = time.monotonic() - started
    head = flux.workspace(REGION).sync()
    if head is None:
        raise RuntimeError("the region's repository is empty after the release")
    wait_applied(flux.home_api, REGION, head, timeout=timeout)
    return finished, time.monotonic() - started, outcome


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def bench(interval: str, rounds: int, workdir: Path) -> None:
    timeout = 3 * seconds(interval) + 30
    with one_region_sandbox(workdir) as (sandbox, server):
        services = [s for s in sandbox.services if s.team == GITOPS_TEAM]
        started = time.monotonic()
        gitops = start_gitops(kubeconfig=sandbox.clusters.kubeconfig, contexts=sandbox.clusters.contexts,
                              api_clients=sandbox.api_clients, services=services, state_dir=workdir / "flux",
                              interval=interval)
        os.environ[GIT_TOKEN_ENV] = gitops.git.token
        try:
            print(f"Flux up and seed commit applied in {time.monotonic() - started:.1f} s ({len(services)} services of "
                  f"{GITOPS_TEAM}); GitRepository and Kustomization interval {interval}; load {load()}", flush=True)
            flux = FluxGitops(sandbox=gitops, services=services, work_dir=workdir / "flux")
            service = services[0]
            to_object, to_revision = [], []
            pauses = random.Random(20261205)
            for n in range(rounds):
                time.sleep(pauses.uniform(0, seconds(interval)))
                in_cluster, applied = commit_to_applied(flux, service, f"{n}-{uuid.uuid4().hex[:6]}", timeout)
                to_object.append(in_cluster)
                to_revision.append(applied)
                print(f"round {n + 1}: commit -> {service.name} changed in the cluster {in_cluster:.1f} s, "
                      f"Kustomization reports it applied {applied:.1f} s; load {load()}", flush=True)
            print(f"commit -> applied over {rounds} rounds (interval {interval}): cluster object median "
                  f"{statistics.median(to_object):.1f} s, p90 {p90(to_object):.1f} s, max {max(to_object):.1f} s; "
                  f"Kustomization revision median {statistics.median(to_revision):.1f} s, p90 {p90(to_revision):.1f} s",
                  flush=True)
            finished, applied, outcome = asyncio.run(release(flux, sandbox, server, service, timeout))
            print(f"canary release of {service.name} (steps 10/50/100, analysis every 2 s) under Flux: promoted "
                  f"{outcome.promoted}, workflow result after {finished:.1f} s, promotion commit applied by Flux "
                  f"{applied:.1f} s after the start; load {load()}", flush=True)
        finally:
            os.environ.pop(GIT_TOKEN_ENV, None)
            gitops.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", default="10s", help="GitRepository and Kustomization interval (Flux duration)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pitstop-bench-gitops-") as tmp:
        bench(args.interval, args.rounds, Path(tmp))
    print(f"load average after: {load()}")
    sys.stdout.flush()
    os._exit(0)  # see STACK.md: short client scripts can abort at interpreter exit


if __name__ == "__main__":
    main()
