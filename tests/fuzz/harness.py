"""What the fuzzers share: the outcome of one case, a hang watchdog, the real webhook process and a raw HTTP client.

Used by the CI fuzz tests (tests/fuzz/test_*.py: assert every case is `ok` or `refused`) and by `bench/fuzz.py`
(counts every kind). A case is:
- `ok`: accepted (a parsed payload, a 2xx answer, a runbook without problems);
- `refused`: refused the documented way (BodyNotJson / a pydantic ValidationError, a 4xx answer or a connection
  the server closes on a request it cannot frame, runbook problems that name the file);
- `5xx`: the webhook answered 5xx; `traceback`: an exception escaped (or the server logged one, or died);
  `hang`: the case did not finish within `HANG_SECONDS`; `misattributed`: a runbook problem not naming its file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pitstop.workers.devserver import free_port

ROOT = Path(__file__).resolve().parents[2]
HANG_SECONDS = 5.0  # a generous bound: hang detection, not a speed criterion
GOOD = ("ok", "refused")

Kind = Literal["ok", "refused", "5xx", "traceback", "hang", "misattributed"]
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    detail: str = ""

    @property
    def good(self) -> bool:
        return self.kind in GOOD


class Hang(Exception):
    """The case ran longer than its bound."""


def within(seconds: float, run: Callable[[], T]) -> T:
    """`run()` in a daemon thread; its result or exception, or Hang after `seconds` (the thread is abandoned)."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = run()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="fuzz-case", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise Hang(f"no result after {seconds:.0f} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def paths_in(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and list indexes) in a nested value, the root `()` first: where mutations apply."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_in(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_in(item, path + (index,))
    return found


def escaped(exc: BaseException) -> Outcome:
    """An exception that escaped the code under test."""
    return Outcome("traceback", "".join(traceback.format_exception(exc))[-3000:])


# ------------------------------------------------------------------ the real webhook process


def basic_password(token: str) -> str:
    """The basic-auth password of the fuzzed receiver (user `fuzz`): derived from its token."""
    return token + ":basic"


class WebhookProcess:
    """`python -m pitstop.workers.webhook` on a free loopback port, its Temporal address a closed port (the client
    connects lazily; alerts are journaled and wait): everything up to the journal runs for real. Bearer token
    `token`, basic auth `fuzz`/`basic_password(token)`; the rate limit is raised far above the fuzz's pace so
    every case reaches the code it fuzzes (tests/integration/test_webhook.py tests the limit)."""

    def __init__(self, *, token: str, max_body_bytes: int = 1_048_576) -> None:
        self.token = token
        self.state = Path(tempfile.mkdtemp(prefix="pitstop-fuzz-webhook-"))
        self.log_path = self.state / "webhook.log"
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PITSTOP_CONFIG": "/nonexistent",
               "PITSTOP_STATE_DIR": str(self.state), "PITSTOP_WEBHOOK__TOKEN": token,
               "PITSTOP_WEBHOOK__LISTEN": f"127.0.0.1:{self.port}",
               "PITSTOP_WEBHOOK__MAX_BODY_BYTES": str(max_body_bytes),
               "PITSTOP_WEBHOOK__BASIC_AUTH__USERNAME": "fuzz",
               "PITSTOP_WEBHOOK__BASIC_AUTH__PASSWORD": basic_password(token),
               "PITSTOP_WEBHOOK__RATE_LIMIT__PER_SECOND": "100000",
               "PITSTOP_WEBHOOK__RATE_LIMIT__BURST": "100000",
               "PITSTOP_TEMPORAL__ADDRESS": f"127.0.0.1:{free_port()}"}
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "pitstop.workers.webhook"], cwd=ROOT, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready(30.0)

    def _wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the webhook exited ({self.process.returncode}): {self.log()}")
            if b"ready on" in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        raise RuntimeError(f"the webhook was not ready after {seconds:.0f} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tracebacks(self) -> int:
        """Tracebacks the server logged so far (an unexpected error, uvicorn's "Exception in ASGI application")."""
        return self.log().count("Traceback (most recent call last)")

    def alive(self) -> bool:
        return self.process.poll() is None

    def healthy(self) -> bool:
        status, _ = raw_request(self.port, b"GET /healthz HTTP/1.1\r\nHost: fuzz\r\n\r\n")
        return status == 200

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        shutil.rmtree(self.state, ignore_errors=True)


@contextmanager
def webhook_process(*, token: str) -> Iterator[WebhookProcess]:
    server = WebhookProcess(token=token)
    try:
        yield server
    finally:
        server.stop()


def raw_request(port: int, request: bytes, *, half_close: bool = False,
                timeout: float = HANG_SECONDS) -> tuple[int | None, bytes]:
    """Send `request` as is on a new loopback connection; (status, body) of the first answer, status None when
    the server closes the connection without one. `half_close` ends the client's side after sending (so a
    server waiting for a body longer than the one sent sees the end). Raises Hang after `timeout`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before reading all of it: read its answer
        received = b""
        try:
            while True:
                head, sep, rest = received.partition(b"\r\n\r\n")
                if sep:
                    length = _content_length(head)
                    if length is not None and len(rest) >= length:
                        return _status(head), rest[:length]
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise Hang(f"no answer after {timeout:.0f} s (received {len(received)} bytes)") from None
    if not received:
        return None, b""
    head, _, rest = received.partition(b"\r\n\r\n")
    return _status(head), rest


def _status(head: bytes) -> int | None:
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else None


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return None
