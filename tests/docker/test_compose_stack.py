"""The docker-compose stack through testcontainers — only where a Docker engine exists.

There is no Docker engine on pitstop's CI machines; this test then skips and says why (visible with -ra).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]


def _docker_engine_available() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, "no docker client on PATH"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    if probe.returncode != 0:
        return False, f"no Docker engine: `docker info` failed ({probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else probe.returncode})"
    return True, ""


def test_compose_stack_serves_temporal() -> None:
    available, reason = _docker_engine_available()
    if not available:
        pytest.skip(f"docker-compose stack not started: {reason}")
    from testcontainers.compose import DockerCompose

    with DockerCompose(str(ROOT), compose_file_name="docker-compose.yml", env_file=None) as compose:
        host = compose.get_service_host("temporal", 7233)
        port = compose.get_service_port("temporal", 7233)
        assert host and port
