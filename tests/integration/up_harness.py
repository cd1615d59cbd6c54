"""Helpers for tests that run `pitstop up --no-sandbox` as a subprocess on free ports, like a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pitstop.workers.devserver import DevServerPorts

PITSTOP = [sys.executable, "-m", "pitstop.workers.cli"]


def up_env(state_dir: Path, ports: DevServerPorts) -> dict[str, str]:
    """The environment of a `pitstop up` (and of CLI calls to it) on these ports, with no config file."""
    env = dict(os.environ)
    env.update(
        PITSTOP_STATE_DIR=str(state_dir),
        PITSTOP_TEMPORAL__ADDRESS=f"127.0.0.1:{ports.frontend}",
        PITSTOP_TEMPORAL__UI_PORT=str(ports.ui),
        PITSTOP_WORKER__METRICS_PORT="0",
        PITSTOP_CONFIG=str(state_dir / "absent.yaml"),
    )
    return env


def pitstop(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PITSTOP, *args], env=env, capture_output=True, text=True, timeout=timeout)


def start_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `pitstop up --no-sandbox` with its console in `log`; return once it says it is ready."""
    with log.open("ab") as out:
        proc = subprocess.Popen([*PITSTOP, "up", "--no-sandbox"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "ready in" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"pitstop up not ready in 30s:\n{log.read_text()}"
        time.sleep(0.2)
    return proc


def stop_up(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def running_processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every running process (read from /proc, Linux)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        found[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), command)
    return found


def child_pids(parent: int, *, command_contains: str) -> list[int]:
    """Pids of `parent`'s direct children whose command line contains the text."""
    return [
        pid
        for pid, (ppid, command) in running_processes().items()
        if ppid == parent and command_contains in command
    ]


def descendant_pids(ancestor: int) -> set[int]:
    """`ancestor` and every process below it."""
    processes = running_processes()
    found = {ancestor}
    while children := {pid for pid, (ppid, _) in processes.items() if ppid in found} - found:
        found |= children
    return found


def wait_for_line(log: Path, text: str, *, timeout: float = 60) -> str:
    """Wait until the console log contains `text`; return the log."""
    deadline = time.monotonic() + timeout
    while text not in (content := log.read_text()):
        assert time.monotonic() < deadline, f"{text!r} not in the log within {timeout:.0f}s:\n{content}"
        time.sleep(0.2)
    return content


def pids_with_environment(name: str, value: str) -> list[int]:
    """Pids of this user's processes whose environment has name=value (e.g. one test's PITSTOP_STATE_DIR)."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:  # exited meanwhile, or not ours
                continue
    return found
