"""`pitstop up`: the embedded default, as supervised child processes.

Starts the Temporal dev server (SQLite file in the state dir, Web UI), the local fleet sandbox when no
Kubernetes regions are configured, the worker and the alert webhook; restarts a crashed worker or webhook;
stops everything on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pitstop.config import Settings

from .devserver import DevServer, DevServerPorts
from .errors import EXIT_UNAVAILABLE, CliError

RESTART_BACKOFF_SECONDS = 2.0


@dataclass
class SupervisedProcess:
    """A child process restarted when it dies (until the supervisor stops)."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    last_start: float = field(default=0.0)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.last_start = time.monotonic()

    def check(self) -> None:
        if self.process is None or self.process.poll() is None:
            return
        code = self.process.returncode
        if time.monotonic() - self.last_start < RESTART_BACKOFF_SECONDS:
            time.sleep(RESTART_BACKOFF_SECONDS)
        self.restarts += 1
        print(f"[up] {self.name} exited with code {code}; restarting (see {self.log_path})", flush=True)
        self.start()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def child_env(settings: Settings, temporal_address: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PITSTOP_TEMPORAL__ADDRESS"] = temporal_address
    env["PITSTOP_STATE_DIR"] = str(settings.state_dir)
    return env


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def run_up(settings: Settings, *, temporal_address: str | None, with_sandbox: bool) -> None:
    started = time.monotonic()
    state_dir = settings.state_dir
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    server: DevServer | None = None
    if temporal_address is None:
        host, _, port = settings.temporal.address.rpartition(":")
        ports = DevServerPorts(frontend=int(port), ui=settings.temporal.ui_port,
                               http=int(port) + 10, metrics=int(port) + 11)
        server = DevServer(state_dir=state_dir / "temporal", ports=ports, ip=host or "127.0.0.1")
        try:
            server.start()
        except (RuntimeError, FileNotFoundError) as exc:
            raise CliError(f"cannot start the embedded Temporal server: {exc}", exit_code=EXIT_UNAVAILABLE) from exc
        temporal_address = server.address
        print(f"[up] Temporal dev server ready at {server.address} (state {server.state_dir / 'temporal.db'})", flush=True)

    if with_sandbox and not settings.kubernetes.regions and _module_exists("sandbox.lifecycle"):
        from sandbox.lifecycle import ensure_sandbox  # the local fleet sandbox (kube API + kwok, Prometheus)

        print("[up] starting the local fleet sandbox (first run builds Kubernetes binaries; may take long)", flush=True)
        ensure_sandbox(settings)

    env = child_env(settings, temporal_address)
    python = sys.executable
    children = [
        SupervisedProcess("worker", [python, "-m", "workers.cli", "worker"], env, state_dir / "logs" / "worker.log"),
    ]
    if _module_exists("workers.webhook"):
        children.append(
            SupervisedProcess("webhook", [python, "-m", "workers.webhook"], env, state_dir / "logs" / "webhook.log")
        )
    for child in children:
        child.start()

    ui_host = temporal_address.rpartition(":")[0]
    print(f"[up] worker{' and webhook' if len(children) > 1 else ''} started; logs in {state_dir / 'logs'}")
    if server is not None:
        print(f"[up] Temporal Web UI: http://{ui_host}:{settings.temporal.ui_port}")
    print(f"[up] ready in {time.monotonic() - started:.1f}s — Ctrl-C to stop", flush=True)

    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stopping:
            for child in children:
                child.check()
            time.sleep(0.5)
    finally:
        print("[up] stopping...", flush=True)
        for child in children:
            child.stop()
        if server is not None:
            server.stop()
        print("[up] stopped", flush=True)
