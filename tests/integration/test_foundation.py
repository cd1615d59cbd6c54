"""The foundation end to end: CLI + worker + real Temporal dev server (+ its Web UI)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from workers.devserver import DevServerPorts, port_is_open

pytestmark = pytest.mark.integration

PITSTOP = [sys.executable, "-m", "workers.cli"]


def _env(state_dir: Path, ports: DevServerPorts) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PITSTOP_STATE_DIR=str(state_dir),
        PITSTOP_TEMPORAL__ADDRESS=f"127.0.0.1:{ports.frontend}",
        PITSTOP_TEMPORAL__UI_PORT=str(ports.ui),
        PITSTOP_WORKER__METRICS_PORT="0",
        PITSTOP_CONFIG=str(state_dir / "absent.yaml"),
    )
    return env


def _pitstop(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PITSTOP, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _start_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen([*PITSTOP, "up", "--no-sandbox"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "ready in" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"pitstop up not ready in 30s:\n{log.read_text()}"
        time.sleep(0.2)
    return proc


def _stop_up(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def test_up_run_list_survives_restart(tmp_path: Path) -> None:
    ports = DevServerPorts.free()
    env = _env(tmp_path / "state", ports)
    log = tmp_path / "up.log"

    proc = _start_up(env, log)
    try:
        ui = httpx.get(f"http://127.0.0.1:{ports.ui}/", timeout=10)
        assert ui.status_code == 200 and "<html" in ui.text.lower()

        result = _pitstop(env, "run", "hello", "-i", "name=eu-fleet", "--id", "hello-foundation")
        assert result.returncode == 0, result.stderr
        assert "run hello-foundation succeeded" in result.stdout

        status = _pitstop(env, "status", "hello-foundation")
        assert status.returncode == 0 and "COMPLETED" in status.stdout
        # the Web UI's API sees the run too
        api = httpx.get(f"http://127.0.0.1:{ports.ui}/api/v1/namespaces/default/workflows/hello-foundation", timeout=10)
        assert api.status_code == 200 and "hello-foundation" in api.text
    finally:
        _stop_up(proc)
    assert "stopped" in log.read_text()
    assert not port_is_open("127.0.0.1", ports.frontend)

    proc = _start_up(env, tmp_path / "up-again.log")
    try:
        listed = _pitstop(env, "list")
        assert listed.returncode == 0
        assert "hello-foundation" in listed.stdout and "COMPLETED" in listed.stdout
    finally:
        _stop_up(proc)


def test_cli_errors_are_one_line_with_meaningful_exit_codes(tmp_path: Path) -> None:
    env = _env(tmp_path / "state", DevServerPorts.free())  # nothing listens on these ports

    missing = _pitstop(env, "run", "no-such-runbook")
    assert missing.returncode == 4
    assert missing.stderr.strip().count("\n") == 0 and "no runbook named 'no-such-runbook'" in missing.stderr

    malformed = _pitstop(env, "run", "hello", "-i", "novalue")
    assert malformed.returncode == 2
    assert "malformed input 'novalue': expected key=value" in malformed.stderr

    unreachable = _pitstop(env, "run", "hello")
    assert unreachable.returncode == 3
    assert unreachable.stderr.startswith("pitstop: error: cannot reach Temporal at 127.0.0.1:")
    assert "Traceback" not in unreachable.stderr

    debug = _pitstop(env, "--debug", "run", "hello")
    assert debug.returncode == 3 and "Traceback" in debug.stderr


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = _env(tmp_path / "state", DevServerPorts.free())
    env["PITSTOP_WEBHOOK__TOKEN"] = "s3cr3t-token"
    env["PITSTOP_TEMPORAL__API_KEY"] = "cloud-key-123"
    shown = _pitstop(env, "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "s3cr3t-token" not in shown.stdout and "cloud-key-123" not in shown.stdout
    assert "token: '**********'" in shown.stdout
    assert f"address: 127.0.0.1:" in shown.stdout


def test_bad_config_file_is_one_clear_line(tmp_path: Path) -> None:
    env = _env(tmp_path / "state", DevServerPorts.free())
    bad = tmp_path / "config.yaml"
    bad.write_text("temporal: [unclosed\n")
    env["PITSTOP_CONFIG"] = str(bad)
    shown = _pitstop(env, "config", "show")
    assert shown.returncode == 2
    assert f"{bad}: not valid YAML" in shown.stderr
