"""`pitstop up` with the local sandbox listens on loopback only: every TCP listener of every process it runs
(Temporal dev server, worker, webhook, simulator, Prometheus, Alertmanager, and each sandbox cluster's
kube-apiserver, etcd, controller-manager, scheduler and kwok controller) is on 127.0.0.1 or ::1.

The listeners are read from /proc/net/tcp{,6} and matched to processes through their socket inodes in
/proc/<pid>/fd (Linux). The clusters' processes are detached by kwokctl (not children of `up`); they are the
processes whose command line names this test's state dir.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pitstop.config import Settings, load_settings
from pitstop.sandbox.binaries import KubeBinaries
from pitstop.sandbox.lifecycle import delete_sandbox
from pitstop.sandbox.monitoring import free_loopback_port
from tests.integration.up_harness import PITSTOP, descendant_pids, running_processes, stop_up, up_env
from pitstop.workers.devserver import DevServerPorts

pytestmark = pytest.mark.sandbox

UP_READY_SECONDS = 300  # a cold sandbox: clusters, fleet, 14 days of history, monitoring
LOOPBACK = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
TCP_LISTEN = "0A"
# Every kind of process `pitstop up` runs that serves something, by a part of its command line.
EXPECTED_LISTENERS = {
    "temporal dev server": "server start-dev",
    "worker (SDK metrics)": "workers.cli worker",
    "webhook": "workers.webhook",
    "simulator": "sandbox.simulator",
    "prometheus": "--storage.tsdb.path",
    "alertmanager": "--cluster.listen-address",
    "kube-apiserver": "/kube-apiserver ",
    "etcd": "/etcd ",
    "kube-controller-manager": "/kube-controller-manager ",
    "kube-scheduler": "/kube-scheduler ",
    "kwok controller": "/kwok-controller ",
}


@dataclass(frozen=True)
class Listener:
    pid: int
    command: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port} pid {self.pid} {self.command[:160]}"


def _socket_address(hex_address: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """`0100007F:1F90` (/proc/net/tcp) or 32 hex digits + port (tcp6): kernel byte order per 32-bit word."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    native = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(native), int(port, 16)


def _listening_sockets() -> dict[int, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """Socket inode -> (address, port) of every listening TCP socket in this network namespace."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == TCP_LISTEN:
                found[int(fields[9])] = _socket_address(fields[1])
    return found


def _processes_of_up(up_pid: int, state_dir: Path) -> dict[int, str]:
    """`up` and its descendants, plus the detached cluster processes whose command line names the state dir."""
    processes = running_processes()
    ours = descendant_pids(up_pid) | {pid for pid, (_, command) in processes.items() if str(state_dir) in command}
    return {pid: processes[pid][1] for pid in ours if pid in processes}


def _listeners_of(processes: dict[int, str]) -> list[Listener]:
    sockets = _listening_sockets()
    found = []
    for pid, command in processes.items():
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # exited meanwhile
            continue
        for link in links:
            if link.startswith("socket:[") and (inode := int(link[8:-1])) in sockets:
                address, port = sockets[inode]
                found.append(Listener(pid=pid, command=command, address=address, port=port))
    return sorted(set(found), key=lambda listener: (listener.pid, listener.port))


def _missing_kinds(listeners: list[Listener]) -> list[str]:
    return [kind for kind, marker in EXPECTED_LISTENERS.items() if not any(marker in lst.command for lst in listeners)]


@pytest.fixture
def up_settings(tmp_path: Path, kube_binaries: KubeBinaries) -> Iterator[tuple[Settings, dict[str, str]]]:
    """One region of 6 services in this test's own state dir, every port free and explicit."""
    state_dir = tmp_path / "state"
    settings = load_settings(
        state_dir=state_dir,
        prometheus={"url": f"http://127.0.0.1:{free_loopback_port()}"},
        alertmanager={"url": f"http://127.0.0.1:{free_loopback_port()}"},
        sandbox={"regions": ["eu-central"], "services": 6},
    )
    env = up_env(state_dir, DevServerPorts.free())
    env.update(
        PITSTOP_PROMETHEUS__URL=settings.prometheus.url,
        PITSTOP_ALERTMANAGER__URL=settings.alertmanager.url,
        PITSTOP_SANDBOX__REGIONS='["eu-central"]',
        PITSTOP_SANDBOX__SERVICES="6",
        PITSTOP_WEBHOOK__LISTEN=f"127.0.0.1:{free_loopback_port()}",
        PITSTOP_WORKER__METRICS_PORT=str(free_loopback_port()),
    )
    yield settings, env
    delete_sandbox(settings)  # the clusters outlive `up`


def test_pitstop_up_with_the_sandbox_listens_on_loopback_only(
    up_settings: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    settings, env = up_settings
    log = tmp_path / "up.log"
    with log.open("ab") as out:
        up = subprocess.Popen([*PITSTOP, "up"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + UP_READY_SECONDS
        while "ready in" not in log.read_text():
            assert up.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"pitstop up not ready in {UP_READY_SECONDS}s:\n{log.read_text()}"
            time.sleep(1)
        assert "[sandbox] clusters ready" in log.read_text()

        deadline = time.monotonic() + 90  # the worker binds its metrics port once connected
        listeners = _listeners_of(_processes_of_up(up.pid, settings.state_dir))
        while _missing_kinds(listeners) and time.monotonic() < deadline:
            time.sleep(1)
            listeners = _listeners_of(_processes_of_up(up.pid, settings.state_dir))
        listing = "\n".join(map(str, listeners))
        assert not _missing_kinds(listeners), f"no listener seen for {_missing_kinds(listeners)}:\n{listing}"

        beyond_loopback = [listener for listener in listeners if listener.address not in LOOPBACK]
        assert not beyond_loopback, "listening beyond loopback:\n" + "\n".join(map(str, beyond_loopback))
        configured_ports = {
            int(address.rsplit(":", 1)[1])
            for address in (settings.prometheus.url, settings.alertmanager.url, env["PITSTOP_WEBHOOK__LISTEN"],
                            env["PITSTOP_TEMPORAL__ADDRESS"])
        } | {int(env["PITSTOP_WORKER__METRICS_PORT"])}
        assert configured_ports <= {listener.port for listener in listeners}, listing
        print(listing)
    finally:
        stop_up(up)
