"""Releases from git under a real Flux (issue 18 item 3; docs/gitops.md "Releases from git"): source-controller +
kustomize-controller v1.9.6 sync team-analytics from the sandbox's git server, prune on, interval 10 s
(tests/fixtures/flux.py), the product's workers with the `GitReleaseWatch` workflow polling every second.

- a Deployment opted in in git (label `pitstop.dev/release-from-git`) is paused by pitstop, and Flux leaves it paused;
- a commit with a new image starts a release by itself: Flux applies the template to the paused Deployment, the real
  kube-controller-manager makes no new ReplicaSet (the stable pods keep the old image), the watcher starts a
  `ProgressiveRelease`, the candidate gets the canary weights, and the stable pods take the new image only once all
  traffic is on the candidate (promotion); the Deployment is paused again after it;
- a commit with a bad image (the simulator fails 40 % of its requests) starts a release that is rolled back: traffic
  back on stable, the revert committed to git and applied by Flux, and neither the next sync (a forced reconcile)
  nor the watcher brings the bad version back;
- under the `branch` revert policy the revert is proposed on a branch instead: git's default branch keeps the bad
  image, the paused Deployment's pods keep the good one, the rejected template is not released again, and merging
  the branch makes Flux apply the good template.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pitstop.activities.kube_api import KubeJson
from pitstop.config import GitReleaseSettings, Settings
from pitstop.delivery.models import ReleaseOutcome, ReleasePhase, ReleaseStatus
from pitstop.git_releases import GIT_RELEASE_WATCH_WORKFLOW, RELEASE_FROM_GIT_LABEL, GitReleaseWatchInput, WatchStatus
from pitstop.gitops import DeploymentEdit, edit_deployment_in_manifests
from pitstop.sandbox.faults import BadRelease, clear_fault, inject_fault
from pitstop.sandbox.flux import service_path, wait_applied
from pitstop.traffic_routes import service_route_weights
from pitstop.workers.clients import build_activity_clients
from pitstop.workflows.delivery import ProgressiveRelease
from pitstop.workflows.git_release_watch import GitReleaseWatch
from pitstop.workflows.lease import TargetLease

from .step_library_support import product_workers
from .test_delivery_sandbox import INTERVAL
from .test_gitops_flux import FLUX_INTERVAL, deduplicated, force_reconcile, is_subsequence

pytestmark = pytest.mark.sandbox

APPLY_BOUND = 3 * FLUX_INTERVAL + 10  # a commit is applied within about one interval; three, with slack
RELEASE_BOUND = 240.0
HISTORIES = Path(__file__).resolve().parents[1] / "histories"
WATCH_RUN = 30  # polls per watcher run: the test spans several runs, so the releases' ids carry over continue-as-new
RELEASE_DEFAULTS = {"steps": [10, 50, 100], "warm_window": 0, "progress_deadline": 120,
                    "analysis": {"interval": INTERVAL, "failure_threshold": 2, "window": "5s", "latency_p95_max_ms": 1000}}


def wait_for(what: str, check: Callable[[], Any], timeout: float, poll: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        time.sleep(poll)
    return value


def image_of(version: str, service: Any) -> str:
    return f"registry.pitstop.dev/{service.team}/{service.name}:{version}"


class Observer:
    """Samples (canary weight, Deployment template image, stable pods' images, paused) every 0.25 s in a thread."""

    def __init__(self, kube: KubeJson, service: Any) -> None:
        self.kube, self.service = kube, service
        self.seen: list[tuple[int | None, str, tuple[str, ...], bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int | None, str, tuple[str, ...], bool]:
        ns, name = self.service.team, self.service.name
        vs = self.kube.get(f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/{name}")
        dep = self.kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
        pods = self.kube.items(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"app={name},pitstop.dev/role=stable")
        images = tuple(sorted({p["spec"]["containers"][0]["image"] for p in pods
                               if not p["metadata"].get("deletionTimestamp")}))
        return (service_route_weights(vs["spec"]["http"], None).get("canary"),
                dep["spec"]["template"]["spec"]["containers"][0]["image"], images, bool(dep["spec"].get("paused")))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.append(self.sample())
            time.sleep(0.25)

    def __enter__(self) -> Observer:
        self.seen.append(self.sample())
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.seen.append(self.sample())


def commit(flux_gitops: Any, region: str, service: Any, change: Callable[[str], str], message: str) -> tuple[str, float]:
    """Commit `change` of the service's file to the region's repository and wait until Flux applied it."""
    workspace = flux_gitops.workspace(region)
    path = service_path(service)
    head = workspace.commit(lambda read: {path: change(read(path) or "")}, message=message, sign_off="the test")
    head = head or workspace.head()
    return head, wait_applied(flux_gitops.home_api, region, head, timeout=APPLY_BOUND)


def opted_in(text: str, *, name: str, value: bool) -> str:
    documents = [d for d in yaml.safe_load_all(text) if d]
    for doc in documents:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == name:
            labels = doc["metadata"].setdefault("labels", {})
            if value:
                labels[RELEASE_FROM_GIT_LABEL] = "true"
            else:
                labels.pop(RELEASE_FROM_GIT_LABEL, None)
    return yaml.safe_dump_all(documents, sort_keys=False)


def new_image(service: Any, version: str) -> Callable[[str], str]:
    edit = DeploymentEdit(images={service.name: image_of(version, service)}, template_labels={"version": version})
    return lambda text: edit_deployment_in_manifests(text, name=service.name, edit=edit)


@asynccontextmanager
async def watching(client: Client, sandbox: Any, flux_gitops: Any, task_queue: str, region: str,
                   revert: Literal["direct", "branch"] = "direct",
                   cli_server: Any = None) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    """The product's workers with releases from git configured, and the watcher started: by the test with
    `WATCH_RUN` polls per run, or with `cli_server` (the Temporal test server) as an operator would,
    `pitstop release watch-git --region R` (its id `git-release-watch`)."""
    regions = {r: {"kubeconfig": sandbox.clusters.kubeconfig, "context": c} for r, c in sandbox.clusters.contexts.items()}
    gitops = flux_gitops.settings().model_copy(
        update={"releases": GitReleaseSettings(poll_seconds=1.0, revert=revert, release=RELEASE_DEFAULTS)})
    settings = Settings.model_validate({"temporal": {"task_queue": task_queue}, "kubernetes": {"regions": regions},
                                        "prometheus": {"url": sandbox.monitoring.prometheus_url, "timeout_seconds": 2},
                                        "gitops": gitops})
    clients = build_activity_clients(settings, temporal=client, require_clusters=True)
    async with product_workers(client, settings, clients, (ProgressiveRelease, TargetLease, GitReleaseWatch)):
        if cli_server is None:
            watcher = await client.start_workflow(
                GIT_RELEASE_WATCH_WORKFLOW, GitReleaseWatchInput(regions=[region], poll_seconds=1.0, polls_per_run=WATCH_RUN),
                id=f"git-release-watch-{task_queue}", task_queue=task_queue)
        else:
            env = {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": cli_server.address, "PITSTOP_TEMPORAL__TASK_QUEUE": task_queue,
                   "PITSTOP_GITOPS__RELEASES__POLL_SECONDS": "1"}
            done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "pitstop.workers.cli", "release",
                                                            "watch-git", "--region", region],
                                           env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0 and "git-release-watch watching" in done.stdout, (done.stdout, done.stderr)
            watcher = client.get_workflow_handle("git-release-watch")
        try:
            yield watcher
        finally:
            await watcher.terminate("test over")


async def started_release(client: Client, watcher: WorkflowHandle[Any, Any], known: int, timeout: float) -> WorkflowHandle[Any, Any]:
    """The release the watcher started after its `known` first ones (bounded)."""
    deadline = time.monotonic() + timeout
    while len((status := await watcher.query("status", result_type=WatchStatus)).started) <= known:
        assert time.monotonic() < deadline, f"no release started within {timeout:g}s; watcher notes: {status.notes[-5:]}"
        await asyncio.sleep(0.5)
    return client.get_workflow_handle(status.started[known], result_type=ReleaseOutcome)


async def test_a_commit_releases_a_canary_and_a_rollback_reverts_git(
    temporal_client: Client, flux_gitops: Any, sandbox_monitoring: Any, task_queue: str
) -> None:
    sandbox = sandbox_monitoring
    region = flux_gitops.regions[0]
    service = flux_gitops.services[0]  # the session fleet's only team-analytics service; opted out again at the end
    with opted_in_service(sandbox, flux_gitops, region, service) as old_image:
        await releases_from_git(temporal_client, sandbox, flux_gitops, task_queue, region, service, old_image)


@contextmanager
def opted_in_service(sandbox: Any, flux_gitops: Any, region: str, service: Any) -> Iterator[str]:
    """`service` opted in to releases from git (a commit), its image then; afterwards opted out and unpaused, an
    ordinary git-managed Deployment for the rest of the session."""
    kube = KubeJson(sandbox.api_clients[region])
    dep_path = f"/apis/apps/v1/namespaces/{service.team}/deployments/{service.name}"
    image = kube.get(dep_path)["spec"]["template"]["spec"]["containers"][0]["image"]
    _, seconds = commit(flux_gitops, region, service, lambda t: opted_in(t, name=service.name, value=True), "opt in")
    print(f"\ngit release: opt-in commit applied by Flux in {seconds:.1f}s")
    try:
        yield image
    finally:
        commit(flux_gitops, region, service, lambda t: opted_in(t, name=service.name, value=False), "opt out")
        KubeJson(sandbox.api_clients[region], field_manager="pitstop").patch(
            dep_path, {"spec": {"paused": False}}, patch_type="merge")


async def releases_from_git(temporal_client: Client, sandbox: Any, flux_gitops: Any, task_queue: str, region: str,
                            service: Any, old_image: str) -> None:
    kube = KubeJson(sandbox.api_clients[region])
    dep_path = f"/apis/apps/v1/namespaces/{service.team}/deployments/{service.name}"
    async with watching(temporal_client, sandbox, flux_gitops, task_queue, region) as watcher:
        await paused_by_the_watcher(kube, dep_path, service)
        force_reconcile(flux_gitops.home_api, region)  # a full apply of git leaves pitstop's pause alone
        assert kube.get(dep_path)["spec"].get("paused") is True
        await promotes_by_itself(temporal_client, flux_gitops, watcher, kube, service, region, old_image)
        await bad_version_reverted(temporal_client, flux_gitops, watcher, sandbox.api_clients[region], service, region)
        ids = (await watcher.query("status", result_type=WatchStatus)).started
        for workflow_id, name in ((watcher.id, "watch"), (ids[0], "promoted"), (ids[1], "rolled-back")):
            await replayed(temporal_client, workflow_id, name)


async def paused_by_the_watcher(kube: KubeJson, dep_path: str, service: Any) -> None:
    started = time.monotonic()
    await asyncio.to_thread(wait_for, "pitstop pauses the opted-in Deployment",
                            lambda: kube.get(dep_path)["spec"].get("paused"), 30)
    print(f"git release: the watcher paused {service.name} {time.monotonic() - started:.1f}s after it started")


async def replayed(client: Client, workflow_id: str, record_as: str) -> None:
    """Replay the run's history with the current code; with PITSTOP_RECORD_HISTORIES=1 also save it as
    tests/histories/gitrelease-<record_as>.json for tests/replay/test_git_release_replay.py."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    replayer = Replayer(workflows=[GitReleaseWatch, ProgressiveRelease], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
    if os.environ.get("PITSTOP_RECORD_HISTORIES") == "1":
        (HISTORIES / f"gitrelease-{record_as}.json").write_text(history.to_json())


async def promotes_by_itself(client: Client, flux_gitops: Any, watcher: WorkflowHandle[Any, Any], kube: KubeJson,
                             service: Any, region: str, old_image: str) -> None:
    good = image_of("v2.0.0", service)
    with Observer(kube, service) as observer:
        pushed = time.monotonic()
        head, applied = await asyncio.to_thread(commit, flux_gitops, region, service, new_image(service, "v2.0.0"),
                                                "release v2.0.0")
        handle = await started_release(client, watcher, 0, APPLY_BOUND)
        release_started = time.monotonic() - pushed
        outcome = await asyncio.wait_for(handle.result(), RELEASE_BOUND)
        done = time.monotonic() - pushed
    history = deduplicated(observer.seen)
    print(f"git release: commit {head[:10]} pushed -> Flux applied {applied:.1f}s -> release started "
          f"{release_started:.1f}s -> promoted {done:.1f}s; observed (weight, template, stable pods, paused): {history}")
    assert outcome.promoted, outcome
    # Flux applied the new template to the paused Deployment and the stable pods kept the old image
    assert any(t == good and pods == (old_image,) and paused for _, t, pods, paused in history), history
    # the stable pods took the new image only with all traffic on the candidate (analysis passed, promotion)
    first_new = next(i for i, (_, _, pods, _) in enumerate(history) if good in pods)
    assert history[first_new][0] == 100, history
    weights = deduplicated([w for w, _, _, _ in history])
    assert is_subsequence(weights, [0, 10, 50, 100, 0]), weights
    assert history[-1] == (0, good, (good,), True), history  # rolled out, paused again


async def rolled_back_release(client: Client, flux_gitops: Any, watcher: WorkflowHandle[Any, Any], service: Any,
                              region: str, version: str, known: int) -> tuple[str, WorkflowHandle[Any, Any], float]:
    """Commit `version` (the test made it fail), wait for the release the watcher starts after its `known` first ones
    and for its rollback (bounded): the commit, the release, seconds from the push to the rollback."""
    pushed = time.monotonic()
    head, _ = await asyncio.to_thread(commit, flux_gitops, region, service, new_image(service, version), f"release {version}")
    handle = await started_release(client, watcher, known, APPLY_BOUND)
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), RELEASE_BOUND)
    return head, handle, time.monotonic() - pushed


async def bad_version_reverted(client: Client, flux_gitops: Any, watcher: WorkflowHandle[Any, Any], api: Any,
                               service: Any, region: str) -> None:
    good, bad = image_of("v2.0.0", service), image_of("v6.6.6", service)
    kube = KubeJson(api)
    fault_id = inject_fault(api_client=api, fault=BadRelease(service=service.name, version="v6.6.6", error_ratio=0.4)).id
    try:
        with Observer(kube, service) as observer:
            head, handle, rolled_back = await rolled_back_release(client, flux_gitops, watcher, service, region, "v6.6.6", 1)
            status = await handle.query("status", result_type=ReleaseStatus)
            revert = status.git_revert
            assert status.phase is ReleasePhase.ROLLED_BACK and revert is not None, status
            reconciled = time.monotonic()
            await asyncio.to_thread(force_reconcile, flux_gitops.home_api, region)  # the next sync
            await asyncio.sleep(3)  # three more polls of the watcher
            later = await watcher.query("status", result_type=WatchStatus)
    finally:
        clear_fault(api_client=api, fault_id=fault_id)
    history = deduplicated(observer.seen)
    print(f"git release: the watcher polled {later.polls} times ({later.polls // WATCH_RUN} continue-as-new)")
    print(f"git release: bad commit {head[:10]} pushed -> rolled back {rolled_back:.1f}s -> revert {revert.commit[:10]} "
          f"applied by Flux {revert.engine_apply_seconds}s after it was pushed; forced reconcile "
          f"{time.monotonic() - reconciled:.1f}s; observed: {history}")
    workspace = flux_gitops.workspace(region)
    assert workspace.sync() == revert.commit and revert.created and revert.policy == "direct"
    manifest = workspace.read(service_path(service)) or ""
    assert good in manifest and bad not in manifest
    message = workspace._git("log", "-1", "--format=%B").stdout
    assert f"Signed-off-by: pitstop run {handle.id}/" in message, message
    assert revert.engine_apply_seconds is not None, revert
    # the bad version never reached the stable pods, and neither the sync nor the watcher brought it back
    assert all(pods == (good,) for _, _, pods, _ in history), history
    assert history[-1] == (0, good, (good,), True), history
    assert len(later.started) == 2, f"the watcher started {later.started}"
    assert later.polls > WATCH_RUN, later.polls  # the started releases were carried over a continue-as-new
    assert any(revert.commit[:12] in e.message for e in status.events), status.events


async def test_under_the_branch_policy_a_rollback_proposes_the_revert_on_a_branch(
    temporal_client: Client, temporal_server: Any, flux_gitops: Any, sandbox_monitoring: Any, task_queue: str
) -> None:
    """The watcher started by `pitstop release watch-git`, and `gitops.releases.revert: branch`: the revert is pushed to `pitstop/revert-<deployment>-<hash>` off the bad
    commit, the default branch keeps the bad image (Flux keeps applying it to the paused Deployment), the stable pods
    keep the good image and the watcher does not release the rejected template again; merging the branch (a fast
    forward here, as a human would) makes Flux apply the good template."""
    sandbox = sandbox_monitoring
    region = flux_gitops.regions[0]
    service = flux_gitops.services[0]
    api = sandbox.api_clients[region]
    kube = KubeJson(api)
    dep_path = f"/apis/apps/v1/namespaces/{service.team}/deployments/{service.name}"
    bad = image_of("v6.6.7", service)
    with opted_in_service(sandbox, flux_gitops, region, service) as good:
        async with watching(temporal_client, sandbox, flux_gitops, task_queue, region, revert="branch",
                            cli_server=temporal_server) as watcher:
            await paused_by_the_watcher(kube, dep_path, service)
            fault_id = inject_fault(api_client=api, fault=BadRelease(service=service.name, version="v6.6.7", error_ratio=0.4)).id
            try:
                head, handle, rolled_back = await rolled_back_release(temporal_client, flux_gitops, watcher, service,
                                                                      region, "v6.6.7", 0)
                revert = (await handle.query("status", result_type=ReleaseStatus)).git_revert
                await asyncio.to_thread(force_reconcile, flux_gitops.home_api, region)  # the next sync: git's bad image
                await asyncio.sleep(3)  # three more polls of the watcher
                dep = kube.get(dep_path)
                pods = Observer(kube, service).sample()[2]
                later = await watcher.query("status", result_type=WatchStatus)
            finally:
                clear_fault(api_client=api, fault_id=fault_id)
            assert revert is not None and revert.policy == "branch" and revert.created, revert
            print(f"git release: bad commit {head[:10]} rolled back {rolled_back:.1f}s after the push; "
                  f"revert proposed on {revert.branch} ({revert.commit[:10]})")
            workspace = flux_gitops.workspace(region)
            assert workspace.sync() == head and bad in (workspace.read(service_path(service)) or "")
            assert revert.branch.startswith(f"pitstop/revert-{service.name}-")
            workspace._git("fetch", "--quiet", "origin", revert.branch)
            proposed = workspace._git("show", f"{revert.commit}:{service_path(service)}").stdout
            assert good in proposed and bad not in proposed
            assert workspace._git("rev-parse", f"{revert.commit}^").stdout.strip() == head
            # git's bad template is on the paused Deployment, its pods keep the good image, nothing restarted it
            assert dep["spec"]["paused"] and dep["spec"]["template"]["spec"]["containers"][0]["image"] == bad
            assert pods == (good,) and len(later.started) == 1, (pods, later.started)
            assert "pitstop.dev/rejected-templates" in dep["metadata"]["annotations"]
            # a human merges the proposal: Flux applies the good template, which the pods already run
            workspace._git("push", "--quiet", "origin", f"{revert.commit}:refs/heads/{workspace.remote.branch}")
            merged = wait_applied(flux_gitops.home_api, region, revert.commit, timeout=APPLY_BOUND)
            await asyncio.sleep(2)
            after = Observer(kube, service).sample()
            assert after[1:] == (good, (good,), True), after
            assert len((await watcher.query("status", result_type=WatchStatus)).started) == 1
            print(f"git release: the merged revert applied by Flux {merged:.1f}s after the push; {after}")
