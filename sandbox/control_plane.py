"""Stopping, starting and restarting one sandbox cluster's kube-apiserver process (a region's API server outage).

A sandbox cluster is a kwokctl cluster with the binary runtime (`sandbox.clusters`): every component runs as a
detached local process. kwokctl keeps, in `<kwok workdir>/clusters/<name>/`:
- `kwok.yaml`: the saved configuration, one entry per component under `components:` (binary, args, workDir,
  envs, ports, the metrics endpoint's scheme and host);
- `pids/<component>.pid`, `logs/<component>.log`, and `kubeconfig.yaml` (admin client certificate).
kwokctl itself starts and stops only whole clusters, so this module starts a component from its saved entry the
way kwokctl does (same binary and arguments, stdout/stderr appended to its log, a session of its own, parent
init) and writes its pid file, so `kwokctl stop|delete cluster` and `sandbox.orphans` still find it.

A restart must leave the cluster healthy. kube-controller-manager and kube-scheduler run with leader election
and EXIT when they cannot renew their lease for 10 s ("leaderelection lost"), which an API server restart on a
busy machine easily exceeds; nothing restarts them in the binary runtime, so Deployments stop rolling out.
`restart_kube_apiserver` therefore restarts both once the API server is ready again (as a kubelet would restart
them), starts the kwok controller again if it exited, and checks each one's health endpoint.

Stops and starts hold `sandbox.clusters.port_picking_lock`: the stopped API server's fixed port is free while
it is down, and a kwokctl run meanwhile (another test session creating a cluster) could pick it.
`restart_kube_apiserver(..., down_seconds=)` keeps the lock for the whole outage; the separate
`stop_kube_apiserver` / `start_kube_apiserver` hold it only while each runs.

    python -m pitstop.sandbox.control_plane restart|stop|start --region eu-central [--down-seconds 5]
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from pitstop.sandbox.clusters import SandboxClusters, port_picking_lock

KUBE_APISERVER = "kube-apiserver"
KUBE_CONTROLLER_MANAGER = "kube-controller-manager"
KUBE_SCHEDULER = "kube-scheduler"
KWOK_CONTROLLER = "kwok-controller"
LEADER_ELECTED = (KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER)
"""Components that exit when their lease cannot be renewed while the API server is down."""
STOP_TIMEOUT_SECONDS = 10.0
"""SIGTERM, then SIGKILL after this long."""
READY_TIMEOUT_SECONDS = 120.0


class ControlPlaneError(RuntimeError):
    """A component could not be stopped, started or made healthy; the message names the cluster and component."""


@dataclass(frozen=True)
class ComponentCommand:
    """How kwokctl runs one component, from the cluster's saved `kwok.yaml`."""

    name: str
    argv: list[str]
    work_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None  # `<metrics scheme>://<metrics host>/healthz` (readyz for the API server)


@dataclass(frozen=True)
class KwokCluster:
    """Where one sandbox cluster's processes are described, recorded and logged."""

    name: str
    directory: Path

    @classmethod
    def of(cls, clusters: SandboxClusters, region: str) -> KwokCluster:
        name = clusters.cluster_names[region]
        return cls(name=name, directory=clusters.kwok_workdir / "clusters" / name)

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig.yaml"

    def pid_file(self, component: str) -> Path:
        return self.directory / "pids" / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.directory / "logs" / f"{component}.log"

    def command(self, component: str) -> ComponentCommand:
        saved = self.directory / "kwok.yaml"
        if not saved.is_file():
            raise ControlPlaneError(f"cluster {self.name}: {saved} does not exist (was the cluster deleted?)")
        return component_command(saved.read_text(), component, cluster=self.name)


# ---------------------------------------------------------------------- pure pieces


def component_command(saved_config: str, component: str, *, cluster: str = "?") -> ComponentCommand:
    """The command line of `component` in a cluster's saved kwokctl configuration (`kwok.yaml`)."""
    for document in yaml.safe_load_all(saved_config):
        if not isinstance(document, dict) or document.get("kind") != "KwokctlConfiguration":
            continue
        for entry in document.get("components") or []:
            if entry.get("name") != component:
                continue
            if not entry.get("binary"):
                raise ControlPlaneError(f"cluster {cluster}: component {component} has no binary in kwok.yaml "
                                        "(only the binary runtime is supported)")
            metric = entry.get("metric") or {}
            health = None
            if metric.get("host"):
                path = "/readyz" if component == KUBE_APISERVER else "/healthz"
                health = f"{metric.get('scheme') or 'http'}://{metric['host']}{path}"
            return ComponentCommand(
                name=component,
                argv=[str(entry["binary"]), *[str(a) for a in entry.get("args") or []]],
                work_dir=Path(entry.get("workDir") or "."),
                env={str(e["name"]): str(e.get("value", "")) for e in entry.get("envs") or []},
                health_url=health,
            )
    raise ControlPlaneError(f"cluster {cluster}: no component {component!r} in its saved kwokctl configuration")


def runs_command(cmdline: bytes, command: ComponentCommand) -> bool:
    """Whether a /proc/<pid>/cmdline runs `command`'s binary (a recorded pid may since belong to another process)."""
    argv = [part.decode(errors="replace") for part in cmdline.split(b"\0") if part]
    return bool(argv) and argv[0] == command.argv[0]


def process_state(stat: str) -> str:
    """The state letter of a /proc/<pid>/stat line (R, S, Z, ...); the command name may hold spaces and ')'."""
    return stat.rsplit(")", 1)[1].split()[0]


# ---------------------------------------------------------------------- processes


def component_pid(cluster: KwokCluster, component: str) -> int | None:
    """The pid of the component's running process, or None (no pid file, gone, a zombie or another program)."""
    try:
        pid = int(cluster.pid_file(component).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid, cluster.command(component)) else None


def _alive(pid: int, command: ComponentCommand) -> bool:
    proc = Path(f"/proc/{pid}")
    try:
        return process_state((proc / "stat").read_text()) != "Z" and runs_command((proc / "cmdline").read_bytes(), command)
    except (OSError, IndexError):
        return False


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own child (else init does)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _stop(cluster: KwokCluster, component: str, *, timeout: float) -> bool:
    """SIGTERM, SIGKILL after `timeout`; True if a process was running."""
    command = cluster.command(component)
    pid = component_pid(cluster, component)
    if pid is None:
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not _alive(pid, command):
                return True
            time.sleep(0.05)
    raise ControlPlaneError(f"cluster {cluster.name}: {component} (pid {pid}) survived SIGKILL")


_DETACH = (
    "import json, subprocess, sys\n"
    "a = json.load(sys.stdin)\n"
    "log = open(a['log'], 'ab')\n"
    "p = subprocess.Popen(a['argv'], cwd=a['cwd'], env=a['env'], stdin=subprocess.DEVNULL, stdout=log,"
    " stderr=log, start_new_session=True)\n"
    "print(p.pid)\n"
)


def _start(cluster: KwokCluster, component: str) -> int:
    """Start the component as kwokctl does (detached: its parent exits at once); its pid, also in the pid file."""
    running = component_pid(cluster, component)
    if running is not None:
        return running
    command = cluster.command(component)
    log = cluster.log_file(component)
    log.parent.mkdir(parents=True, exist_ok=True)
    request = {"argv": command.argv, "cwd": str(command.work_dir), "env": {**os.environ, **command.env}, "log": str(log)}
    spawned = subprocess.run([sys.executable, "-c", _DETACH], input=json.dumps(request), capture_output=True,
                             text=True, timeout=30, check=False)
    if spawned.returncode != 0:
        raise ControlPlaneError(f"cluster {cluster.name}: starting {component} failed: {spawned.stderr.strip()[-2000:]}")
    pid = int(spawned.stdout.strip())
    cluster.pid_file(component).parent.mkdir(parents=True, exist_ok=True)
    cluster.pid_file(component).write_text(str(pid))
    return pid


# ---------------------------------------------------------------------- health


def _ssl_context(cluster: KwokCluster) -> ssl.SSLContext:
    """The cluster's CA and admin client certificate, as named by its own kubeconfig."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    server, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    context = ssl.create_default_context(cafile=server["certificate-authority"])
    context.load_cert_chain(user["client-certificate"], user["client-key"])
    return context


def _healthy(command: ComponentCommand, tls: ssl.SSLContext | bool) -> bool:
    if command.health_url is None:
        return True
    try:
        return httpx.get(command.health_url, verify=tls, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(cluster: KwokCluster, component: str, *, timeout: float = READY_TIMEOUT_SECONDS) -> float:
    """Wait (at most `timeout` s) until the component's process runs and its health endpoint answers 200;
    the seconds waited. kube-apiserver is asked `/readyz` with the admin certificate, the others `/healthz`."""
    command = cluster.command(component)
    tls: ssl.SSLContext | bool = _ssl_context(cluster) if component == KUBE_APISERVER else False
    started = time.monotonic()
    while True:
        alive = component_pid(cluster, component) is not None
        if alive and _healthy(command, tls):
            return time.monotonic() - started
        if not alive or time.monotonic() - started > timeout:
            state = "is not running" if not alive else f"not healthy after {timeout:.0f}s"
            raise ControlPlaneError(f"cluster {cluster.name}: {component} {state} ({command.health_url}); "
                                    f"end of {cluster.log_file(component)}:\n{_log_tail(cluster, component)}")
        time.sleep(0.2)


def wait_api_ready(cluster: KwokCluster, *, timeout: float = READY_TIMEOUT_SECONDS) -> float:
    """Wait (bounded) until the cluster's kube-apiserver answers `/readyz`; the seconds waited."""
    return wait_healthy(cluster, KUBE_APISERVER, timeout=timeout)


def _log_tail(cluster: KwokCluster, component: str, lines: int = 15) -> str:
    try:
        return "\n".join(cluster.log_file(component).read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"


# ---------------------------------------------------------------------- public operations


def stop_kube_apiserver(cluster: KwokCluster, *, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
    """Stop the cluster's kube-apiserver (SIGTERM, SIGKILL after `timeout`); True if it was running.
    Its port is free until `start_kube_apiserver`; prefer `restart_kube_apiserver(down_seconds=)`."""
    with port_picking_lock():
        return _stop(cluster, KUBE_APISERVER, timeout=timeout)


def start_kube_apiserver(cluster: KwokCluster, *, timeout: float = READY_TIMEOUT_SECONDS) -> float:
    """Start the kube-apiserver again and make the cluster healthy (see `restart_kube_apiserver`);
    the seconds until the API server was ready."""
    with port_picking_lock():
        return _start_and_heal(cluster, timeout=timeout)


def restart_kube_apiserver(
    cluster: KwokCluster, *, down_seconds: float = 0.0, stop_timeout: float = STOP_TIMEOUT_SECONDS,
    timeout: float = READY_TIMEOUT_SECONDS,
) -> float:
    """Stop the kube-apiserver, keep it down `down_seconds`, start it, wait until it is ready, then restart
    kube-controller-manager and kube-scheduler (and the kwok controller if it exited) and wait until each is
    healthy — all under the port-picking lock. Returns the seconds from the stop until the API server was ready."""
    with port_picking_lock():
        stopped = time.monotonic()
        _stop(cluster, KUBE_APISERVER, timeout=stop_timeout)
        time.sleep(down_seconds)
        started = time.monotonic()
        ready_after = _start_and_heal(cluster, timeout=timeout)
        return started + ready_after - stopped


def _start_and_heal(cluster: KwokCluster, *, timeout: float) -> float:
    """Start the API server, wait for /readyz, then restart the leader-elected components and revive kwok;
    the seconds from the start until the API server was ready."""
    began = time.monotonic()
    _start(cluster, KUBE_APISERVER)
    wait_api_ready(cluster, timeout=timeout)
    ready_after = time.monotonic() - began
    for component in LEADER_ELECTED:
        _stop(cluster, component, timeout=STOP_TIMEOUT_SECONDS)
        _start(cluster, component)
    _start(cluster, KWOK_CONTROLLER)  # a no-op while it runs
    for component in (*LEADER_ELECTED, KWOK_CONTROLLER):
        wait_healthy(cluster, component, timeout=timeout)
    return ready_after


def main(argv: list[str] | None = None) -> int:
    """`python -m pitstop.sandbox.control_plane restart|stop|start --region R` on the configured sandbox."""
    import argparse

    from pitstop.config import load_settings
    from pitstop.sandbox.clusters import DEFAULT_CLUSTER_PREFIX, cluster_name, kwok_workdir

    parser = argparse.ArgumentParser(prog="python -m pitstop.sandbox.control_plane", description=main.__doc__)
    parser.add_argument("command", choices=["restart", "stop", "start"])
    parser.add_argument("--region", required=True, help="the sandbox region whose kube-apiserver to act on")
    parser.add_argument("--down-seconds", type=float, default=0.0, help="restart: how long the API server stays down")
    args = parser.parse_args(argv)
    settings = load_settings()
    name = cluster_name(prefix=DEFAULT_CLUSTER_PREFIX, region=args.region)
    cluster = KwokCluster(name=name, directory=kwok_workdir(settings.state_dir) / "clusters" / name)
    try:
        if args.command == "stop":
            print("stopped" if stop_kube_apiserver(cluster) else "was not running")
        elif args.command == "start":
            print(f"ready after {start_kube_apiserver(cluster):.1f}s")
        else:
            print(f"ready {restart_kube_apiserver(cluster, down_seconds=args.down_seconds):.1f}s after the stop")
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
