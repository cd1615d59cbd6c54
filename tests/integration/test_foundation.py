"""The foundation end to end: CLI + worker + real Temporal dev server (+ its Web UI)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pitstop.workers.devserver import DevServerPorts, port_is_open

from .up_harness import pitstop, start_up, stop_up, up_env

pytestmark = pytest.mark.integration


def test_up_run_list_survives_restart(tmp_path: Path) -> None:
    ports = DevServerPorts.free()
    env = up_env(tmp_path / "state", ports)
    log = tmp_path / "up.log"

    proc = start_up(env, log)
    try:
        ui = httpx.get(f"http://127.0.0.1:{ports.ui}/", timeout=10)
        assert ui.status_code == 200 and "<html" in ui.text.lower()

        result = pitstop(env, "run", "hello", "-i", "name=eu-fleet", "--id", "hello-foundation")
        assert result.returncode == 0, result.stderr
        assert "run hello-foundation succeeded" in result.stdout

        status = pitstop(env, "status", "hello-foundation")
        assert status.returncode == 0 and "COMPLETED" in status.stdout
        # the Web UI's API sees the run too
        api = httpx.get(f"http://127.0.0.1:{ports.ui}/api/v1/namespaces/default/workflows/hello-foundation", timeout=10)
        assert api.status_code == 200 and "hello-foundation" in api.text
    finally:
        stop_up(proc)
    assert "stopped" in log.read_text()
    assert not port_is_open("127.0.0.1", ports.frontend)

    proc = start_up(env, tmp_path / "up-again.log")
    try:
        listed = pitstop(env, "list")
        assert listed.returncode == 0
        assert "hello-foundation" in listed.stdout and "COMPLETED" in listed.stdout
    finally:
        stop_up(proc)


def test_cli_errors_are_one_line_with_meaningful_exit_codes(tmp_path: Path) -> None:
    env = up_env(tmp_path / "state", DevServerPorts.free())  # nothing listens on these ports

    missing = pitstop(env, "run", "no-such-runbook")
    assert missing.returncode == 4
    assert missing.stderr.strip().count("\n") == 0 and "no runbook named 'no-such-runbook'" in missing.stderr

    malformed = pitstop(env, "run", "hello", "-i", "novalue")
    assert malformed.returncode == 2
    assert "malformed input 'novalue': expected key=value" in malformed.stderr

    unreachable = pitstop(env, "run", "hello")
    assert unreachable.returncode == 3
    assert unreachable.stderr.startswith("pitstop: error: cannot reach Temporal at 127.0.0.1:")
    assert "Traceback" not in unreachable.stderr

    debug = pitstop(env, "--debug", "run", "hello")
    assert debug.returncode == 3 and "Traceback" in debug.stderr


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = up_env(tmp_path / "state", DevServerPorts.free())
    env["PITSTOP_WEBHOOK__TOKEN"] = "s3cr3t-token"
    env["PITSTOP_TEMPORAL__API_KEY"] = "cloud-key-123"
    shown = pitstop(env, "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "s3cr3t-token" not in shown.stdout and "cloud-key-123" not in shown.stdout
    assert "token: '**********'" in shown.stdout
    assert f"address: 127.0.0.1:" in shown.stdout


def test_bad_config_file_is_one_clear_line(tmp_path: Path) -> None:
    env = up_env(tmp_path / "state", DevServerPorts.free())
    bad = tmp_path / "config.yaml"
    bad.write_text("temporal: [unclosed\n")
    env["PITSTOP_CONFIG"] = str(bad)
    shown = pitstop(env, "config", "show")
    assert shown.returncode == 2
    assert f"{bad}: not valid YAML" in shown.stderr
