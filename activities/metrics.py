"""`MetricsProvider`: the one interface to a metrics backend (flagger pkg/metrics/providers style),
and its Prometheus implementation over httpx (async).

`query(promql)` returns a float, or None for "no data" (empty vector, NaN). `query_series(promql)` returns
every series of an instant vector with its labels (evidence: what an alert's expression shows now);
`query_range(promql, start=, end=, step=)` every series of a range query with its points (usage history). A
backend that cannot be asked raises `MetricsUnavailable`; a query Prometheus rejects (or, for `query`, that
returns several series) raises `MetricsQueryError`. Callers decide what those mean (a threshold check
turns both "no data" and "unavailable" into an inconclusive verdict).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from .call_observer import ApiCall, CallObserver


class MetricsUnavailable(Exception):
    """The metrics backend could not be reached or answered with a server error."""


class MetricsQueryError(Exception):
    """The query itself is wrong (rejected by the backend, or not reducible to one number)."""


@dataclass(frozen=True)
class Series:
    """One series of an instant vector: its labels and its value now (NaN kept)."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class RangeSeries:
    """One series of a range query: its labels and its (unix seconds, value) points, NaN dropped."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class MetricsProvider(Protocol):
    async def query(self, promql: str) -> float | None: ...

    async def query_series(self, promql: str) -> list[Series]: ...

    async def query_range(self, promql: str, *, start: float, end: float, step: float) -> list[RangeSeries]: ...

    async def is_online(self) -> bool: ...


class PrometheusProvider:
    """Prometheus HTTP API v1, instant queries (`/api/v1/query`)."""

    def __init__(self, *, base_url: str, timeout_seconds: float = 10.0, client: httpx.AsyncClient | None = None,
                 observer: CallObserver | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._client = client
        self.observer = observer  # metrics and trace spans of each request (activities/call_observer.py)

    async def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        if self.observer is None:
            return await self._send(path, params)
        call = ApiCall("prometheus", "GET", path)
        with self.observer(call):
            response = await self._send(path, params)
            call.status = response.status_code
            return response

    async def _send(self, path: str, params: dict[str, str] | None) -> httpx.Response:
        try:
            if self._client is not None:
                return await self._client.get(self.base_url + path, params=params, timeout=self.timeout_seconds)
            async with httpx.AsyncClient(timeout=self.timeout_seconds) as client:
                return await client.get(self.base_url + path, params=params)
        except httpx.HTTPError as exc:  # connect/read errors, timeouts
            raise MetricsUnavailable(f"Prometheus at {self.base_url} unreachable: {type(exc).__name__}: {exc}") from exc

    async def _instant_query(self, promql: str) -> dict[str, Any]:
        """The `data` of an instant query's successful answer."""
        return await self._data("/api/v1/query", {"query": promql})

    async def _data(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        promql = params["query"]
        response = await self._get(path, params)
        if response.status_code >= 500 or response.status_code == 429:
            raise MetricsUnavailable(f"Prometheus at {self.base_url} answered {response.status_code}")
        try:
            body: dict[str, Any] = response.json()
        except ValueError as exc:
            raise MetricsUnavailable(f"Prometheus at {self.base_url} answered non-JSON ({response.status_code})") from exc
        if body.get("status") != "success":
            raise MetricsQueryError(
                f"Prometheus rejected query {promql!r}: {body.get('errorType', response.status_code)}: {body.get('error', '')}"
            )
        data: dict[str, Any] = body.get("data") or {}
        return data

    async def query(self, promql: str) -> float | None:
        return _single_value(promql, await self._instant_query(promql))

    async def query_series(self, promql: str) -> list[Series]:
        return _vector_series(await self._instant_query(promql))

    async def query_range(self, promql: str, *, start: float, end: float, step: float) -> list[RangeSeries]:
        data = await self._data("/api/v1/query_range",
                                {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
        return _matrix_series(data)

    async def is_online(self) -> bool:
        try:
            response = await self._get("/-/ready")
        except MetricsUnavailable:
            return False
        return response.status_code == 200


def _single_value(promql: str, data: dict[str, Any]) -> float | None:
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar":
        return _number(result[1]) if result else None
    if result_type == "vector":
        if not result:
            return None
        if len(result) > 1:
            labels = [r.get("metric", {}) for r in result[:3]]
            raise MetricsQueryError(
                f"query {promql!r} returned {len(result)} series (e.g. {labels}); aggregate it to one (sum/avg/max ...)"
            )
        return _number(result[0]["value"][1])
    raise MetricsQueryError(f"query {promql!r} returned a {result_type}; use an instant vector or scalar expression")


def _vector_series(data: dict[str, Any]) -> list[Series]:
    """The samples of an instant vector (any other result type has none); unreadable samples are skipped."""
    result = data.get("result") if data.get("resultType") == "vector" else None
    series = []
    for item in result if isinstance(result, list) else []:
        try:
            series.append(Series(labels=dict(item.get("metric") or {}), value=float(item["value"][1])))
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            continue
    return series


def _matrix_series(data: dict[str, Any]) -> list[RangeSeries]:
    """The series of a range query's matrix (any other result type has none); NaN and unreadable points dropped."""
    result = data.get("result") if data.get("resultType") == "matrix" else None
    series = []
    for item in result if isinstance(result, list) else []:
        points = []
        for sample in item.get("values") or []:
            try:
                value = float(sample[1])
                if not math.isnan(value):
                    points.append((float(sample[0]), value))
            except (IndexError, TypeError, ValueError):
                continue
        series.append(RangeSeries(labels=dict(item.get("metric") or {}), points=points))
    return series


def _number(raw: str) -> float | None:
    value = float(raw)
    return None if math.isnan(value) else value
