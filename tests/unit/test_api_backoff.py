"""Kubernetes API back-pressure: Retry-After parsing, the jittered backoff, which answers mean "unavailable",
the per-cluster token bucket, and how an ApiException becomes a retryable error carrying its delay."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError
from urllib3._collections import HTTPHeaderDict

from pitstop.activities.kube_api import ApiUnreachable
from pitstop.activities.kube_errors import translate_api_error
from pitstop.api_backoff import (
    API_UNAVAILABLE_ERROR,
    BACKOFF_MAX_SECONDS,
    RETRY_AFTER_MAX_SECONDS,
    is_api_unavailable,
    parse_retry_after,
    retry_delay,
)
from pitstop.runbook.model import RetrySpec
from pitstop.token_bucket import TokenBucket

NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7", now=NOW) == 7.0
    assert parse_retry_after(" 0 ", now=NOW) == 0.0
    assert parse_retry_after("Fri, 04 Dec 2026 12:00:30 GMT", now=NOW) == 30.0
    assert parse_retry_after("Fri, 04 Dec 2026 11:00:00 GMT", now=NOW) == 0.0  # in the past: now
    assert parse_retry_after(None, now=NOW) is None
    assert parse_retry_after("soon", now=NOW) is None


def test_unavailable_answers() -> None:
    assert [s for s in (0, 400, 403, 404, 409, 422, 429, 500, 503, 504) if is_api_unavailable(s)] == [0, 429, 500, 503, 504]


def test_backoff_grows_is_capped_and_jittered() -> None:
    low = [retry_delay(attempt=a, retry_after=None, jitter=0.0) for a in range(1, 8)]
    high = [retry_delay(attempt=a, retry_after=None, jitter=0.999999) for a in range(1, 8)]
    assert low == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]  # half of 1, 2, 4, 8, 10 (cap), ...
    assert all(h == pytest.approx(2 * lo, rel=1e-5) for lo, h in zip(low, high, strict=True))
    assert max(high) <= BACKOFF_MAX_SECONDS


def test_retry_after_wins_over_backoff_plus_a_little_jitter_and_is_capped() -> None:
    assert retry_delay(attempt=1, retry_after=4.0, jitter=0.0) == 4.0
    assert 4.0 <= retry_delay(attempt=5, retry_after=4.0, jitter=0.5) <= 4.4
    assert retry_delay(attempt=1, retry_after=3600.0, jitter=0.0) == RETRY_AFTER_MAX_SECONDS


def test_token_bucket_allows_burst_then_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=10.0, burst=3, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)  # each caller reserves its own future slot
    assert bucket.reserve() == pytest.approx(0.2)
    now[0] += 1.0  # 10 tokens regained, 2 owed, capped at the burst
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)


def test_token_bucket_is_shared_safely_between_threads() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=20.0, burst=5, clock=lambda: now[0])
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(25):
            wait = bucket.reserve()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 100 calls at one instant: 5 free, then one slot every 1/20 s, each handed out once.
    assert sorted(waits) == pytest.approx([0.0] * 5 + [n / 20 for n in range(1, 96)])


def test_token_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


def _api_exception(status: int, headers: dict[str, str] | None = None) -> ApiException:
    exc = ApiException(status=status, reason="x", body='{"message": "the server is busy"}')
    exc.headers = HTTPHeaderDict(headers or {})
    return exc


def test_throttled_answer_is_retryable_with_the_servers_delay() -> None:
    error = translate_api_error(_api_exception(429, {"Retry-After": "6"}), "deployment a/b", "eu-central")
    assert isinstance(error, ApplicationError)
    assert error.type == API_UNAVAILABLE_ERROR and not error.non_retryable
    assert error.next_retry_delay is not None
    assert timedelta(seconds=6) <= error.next_retry_delay <= timedelta(seconds=6.6)
    assert "Retry-After 6s" in error.message and "the server is busy" in error.message


def test_5xx_and_no_answer_back_off_without_retry_after() -> None:
    for exc in (_api_exception(503), ApiUnreachable("ConnectionRefusedError")):
        error = translate_api_error(exc, "deployment a/b", "eu-central")
        assert isinstance(error, ApplicationError) and error.type == API_UNAVAILABLE_ERROR
        assert error.next_retry_delay is not None and error.next_retry_delay <= timedelta(seconds=1)  # attempt 1


def test_domain_errors_are_unchanged() -> None:
    for status, kind in ((404, "NotFound"), (403, "Forbidden"), (422, "Invalid"), (409, "KubernetesApiError")):
        error = translate_api_error(_api_exception(status), "deployment a/b", "eu-central")
        assert isinstance(error, ApplicationError) and error.type == kind and error.next_retry_delay is None


def test_default_ride_out_window_is_at_least_a_minute() -> None:
    assert RetrySpec().api_outage >= 60
    assert RetrySpec.model_validate({"api_outage": "30s"}).api_outage == 30
