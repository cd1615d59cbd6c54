"""The sandbox's global traffic authority: a tiny GSLB / edge-DNS process outside every region.

It holds the one copy of the global per-region traffic weights (how vehicles are spread over regions): the
traffic simulator obeys them (a region receives `weight / sum(weights)` of the global traffic) and pitstop
changes them through `activities.traffic_authority.HttpTrafficAuthority`. Because it runs outside every
region's cluster, it stays reachable when one region's control plane is gone — the point of a GSLB.

HTTP API (loopback only; every `/v1` call needs `Authorization: Bearer <token>`):
- `GET /v1/weights` -> `{"weights": {"eu-central": 100, "us-east": 100}}`
- `PUT /v1/weights` with `{"weights": {"us-east": 0}, "key": "..."}` -> merges, returns
  `{"previous": {...}, "weights": {...}}` (weights are integers >= 0; unknown regions are added). `key` (optional,
  the caller's undo key) makes a repeat return the previous weights recorded the first time (newest 256 kept).
- `GET /healthz` (no auth) -> `ok`

State: `<dir>/weights.json` (written atomically, survives restarts); the bearer token is read from
`--token-file` (default `<dir>/token`; created 0600 with a random token when absent). Regions named with `--regions` start at 100.

Run: `python -m pitstop.sandbox.gslb --dir STATE/sandbox/gslb --regions eu-central,us-east --port P`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_WEIGHT = 100
MAX_BODY_BYTES = 65_536
UNDO_KEYS_KEPT = 256


def token_path(state_dir: Path) -> Path:
    return state_dir / "token"


def ensure_token(path: Path) -> str:
    """The authority's bearer token, created (0600) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def checked_weights(value: Any) -> dict[str, int]:
    """`{"region": int >= 0}`; anything else raises ValueError naming the offending entry."""
    if not isinstance(value, dict) or not value:
        raise ValueError("`weights` must be a non-empty object of region -> integer weight")
    out: dict[str, int] = {}
    for region, weight in value.items():
        if not isinstance(region, str) or not region or len(region) > 63:
            raise ValueError(f"region name {region!r} is invalid")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ValueError(f"weights.{region}: {weight!r} is not an integer >= 0")
        out[region] = weight
    return out


class WeightStore:
    """The weights, persisted in `weights.json` after every change (atomic rename)."""

    def __init__(self, state_dir: Path, regions: Sequence[str]) -> None:
        self._path = state_dir / "weights.json"
        self._lock = threading.Lock()
        stored = json.loads(self._path.read_text()) if self._path.exists() else {}
        self._weights = {region: DEFAULT_WEIGHT for region in regions}
        if stored.get("weights"):
            self._weights.update(checked_weights(stored["weights"]))
        self._undo: dict[str, dict[str, int]] = dict(stored.get("undo") or {})
        self._save()

    def get(self) -> dict[str, int]:
        with self._lock:
            return dict(self._weights)

    def merge(self, weights: dict[str, int], *, key: str | None = None) -> dict[str, int]:
        """Apply `weights` on top of the current ones; returns the previous weights (the first call's, per key)."""
        with self._lock:
            previous = dict(self._weights)
            if key:
                previous = self._undo.setdefault(key, previous)
                while len(self._undo) > UNDO_KEYS_KEPT:
                    self._undo.pop(next(iter(self._undo)))
            self._weights.update(weights)
            self._save()
            return previous

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"weights": self._weights, "undo": self._undo}))
        tmp.replace(self._path)


class _Handler(BaseHTTPRequestHandler):
    store: WeightStore
    token: str

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
        elif self._authorized() and self.path == "/v1/weights":
            self._send(200, {"weights": self.store.get()})
        elif self._authorized():
            self._send(404, {"error": f"no such resource {self.path}"})

    def do_PUT(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        if self.path != "/v1/weights":
            self._send(404, {"error": f"no such resource {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            weights = checked_weights(body.get("weights"))
            key = body.get("key")
            if key is not None and (not isinstance(key, str) or len(key) > 512):
                raise ValueError("`key` must be a string of at most 512 characters")
        except (ValueError, AttributeError) as exc:
            self._send(400, {"error": str(exc)})
            return
        previous = self.store.merge(weights, key=key)
        self._send(200, {"previous": previous, "weights": self.store.get()})

    def _authorized(self) -> bool:
        supplied = self.headers.get("Authorization", "")
        if secrets.compare_digest(supplied.encode(), f"Bearer {self.token}".encode()):
            return True
        self._send(401, {"error": "missing or wrong bearer token"})
        return False

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


def serve(*, state_dir: Path, regions: Sequence[str], port: int, token_file: Path) -> ThreadingHTTPServer:
    state_dir.mkdir(parents=True, exist_ok=True)
    handler = type("GslbHandler", (_Handler,), {"store": WeightStore(state_dir, regions),
                                                "token": ensure_token(token_file)})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the sandbox's global traffic authority (GSLB), loopback only")
    parser.add_argument("--dir", type=Path, required=True, help="state directory (weights.json, token)")
    parser.add_argument("--regions", default="", help="comma-separated regions that start at weight 100")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-file", type=Path, help="bearer token file (default <dir>/token)")
    args = parser.parse_args(argv)
    server = serve(state_dir=args.dir, regions=[r for r in args.regions.split(",") if r], port=args.port,
                   token_file=args.token_file or token_path(args.dir))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class WeightsFollower:
    """What a data plane (the traffic simulator) does with the authority: polls its weights every
    `interval_seconds` and keeps the last answer, like a resolver keeps a DNS record until its TTL
    refreshes. Regions the authority does not name get `DEFAULT_WEIGHT`."""

    def __init__(self, *, url: str, token_file: Path, interval_seconds: float = 0.5) -> None:
        self._url, self._token_file, self._interval = url.rstrip("/"), token_file, interval_seconds
        self._weights: dict[str, int] = {}
        self._stop = threading.Event()
        self.error = ""

    def weights(self, regions: Sequence[str]) -> dict[str, float]:
        known = dict(self._weights)
        return {region: float(known.get(region, DEFAULT_WEIGHT)) for region in regions}

    def refresh(self) -> None:
        import httpx

        token = self._token_file.read_text().strip()
        response = httpx.get(f"{self._url}/v1/weights", headers={"Authorization": f"Bearer {token}"}, timeout=2)
        response.raise_for_status()
        self._weights = checked_weights(response.json()["weights"])

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True, name="gslb-weights").start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
                self.error = ""
            except Exception as exc:  # unreachable authority: keep the last weights
                self.error = repr(exc)
            self._stop.wait(self._interval)


class GslbProcess:
    """The authority running as a child process (`python -m pitstop.sandbox.gslb`)."""

    def __init__(self, *, process: subprocess.Popen[bytes], port: int, state_dir: Path, token_file: Path) -> None:
        self.process, self.port, self.state_dir, self.token_file = process, port, state_dir, token_file

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, *, timeout_seconds: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gslb_process(*, state_dir: Path, regions: Sequence[str], port: int | None = None,
                       token_file: Path | None = None, log_path: Path | None = None,
                       ready_timeout_seconds: float = 20.0) -> GslbProcess:
    """Start the authority on 127.0.0.1 and wait until it answers `/healthz`."""
    import httpx

    from pitstop.sandbox.monitoring import free_loopback_port

    port = port or free_loopback_port()
    token_file = token_file or token_path(state_dir)
    ensure_token(token_file)
    log_path = log_path or state_dir / "gslb.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "pitstop.sandbox.gslb", "--dir", str(state_dir), "--regions", ",".join(regions),
         "--port", str(port), "--token-file", str(token_file)],
        stdout=log_path.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
    )
    handle = GslbProcess(process=process, port=port, state_dir=state_dir, token_file=token_file)
    deadline = time.monotonic() + ready_timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"global traffic authority exited with {process.returncode}; log {log_path}:\n"
                               f"{log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{handle.url}/healthz", timeout=2).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    handle.stop()
    raise RuntimeError(f"global traffic authority not ready after {ready_timeout_seconds}s; log {log_path}")


if __name__ == "__main__":
    main()
