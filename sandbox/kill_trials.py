"""Kill trials: shipped mutating runbooks run by a real `pitstop worker` process that is kill -9'd at random
(seeded) moments; every run must still converge, and the API server's own audit log must show each step's write
applied once and each compensation applied once.

One trial = one run of one shipped runbook on a Deployment of its own (namespace `kill-trials`). Trials run in
rounds: a round starts its runs at seeded offsets and kills the worker (SIGKILL, the whole process: workflow
and activity code alike) at seeded moments, restarting it after a seeded pause; since the
runs started at different times, each kill lands in a different phase of each run (loading, a write, a rollout
wait, a compensation, between workflow tasks). Kills land among the starts, so a run may also start
while no worker is up. A trial is *in flight* when its run was still open right after a kill (checked with the
worker dead, so nothing can have closed it in between).

The worker is the product's entry point (`python -m pitstop.workers.cli worker`, settings from a config file) with a
kubeconfig holding a token of the `pitstop-worker` service account (deploy/rbac.yaml applied), so the audit log
(`sandbox.audit`) attributes its writes to that user and keeps their bodies, which carry the step's
idempotency key.

Per trial, after its run ended:
- *converged*: the run ended as the runbook intends (succeeded; `aborted` for a run aborted mid-rollout) and the
  cluster shows it: replicas, image or restart annotation as asked, or the original replicas after compensation;
- *writes*: the worker's 2xx writes to the trial's Deployments (from the audit log), grouped by idempotency key
  (`sandbox.audit.write_key`); a key applied twice is a duplicated write. The count must also equal the runbook's
  writes (one per mutating step and region, plus one per compensation).

Kinds (`TrialKind`): scale-service, scale-service aborted mid-rollout (its compensation scales back),
restart-service (two regions), and the remediation rungs remediate-scale-out, remediate-restart,
remediate-rollback.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowHandle

from pitstop.activities.kube_api import KubeJson, deployment_path
from pitstop.activities.traffic import ISTIO_GROUP_VERSION
from pitstop.rollout import rollout_progress
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.runbook.run_state import ControlRequest, RunStatus
from pitstop.traffic_routes import service_route_weights
from pitstop.sandbox.audit import (
    RESTART_KEY_ANNOTATION,
    WORKER_USER,
    AuditEvent,
    audit_log_path,
    log_files,
    read_events,
    worker_writes,
    write_counts,
)
from pitstop.sandbox.clusters import SandboxClusters
from pitstop.sandbox.fleet import EntryTraffic, ServiceSpec, apply_fleet

NAMESPACE = "kill-trials"
ROOT = Path(__file__).resolve().parents[1]
RBAC_FILE = ROOT / "deploy" / "rbac.yaml"
IMAGE_V1, IMAGE_V2 = "registry.example/kill-trials:1.0", "registry.example/kill-trials:2.0"
UNSCHEDULABLE = {"pitstop.dev/kill-trials": "no-such-node"}  # pods stay Pending: the rollout never completes
WORKER_READY_LINE = "pitstop worker ready"


class TrialKind(StrEnum):
    SCALE = "scale-service"
    SCALE_ABORTED = "scale-service/aborted"
    RESTART = "restart-service"
    SCALE_OUT = "remediate-scale-out"
    RESTART_RUNG = "remediate-restart"
    ROLLBACK = "remediate-rollback"
    CANARY = "canary"

    @property
    def runbook(self) -> str:
        return self.value.split("/")[0]


SHORT_KINDS: tuple[TrialKind, ...] = tuple(k for k in TrialKind if k is not TrialKind.CANARY)
CANARY_VERSION = "1.1.0"


class KillTrialSettings(BaseModel):
    trials: int = 20
    seed: int = 11
    kinds: list[TrialKind] = Field(default_factory=lambda: list(SHORT_KINDS))
    round_size: int = Field(10, description="runs started per round (one worker serves them all)")
    kills_per_round: int = 2
    start_spread_seconds: float = Field(4.0, description="a round's runs start at offsets in [0, this]")
    first_kill_seconds: float = Field(1.0, description="no kill before this (seconds from the round's start)")
    kill_window_seconds: float = Field(2.0, description="each kill lands in [first_kill, last start + this]: among the starts")
    restart_pause_seconds: tuple[float, float] = (0.2, 2.0)
    round_timeout_seconds: float = Field(240.0, description="a round's runs must all end within this")
    regions: list[str] = Field(default_factory=lambda: ["eu-central", "us-east"])
    prometheus_url: str = Field("http://127.0.0.1:9", description="where the worker reads metrics (canary analysis)")


class TrialResult(BaseModel):
    index: int
    kind: TrialKind
    service: str
    workflow_id: str
    outcome: str = ""
    in_flight_at_kills: int = Field(0, description="kills after which this run was still open")
    activity_retries: int = Field(0, description="activity attempts beyond the first, from the run's history")
    converged: bool = False
    problems: list[str] = Field(default_factory=list)
    writes: int = Field(0, description="the worker's 2xx writes to this trial's Deployments (audit log)")
    expected_writes: int | None = Field(None, description="None: a release writes as many times as it takes")
    duplicated_writes: int = Field(0, description="writes applied again under a key already applied")
    compensation_writes: int = 0


class KillTrialReport(BaseModel):
    seed: int
    trials: list[TrialResult]
    kills: int
    seconds: float

    @property
    def converged(self) -> int:
        return sum(t.converged for t in self.trials)

    @property
    def in_flight(self) -> int:
        return sum(t.in_flight_at_kills > 0 for t in self.trials)

    @property
    def duplicated_writes(self) -> int:
        return sum(t.duplicated_writes for t in self.trials)

    @property
    def compensations(self) -> int:
        return sum(t.compensation_writes for t in self.trials)

    def summary(self) -> str:
        lines = [
            f"kill trials: {len(self.trials)} (seed {self.seed}), {self.kills} kill -9 of the worker, {self.seconds:.0f} s",
            f"  converged: {self.converged}/{len(self.trials)}; in flight at a kill: {self.in_flight}",
            f"  worker writes (audit log): {sum(t.writes for t in self.trials)}, expected "
            f"{sum(t.expected_writes or 0 for t in self.trials)} (releases not counted); duplicated: {self.duplicated_writes}",
            f"  compensations applied: {self.compensations} (aborted runs: "
            f"{sum(t.kind is TrialKind.SCALE_ABORTED for t in self.trials)}); activity retries: "
            f"{sum(t.activity_retries for t in self.trials)}",
        ]
        for kind in sorted({t.kind for t in self.trials}):
            of_kind = [t for t in self.trials if t.kind is kind]
            lines.append(f"  {kind.value:24} {sum(t.converged for t in of_kind)}/{len(of_kind)} converged, "
                         f"{sum(t.in_flight_at_kills > 0 for t in of_kind)} in flight at a kill")
        lines += [f"  trial {t.index} {t.kind.value} {t.workflow_id}: {'; '.join(t.problems)}"
                  for t in self.trials if t.problems]
        return "\n".join(lines)


# ------------------------------------------------------------------ the worker process


class WorkerProcess:
    """`python -m pitstop.workers.cli worker` with its own config file; killed with SIGKILL, started again."""

    def __init__(self, *, config_file: Path, log: Path) -> None:
        self.config_file, self.log = config_file, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PITSTOP_")}
        env["PITSTOP_CONFIG"] = str(self.config_file)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        self._ready_lines = self._count_ready()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pitstop.workers.cli", "worker"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    async def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self._count_ready() <= self._ready_lines:
            if self.process is None or self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not get ready within {timeout}s; its log:\n{self.log.read_text()[-3000:]}")
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def _count_ready(self) -> int:
        return self.log.read_text(errors="replace").count(WORKER_READY_LINE) if self.log.exists() else 0


def worker_config(*, clusters: SandboxClusters, admin: Mapping[str, ApiClient], temporal_address: str,
                  task_queue: str, state_dir: Path, prometheus_url: str = "http://127.0.0.1:9") -> Path:
    """The worker's config file, and its kubeconfig: each region's API server, a token of the worker's service
    account (TokenRequest), so every request is the service account's own."""
    sandbox = yaml.safe_load(clusters.kubeconfig.read_text())
    by_name = {c["name"]: c["cluster"] for c in sandbox["clusters"]}
    kubeconfig: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
    for region, context in clusters.contexts.items():
        token = KubeJson(admin[region]).post(
            "/api/v1/namespaces/pitstop/serviceaccounts/pitstop-worker/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 86400}},
        )["status"]["token"]
        kubeconfig["clusters"].append({"name": region, "cluster": by_name[context]})
        kubeconfig["users"].append({"name": region, "user": {"token": token}})
        kubeconfig["contexts"].append({"name": region, "context": {"cluster": region, "user": region}})
    state_dir.mkdir(parents=True, exist_ok=True)
    worker_kubeconfig = state_dir / "worker-kubeconfig.yaml"
    worker_kubeconfig.write_text(yaml.safe_dump(kubeconfig))
    worker_kubeconfig.chmod(0o600)
    config = {
        "state_dir": str(state_dir),
        "temporal": {"address": temporal_address, "task_queue": task_queue, "embedded": False,
                     "register_search_attributes": True},
        "worker": {"metrics_port": 0},
        "prometheus": {"url": prometheus_url},
        "kubernetes": {"regions": {r: {"kubeconfig": str(worker_kubeconfig), "context": r} for r in clusters.contexts}},
    }
    target = state_dir / "worker-config.yaml"
    target.write_text(yaml.safe_dump(config))
    return target


def prepare_clusters(*, clusters: SandboxClusters, admin: Mapping[str, ApiClient]) -> None:
    """The trials' namespace and deploy/rbac.yaml (the worker's service account and its grants) in every region."""
    for region, context in clusters.contexts.items():
        try:
            KubeJson(admin[region]).post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                                 "metadata": {"name": NAMESPACE}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        applied = subprocess.run(
            ["kubectl", "--kubeconfig", str(clusters.kubeconfig), "--context", context, "apply", "-f", str(RBAC_FILE)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if applied.returncode != 0:
            raise RuntimeError(f"kubectl apply -f {RBAC_FILE} in {region}: {applied.stderr}")


# ------------------------------------------------------------------ one trial


@dataclass(eq=False)
class Trial:
    index: int
    kind: TrialKind
    service: str
    region: str
    regions: list[str]
    start_offset: float
    abort_delay: float
    handle: WorkflowHandle[Any, RunbookOutcome] | None = None
    result: TrialResult = field(init=False)

    def __post_init__(self) -> None:
        self.result = TrialResult(index=self.index, kind=self.kind, service=self.service,
                                  workflow_id=f"kill-trial-{self.service}")

    @property
    def touched_regions(self) -> list[str]:
        return self.regions if self.kind is TrialKind.RESTART else [self.region]

    def inputs(self) -> dict[str, Any]:
        common = {"service": self.service, "namespace": NAMESPACE}
        match self.kind:
            case TrialKind.SCALE:
                return {**common, "region": self.region, "replicas": 4}
            case TrialKind.SCALE_ABORTED:
                return {**common, "region": self.region, "replicas": 3}
            case TrialKind.RESTART:
                return {**common, "regions": self.regions, "require_approval": False}
            case TrialKind.SCALE_OUT:
                return {**common, "region": self.region, "max_replicas": 4}
            case TrialKind.RESTART_RUNG | TrialKind.ROLLBACK:
                return {**common, "region": self.region, "rollout_timeout_seconds": 120}
            case TrialKind.CANARY:
                return {**common, "region": self.region, "image": self.canary_image, "steps": [50, 100],
                        "warm_window": "0s", "interval": "2s", "failure_threshold": 2, "progress_deadline": "2m"}

    @property
    def canary_image(self) -> str:
        return f"registry.pitstop.dev/{NAMESPACE}/{self.service}:{CANARY_VERSION}"

    @property
    def objects(self) -> set[str]:
        """Names of the objects the run may write (a canary also creates `<service>-canary`)."""
        return {self.service, f"{self.service}-canary"} if self.kind is TrialKind.CANARY else {self.service}

    @property
    def expected_outcome(self) -> str:
        return "aborted" if self.kind is TrialKind.SCALE_ABORTED else "succeeded"

    @property
    def expected_writes(self) -> int | None:
        """One per mutating step and region; an aborted scale also writes its compensation."""
        if self.kind is TrialKind.CANARY:
            return None
        return {TrialKind.SCALE_ABORTED: 2, TrialKind.RESTART: len(self.regions)}.get(self.kind, 1)


def _deployment(name: str, *, replicas: int, image: str = IMAGE_V1, pending: bool = False) -> dict[str, Any]:
    labels = {"app": name}
    pod_spec: dict[str, Any] = {"containers": [{"name": "app", "image": image}]}
    if pending:
        pod_spec["nodeSelector"] = UNSCHEDULABLE
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }  # fmt: skip


def create_objects(trial: Trial, admin: Mapping[str, ApiClient]) -> None:
    """The trial's Deployment(s), as the runbook expects to find them; a canary's service is a fleet service
    (Deployment, Service, VirtualService, DestinationRule) with traffic from the simulator."""
    if trial.kind is TrialKind.CANARY:
        service = ServiceSpec(name=trial.service, team=NAMESPACE, version="1.0.0", replicas=2,
                              entry=EntryTraffic(peak_rps=60, profile="flat"))
        apply_fleet(api_client=admin[trial.region], region=trial.region, services=[service])
        return
    for region in trial.touched_regions:
        api = KubeJson(admin[region])
        manifest = _deployment(trial.service, replicas=1 if trial.kind is TrialKind.SCALE_ABORTED else 2,
                               pending=trial.kind is TrialKind.SCALE_ABORTED)
        api.post(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", manifest)


async def make_ready(trial: Trial, admin: Mapping[str, ApiClient], timeout: float = 120) -> None:
    """Bring the trial's objects to what its runbook needs: a rollback two revisions (ReplicaSets) to go back
    between — the image is changed only once the first revision exists, or the controller would make just one —
    and a canary an available stable version."""
    api = KubeJson(admin[trial.region])

    def revisions(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            sets = api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets", labelSelector=f"app={trial.service}")
            return len(sets.get("items") or []) >= count
        return check

    async def available() -> bool:
        dep = api.get(deployment_path(NAMESPACE, trial.service))
        return rollout_progress(dep).done and int((dep.get("status") or {}).get("availableReplicas") or 0) >= 2

    if trial.kind is TrialKind.ROLLBACK:
        await _until(f"{trial.service}: revision 1", revisions(1), timeout)
        api.patch(deployment_path(NAMESPACE, trial.service),
                  {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": IMAGE_V2}]}}}}, patch_type="strategic")
        await _until(f"{trial.service}: revision 2", revisions(2), timeout)
    elif trial.kind is TrialKind.CANARY:
        await _until(f"{trial.service}: stable version available", available, timeout)


def end_state_problems(trial: Trial, admin: Mapping[str, ApiClient]) -> list[str]:
    """What in the cluster differs from what the run should have left."""
    problems = []
    for region in trial.touched_regions:
        dep = KubeJson(admin[region]).get(deployment_path(NAMESPACE, trial.service))
        spec = dep.get("spec") or {}
        template = spec.get("template") or {}
        replicas = spec.get("replicas")
        image = template["spec"]["containers"][0]["image"]
        restart_key = ((template.get("metadata") or {}).get("annotations") or {}).get(RESTART_KEY_ANNOTATION)
        match trial.kind:
            case TrialKind.SCALE | TrialKind.SCALE_OUT:
                if replicas != 4:
                    problems.append(f"{region}: replicas {replicas}, the run asked for 4")
            case TrialKind.SCALE_ABORTED:
                if replicas != 1:
                    problems.append(f"{region}: replicas {replicas}, the compensation should have restored 1")
            case TrialKind.RESTART | TrialKind.RESTART_RUNG:
                if not restart_key or trial.result.workflow_id not in restart_key:
                    problems.append(f"{region}: pod template not restarted by this run (restart key {restart_key!r})")
            case TrialKind.ROLLBACK:
                if image != IMAGE_V1:
                    problems.append(f"{region}: image {image}, the rollback should have restored {IMAGE_V1}")
            case TrialKind.CANARY:
                problems += _canary_problems(trial, KubeJson(admin[region]), image)
    return problems


def _canary_problems(trial: Trial, api: KubeJson, image: str) -> list[str]:
    """A promoted canary: the stable Deployment runs the new image, the candidate is gone, all traffic on stable."""
    problems = []
    if image != trial.canary_image:
        problems.append(f"stable image {image}, promotion should have set {trial.canary_image}")
    if api.get_optional(deployment_path(NAMESPACE, f"{trial.service}-canary")) is not None:
        problems.append("the candidate Deployment is still there")
    routes = api.get(f"/apis/{ISTIO_GROUP_VERSION}/namespaces/{NAMESPACE}/virtualservices/{trial.service}")
    weights = service_route_weights(routes["spec"]["http"], None)
    if weights != {"stable": 100, "canary": 0}:
        problems.append(f"route weights {weights}, promotion should leave stable 100")
    return problems


# ------------------------------------------------------------------ rounds


async def _until(what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.3)


async def _status(handle: WorkflowHandle[Any, Any]) -> RunStatus | None:
    try:
        return await handle.query("status", result_type=RunStatus, rpc_timeout=timedelta(seconds=5))
    except Exception:  # noqa: BLE001 - no worker right now, or the first task has not run
        return None


async def _abort_after_scale(trial: Trial, timeout: float) -> None:
    """Abort the run (`pitstop abort`) a seeded pause after its scale step succeeded: it is then waiting for a
    rollout that never completes, and its compensation must scale back."""
    assert trial.handle is not None
    handle = trial.handle

    async def scaled() -> bool:
        status = await _status(handle)
        return status is not None and any(s.id == "scale" and s.state.value == "succeeded" for s in status.steps)

    await _until(f"{trial.service}: step scale succeeded", scaled, timeout)
    await asyncio.sleep(trial.abort_delay)
    await asyncio.wait_for(
        handle.execute_update("abort", ControlRequest(identity="kill-trials", reason="kill trial: abort mid-rollout")),
        timeout,
    )


async def _open(handle: WorkflowHandle[Any, Any]) -> bool:
    description = await handle.describe()
    return description.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING


async def run_round(*, client: Client, task_queue: str, worker: WorkerProcess, trials: Sequence[Trial],
                    kill_times: Sequence[float], restart_pauses: Sequence[float], timeout: float) -> int:
    """Start the round's runs at their offsets, kill the worker at `kill_times` (seconds from the round's start),
    restart it after each pause, and wait for every run to end. Returns the number of kills."""
    began = time.monotonic()

    async def start(trial: Trial) -> None:
        await asyncio.sleep(trial.start_offset)
        request = RunbookRequest(runbook=trial.kind.runbook, inputs=trial.inputs(), trigger="test", started_by="kill-trials")
        trial.handle = await client.start_workflow(RUNBOOK_WORKFLOW, request, id=trial.result.workflow_id,
                                                   task_queue=task_queue, result_type=RunbookOutcome)

    await asyncio.gather(*(start(t) for t in trials))
    aborts = {t: asyncio.create_task(_abort_after_scale(t, timeout)) for t in trials if t.kind is TrialKind.SCALE_ABORTED}
    for at, pause in zip(kill_times, restart_pauses, strict=True):
        await asyncio.sleep(max(0.0, began + at - time.monotonic()))
        worker.kill()
        for trial, open_ in zip(trials, await asyncio.gather(*(_open(t.handle) for t in trials if t.handle)), strict=True):
            trial.result.in_flight_at_kills += open_
        await asyncio.sleep(pause)
        worker.start()
        await worker.ready()

    async def finish(trial: Trial) -> None:
        assert trial.handle is not None
        try:
            outcome = await asyncio.wait_for(trial.handle.result(), max(1.0, began + timeout - time.monotonic()))
            trial.result.outcome = outcome.status
        except TimeoutError:
            trial.result.outcome = "did not end in time"
        except Exception as exc:  # noqa: BLE001 - a failed run is an outcome to report
            trial.result.outcome = f"failed: {exc.__cause__ or exc}"[:300]

    await asyncio.gather(*(finish(t) for t in trials))
    for trial, task in aborts.items():
        if not task.done():
            task.cancel()
            trial.result.problems.append("never aborted: its scale step did not succeed")
        elif task.exception() is not None:
            trial.result.problems.append(f"abort: {task.exception()!r}")
    return len(kill_times)


async def _activity_retries(handle: WorkflowHandle[Any, Any]) -> int:
    history = await handle.fetch_history()
    return sum(max(0, e.activity_task_started_event_attributes.attempt - 1)
               for e in history.events if e.HasField("activity_task_started_event_attributes"))


def _check_writes(trial: Trial, writes: Mapping[str, list[AuditEvent]]) -> None:
    """Count the worker's writes to the trial's Deployment(s) per idempotency key (`sandbox.audit`)."""
    mine = [(region, e) for region in trial.touched_regions for e in writes[region]
            if e.object_ref and e.object_ref.namespace == NAMESPACE and e.object_ref.name in trial.objects]
    result = trial.result
    result.writes, result.expected_writes = len(mine), trial.expected_writes
    for region in trial.touched_regions:
        counts = write_counts(e for r, e in mine if r == region)
        for (obj, key), count in counts.items():
            if count > 1:
                result.duplicated_writes += count - 1
                result.problems.append(f"{region} {obj}: write {key} applied {count} times")
        if trial.kind is TrialKind.SCALE_ABORTED:
            result.compensation_writes = max(0, len(counts) - 1)
    if result.expected_writes is not None and result.writes != result.expected_writes:
        result.problems.append(f"{result.writes} writes by {WORKER_USER}, the runbook makes {result.expected_writes}")


def plan_trials(settings: KillTrialSettings) -> list[Trial]:
    """The seeded plan: kinds in a shuffled cycle, start offsets, abort pauses."""
    rng = random.Random(settings.seed)
    kinds = list(settings.kinds)
    rng.shuffle(kinds)
    suffix = uuid.uuid4().hex[:4]
    return [
        Trial(index=i, kind=kinds[i % len(kinds)], service=f"kt{settings.seed}-{suffix}-{i}",
              region=rng.choice(settings.regions), regions=list(settings.regions),
              start_offset=rng.uniform(0, settings.start_spread_seconds), abort_delay=rng.uniform(0, 2))
        for i in range(settings.trials)
    ]


async def run_kill_trials(*, client: Client, clusters: SandboxClusters, admin: Mapping[str, ApiClient],
                          settings: KillTrialSettings, work_dir: Path,
                          progress: Callable[[str], None] = lambda line: None) -> KillTrialReport:
    """Run the trials round by round against one worker process (restarted after every kill), then read the
    audit logs and check every trial."""
    began = time.monotonic()
    rng = random.Random(settings.seed + 1)
    task_queue = f"kill-trials-{uuid.uuid4().hex[:6]}"
    prepare_clusters(clusters=clusters, admin=admin)
    config = worker_config(clusters=clusters, admin=admin, temporal_address=client.service_client.config.target_host,
                           task_queue=task_queue, state_dir=work_dir / "worker-state", prometheus_url=settings.prometheus_url)
    worker = WorkerProcess(config_file=config, log=work_dir / "worker.log")
    trials = plan_trials(settings)
    kills = 0
    worker.start()
    try:
        await worker.ready()
        for first in range(0, len(trials), settings.round_size):
            batch = trials[first:first + settings.round_size]
            for trial in batch:
                create_objects(trial, admin)
            await asyncio.gather(*(make_ready(trial, admin) for trial in batch))
            last_start = max(t.start_offset for t in batch)
            kill_times = sorted(rng.uniform(settings.first_kill_seconds, last_start + settings.kill_window_seconds)
                                for _ in range(settings.kills_per_round))
            pauses = [rng.uniform(*settings.restart_pause_seconds) for _ in kill_times]
            kills += await run_round(client=client, task_queue=task_queue, worker=worker, trials=batch,
                                     kill_times=kill_times, restart_pauses=pauses, timeout=settings.round_timeout_seconds)
            progress(f"round {first // settings.round_size + 1}: {len(batch)} runs, kills at "
                     f"{', '.join(f'{t:.1f}s' for t in kill_times)}: "
                     f"{sum(t.result.outcome == t.expected_outcome for t in batch)}/{len(batch)} ended as intended")
    finally:
        worker.kill()
    writes = {region: worker_writes(read_events(log_files(audit_log_path(
        kwok_workdir=clusters.kwok_workdir, cluster_name=clusters.cluster_names[region])))) for region in clusters.contexts}
    for trial in trials:
        result = trial.result
        if result.outcome != trial.expected_outcome:
            result.problems.append(f"run ended {result.outcome!r}, expected {trial.expected_outcome!r}")
        result.problems += end_state_problems(trial, admin)
        if trial.handle is not None:
            result.activity_retries = await _activity_retries(trial.handle)
        _check_writes(trial, writes)
        result.converged = result.outcome == trial.expected_outcome and not end_state_problems(trial, admin)
    return KillTrialReport(seed=settings.seed, trials=[t.result for t in trials], kills=kills,
                           seconds=time.monotonic() - began)

