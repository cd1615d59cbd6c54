"""Waiting inside a synchronous activity (thread pool): a sleep that the activity's cancellation interrupts."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import CancelledError


def sleep_or_cancel(seconds: float) -> None:
    """Sleep in a sync activity; raise CancelledError if the activity is cancelled meanwhile."""
    activity.wait_for_cancelled_sync(timeout=seconds)
    if activity.is_cancelled():
        raise CancelledError("activity cancelled")
