"""A Prometheus probe that returns a number, for steady-state hypotheses with a `range` tolerance.

chaostoolkit-prometheus 0.6's `query` returns Prometheus' raw answer, whose sample values are strings
(`"value": [1733380000, "123.4"]`): a tolerance cannot compare them with a threshold, and its `compute_mean`
fails on every call (it subtracts a datetime from a float). Its module also imports `logzero`, which the
package does not declare, so it does not import where `logzero` is missing.

`query_value(query)` runs an instant query through pitstop's Prometheus client
(`activities.metrics.PrometheusProvider`) at the experiment's `prometheus_base_url` (the configuration key
chaostoolkit-prometheus reads) and returns the one sample's value as a float, so a hypothesis reads
`"tolerance": {"type": "range", "range": [0, 300]}`.

No data is not a pass: an empty result or NaN, an unreachable Prometheus, a rejected query, or a query that
returns several series (aggregate it in PromQL) raises `ActivityFailed`, so the hypothesis is not met.
"""

from __future__ import annotations

import asyncio

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from pitstop.activities.metrics import MetricsQueryError, MetricsUnavailable, PrometheusProvider

__all__ = ["query_value"]

DEFAULT_BASE_URL = "http://localhost:9090"


def query_value(
    query: str,
    timeout: float = 10.0,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> float:
    """The value of an instant query that returns exactly one sample (a scalar or a one-series vector)."""
    base = str((configuration or {}).get("prometheus_base_url", DEFAULT_BASE_URL))
    provider = PrometheusProvider(base_url=base, timeout_seconds=timeout)
    try:
        value = asyncio.run(provider.query(query))
    except (MetricsUnavailable, MetricsQueryError) as exc:
        raise ActivityFailed(str(exc)) from exc
    if value is None:
        raise ActivityFailed(f"Prometheus at {base} has no data for {query!r} (no requests in the window?)")
    return value
