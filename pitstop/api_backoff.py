"""When to call a struggling Kubernetes API again: which answers mean "unavailable, try later", the
server's `Retry-After`, and a capped exponential backoff with jitter. Pure; used by `activities.kube_errors`.

An API server that answers 429 (throttled, or API Priority and Fairness rejecting), any 5xx, or cannot be
reached at all is *unavailable*: the call is retried later, it never fails the step by itself. The delay is
the server's `Retry-After` when it sent one (capped, plus a little jitter so a fleet of workers does not
come back in the same instant), else `BACKOFF_INITIAL * 2**(attempt-1)` capped at `BACKOFF_MAX`, with
"equal jitter" (half fixed, half random).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

API_UNAVAILABLE_ERROR = "KubernetesApiUnavailable"  # the ApplicationError type the step interpreter rides out
UNREACHABLE_STATUS = 0  # no HTTP answer at all: refused, reset, timed out, TLS failure
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 10.0
RETRY_AFTER_MAX_SECONDS = 120.0
RETRY_AFTER_JITTER = 0.1  # up to +10% on top of the server's Retry-After


def is_api_unavailable(status: int) -> bool:
    """429, any 5xx, or no answer: the API server cannot serve us now (not a problem with the request)."""
    return status == UNREACHABLE_STATUS or status == 429 or status >= 500


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP-date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def retry_delay(*, attempt: int, retry_after: float | None, jitter: float) -> float:
    """How long to wait before attempt `attempt + 1`. `jitter` is a random number in [0, 1)."""
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_MAX_SECONDS) * (1.0 + RETRY_AFTER_JITTER * jitter)
    base = min(BACKOFF_MAX_SECONDS, BACKOFF_INITIAL_SECONDS * 2.0 ** max(0, attempt - 1))
    return base / 2.0 + base / 2.0 * jitter
