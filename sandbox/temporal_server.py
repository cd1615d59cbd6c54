"""A real Temporal server on PostgreSQL, as pitstop's production topology runs it, as local processes.

PostgreSQL is Debian's (`postgresql`, started as our own process: `initdb` in a state directory, loopback only, a
Unix socket in that directory; as root it runs as the `postgres` user, which PostgreSQL requires). The Temporal
server and its schema tool are built from Go modules (`sandbox.temporal_binaries`): the schema tool creates the
`temporal` and `temporal_visibility` databases and applies the versioned schemas shipped in the server's module,
then `temporal-server start` runs every service (frontend, history, matching, worker) in one process, on free
loopback ports. `ensure_namespace` registers the namespace and pitstop's search attributes (what `pitstop setup`
does against any Temporal).

Used by the production-topology tests and `bench/scale_out.py`; the embedded dev server stays `pitstop up`'s default.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import yaml
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from pitstop.sandbox.temporal_binaries import ensure_temporal_binaries, temporal_module_dir

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
DB_USER = "temporal"
START_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_low_port() -> int:
    """A free port below 32768: Temporal stores membership ports in a PostgreSQL smallint."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_port(port: int, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}; log {log}:\n{_tail(log)}")
        if _port_open(port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_SECONDS}s; log {log}:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes] | None, *, kill: bool = False) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


@dataclass
class PostgresProcess:
    """Debian's PostgreSQL 15 in its own data directory, loopback TCP on `port`, trust auth for `temporal`."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pitstop-postgres-")))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def _as_db_user(self, command: list[str]) -> list[str]:
        """PostgreSQL refuses to run as root: there, run it as Debian's `postgres` user."""
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def start(self) -> None:
        if not (POSTGRES_BIN / "postgres").exists():
            raise RuntimeError(f"PostgreSQL 15 is missing ({POSTGRES_BIN}/postgres): apt-get install -y postgresql")
        data = self.root / "data"
        if os.geteuid() == 0:
            self.root.chmod(0o755)
            shutil.chown(self.root, user="postgres")
        if not data.exists():
            subprocess.run(self._as_db_user([str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", DB_USER,
                                             "--auth=trust", "--no-sync"]),
                           check=True, capture_output=True, timeout=120)
        command = [str(POSTGRES_BIN / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.root),
                   "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "max_connections=200"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self._as_db_user(command), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        _wait_for_port(self.port, "PostgreSQL", self.process, self.log_path)

    def stop(self) -> None:
        _stop(self.process)


@dataclass
class TemporalServerProcess:
    """`temporal-server start` with every service in one process, persistence and visibility on `postgres`."""

    postgres: PostgresProcess
    root: Path
    frontend_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    schema_ready: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.frontend_port}"

    @property
    def log_path(self) -> Path:
        return self.root / "temporal-server.log"

    def setup_schema(self) -> None:
        """Create both databases and apply the module's versioned PostgreSQL schemas (idempotent)."""
        bin_dir = ensure_temporal_binaries()
        schemas = temporal_module_dir() / "schema" / "postgresql" / "v12"
        tool = [str(bin_dir / "temporal-sql-tool"), "--ep", "127.0.0.1", "-p", str(self.postgres.port), "-u", DB_USER,
                "--pl", "postgres12"]
        for database, schema in (("temporal", "temporal"), ("temporal_visibility", "visibility")):
            for args in (["create-database"], ["setup-schema", "-v", "0.0"],
                         ["update-schema", "-d", str(schemas / schema / "versioned")]):
                result = subprocess.run([*tool, "--db", database, *args], capture_output=True, text=True, timeout=180,
                                        check=False)
                if result.returncode != 0 and "already exists" not in result.stderr + result.stdout:
                    raise RuntimeError(f"temporal-sql-tool {' '.join(args)} on {database} failed:\n{result.stderr[-2000:]}")
        self.schema_ready = True

    def _config(self) -> dict[str, object]:
        def store(database: str, conns: int) -> dict[str, object]:
            return {"sql": {"pluginName": "postgres12", "databaseName": database, "connectAddr": f"127.0.0.1:{self.postgres.port}",
                            "connectProtocol": "tcp", "user": DB_USER, "password": "", "maxConns": conns,
                            "maxIdleConns": conns, "maxConnLifetime": "1h"}}

        services = {}
        for name in ("frontend", "matching", "history", "worker"):
            rpc = {"grpcPort": self.frontend_port if name == "frontend" else free_port(), "membershipPort": free_low_port(),
                   "bindOnLocalHost": True}
            if name == "frontend":
                rpc["httpPort"] = free_port()
            services[name] = {"rpc": rpc}
        return {
            "log": {"stdout": True, "level": "warn"},
            "persistence": {"defaultStore": "default", "visibilityStore": "visibility", "numHistoryShards": 4,
                            "datastores": {"default": store("temporal", 20), "visibility": store("temporal_visibility", 4)}},
            "global": {"membership": {"maxJoinDuration": "30s", "broadcastAddress": "127.0.0.1"},
                       "metrics": {"prometheus": {"framework": "tally", "timerType": "histogram",
                                                  "listenAddress": f"127.0.0.1:{self.metrics_port}"}}},
            "services": services,
            "clusterMetadata": {"enableGlobalNamespace": False, "failoverVersionIncrement": 10,
                                "masterClusterName": "active", "currentClusterName": "active",
                                "clusterInformation": {"active": {"enabled": True, "initialFailoverVersion": 1,
                                                                  "rpcName": "frontend", "rpcAddress": self.address}}},
            "dcRedirectionPolicy": {"policy": "noop"},
            "dynamicConfigClient": {"filepath": str(self.root / "dynamicconfig.yaml"), "pollInterval": "10s"},
        }

    def start(self) -> None:
        if not self.schema_ready:
            self.setup_schema()
        config_dir = self.root / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "development.yaml").write_text(yaml.safe_dump(self._config()))
        (self.root / "dynamicconfig.yaml").write_text("{}\n")
        command = [str(ensure_temporal_binaries() / "temporal-server"), "--root", str(self.root), "--config", "config",
                   "--env", "development", "--allow-no-auth", "start"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        _wait_for_port(self.frontend_port, "the Temporal server", self.process, self.log_path)

    def kill(self) -> None:
        """kill -9, as a crash would."""
        _stop(self.process, kill=True)

    def stop(self) -> None:
        _stop(self.process)


async def ensure_namespace(client: Client, namespace: str = "default", retention: timedelta = timedelta(days=3)) -> None:
    """Register the namespace if absent and wait until it answers (a fresh server takes a few seconds)."""
    service = client.workflow_service
    try:
        await service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
        return
    except RPCError:
        pass
    await service.register_namespace(RegisterNamespaceRequest(
        namespace=namespace, workflow_execution_retention_period=Duration(seconds=int(retention.total_seconds()))))
    deadline = time.monotonic() + 30
    while True:
        try:
            await service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
            return
        except RPCError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
