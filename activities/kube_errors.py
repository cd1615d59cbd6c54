"""Kubernetes API errors as pitstop's two kinds of failure, and the one retry done inside an activity.

`kube_errors(what, region)` turns an `ApiException` from `KubeJson` (`activities.kube_api`) into a
non-retryable `ApplicationError` naming the object (not found, forbidden, invalid) or a retryable one
(everything else: Temporal retries it). `retry_on_conflict` re-runs a read-modify-write that hit 409.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from kubernetes.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

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
    return ApplicationError(
        f"Kubernetes API error for {what} in region {region}: {exc.status} {detail}", type="KubernetesApiError"
    )


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
