"""A thread-safe token bucket: at most `burst` calls at once, then `rate` calls per second on average.

Used per cluster by `activities.kube_api.KubeJson` so every activity of a worker process shares one
client-side rate limit towards each API server (`reserve`: callers wait their turn), and per client by the
alert webhook (`take`: a caller without a token is refused, pitstop/client_rate_limit.py). The clock is injected (monotonic seconds) so the
arithmetic is tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1 (got rate={rate}, burst={burst})")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def take(self) -> float:
        """Take one token if there is one: 0. Otherwise take nothing and return the seconds until one is there."""
        with self._lock:
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate

    def reserve(self) -> float:
        """Take one token now; the seconds the caller must wait before using it (0 when one was available).

        Tokens may go negative: each caller reserves its own future slot, so waiters are served in order."""
        with self._lock:
            self._refill()
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Wait for a token; the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            sleep(wait)
        return wait
