"""A Prometheus probe that returns a number, for steady-state hypotheses with a `range` tolerance.

chaostoolkit-prometheus 0.6's `query` returns Prometheus' raw answer, whose sample values are strings
(`"value": [1733380000, "123.4"]`): a tolerance cannot compare them with a threshold, and its `compute_mean`
fails on every call (it subtracts a datetime from a float). `query_value` runs the same instant query
(through `chaosprometheus.probes.query`, same `prometheus_base_url` configuration key) and returns the one
sample's value as a float, so a hypothesis reads
`"tolerance": {"type": "range", "range": [0, 300]}`.

No data is not a pass: an empty result or a NaN raises `ActivityFailed` (the hypothesis is then not met),
and so does a query that returns more than one series (aggregate it in PromQL).
"""

from __future__ import annotations

import math

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets
from chaosprometheus import probes as prometheus_probes

__all__ = ["query_value"]


def query_value(
    query: str,
    when: str | None = None,
    timeout: float | None = None,
    verify_tls: bool = True,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> float:
    """The value of an instant query that returns exactly one sample (a scalar or a one-series vector)."""
    answer = prometheus_probes.query(query, when=when, timeout=timeout, verify_tls=verify_tls,
                                     configuration=configuration, secrets=secrets)
    data = answer.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar":
        sample = result
    else:
        if not result:
            raise ActivityFailed(f"Prometheus returned no data for {query!r}")
        if len(result) > 1:
            labels = [r.get("metric") for r in result[:3]]
            raise ActivityFailed(f"Prometheus returned {len(result)} series for {query!r} (first: {labels}); "
                                 "aggregate the query to one series")
        sample = result[0].get("value")
    try:
        value = float(sample[1])  # type: ignore[index]
    except (TypeError, IndexError, ValueError) as exc:
        raise ActivityFailed(f"Prometheus returned no sample value for {query!r}: {answer!r}") from exc
    if math.isnan(value):
        raise ActivityFailed(f"Prometheus returned NaN for {query!r} (no requests in the window?)")
    return value
