"""Per-client rate limits: one token bucket (pitstop/token_bucket.py) per client key, for the alert webhook.

A client is the authenticated identity of a request (`bearer`, `basic:<username>`), or its remote address
while it is not authenticated (no or wrong credentials, or an HMAC signature not yet checked against the body).
A request over its client's limit is refused (the webhook answers 429 with Retry-After), never queued.
Memory is bounded: at most `max_clients` buckets, the least recently used forgotten first (a forgotten
client starts again with a full burst). The clock is injected so the decisions are tested without sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from pitstop.token_bucket import TokenBucket

MAX_TRACKED_CLIENTS = 10_000


class ClientRateLimits:
    def __init__(self, *, per_second: float, burst: int, max_clients: int = MAX_TRACKED_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        TokenBucket(rate=per_second, burst=burst)  # refuses nonsense limits at construction, not per request
        self.per_second = per_second
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """0 when `client` may send this request now (its token is taken); else the seconds until it may."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(rate=self.per_second, burst=self.burst, clock=self._clock)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return bucket.take()

    def __len__(self) -> int:
        return len(self._buckets)
