"""`pitstop up`: the embedded default, as supervised child processes.

Starts the Temporal dev server (SQLite file in the state dir, Web UI) or, with `--temporal ADDR`, checks that
the namespace has pitstop's search attributes (else refuses at once, naming `pitstop setup`), the local fleet
sandbox when no Kubernetes regions are configured, the worker and the alert webhook, applies
`runbooks/schedules.yaml` to the embedded server; restarts a crashed worker or webhook, and a crashed Temporal
server with backoff (workers/supervision.py); stops everything on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import asyncio
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
from .supervision import SupervisedDevServer

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


def _raise_keyboard_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


DEMO_SERVICE = ("trip-service", "team-telematics")


def start_demo_release(settings: Settings, env: dict[str, str]) -> None:
    """The main job on the embedded default: a canary release of a sandbox service, started detached."""
    service, namespace = DEMO_SERVICE
    tag = time.strftime("%Y%m%d-%H%M%S")
    command = [
        sys.executable, "-m", "pitstop.workers.cli", "run", "canary", "--detach",
        "-i", f"service={service}", "-i", f"namespace={namespace}", "-i", "region=eu-central",
        "-i", f"image=registry.pitstop.dev/{namespace}/{service}:demo-{tag}",
        "-i", "interval=10s", "-i", "steps=[10,25,50,100]", "-i", "warm_window=30s",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    print(f"[up] demo: canary release of {namespace}/{service} in eu-central", flush=True)
    for line in output.splitlines():
        print(f"[up]   {line}", flush=True)
    if result.returncode == 0:
        print("[up]   follow it: pitstop status <run-id>  |  pitstop release status <run-id>/release", flush=True)


def run_up(settings: Settings, *, temporal_address: str | None, with_sandbox: bool, demo: bool = False) -> None:
    """Start everything, supervise until Ctrl-C / SIGTERM, then stop children and the server (always)."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background (SIG_IGN)
    started = time.monotonic()
    server: SupervisedDevServer | None = None
    children: list[SupervisedProcess] = []
    running_sandbox = None
    try:
        server, temporal_address = _start_temporal(settings, temporal_address)
        _check_namespace(settings, temporal_address)
        if with_sandbox and not settings.kubernetes.regions:
            from pitstop.sandbox.lifecycle import ensure_sandbox  # the local fleet sandbox (kube API + kwok, Prometheus)

            from .webhook import webhook_token

            print("[up] starting the local fleet sandbox (the first run builds Kubernetes binaries)", flush=True)
            running_sandbox = ensure_sandbox(
                settings,
                webhook_url=f"http://{settings.webhook.listen}/alerts",
                webhook_token=webhook_token(settings),
            )
        children = _start_children(settings, temporal_address)
        if server is not None:  # the embedded Temporal: apply runbooks/schedules.yaml (production: CI/CD runs apply)
            from .cli_schedules import apply_on_up

            apply_on_up(settings, child_env(settings, temporal_address))
        print(f"[up] ready in {time.monotonic() - started:.1f}s — Ctrl-C to stop", flush=True)
        if demo:
            if running_sandbox is None:
                print("[up] --demo needs the local sandbox (no Kubernetes regions configured, --sandbox)", flush=True)
            else:
                start_demo_release(settings, child_env(settings, temporal_address))
        while True:
            if server is not None:
                server.check()
            for child in children:
                child.check()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("[up] stopping...", flush=True)
        for child in children:
            child.stop()
        if running_sandbox is not None:
            running_sandbox.stop_children()  # simulator, Prometheus, Alertmanager; clusters keep running
        if server is not None:
            server.stop()
        print("[up] stopped", flush=True)


def _start_temporal(settings: Settings, temporal_address: str | None) -> tuple[SupervisedDevServer | None, str]:
    if temporal_address is not None:
        return None, temporal_address
    started = time.monotonic()
    host, _, port = settings.temporal.address.rpartition(":")
    ip = host or "127.0.0.1"
    ports = DevServerPorts.beside(host=ip, frontend=int(port), ui=settings.temporal.ui_port)
    codec_endpoint = f"http://{settings.webhook.listen}/codec" if settings.security.payload_keys_file else None
    dev_server = DevServer(state_dir=settings.state_dir / "temporal", ports=ports, ip=ip, codec_endpoint=codec_endpoint)
    server = SupervisedDevServer(dev_server)
    try:
        server.start()
    except (RuntimeError, FileNotFoundError) as exc:
        server.stop()
        raise CliError(f"cannot start the embedded Temporal server: {exc}", exit_code=EXIT_UNAVAILABLE) from exc
    except BaseException:
        server.stop()
        raise
    print(
        f"[up] Temporal dev server ready at {dev_server.address} in {time.monotonic() - started:.1f}s "
        f"(state {dev_server.state_dir / 'temporal.db'})",
        flush=True,
    )
    print(f"[up] Temporal Web UI: {dev_server.ui_url}", flush=True)
    return server, dev_server.address


def _check_namespace(settings: Settings, temporal_address: str) -> None:
    """Refuse (CliError naming `pitstop setup`) a namespace without pitstop's search attributes, at once."""
    from .temporal_connection import connect
    from .temporal_setup import ensure_ready

    target = settings.model_copy(update={"temporal": settings.temporal.model_copy(update={"address": temporal_address})})

    async def check() -> None:
        await ensure_ready(await connect(target), target)

    asyncio.run(check())


def _start_children(settings: Settings, temporal_address: str) -> list[SupervisedProcess]:
    logs = settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = child_env(settings, temporal_address)
    python = sys.executable
    children = [
        SupervisedProcess("worker", [python, "-m", "pitstop.workers.cli", "worker"], env, logs / "worker.log"),
        SupervisedProcess("webhook", [python, "-m", "pitstop.workers.webhook"], env, logs / "webhook.log"),
    ]
    for child in children:
        child.start()
    names = " and ".join(child.name for child in children)
    print(f"[up] {names} started; logs in {logs}", flush=True)
    return children
