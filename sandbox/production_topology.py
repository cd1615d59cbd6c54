"""pitstop's production topology as local processes: a real Temporal server on PostgreSQL (`sandbox.temporal_server`),
its namespace set up the way `pitstop setup` does it, N `pitstop worker` processes and M `pitstop webhook` replicas,
each replica with its own state directory (intake journal) and port. Everything listens on 127.0.0.1.

    python -m pitstop.sandbox.production_topology up [--workers 2] [--webhooks 2]   # until Ctrl-C

The tests kill -9 single processes of it (a worker, a webhook replica, the Temporal server) and start them again.

Its pitstop processes are described as data (`ROLES`: command, settings, health gate, start order) that
`docker-compose.yml` mirrors service for service; tests/unit/test_compose.py compares the two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pitstop.sandbox.monitoring import wait_http_ready
from pitstop.sandbox.temporal_server import PostgresProcess, TemporalServerProcess, ensure_namespace, free_port

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_SECONDS = 60
NAMESPACE = "default"


@dataclass(frozen=True)
class Role:
    """One kind of pitstop process in the production topology, as data; `docker-compose.yml` has one service per role
    with the same command, settings, health gate and start order (tests/unit/test_compose.py)."""

    service: str  # its docker-compose service
    command: tuple[str, ...]  # `pitstop` arguments
    settings: Mapping[str, str]  # PITSTOP_* values every instance has, wherever it runs
    placed: tuple[str, ...]  # PITSTOP_* names whose values depend on where it runs (addresses, ports, secrets, URLs)
    after: tuple[str, ...] = ()  # roles (one-shot jobs) that must have completed before it starts
    health_path: str | None = None  # answered with 200 once it is up: its start gate; None = a one-shot job
    health_port: str | None = None  # the setting whose port serves `health_path`

    @property
    def one_shot(self) -> bool:
        return self.health_path is None

    def env(self, placement: Mapping[str, str]) -> dict[str, str]:
        """Its settings plus the values of `placement`, which may only name settings of `placed`."""
        stray = sorted(set(placement) - set(self.placed))
        if stray:
            raise ValueError(f"role {self.service}: {stray} are not among its placed settings {list(self.placed)}")
        return {**self.settings, **placement}


_COMMON = MappingProxyType({"PITSTOP_TEMPORAL__NAMESPACE": NAMESPACE})
SETUP = Role(service="pitstop-setup", command=("setup",), settings=_COMMON, placed=("PITSTOP_TEMPORAL__ADDRESS",))
WORKER = Role(
    service="pitstop-worker", command=("worker",), settings=_COMMON, after=(SETUP.service,),
    placed=("PITSTOP_TEMPORAL__ADDRESS", "PITSTOP_TEMPORAL__TASK_QUEUE", "PITSTOP_WORKER__METRICS_HOST",
            "PITSTOP_WORKER__METRICS_PORT", "PITSTOP_PROMETHEUS__URL", "PITSTOP_ALERTMANAGER__URL",
            "PITSTOP_KUBERNETES__REGIONS"),
    health_path="/metrics", health_port="PITSTOP_WORKER__METRICS_PORT",  # the SDK's endpoint: up with the runtime
)
WEBHOOK = Role(
    service="pitstop-webhook", command=("webhook",), settings=_COMMON, after=(SETUP.service,),
    placed=("PITSTOP_TEMPORAL__ADDRESS", "PITSTOP_TEMPORAL__TASK_QUEUE", "PITSTOP_WEBHOOK__LISTEN",
            "PITSTOP_WEBHOOK__TOKEN"),
    health_path="/healthz", health_port="PITSTOP_WEBHOOK__LISTEN",
)
ROLES = (SETUP, WORKER, WEBHOOK)  # in start order


@dataclass
class PitstopProcess:
    """One `pitstop worker` or `pitstop webhook` process; `start` again after `kill` reuses its state directory."""

    name: str
    role: Role
    env: dict[str, str]  # pitstop's settings of this process (the caller's environment is added at start)
    state_dir: Path
    ready_url: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def args(self) -> list[str]:
        return list(self.role.command)

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pitstop.workers.cli", *self.args]

    def environment(self) -> dict[str, str]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return {**os.environ, **self.env, "PITSTOP_STATE_DIR": str(self.state_dir),
                "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}

    def start(self) -> None:
        env = self.environment()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command(), env=env, cwd=ROOT,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if self.ready_url:
            wait_http_ready(self.ready_url, self.process, self.log_path, READY_TIMEOUT_SECONDS)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def pitstop_processes(*, root: Path, temporal_address: str, task_queue: str, workers: int, webhooks: int,
                      webhook_token: str, extra_env: Mapping[str, str] = MappingProxyType({})) -> dict[str, list[PitstopProcess]]:
    """The topology's pitstop processes (not started), by role service: one setup job, `workers` workers and `webhooks`
    webhook replicas, each on its own loopback ports and state directory. `extra_env` is added to every one."""

    def process(role: Role, name: str, placement: dict[str, str]) -> PitstopProcess:
        ready_url = None
        if role.health_port is not None:
            port = placement[role.health_port].rpartition(":")[2]
            ready_url = f"http://127.0.0.1:{port}{role.health_path}"
        env = {"PITSTOP_CONFIG": "/nonexistent", **role.env(placement), **extra_env}  # no config file, as in a container
        return PitstopProcess(name=name, role=role, env=env, state_dir=root / name, ready_url=ready_url)

    temporal = {"PITSTOP_TEMPORAL__ADDRESS": temporal_address}
    queue = {**temporal, "PITSTOP_TEMPORAL__TASK_QUEUE": task_queue}
    return {
        SETUP.service: [process(SETUP, "setup", temporal)],
        WORKER.service: [process(WORKER, f"worker-{i}", {**queue, "PITSTOP_WORKER__METRICS_HOST": "127.0.0.1",
                                                          "PITSTOP_WORKER__METRICS_PORT": str(free_port())})
                         for i in range(workers)],
        WEBHOOK.service: [process(WEBHOOK, f"webhook-{i}", {**queue, "PITSTOP_WEBHOOK__LISTEN": f"127.0.0.1:{free_port()}",
                                                            "PITSTOP_WEBHOOK__TOKEN": webhook_token})
                          for i in range(webhooks)],
    }


def run_to_completion(job: PitstopProcess) -> None:
    """A one-shot role (`pitstop setup`: search attributes), again while the frontend's namespace cache has not seen a
    new namespace yet (it refreshes every few seconds)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        done = subprocess.run(job.command(), env=job.environment(), cwd=ROOT, capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode == 0:
            return
        if "does not exist" not in done.stderr + done.stdout or time.monotonic() > deadline:
            raise RuntimeError(f"pitstop {' '.join(job.args)} failed: {done.stdout}{done.stderr}")
        time.sleep(1)


@dataclass
class ProductionTopology:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pitstop-topology-")))
    workers: int = 2
    webhooks: int = 2
    task_queue: str = "pitstop"
    webhook_token: str = "topology-token"
    extra_env: dict[str, str] = field(default_factory=dict)
    postgres: PostgresProcess = field(init=False)
    temporal: TemporalServerProcess = field(init=False)
    worker_processes: list[PitstopProcess] = field(default_factory=list)
    webhook_processes: list[PitstopProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.postgres = PostgresProcess()
        self.temporal = TemporalServerProcess(postgres=self.postgres, root=self.root / "temporal")

    def start(self) -> None:
        """Start everything; when any part fails, stop what was already started (its processes run in sessions of
        their own and would outlive the caller) and raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.postgres.start()
        self.temporal.root.mkdir(parents=True, exist_ok=True)
        self.temporal.start()
        asyncio.run(self._namespace())
        processes = pitstop_processes(root=self.root, temporal_address=self.temporal.address, task_queue=self.task_queue,
                                      workers=self.workers, webhooks=self.webhooks, webhook_token=self.webhook_token,
                                      extra_env=self.extra_env)
        self.worker_processes.extend(processes[WORKER.service])  # before they start: `stop` finds them on failure
        self.webhook_processes.extend(processes[WEBHOOK.service])
        for role in ROLES:  # in start order: the one-shot setup before the workers and webhooks
            for process in processes[role.service]:
                if role.one_shot:
                    run_to_completion(process)
                else:
                    process.start()

    async def _namespace(self) -> None:
        from temporalio.client import Client

        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            try:
                client = await Client.connect(self.temporal.address)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        await ensure_namespace(client)

    def webhook_url(self, index: int) -> str:
        return str(self.webhook_processes[index].ready_url).removesuffix("/healthz") + "/alerts"

    def stop(self, *, remove_state: bool = False) -> None:
        """Stop every process; with `remove_state`, delete the databases, journals and logs too."""
        for process in [*self.webhook_processes, *self.worker_processes]:
            process.stop()
        self.temporal.stop()
        self.postgres.stop()
        if remove_state:
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.postgres.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pitstop.sandbox.production_topology", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--webhooks", type=int, default=2)
    args = parser.parse_args(argv)
    topology = ProductionTopology(workers=args.workers, webhooks=args.webhooks)
    try:
        topology.start()
        print(f"Temporal (PostgreSQL) at {topology.temporal.address}; {args.workers} workers; webhooks: "
              + ", ".join(topology.webhook_url(i) for i in range(args.webhooks)) + f"; state {topology.root}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        topology.stop()


if __name__ == "__main__":
    sys.exit(main())
