"""How long workflow code lets an activity run and how often it retries one: every timeout and `RetryPolicy`
that more than one call shares, named once.

The values are part of recorded behaviour (a retry policy decides how a failure ends; a timeout when it
starts): change one only on purpose, never to make a name fit.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

ACTIVITY_TIMEOUT = timedelta(seconds=30)
"""A short activity call: a query, a lease request, a notification, loading a runbook."""

SLOW_ACTIVITY_TIMEOUT = timedelta(seconds=60)
"""An activity that gathers more (evidence from the cluster, an error-budget query over a long window)."""

HEARTBEAT_TIMEOUT = timedelta(seconds=15)
"""Long cluster activities (waiting for a rollout) heartbeat at least this often."""

QUICK = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=5)
"""A call the run needs (an incident's plan, its budget reservation, a notification): a few quick retries."""

BEST_EFFORT = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
"""A call the run can do without (evidence, a metric snapshot, a presence check): three tries, then go on."""

RELEASE_ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5))
"""A release's cluster calls: retried until their timeout (they set absolute state, so a retry is safe)."""

MEASURE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=2),
                            maximum_attempts=3)
"""One analysis run's measurements: a few fast retries; the next run measures again anyway."""
