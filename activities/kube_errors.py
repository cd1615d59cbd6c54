"""Kubernetes API errors as pitstop's two kinds of failure, and the one retry done inside an activity.

`kube_errors(what, region)` turns an `ApiException` from `KubeJson` (`activities.kube_api`) into a
non-retryable `ApplicationError` naming the object (not found, forbidden, invalid), a retryable
`KubernetesApiUnavailable` for 429/5xx/no answer that tells Temporal when to try again (`next_retry_delay`:
the server's Retry-After, else a jittered backoff from the attempt number; `pitstop.api_backoff`), or a
retryable `KubernetesApiError` (anything else). The waiting is Temporal's: the activity never sleeps and
retries itself, and the runbook interpreter rides out an unavailable API for `retry.api_outage` without
spending the step's attempts (`workflows/step_calls.py`). `retry_on_conflict` re-runs a read-modify-write
that hit 409.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from kubernetes.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.api_backoff import API_UNAVAILABLE_ERROR, is_api_unavailable, parse_retry_after, retry_delay

CONFLICT_ATTEMPTS = 5

T = TypeVar("T")


def api_error_detail(exc: ApiException) -> str:
    """The API server's own message (its Status object's `message`), else the HTTP reason or status."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason or exc.status)
    except ValueError:
        return str(exc.reason or exc.status)


def translate_api_error(exc: ApiException, what: str, region: str) -> Exception:
    """Domain errors become non-retryable ApplicationErrors naming the object; the rest stay retryable."""
    detail = api_error_detail(exc)
    if exc.status == 404:
        return ApplicationError(f"{what} not found in region {region}", type="NotFound", non_retryable=True)
    if exc.status in (401, 403):
        return ApplicationError(f"forbidden: {what} in region {region}: {detail}", type="Forbidden", non_retryable=True)
    if exc.status in (400, 422):
        return ApplicationError(f"invalid change to {what} in region {region}: {detail}", type="Invalid", non_retryable=True)
    if is_api_unavailable(exc.status):
        retry_after = parse_retry_after(_header(exc, "Retry-After"), now=datetime.now(UTC))
        attempt = activity.info().attempt if activity.in_activity() else 1
        delay = retry_delay(attempt=attempt, retry_after=retry_after, jitter=random.random())
        answer = f"{exc.status} {detail}" if exc.status else f"no answer ({detail})"
        return ApplicationError(
            f"Kubernetes API of region {region} unavailable for {what}: {answer}; retrying in {delay:.1f}s"
            + (f" (Retry-After {retry_after:g}s)" if retry_after is not None else ""),
            type=API_UNAVAILABLE_ERROR, next_retry_delay=timedelta(seconds=delay),
        )
    return ApplicationError(
        f"Kubernetes API error for {what} in region {region}: {exc.status} {detail}", type="KubernetesApiError"
    )


def _header(exc: ApiException, name: str) -> str | None:
    headers = exc.headers or {}
    value = headers.get(name)
    return None if value is None else str(value)


@contextmanager
def kube_errors(what: str, region: str) -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        raise translate_api_error(exc, what, region) from None


def retry_on_conflict(attempt: Callable[[], T], *, attempts: int = CONFLICT_ATTEMPTS) -> T:
    """Run a read-modify-write `attempt` again when the write hits 409 Conflict (the only in-activity retry)."""
    for n in range(attempts):
        try:
            return attempt()
        except ApiException as exc:
            if exc.status != 409 or n == attempts - 1:
                raise
            activity.logger.info("conflict writing, re-reading (attempt %d)", n + 1)
    raise AssertionError("unreachable")
