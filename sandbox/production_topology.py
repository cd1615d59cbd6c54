"""pitstop's production topology as local processes: a real Temporal server on PostgreSQL (`sandbox.temporal_server`),
its namespace set up the way `pitstop setup` does it, N `pitstop worker` processes and M `pitstop webhook` replicas,
each replica with its own state directory (intake journal) and port. Everything listens on 127.0.0.1.

    python -m pitstop.sandbox.production_topology up [--workers 2] [--webhooks 2]   # until Ctrl-C

The tests kill -9 single processes of it (a worker, a webhook replica, the Temporal server) and start them again.
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
from dataclasses import dataclass, field
from pathlib import Path

from pitstop.sandbox.monitoring import wait_http_ready
from pitstop.sandbox.temporal_server import PostgresProcess, TemporalServerProcess, ensure_namespace, free_port

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_SECONDS = 60


@dataclass
class PitstopProcess:
    """One `pitstop worker` or `pitstop webhook` process; `start` again after `kill` reuses its state directory."""

    name: str
    args: list[str]
    env: dict[str, str]
    state_dir: Path
    ready_url: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "PITSTOP_STATE_DIR": str(self.state_dir), "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "pitstop.workers.cli", *self.args], env=env, cwd=ROOT,
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

    def env(self) -> dict[str, str]:
        return {**os.environ, "PITSTOP_CONFIG": "/nonexistent", "PITSTOP_TEMPORAL__ADDRESS": self.temporal.address,
                "PITSTOP_TEMPORAL__TASK_QUEUE": self.task_queue, "PITSTOP_TEMPORAL__EMBEDDED": "false",
                "PITSTOP_WORKER__METRICS_PORT": "0", **self.extra_env}

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
        self._setup()
        for index in range(self.workers):
            worker = PitstopProcess(name=f"worker-{index}", args=["worker"], env=self.env(),
                                    state_dir=self.root / f"worker-{index}")
            worker.start()
            self.worker_processes.append(worker)
        for index in range(self.webhooks):
            port = free_port()
            env = {**self.env(), "PITSTOP_WEBHOOK__LISTEN": f"127.0.0.1:{port}", "PITSTOP_WEBHOOK__TOKEN": self.webhook_token}
            webhook = PitstopProcess(name=f"webhook-{index}", args=["webhook"], env=env, state_dir=self.root / f"webhook-{index}",
                                     ready_url=f"http://127.0.0.1:{port}/healthz")
            webhook.start()
            self.webhook_processes.append(webhook)

    def _setup(self) -> None:
        """`pitstop setup` (search attributes), again while the frontend's namespace cache has not seen the new
        namespace yet (it refreshes every few seconds)."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            setup = subprocess.run([sys.executable, "-m", "pitstop.workers.cli", "setup"], env=self.env(), cwd=ROOT,
                                   capture_output=True, text=True, timeout=120, check=False)
            if setup.returncode == 0:
                return
            if "does not exist" not in setup.stderr + setup.stdout or time.monotonic() > deadline:
                raise RuntimeError(f"pitstop setup failed: {setup.stdout}{setup.stderr}")
            time.sleep(1)

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
