"""Istio `fault` blocks on VirtualService HTTP routes, applied to simulated requests as Envoy applies them.

Pure functions (no I/O, no clock), used by `sandbox.simulator`:

- `parse_http_fault(route)` reads a route's `fault` (`delay.fixedDelay` + `delay.percentage.value`, legacy
  integer `delay.percent`; `abort.httpStatus` + `abort.percentage.value`, legacy `abort.percent`). As Istio
  documents, a delay or abort without a percentage injects nothing; `abort.grpcStatus` is not modelled
  (the fleet speaks HTTP). An unusable block raises `ValueError` naming the field.
- `fault_shares(routes, ...)` says which share of each destination's requests passed through which route's
  fault (routes are evaluated in order, like `sandbox.traffic_model.http_traffic_split`).
- `apply_fault(batch, fault)` splits a batch of requests (rate, response-code split, latency distribution)
  the way Envoy's fault filter does: the delay and the abort are drawn independently; a delayed request
  waits `fixedDelay` before it is forwarded (or aborted); an aborted request never reaches the upstream and
  is answered with `httpStatus` right away (after its delay, if it was delayed too).

Where it shows: the simulator reports these requests in the series it exports (`reporter="destination"`,
the workload the route resolved to), so the fleet's latency histograms, p95 queries, error ratios and alerts
see the fault. A real mesh injects the fault in the client's sidecar: there the aborted requests and the
delay are reported with `reporter="source"` and `response_flags="FI"`, and the destination's own sidecar
never sees the aborts. See `chaos/experiments/README.md`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ABORT_LATENCY_MS = 0.5
"""Envoy answers an aborted request locally: well under a millisecond (plus the delay, if delayed too)."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_UNIT_MS = {"h": 3_600_000.0, "m": 60_000.0, "s": 1000.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "ns": 1e-6}


def parse_duration_ms(value: object, *, field: str) -> float:
    """A protobuf/Go duration string ("5s", "0.5s", "100ms", "1m30s") in milliseconds."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a duration such as '5s' or '100ms', not {value!r}")
    text = value.strip()
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f"{field} must be a duration such as '5s' or '100ms', not {value!r}")
    return total


def _percent(block: Mapping[str, Any], *, field: str) -> float:
    """`percentage.value` (a double in [0, 100]), else the legacy integer `percent`, else 0 (Istio's default)."""
    percentage = block.get("percentage")
    if percentage is not None:
        raw = percentage.get("value", 0.0) if isinstance(percentage, Mapping) else None
        where = f"{field}.percentage.value"
    else:
        raw = block.get("percent", 0)
        where = f"{field}.percent"
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0.0 <= float(raw) <= 100.0:
        raise ValueError(f"{where} must be a number in [0, 100], not {raw!r}")
    return float(raw)


@dataclass(frozen=True)
class HttpFault:
    """One route's fault: `delay_ratio` of its requests wait `delay_ms`; `abort_ratio` get `abort_status`."""

    delay_ratio: float = 0.0
    delay_ms: float = 0.0
    abort_ratio: float = 0.0
    abort_status: str = "503"

    @property
    def active(self) -> bool:
        return (self.delay_ratio > 0.0 and self.delay_ms > 0.0) or self.abort_ratio > 0.0


def parse_http_fault(route: Mapping[str, Any], *, where: str = "http[]") -> HttpFault | None:
    """The `fault` of one `spec.http[]` entry (None when it has none)."""
    fault = route.get("fault")
    if fault is None:
        return None
    if not isinstance(fault, Mapping):
        raise ValueError(f"{where}.fault must be an object, not {fault!r}")
    delay_ratio = delay_ms = abort_ratio = 0.0
    abort_status = "503"
    delay = fault.get("delay")
    if delay is not None:
        if not isinstance(delay, Mapping):
            raise ValueError(f"{where}.fault.delay must be an object, not {delay!r}")
        if "fixedDelay" not in delay:
            raise ValueError(f"{where}.fault.delay.fixedDelay is required (exponentialDelay is not supported)")
        delay_ms = parse_duration_ms(delay["fixedDelay"], field=f"{where}.fault.delay.fixedDelay")
        delay_ratio = _percent(delay, field=f"{where}.fault.delay") / 100.0
    abort = fault.get("abort")
    if abort is not None:
        if not isinstance(abort, Mapping):
            raise ValueError(f"{where}.fault.abort must be an object, not {abort!r}")
        status = abort.get("httpStatus")
        if "grpcStatus" in abort or "http2Error" in abort:
            return HttpFault(delay_ratio=delay_ratio, delay_ms=delay_ms)  # not modelled: HTTP fleet
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"{where}.fault.abort.httpStatus must be an HTTP status in [200, 599], not {status!r}")
        abort_status = str(status)
        abort_ratio = _percent(abort, field=f"{where}.fault.abort") / 100.0
    return HttpFault(delay_ratio=delay_ratio, delay_ms=delay_ms, abort_ratio=abort_ratio, abort_status=abort_status)


def fault_shares(
    *, route_shares: Sequence[float], route_targets: Sequence[Mapping[Any, float]],
    faults: Sequence[HttpFault | None],
) -> dict[Any, list[tuple[float, HttpFault]]]:
    """Per destination key: (share of that destination's requests, fault) for every faulty route feeding it.

    `route_shares[i]`: share of all requests route i answers (`traffic_model.route_capture_shares`);
    `route_targets[i]`: how route i splits over destination keys (fractions summing to 1).
    """
    totals: dict[Any, float] = {}
    faulty: dict[Any, list[tuple[float, HttpFault]]] = {}
    for share, targets, fault in zip(route_shares, route_targets, faults, strict=True):
        for key, fraction in targets.items():
            amount = share * fraction
            if amount <= 0.0:
                continue
            totals[key] = totals.get(key, 0.0) + amount
            if fault is not None and fault.active:
                faulty.setdefault(key, []).append((amount, fault))
    return {key: [(amount / totals[key], fault) for amount, fault in entries] for key, entries in faulty.items()}


@dataclass(frozen=True)
class RequestBatch:
    """Requests per second by response code with one log-normal latency distribution per code."""

    rps_by_code: Mapping[str, float]
    latency_by_code: Mapping[str, tuple[float, float]]  # code -> (median ms, log-space sigma)

    def scaled(self, factor: float) -> RequestBatch:
        return RequestBatch({c: r * factor for c, r in self.rps_by_code.items()}, dict(self.latency_by_code))


def delayed(median_ms: float, sigma: float, delay_ms: float) -> tuple[float, float]:
    """The distribution of `delay + X` approximated by a log-normal with the same absolute spread around
    its median (X log-normal(median, sigma)): the p95 moves up by about `delay_ms`."""
    if delay_ms <= 0.0:
        return median_ms, sigma
    shifted = median_ms + delay_ms
    return shifted, max(0.01, sigma * median_ms / shifted)


def apply_fault(batch: RequestBatch, fault: HttpFault) -> list[RequestBatch]:
    """The batches Envoy's fault filter turns `batch` into (their rates sum to the batch's rate).

    Four independent groups: neither fault, delayed only, aborted only, delayed and aborted. Aborted
    requests answer `abort_status` in `ABORT_LATENCY_MS` (+ the delay); they never reach the upstream.
    """
    total = sum(batch.rps_by_code.values())
    d = fault.delay_ratio if fault.delay_ms > 0.0 else 0.0
    a = fault.abort_ratio
    out: list[RequestBatch] = []
    for delay_group, abort_group, weight in ((False, False, (1 - d) * (1 - a)), (True, False, d * (1 - a)),
                                             (False, True, (1 - d) * a), (True, True, d * a)):
        if weight <= 0.0:
            continue
        delay_ms = fault.delay_ms if delay_group else 0.0
        if abort_group:
            out.append(RequestBatch({fault.abort_status: total * weight},
                                    {fault.abort_status: (ABORT_LATENCY_MS + delay_ms, 0.3)}))
            continue
        latency = {code: delayed(median, sigma, delay_ms) for code, (median, sigma) in batch.latency_by_code.items()}
        out.append(RequestBatch({c: r * weight for c, r in batch.rps_by_code.items()}, latency))
    return out


def apply_faults(batch: RequestBatch, shares: Sequence[tuple[float, HttpFault]]) -> list[RequestBatch]:
    """`batch` split by the routes it came through: each faulty route's share goes through its fault,
    the rest is untouched."""
    if not shares:
        return [batch]
    clean = max(0.0, 1.0 - sum(share for share, _ in shares))
    out = [batch.scaled(clean)] if clean > 0.0 else []
    for share, fault in shares:
        out.extend(apply_fault(batch.scaled(share), fault))
    return out


def p95_of_mixture(batches: Sequence[RequestBatch]) -> float:
    """95th percentile latency (ms) of all requests in `batches` (bisection on the mixture's CDF);
    used by tests and the chaos catalog README to say what a fault does to p95."""
    parts = [(rps, median, sigma) for b in batches for code, rps in b.rps_by_code.items() if rps > 0
             for median, sigma in [b.latency_by_code[code]]]
    total = sum(p[0] for p in parts)
    if total <= 0.0:
        return 0.0

    def cdf(x: float) -> float:
        return sum(rps * 0.5 * (1.0 + math.erf((math.log(x) - math.log(m)) / (s * math.sqrt(2.0))))
                   for rps, m, s in parts) / total

    low, high = 1e-3, 1e7
    for _ in range(100):
        mid = math.sqrt(low * high)
        low, high = (mid, high) if cdf(mid) < 0.95 else (low, mid)
    return high
