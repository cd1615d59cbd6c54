"""Keeping `pitstop up`'s embedded Temporal dev server alive: restart it when it dies, with bounded backoff.

`next_restart` is the pure decision (how long to wait, or give up); `SupervisedDevServer` applies it to a
`DevServer` without blocking the supervision loop: it notices the exit (reaping the process), says so on the
console, and restarts the server on the same SQLite file and ports once the delay has passed. Workers and the
webhook reconnect by themselves; the webhook journals alerts while Temporal is away.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field

from .devserver import DevServer
from .errors import EXIT_UNAVAILABLE, CliError


@dataclass(frozen=True)
class RestartPolicy:
    """Restart after a short delay; back off exponentially while the server keeps failing soon after starting; stop.

    A server that ran at least `healthy_after_seconds` before dying starts the count afresh.
    """

    first_delay_seconds: float = 1.0
    max_delay_seconds: float = 30.0
    healthy_after_seconds: float = 60.0
    max_consecutive_restarts: int = 5


@dataclass(frozen=True)
class RestartDecision:
    consecutive: int  # failures in a row, this one included
    delay_seconds: float
    give_up: bool


def next_restart(policy: RestartPolicy, *, uptime_seconds: float, consecutive_before: int) -> RestartDecision:
    """What to do after the server exited (or failed to start, uptime 0) having run `uptime_seconds`."""
    consecutive = (consecutive_before if uptime_seconds < policy.healthy_after_seconds else 0) + 1
    delay = min(policy.max_delay_seconds, policy.first_delay_seconds * 2 ** (consecutive - 1))
    return RestartDecision(consecutive=consecutive, delay_seconds=delay,
                           give_up=consecutive > policy.max_consecutive_restarts)


def describe_exit(code: int) -> str:
    """`code 1`, or `code -9 (SIGKILL)` for Popen's negative code of a process killed by a signal."""
    if code < 0:
        try:
            return f"code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"code {code}"


@dataclass
class SupervisedDevServer:
    """The embedded Temporal dev server, restarted by `check()` (called from `pitstop up`'s loop) when it dies."""

    server: DevServer
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    consecutive: int = 0
    started_at: float = 0.0
    restart_at: float | None = None

    def start(self) -> None:
        self.server.start()
        self.started_at = time.monotonic()

    def check(self) -> None:
        """Reap a dead server and schedule its restart, or restart it when due; raise CliError when giving up."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self._restart()
            return
        process = self.server.process
        if process is None or process.poll() is None:  # poll() also reaps a killed server (no zombie)
            return
        what = f"temporal dev server exited ({describe_exit(process.returncode)})"
        self._schedule(what, uptime_seconds=now - self.started_at)

    def stop(self) -> None:
        self.restart_at = None
        self.server.stop()

    def _schedule(self, what: str, *, uptime_seconds: float) -> None:
        decision = next_restart(self.policy, uptime_seconds=uptime_seconds, consecutive_before=self.consecutive)
        self.consecutive = decision.consecutive
        if decision.give_up:
            print(f"[up] {what}; giving up after {self.policy.max_consecutive_restarts} restarts in a row", flush=True)
            raise CliError(
                f"the embedded Temporal server keeps failing: {what}; see {self.server.log_path}",
                exit_code=EXIT_UNAVAILABLE,
            )
        print(f"[up] {what}; restarting in {decision.delay_seconds:g}s (see {self.server.log_path})", flush=True)
        self.restart_at = time.monotonic() + decision.delay_seconds

    def _restart(self) -> None:
        self.restart_at = None
        began = time.monotonic()
        try:
            self.start()
        except (RuntimeError, FileNotFoundError) as exc:
            self.server.stop()  # a half-started server that never became healthy
            self._schedule(f"temporal dev server did not start again: {str(exc).splitlines()[0]}", uptime_seconds=0.0)
            return
        print(f"[up] temporal dev server restarted at {self.server.address} in {time.monotonic() - began:.1f}s; "
              "runs continue from its state", flush=True)
