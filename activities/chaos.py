"""Chaos experiment activities (regional: they run on the region's task queue with that region's kubeconfig).

`chaos.phase` runs one phase of an experiment (`chaos/runner.py`) in a child process in its own process group:
- its environment holds only PATH, PYTHONPATH, the region's KUBECONFIG/KUBERNETES_CONTEXT and the variables the
  experiment's `configuration`/`secrets` blocks name that `security.env_allowlist` permits;
- python providers must be in `security.chaos_provider_modules`, process providers in
  `security.chaos_process_providers` (checked by `validate`, before anything runs);
- it heartbeats every `chaos.heartbeat_seconds` with the runs finished so far (a heartbeat timeout hands them to
  the workflow); on cancellation (abort) it kills the child's process group and fails with type
  `ChaosPhaseCancelled`, carrying the finished runs;
- before starting, it kills the process groups an earlier attempt of this run left behind (a worker killed -9
  leaves its child running; pid files under `<state_dir>/chaos/<run>/`, so on the same host);
- a rollback whose run failed raises a retryable error (Temporal retries it; the workflow reports the last failure).

`chaos.target_pods` reads a target Deployment's replicas (blast radius).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop import bounded_yaml
from pitstop.chaos.model import (
    ChaosTarget, PhaseInput, PhaseName, PhaseResult, child_environment, inline_secrets, provider_refusals,
)

from .clients import ActivityClients
from .kube_api import KubeJson, deployment_path
from .kube_errors import kube_errors

ROOT = Path(__file__).resolve().parent.parent
PHASE_CANCELLED = "ChaosPhaseCancelled"
ROLLBACK_FAILED = "ChaosRollbackFailed"


class ChaosActivities:
    def __init__(self, clients: ActivityClients, region: str) -> None:
        self._clients = clients
        self._region = region
        self._settings = clients.settings

    @activity.defn(name="chaos.target_pods")
    async def target_pods(self, target: ChaosTarget) -> int:
        """Replicas the target's Deployment asks for (its pods, for the blast-radius limit)."""
        api = KubeJson(self._clients.kube_client(self._region))
        with kube_errors(f"Deployment {target.namespace}/{target.service}", self._region):
            deployment = await asyncio.to_thread(api.get, deployment_path(target.namespace, target.service))
        return int((deployment.get("spec") or {}).get("replicas", 1) or 0)

    @activity.defn(name="chaos.phase")
    async def phase(self, request: PhaseInput) -> PhaseResult:
        experiment = request.experiment
        if request.phase is PhaseName.VALIDATE:
            experiment = experiment if experiment is not None else self._load_file(request.experiment_file or "")
            refusals = self._refusals(experiment)
            if refusals:
                return PhaseResult(phase=request.phase, experiment=experiment, error="; ".join(refusals))
        if experiment is None:
            raise ApplicationError("chaos.phase needs the experiment", type="InvalidChaosPhase", non_retryable=True)
        env, refused = child_environment(
            experiment, environ=self._clients.environ, env_problem=self._clients.reach().env_problem, base=self._base_env()
        )
        if refused:
            raise ApplicationError("; ".join(refused), type="EnvNotAllowed", non_retryable=True)
        result = await self._run_child(request.model_copy(update={"experiment": experiment}), env)
        if request.phase is PhaseName.ROLLBACK:
            failed = [r for r in result.runs if r.get("status") != "succeeded"]
            if failed or result.error:
                raise ApplicationError(
                    f"rollback {request.index} failed: {result.error or _run_error(failed[0])}", result.runs,
                    type=ROLLBACK_FAILED,
                )
        return result

    # ------------------------------------------------------------ helpers

    def _load_file(self, name: str) -> dict[str, Any]:
        root = self._settings.chaos.experiments_dir.resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise ApplicationError(f"experiment file {name!r} not found under {root}", type="InvalidExperiment",
                                   non_retryable=True)
        try:
            if path.suffix == ".json":
                data = json.loads(path.read_text(encoding="utf-8"))
            else:
                data = bounded_yaml.load_file(path)
        except (ValueError, bounded_yaml.YamlRefused) as exc:
            raise ApplicationError(f"{path}: cannot be read: {exc}", type="InvalidExperiment", non_retryable=True) from exc
        if not isinstance(data, dict):
            raise ApplicationError(f"{path}: an experiment is a mapping", type="InvalidExperiment", non_retryable=True)
        return data

    def _refusals(self, experiment: dict[str, Any]) -> list[str]:
        security = self._settings.security
        refusals = provider_refusals(
            experiment, modules=security.chaos_provider_modules, processes=security.chaos_process_providers
        )
        refusals += [f"{name} is a secret value in the experiment: reference it (type: env) instead, so it never "
                     "enters workflow history" for name in inline_secrets(experiment)]
        return refusals

    def _base_env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        cluster = self._clients.clusters.get(self._region)
        if cluster is not None and cluster.kubeconfig is not None:
            env["KUBECONFIG"] = str(cluster.kubeconfig)
            env["KUBERNETES_CONTEXT"] = cluster.context or self._region
        return env

    def _pid_dir(self, run_id: str) -> Path:
        return self._settings.state_dir / "chaos" / re.sub(r"[^A-Za-z0-9._-]", "_", run_id)

    async def _run_child(self, request: PhaseInput, env: dict[str, str]) -> PhaseResult:
        pid_dir = self._pid_dir(request.run_id)
        kill_leftovers(pid_dir)
        pid_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="pitstop-chaos-") as work:
            given, out = Path(work) / "input.json", Path(work) / "output.jsonl"
            given.write_text(request.model_dump_json(include={"phase", "experiment", "index", "dry_run"}), encoding="utf-8")
            out.touch()
            stderr = (Path(work) / "stderr.log").open("wb")
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pitstop.chaos_toolkit.runner", str(given), str(out),
                env=env, cwd=work, stdout=asyncio.subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            )
            pid_file = pid_dir / f"{process.pid}.pid"
            pid_file.write_text(str(process.pid))
            try:
                await self._wait(process, out)
            except asyncio.CancelledError:
                kill_group(process.pid)
                await process.wait()
                runs, _ = read_output(out)
                raise ApplicationError(f"{request.phase.value} stopped by cancellation", runs, type=PHASE_CANCELLED,
                                       non_retryable=True) from None
            finally:
                stderr.close()
                if process.returncode is not None:
                    pid_file.unlink(missing_ok=True)
            runs, result = read_output(out)
            if result is None:
                tail = (Path(work) / "stderr.log").read_text(errors="replace")[-2000:]
                raise ApplicationError(f"the {request.phase.value} child process exited {process.returncode} without a "
                                       f"result: {tail}", runs, type="ChaosChildFailed")
        return PhaseResult.model_validate(result)

    async def _wait(self, process: asyncio.subprocess.Process, out: Path) -> None:
        interval = self._settings.chaos.heartbeat_seconds
        while True:
            try:
                await asyncio.wait_for(process.wait(), timeout=interval)
                return
            except TimeoutError:
                activity.heartbeat(read_output(out)[0])


def read_output(out: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The runs finished so far and the final result (None until the child wrote it)."""
    runs: list[dict[str, Any]] = []
    result = None
    for line in out.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        if "run" in record:
            runs.append(record["run"])
        elif "result" in record:
            result = record["result"]
    return runs, result


def kill_group(pgid: int) -> None:
    """SIGKILL a child's process group (the child and every process it started); gone already is fine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_leftovers(pid_dir: Path) -> list[int]:
    """Kill the process groups an earlier attempt of this run left (its worker died); returns their ids."""
    killed = []
    for pid_file in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        try:
            pgid = int(pid_file.read_text())
        except ValueError:
            pgid = 0
        if pgid > 0:
            kill_group(pgid)
            killed.append(pgid)
        pid_file.unlink(missing_ok=True)
    return killed


def _run_error(run: dict[str, Any]) -> str:
    lines = run.get("exception") or []
    return str(lines[-1]).strip() if lines else f"status {run.get('status')}"
